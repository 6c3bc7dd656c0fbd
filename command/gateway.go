package command

import (
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/gateway"
	"github.com/strata-llm/strata/gateway/routing"
	"github.com/strata-llm/strata/tokenizer"
	"github.com/strata-llm/strata/tokenizer/hf"
)

// loadTokenizer is how the gateway reads a deployment's tokenizer
// directory: the same Hugging Face files the engine loads.
func loadTokenizer(dir string) (tokenizer.Tokenizer, error) { return hf.Load(dir) }

func newGatewayCommand(logger func() (*slog.Logger, error)) *cobra.Command {
	var (
		cfg       = gateway.Config{Weights: routing.DefaultWeights}
		token     string
		gcPercent int
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run an OpenAI-compatible gateway that routes on the brain's KV cache scores",
		Long: `gateway serves the OpenAI API (chat, completions, embeddings, models) in front of
a Strata cluster. It tokenizes each prompt with its model's tokenizer, asks a
brain replica which workers hold its KV blocks, and sends it where prefill
plus load costs least; a request whose engine fails moves to another worker.
Stateless: run as many as you like. Every flag can also be an environment
variable (--cluster-token as STRATA_CLUSTER_TOKEN) or a key of the YAML file
named by --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfig(cmd); err != nil {
				return err
			}
			log, err := logger()
			if err != nil {
				return err
			}
			// GOGC in the environment wins over the default, not over the flag.
			if _, set := os.LookupEnv("GOGC"); !set || cmd.Flags().Changed("gc-percent") {
				debug.SetGCPercent(gcPercent)
			}
			cfg.Logger, cfg.ClusterToken, cfg.LoadTokenizer = log, auth.Token(token), loadTokenizer
			g, err := gateway.New(cfg)
			if err != nil {
				return err
			}
			defer g.Shutdown()
			return g.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file of flag values (keys are flag names)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "address of the OpenAI API")
	brainClientFlags(f, &cfg.Brains, &token, &cfg.TLS)
	f.StringVar(&cfg.APIKeysFile, "api-keys-file", "", "file of accepted API keys, one per line (\"KEY [name=N] [rps=R] [burst=B]\"), reread when it changes; none: the API is open")
	f.StringVar(&cfg.Routing, "routing", "kv", "default routing policy: kv, approx-kv, least-loaded, round-robin, random or session")
	f.Float64Var(&cfg.Weights.Temperature, "routing-temperature", 0, "above 0, pick workers by softmax over -cost/T instead of the cheapest")
	f.Float64Var(&cfg.Weights.PrefillScale, "prefill-scale", routing.DefaultWeights.PrefillScale, "weight of a block of prefill against a block of decode load in the routing cost")
	f.DurationVar(&cfg.ScoreTimeout, "score-timeout", 5*time.Millisecond, "how long routing waits for the brain's cache scores before routing without them")
	f.DurationVar(&cfg.ApproxTTL, "approx-ttl", 2*time.Minute, "how long approx-kv assumes a prefix it routed is cached on that worker")
	f.IntVar(&cfg.BusyWaiting, "busy-waiting", 16, "a worker whose engine queues this many requests is busy")
	f.Float64Var(&cfg.BusyKVUsage, "busy-kv-usage", 0.98, "a worker whose engine's KV cache is this full is busy")
	f.IntVar(&cfg.MaxInflight, "max-inflight", 512, "a worker with this many of this gateway's requests is busy")
	f.IntVar(&cfg.QueueSize, "queue-size", 1024, "requests that may wait for a worker that is not busy")
	f.DurationVar(&cfg.QueueTimeout, "queue-timeout", 30*time.Second, "how long a request waits for capacity before a 503")
	f.IntVar(&cfg.MaxMigrations, "max-migrations", 3, "how often a request may move to another worker after its worker failed")
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 32<<20, "largest request body accepted")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", 30*time.Minute, "longest a request may take end to end")
	f.IntVar(&gcPercent, "gc-percent", gateway.DefaultGCPercent, "the Go collector's target, as GOGC (which wins over the default when set): fewer collections, a shorter routing tail, a heap of up to 1+N/100 times the live one")
	return cmd
}
