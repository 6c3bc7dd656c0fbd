package command

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/strata-llm/strata/bench"
	"github.com/strata-llm/strata/bench/report"
	"github.com/strata-llm/strata/bench/routing"
	"github.com/strata-llm/strata/dev"
)

// defaultRoutingGoodput are interactive SLOs: the first token within half a
// second, then at least twenty tokens a second.
const defaultRoutingGoodput = "ttft:500,tpot:50"

func newBenchRoutingCommand(logger func() (*slog.Logger, error)) *cobra.Command {
	cfg := routing.Config{Bench: bench.DefaultConfig()}
	var (
		rf                                     requestFlags
		dc                                     dev.Config
		speedup                                float64
		kvBlocks, maxNumSeqs, maxBatchedTokens int
		simArgs, policies                      []string
		outputDir                              string
	)
	cmd := &cobra.Command{
		Use:   "routing [flags]",
		Short: "Compare the gateway's routing policies on a local cluster: one workload, each policy on fresh engines",
		Long: `routing starts a local cluster as 'strata dev' does (a brain, an agent with
--engines simulated engines at the timing of an H100 divided by --speedup, and
the gateway), measures its capacity (the requests per second it completes
when kept saturated under least-loaded), then replays one workload at --load
times that capacity under each routing policy, each against a fresh cluster
so that every policy starts with cold caches, with the same seed. It prints
TTFT p50/p99, ITL p50, throughput, goodput and the cached-token fraction of
every policy with its ratio to round-robin, and the workload's reuse bounds:
the infinite-cache bound and the pooled-cache bound (one LRU cache of the
cluster's total KV blocks), the physical limit of any routing.

The default workload is prefix-heavy (24 shared prefixes of 8192 tokens,
each request one of them and a distinct 128-token suffix, 64 tokens out), and
each engine's KV cache holds 4096 blocks of 16 tokens: the prefixes fit in
the cluster's pooled cache but not in one engine's, which is when routing
decides what gets reused. Each policy's first 15 s are its warm-up. With the
defaults the whole benchmark takes about 10 minutes. --output-dir keeps each
run's result and report and an HTML comparison.`,
		Example: `  strata bench routing --output-dir bench-routing
  strata bench routing --engines 4 --speedup 2 --duration 60s --policies round-robin,kv
  strata bench routing --request-rate 6 --workload chat --chat-users 64 --chat-rounds 8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger()
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if !f.Changed("goodput") {
				rf.goodput = strings.Split(defaultRoutingGoodput, ",")
			}
			if err := rf.apply(f, &cfg.Bench); err != nil {
				return err
			}
			if !(speedup > 0) {
				return fmt.Errorf("--speedup %v: must be positive", speedup)
			}
			if kvBlocks <= 0 || maxNumSeqs <= 0 || maxBatchedTokens <= 0 {
				return errors.New("--kv-blocks, --max-num-seqs and --max-num-batched-tokens must be positive")
			}
			dc.Engines = cfg.Engines
			dc.SimArgs = append([]string{
				"--speedup", strconv.FormatFloat(speedup, 'g', -1, 64),
				"--num-gpu-blocks-override", strconv.Itoa(kvBlocks),
				"--max-num-seqs", strconv.Itoa(maxNumSeqs),
				"--max-num-batched-tokens", strconv.Itoa(maxBatchedTokens),
			}, simArgs...)
			dc.BlockSize = cfg.Bench.BoundBlockSize
			dc.LoadTokenizer = loadTokenizer
			// The clusters' own logs are noise at info (Raft, engine
			// starts) unless debugging.
			dc.Logger = slog.New(slog.DiscardHandler)
			if log.Enabled(cmd.Context(), slog.LevelDebug) {
				dc.Logger = log
			}
			cfg.Start = routing.DevStarter(dc)
			if !f.Changed("bound-capacity-blocks") {
				cfg.Bench.BoundCapacityBlocks = cfg.Engines * kvBlocks
			}
			cfg.Policies = policies
			cfg.Logger = log
			if outputDir != "" {
				if err := os.MkdirAll(outputDir, 0o755); err != nil {
					return fmt.Errorf("--output-dir: %w", err)
				}
			}
			stderr := cmd.ErrOrStderr()
			if sf, ok := stderr.(*os.File); ok && term.IsTerminal(int(sf.Fd())) {
				bars := map[string]*progressBar{}
				cfg.Progress = func(run string, p bench.Progress) {
					if bars[run] == nil {
						bars[run] = &progressBar{w: stderr}
					}
					bars[run].draw(p)
				}
			}
			log.Info("cluster", "engines", cfg.Engines, "sim_args", strings.Join(dc.SimArgs, " "))
			res, runErr := routing.Run(cmd.Context(), cfg)
			if res != nil && len(res.Runs) > 0 {
				if err := routing.WriteTable(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			}
			if outputDir != "" && res != nil {
				if err := writeRoutingOutputs(outputDir, res); err != nil {
					return errors.Join(runErr, fmt.Errorf("--output-dir: %w", err))
				}
			}
			return runErr
		},
	}
	f := cmd.Flags()
	rf.register(f, &cfg.Bench)
	for name, value := range map[string]string{
		"workload": "prefix", "num-prefixes": "24", "prefix-len": "8192", "suffix-len": "128", "output-len": "64",
	} {
		setDefault(f, name, value)
	}
	f.Lookup("bound-capacity-blocks").DefValue = "engines × kv-blocks"
	// A slice flag would append to a default set through its Value.
	f.Lookup("goodput").DefValue = "[" + defaultRoutingGoodput + "]"
	// The cluster.
	f.IntVar(&cfg.Engines, "engines", 4, "simulated engines")
	f.Float64Var(&speedup, "speedup", 1, "engine time compression: 1 is an H100's pace")
	f.IntVar(&kvBlocks, "kv-blocks", 4096, "KV cache blocks per engine (strata sim --num-gpu-blocks-override)")
	f.IntVar(&maxNumSeqs, "max-num-seqs", 256, "sequences an engine runs at once (strata sim --max-num-seqs)")
	f.IntVar(&maxBatchedTokens, "max-num-batched-tokens", 8192, "tokens per engine step (strata sim --max-num-batched-tokens)")
	f.StringSliceVar(&simArgs, "sim-arg", nil, "extra 'strata sim' flag for every engine (repeatable)")
	f.IntVar(&dc.WorkerPortBase, "engine-port-base", 20000, "first port of the engines")
	f.StringVar(&dc.DataDir, "data-dir", "", "keep each cluster's data and engine logs under this directory (default: temporary)")
	// The runs.
	f.StringSliceVar(&policies, "policies", routing.Policies, "routing policies to compare, the baseline of the ratios first")
	f.Float64Var(&cfg.Load, "load", 0.8, "request rate as a fraction of the measured capacity")
	f.Float64Var(&cfg.RequestRate, "request-rate", 0, "requests per second, instead of --load times a measured capacity (skips the calibration)")
	f.DurationVar(&cfg.Duration, "duration", 0, "how long each policy's run sends (default 90s)")
	f.DurationVar(&cfg.Warmup, "warmup", 15*time.Second, "requests due in this first part of each policy's run are sent but not measured")
	f.DurationVar(&cfg.Calibration.Duration, "calibration-duration", 0, "length of the capacity measurement (default 60s)")
	f.DurationVar(&cfg.Calibration.Warmup, "calibration-warmup", 0, "first part of the capacity measurement not counted (default 15s)")
	f.IntVar(&cfg.Calibration.Concurrency, "calibration-concurrency", 0, "requests in flight during the capacity measurement (default 64 per engine)")
	f.StringVar(&outputDir, "output-dir", "", "write calibration.json, POLICY.json, POLICY.html, compare.html and routing.txt here")
	return cmd
}

// setDefault changes a registered flag's default.
func setDefault(f *pflag.FlagSet, name, value string) {
	fl := f.Lookup(name)
	if err := fl.Value.Set(value); err != nil {
		panic(fmt.Sprintf("flag --%s default %q: %v", name, value, err))
	}
	fl.DefValue = value
}

func writeRoutingOutputs(dir string, res *routing.Result) error {
	var errs []error
	if res.Calibration != nil {
		errs = append(errs, bench.WriteResultFile(filepath.Join(dir, "calibration.json"), res.Calibration))
	}
	for _, r := range res.Runs {
		errs = append(errs,
			bench.WriteResultFile(filepath.Join(dir, r.Name+".json"), r.Result),
			writeReport(filepath.Join(dir, r.Name+".html"), r.Name, r.Result))
	}
	if len(res.Runs) > 0 {
		errs = append(errs, writeFile(filepath.Join(dir, "compare.html"), func(f *os.File) error { return report.WriteCompareHTML(f, res.Runs) }),
			writeFile(filepath.Join(dir, "routing.txt"), func(f *os.File) error { return routing.WriteTable(f, res) }))
	}
	return errors.Join(errs...)
}

func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(write(f), f.Close())
}
