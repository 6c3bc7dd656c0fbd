package command

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/strata-llm/strata/dev"
)

func newDevCommand(logger func() (*slog.Logger, error)) *cobra.Command {
	var (
		cfg     dev.Config
		speedup float64
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole local cluster in one process: brain, agent with simulated engines, gateway",
		Long: `dev starts a brain (one replica), an agent with fake GPUs running --engines
'strata sim' engines, and the gateway, all on loopback: the OpenAI API of a
KV-aware cluster on a laptop, no GPU needed. Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger()
			if err != nil {
				return err
			}
			cfg.Logger, cfg.LoadTokenizer = log, loadTokenizer
			cfg.SimArgs = append([]string{"--speedup", strconv.FormatFloat(speedup, 'g', -1, 64)}, cfg.SimArgs...)
			fmt.Fprintf(os.Stderr, "strata dev: starting a brain, an agent with %d simulated engines and the gateway...\n", cfg.Engines)
			c, err := dev.Start(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			model := cfg.Model
			if model == "" {
				model = "strata-sim"
			}
			fmt.Fprintf(os.Stderr, `
strata dev: the OpenAI API is up on http://%[1]s/v1 (model %[2]q, %[3]d engines, routing %[4]s). Try:

  curl -s http://%[1]s/v1/models
  curl -s http://%[1]s/v1/chat/completions -H 'Content-Type: application/json' \
       -d '{"model":"%[2]s","messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'
  curl -s http://%[1]s/metrics | grep '^strata_gateway_'
  STRATA_CLUSTER_TOKEN=$(cat %[5]s) bin/strata ctl status --brain %[6]s

Ctrl-C stops the cluster.
`, c.Gateway.Addr(), model, cfg.Engines, orDefault(cfg.Routing, "kv"), c.TokenFile, c.Brain.Member().GetGrpcAddress())
			select {
			case <-cmd.Context().Done():
				return nil
			case err := <-c.Err():
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "address of the gateway's OpenAI API")
	f.IntVar(&cfg.Engines, "engines", 4, "simulated engines (one fake GPU each)")
	f.StringVar(&cfg.Routing, "routing", "kv", "the gateway's routing policy: kv, approx-kv, least-loaded, round-robin, random or session")
	f.StringVar(&cfg.Model, "model", "strata-sim", "served model name")
	f.StringVar(&cfg.Tokenizer, "tokenizer", "", "model directory with a Hugging Face tokenizer for the engines and the gateway (default: byte-level)")
	f.Float64Var(&speedup, "speedup", 1, "engine time compression: 1 is an H100's pace, 10 ten times faster")
	f.StringSliceVar(&cfg.SimArgs, "sim-arg", nil, "extra 'strata sim' flag for every engine (repeatable, e.g. --sim-arg=--num-gpu-blocks-override=2048)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the brain's data and the engines' logs (default: a temporary one)")
	f.IntVar(&cfg.WorkerPortBase, "engine-port-base", 20000, "first port of the engines")
	return cmd
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
