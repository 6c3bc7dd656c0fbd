package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/term"

	"github.com/strata-llm/strata/bench"
	"github.com/strata-llm/strata/bench/client"
	"github.com/strata-llm/strata/bench/report"
	"github.com/strata-llm/strata/bench/workload"
	"github.com/strata-llm/strata/tokenizer/hf"
)

// requestFlags are the flags of what `strata bench` and `strata bench
// routing` send: the workload, the requests, the SLOs and the bounds.
type requestFlags struct {
	kind, traceFile, traceFormat, endpoint, promptFormat, tokenRange, tokenizerDir string
	goodput, headers                                                               []string
	synthetic                                                                      workload.Synthetic
	prefix                                                                         workload.Prefix
	chat                                                                           workload.Chat
	outputLen, hashBlockSize                                                       int
}

func (rf *requestFlags) register(f *pflag.FlagSet, cfg *bench.Config) {
	f.StringVar(&rf.endpoint, "endpoint", "", "completions or chat (default: chat for the chat workload, else completions)")
	f.StringVar(&cfg.Model, "model", "", "model name (default: the first GET /v1/models lists)")
	f.StringArrayVar(&rf.headers, "header", nil, "extra request header KEY=VALUE (repeatable), e.g. X-Strata-Routing=round-robin to pick Strata's routing policy")
	// Workloads.
	f.StringVar(&rf.kind, "workload", "", "synthetic, prefix or chat")
	f.StringVar(&rf.traceFile, "trace", "", "replay this trace file instead of a generated workload")
	f.StringVar(&rf.traceFormat, "trace-format", "", "mooncake (JSONL) or azure (CSV) (default: from the file name)")
	f.IntVar(&rf.hashBlockSize, "hash-block-size", workload.DefaultHashBlockSize, "tokens per Mooncake hash id")
	f.IntVar(&rf.synthetic.InputLen, "input-len", 1024, "synthetic: prompt length")
	f.Float64Var(&rf.synthetic.RangeRatio, "range-ratio", 0, "synthetic: lengths vary uniformly by ± this fraction")
	f.IntVar(&rf.outputLen, "output-len", 128, "synthetic, prefix, chat: output length (max_tokens)")
	f.IntVar(&rf.prefix.NumPrefixes, "num-prefixes", 10, "prefix: number of shared prefixes")
	f.IntVar(&rf.prefix.PrefixLen, "prefix-len", 1024, "prefix: shared prefix length")
	f.IntVar(&rf.prefix.SuffixLen, "suffix-len", 128, "prefix: distinct suffix length")
	f.IntVar(&rf.chat.Users, "chat-users", 16, "chat: concurrent conversations")
	f.IntVar(&rf.chat.Rounds, "chat-rounds", 5, "chat: turns per conversation")
	f.IntVar(&rf.chat.SystemLen, "chat-system-len", 512, "chat: shared system prompt length")
	f.IntVar(&rf.chat.UserLen, "chat-user-len", 128, "chat: length of each user turn")
	f.StringVar(&rf.promptFormat, "prompt-format", "", "tokens (token-id prompts, completions only) or text (default: tokens for completions, text for chat)")
	f.StringVar(&rf.tokenRange, "token-id-range", fmt.Sprintf("%d-%d", workload.DefaultTokenIDMin, workload.DefaultTokenIDMax),
		"token ids of token-id prompts, MIN-MAX: ids that decode as text in the target's tokenizer (the default is printable ASCII for strata sim's byte-level one)")
	f.StringVar(&rf.tokenizerDir, "tokenizer", "", "model directory with the endpoint's Hugging Face tokenizer: sizes text prompts and renders the prompts the reuse bounds count (default: strata sim's byte-level one)")
	f.Float64Var(&cfg.Burstiness, "burstiness", cfg.Burstiness, "gamma shape of the arrival gaps: 1 is Poisson, lower is burstier")
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of every random choice (lengths, prompts, arrivals)")
	// Requests.
	f.BoolVar(&cfg.Stream, "stream", cfg.Stream, "stream answers (TTFT and ITL need it)")
	f.BoolVar(&cfg.IncludeUsage, "include-usage", cfg.IncludeUsage, "ask for usage in the stream (stream_options.include_usage)")
	f.BoolVar(&cfg.IgnoreEOS, "ignore-eos", cfg.IgnoreEOS, "send ignore_eos so outputs are exactly --output-len long (vLLM, SGLang, strata sim)")
	f.BoolVar(&cfg.MinTokens, "min-tokens", cfg.MinTokens, "send min_tokens = max_tokens, for the same reason")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "give up on a request after this long")
	f.StringSliceVar(&rf.goodput, "goodput", nil, "SLOs a request must meet to count as goodput, in ms: ttft:500,tpot:50,e2el:5000")
	f.IntVar(&cfg.BoundBlockSize, "bound-block-size", cfg.BoundBlockSize, "KV block size the reuse bounds assume")
	f.IntVar(&cfg.BoundCapacityBlocks, "bound-capacity-blocks", cfg.BoundCapacityBlocks, "total KV blocks of the endpoint's engines, for the pooled-cache bound")
}

// apply sets cfg from the parsed flags.
func (rf *requestFlags) apply(f *pflag.FlagSet, cfg *bench.Config) error {
	switch {
	case rf.traceFile != "" && f.Changed("workload"):
		return errors.New("--workload and --trace exclude each other: a trace is the workload")
	case rf.traceFile != "":
		rf.kind = workload.KindTrace
		if rf.traceFormat == "" {
			rf.traceFormat = formatFromName(rf.traceFile)
		}
		cfg.Workload.Trace = workload.Trace{File: rf.traceFile, Format: rf.traceFormat, HashBlockSize: rf.hashBlockSize}
	case rf.kind == "":
		return errors.New("choose a workload: --workload synthetic|prefix|chat, or --trace FILE")
	}
	cfg.Workload.Kind = rf.kind
	rf.synthetic.OutputLen, rf.prefix.OutputLen, rf.chat.OutputLen = rf.outputLen, rf.outputLen, rf.outputLen
	cfg.Workload.Synthetic, cfg.Workload.Prefix, cfg.Workload.Chat = rf.synthetic, rf.prefix, rf.chat
	cfg.Endpoint = client.Endpoint(rf.endpoint)
	cfg.PromptFormat = workload.Format(rf.promptFormat)
	var err error
	if cfg.TokenIDMin, cfg.TokenIDMax, err = parseRange(rf.tokenRange); err != nil {
		return fmt.Errorf("--token-id-range: %w", err)
	}
	if cfg.SLO, err = parseGoodput(rf.goodput); err != nil {
		return fmt.Errorf("--goodput: %w", err)
	}
	if cfg.Header, err = parseHeaders(rf.headers); err != nil {
		return fmt.Errorf("--header: %w", err)
	}
	if rf.tokenizerDir != "" {
		tok, err := hf.Load(rf.tokenizerDir)
		if err != nil {
			return fmt.Errorf("--tokenizer: %w", err)
		}
		cfg.Tokenizer, cfg.TokenizerName = tok, rf.tokenizerDir
	}
	cfg.CommandLine = redact(os.Args)
	cfg.Version = Version
	return nil
}

func newBenchCommand(logger func() (*slog.Logger, error)) *cobra.Command {
	cfg := bench.DefaultConfig()
	var (
		rf                 requestFlags
		output, reportPath string
	)
	cmd := &cobra.Command{
		Use:   "bench --url URL (--workload KIND | --trace FILE) [flags]",
		Short: "Load-test an OpenAI-compatible endpoint: synthetic workloads or trace replay, TTFT/ITL/throughput/goodput/cache hits",
		Long: `bench sends an open-loop workload to any OpenAI-compatible endpoint (Strata's
gateway, one engine, anything else) and reports what it measured, in the
style of 'vllm bench serve': TTFT, inter-token latency, time per output
token and end-to-end latency (mean, p50, p90, p99), request and token
throughput, goodput under the --goodput SLOs, the cached-token fraction
(usage.prompt_tokens_details.cached_tokens), errors by kind and schedule lag.

Workloads: synthetic (random lengths), prefix (shared prefixes), chat
(multi-turn sessions whose history grows), or --trace FILE (Mooncake JSONL
or Azure CSV) replayed at its own timestamps times --speed. Requests arrive
at --request-rate (Poisson, or gamma with --burstiness) unless a trace
gives the times.

--output writes the result as JSON, --report a self-contained HTML report
with plots; 'strata bench compare' puts several results side by side;
'strata bench routing' compares the gateway's routing policies on a local
cluster.`,
		Example: `  strata bench --url http://127.0.0.1:8000/v1 --workload prefix --num-prefixes 8 \
      --prefix-len 2048 --suffix-len 128 --output-len 64 --request-rate 20 --num-requests 600 \
      --output result.json --report report.html
  strata bench --url http://127.0.0.1:8000/v1 --trace ../shared/data/mooncake_synthetic_trace.jsonl \
      --speed 4 --duration 2m --goodput ttft:2000,tpot:50 --output mooncake.json
  strata bench compare round-robin.json kv.json --html compare.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if err := rf.apply(f, &cfg); err != nil {
				return err
			}
			if !f.Changed("api-key") {
				cfg.APIKey = os.Getenv("OPENAI_API_KEY")
			}
			if !f.Changed("request-rate") {
				cfg.RequestRate = 0 // a trace's own times, else all at once
			}
			return runBench(cmd.Context(), cmd, cfg, output, reportPath)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "base URL of the OpenAI API, ending in /v1 (required)")
	f.StringVar(&cfg.APIKey, "api-key", "", "bearer token (default: $OPENAI_API_KEY; never written to the result)")
	rf.register(f, &cfg)
	// Schedule.
	f.Float64Var(&cfg.RequestRate, "request-rate", math.Inf(1), "requests per second (inf: all at once); a trace keeps its own timestamps unless this is given")
	f.Float64Var(&cfg.Speed, "speed", cfg.Speed, "trace replay speed factor (2: twice as fast)")
	f.IntVar(&cfg.MaxConcurrency, "max-concurrency", 0, "requests in flight at most (0: no cap)")
	f.IntVar(&cfg.NumRequests, "num-requests", 0, "requests to send (default: 1000, a chat's users × rounds, a trace's every row)")
	f.DurationVar(&cfg.Duration, "duration", 0, "stop sending after this long (0: when the requests run out)")
	f.DurationVar(&cfg.Warmup, "warmup", 0, "requests due in this first stretch are sent but not measured")
	f.IntVar(&cfg.WarmupRequests, "warmup-requests", 0, "the first N requests are sent but not measured")
	// Output.
	f.StringVar(&output, "output", "", "write the result JSON here")
	f.StringVar(&reportPath, "report", "", "write the HTML report here")
	f.BoolVar(&cfg.SaveRequests, "save-requests", false, "list every request in the result")
	cmd.AddCommand(newBenchCompareCommand(), newBenchReportCommand(), newBenchRoutingCommand(logger))
	return cmd
}

func runBench(ctx context.Context, cmd *cobra.Command, cfg bench.Config, output, reportPath string) error {
	stderr := cmd.ErrOrStderr()
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := &progressBar{w: stderr}
		cfg.Progress = bar.draw
	}
	res, runErr := bench.Run(ctx, cfg)
	if res == nil {
		return runErr
	}
	if output != "" {
		if err := bench.WriteResultFile(output, res); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
	}
	if reportPath != "" {
		if err := writeReport(reportPath, displayName(output, "strata bench"), res); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if err := report.WriteSummary(cmd.OutOrStdout(), res); err != nil {
		return err
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("interrupted (%w): the result covers the requests sent so far", runErr)
	case res.GetRequestsSent() > 0 && res.GetRequestsSucceeded() == 0:
		for kind, msg := range res.GetErrorExamples() {
			return fmt.Errorf("every request failed (%s: %s)", kind, msg)
		}
	}
	return nil
}

func writeReport(path, name string, res *bench.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	werr := report.WriteHTML(f, name, res)
	return errors.Join(werr, f.Close())
}

func newBenchCompareCommand() *cobra.Command {
	var htmlPath string
	cmd := &cobra.Command{
		Use:   "compare RESULT.json RESULT.json...",
		Short: "Compare bench results side by side, with ratios to the first",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			runs, err := readResults(args)
			if err != nil {
				return err
			}
			if err := report.WriteCompare(cmd.OutOrStdout(), runs); err != nil {
				return err
			}
			if htmlPath == "" {
				return nil
			}
			f, err := os.Create(htmlPath)
			if err != nil {
				return fmt.Errorf("--html: %w", err)
			}
			return errors.Join(report.WriteCompareHTML(f, runs), f.Close())
		},
	}
	cmd.Flags().StringVar(&htmlPath, "html", "", "also write the comparison as an HTML page with the runs' plots overlaid")
	return cmd
}

func newBenchReportCommand() *cobra.Command {
	var htmlPath string
	cmd := &cobra.Command{
		Use:   "report RESULT.json --html REPORT.html",
		Short: "Print a result's summary and render its HTML report again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			runs, err := readResults(args)
			if err != nil {
				return err
			}
			if htmlPath != "" {
				if err := writeReport(htmlPath, runs[0].Name, runs[0].Result); err != nil {
					return fmt.Errorf("--html: %w", err)
				}
			}
			return report.WriteSummary(cmd.OutOrStdout(), runs[0].Result)
		},
	}
	cmd.Flags().StringVar(&htmlPath, "html", "", "write the HTML report here")
	return cmd
}

func readResults(paths []string) ([]report.Named, error) {
	var runs []report.Named
	for _, p := range paths {
		res, err := bench.ReadResultFile(p)
		if err != nil {
			return nil, err
		}
		runs = append(runs, report.Named{Name: displayName(p, p), Result: res})
	}
	return runs, nil
}

func displayName(path, fallback string) string {
	if path == "" {
		return fallback
	}
	return filepath.Base(path)
}

func formatFromName(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".json":
		return workload.FormatMooncake
	case ".csv":
		return workload.FormatAzure
	}
	return ""
}

func parseRange(s string) (uint32, uint32, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX", s)
	}
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
	b, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", s, err)
	}
	if b < a {
		return 0, 0, fmt.Errorf("%q: MAX below MIN", s)
	}
	return uint32(a), uint32(b), nil
}

// parseGoodput reads vLLM's --goodput form, KEY:MILLISECONDS with keys
// ttft, tpot and e2el.
func parseGoodput(items []string) (bench.SLO, error) {
	var slo bench.SLO
	for _, item := range items {
		key, val, ok := strings.Cut(item, ":")
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if !ok || err != nil || !(v > 0) || math.IsInf(v, 0) {
			return slo, fmt.Errorf("%q: want KEY:MILLISECONDS with a positive number", item)
		}
		d := time.Duration(v * float64(time.Millisecond))
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "ttft":
			slo.TTFT = d
		case "tpot":
			slo.TPOT = d
		case "e2el", "e2e":
			slo.E2E = d
		default:
			return slo, fmt.Errorf("%q: unknown objective %q (want ttft, tpot or e2el)", item, key)
		}
	}
	return slo, nil
}

// parseHeaders reads --header values, KEY=VALUE as `vllm bench serve`
// takes them (or KEY: VALUE, as curl does).
func parseHeaders(items []string) (http.Header, error) {
	if len(items) == 0 {
		return nil, nil
	}
	h := http.Header{}
	for _, item := range items {
		key, val, ok := cutHeader(item)
		if !ok || !httpguts.ValidHeaderFieldName(key) || !httpguts.ValidHeaderFieldValue(val) {
			return nil, fmt.Errorf("%q: want KEY=VALUE with a valid header name and value", item)
		}
		h.Add(key, val)
	}
	return h, nil
}

// cutHeader splits KEY=VALUE or KEY: VALUE at whichever separator comes
// first (a value may contain either).
func cutHeader(item string) (key, val string, ok bool) {
	i := strings.IndexAny(item, "=:")
	if i <= 0 {
		return "", "", false
	}
	return strings.TrimSpace(item[:i]), strings.TrimSpace(item[i+1:]), true
}

// redact replaces the value of --api-key, and of every --header carrying
// a credential, in a command line.
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		switch {
		case a == "--api-key" && i+1 < len(out):
			out[i+1] = "REDACTED"
		case strings.HasPrefix(a, "--api-key="):
			out[i] = "--api-key=REDACTED"
		case a == "--header" && i+1 < len(out):
			out[i+1] = redactHeader(out[i+1])
		case strings.HasPrefix(a, "--header="):
			out[i] = "--header=" + redactHeader(strings.TrimPrefix(a, "--header="))
		}
	}
	return out
}

func redactHeader(item string) string {
	if key, _, ok := cutHeader(item); ok && !bench.CredentialHeader(key) {
		return item
	}
	return "REDACTED"
}

// progressBar draws a one-line progress bar on a terminal.
type progressBar struct {
	w          io.Writer
	lastTokens int64
	lastAt     time.Duration
}

func (p *progressBar) draw(s bench.Progress) {
	const width = 24
	frac := 1.0
	if s.Total > 0 {
		frac = float64(s.Succeeded+s.Failed) / float64(s.Total)
	}
	filled := int(math.Round(frac * width))
	rate := 0.0
	if dt := (s.Elapsed - p.lastAt).Seconds(); dt > 0 {
		rate = float64(s.OutputTokens-p.lastTokens) / dt
	}
	p.lastTokens, p.lastAt = s.OutputTokens, s.Elapsed
	line := fmt.Sprintf("\r\033[K[%s%s] %3.0f%% %d/%d done · %d failed · %d in flight · %.0f tok/s · %s",
		strings.Repeat("█", filled), strings.Repeat("░", width-filled), 100*frac,
		s.Succeeded+s.Failed, s.Total, s.Failed, s.InFlight, rate, s.Elapsed.Truncate(100*time.Millisecond))
	if s.Finished {
		line += "\n"
	}
	_, _ = io.WriteString(p.w, line)
}
