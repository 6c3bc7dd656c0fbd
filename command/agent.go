package command

import (
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/spf13/cobra"

	"github.com/strata-llm/strata/agent"
	"github.com/strata-llm/strata/auth"
)

func newAgentCommand(logger func() (*slog.Logger, error)) *cobra.Command {
	var (
		cfg             agent.Config
		token, opsToken string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: engines, inventory, KV events, canaries, ops API",
		Long: `agent runs on every GPU node. It registers the node with the brain, runs the
engine processes the brain assigns to it, reports their state, load and KV
cache events, and serves an ops API (bearer --ops-token). Every flag can also
be an environment variable (--ops-token as STRATA_OPS_TOKEN) or a key of the
YAML file named by --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfig(cmd); err != nil {
				return err
			}
			log, err := logger()
			if err != nil {
				return err
			}
			// gin's mode is process-wide; set here, where processes are wired.
			gin.SetMode(gin.ReleaseMode)
			cfg.Logger = log
			cfg.ClusterToken, cfg.OpsToken = auth.Token(token), auth.Token(opsToken)
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file of flag values (keys are flag names)")
	f.StringSliceVar(&cfg.Brains, "brain", []string{"127.0.0.1:7001"}, "gRPC addresses of the brain replicas (comma-separated)")
	f.StringVar(&cfg.NodeID, "node-id", "", "this node's id, stable across restarts (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for engine logs, pid files and config (required)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:7070", "address of the ops API")
	f.StringVar(&cfg.Advertise, "advertise", "", "host:port the brain and gateways reach this node at (default: --http-addr)")
	f.StringVar(&token, "cluster-token", "", "the cluster's shared secret (prefer STRATA_CLUSTER_TOKEN)")
	f.StringVar(&opsToken, "ops-token", "", "bearer token of the ops API (prefer STRATA_OPS_TOKEN; required)")
	f.StringVar(&cfg.TLS.CA, "tls-ca", "", "PEM CA to verify the brains with (enables TLS)")
	f.StringVar(&cfg.TLS.Cert, "tls-cert", "", "PEM client certificate, for brains that require mutual TLS")
	f.StringVar(&cfg.TLS.Key, "tls-key", "", "PEM key of --tls-cert")
	f.IntVar(&cfg.FakeGPUs, "fake-gpus", 0, "simulate this many GPUs (with NVLink groups of 8) instead of asking NVML")
	f.StringVar(&cfg.EngineHost, "engine-host", "", "address engines bind (default: all interfaces)")
	f.DurationVar(&cfg.CanaryIdle, "canary-idle", 30*time.Second, "send a canary to an engine without traffic for this long")
	f.DurationVar(&cfg.CanaryTimeout, "canary-timeout", 10*time.Second, "a canary slower than this fails")
	f.DurationVar(&cfg.StopGrace, "stop-grace", 30*time.Second, "time an engine gets to drain and exit before SIGKILL")
	return cmd
}
