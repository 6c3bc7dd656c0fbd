package command

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain"
)

func newBrainCommand(logger func() (*slog.Logger, error)) *cobra.Command {
	var (
		cfg   brain.Config
		token string
	)
	cmd := &cobra.Command{
		Use:   "brain",
		Short: "Run a brain replica: the Raft-replicated control plane",
		Long: `brain runs one replica of Strata's control plane. Run three or five on
separate machines: start the first with --bootstrap, the others with
--join pointing at any running replica. Every flag can also be given as an
environment variable (--raft-addr as STRATA_RAFT_ADDR) or as a key of the
YAML file named by --config; flags win over the environment, which wins over
the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfig(cmd); err != nil {
				return err
			}
			log, err := logger()
			if err != nil {
				return err
			}
			cfg.Logger = log
			cfg.ClusterToken = auth.Token(token)
			if token == "" {
				log.Warn("no cluster token: any process that reaches the brain's ports can change the cluster (set --cluster-token or STRATA_CLUSTER_TOKEN)")
			}
			s, err := brain.NewServer(cfg)
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			log.Info("shutting down")
			if err := s.Shutdown(); err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file of flag values (keys are flag names)")
	f.StringVar(&cfg.NodeID, "node-id", "", "this replica's Raft server id, stable across restarts (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the Raft log, stable store and snapshots (required)")
	f.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7000", "address Raft listens on")
	f.StringVar(&cfg.RaftAdvertise, "raft-advertise", "", "address other brains reach Raft at (default: --raft-addr)")
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:7001", "address the agent, gateway and admin gRPC API listens on")
	f.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "address others reach the gRPC API at (default: --grpc-addr)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:7002", "address of /healthz, /status and /metrics (empty: off)")
	f.BoolVar(&cfg.Bootstrap, "bootstrap", false, "form a new cluster with this replica if its data dir is empty")
	f.StringSliceVar(&cfg.Join, "join", nil, "gRPC addresses of running brains to join through (comma-separated)")
	f.IntVar(&cfg.WorkerPortBase, "worker-port-base", 20000, "first port placement gives engines on a node (a node's agent may name its own, --engine-port-base)")
	f.StringVar(&token, "cluster-token", "", "shared secret every Strata process presents (prefer STRATA_CLUSTER_TOKEN)")
	f.StringVar(&cfg.TLS.Cert, "tls-cert", "", "PEM certificate for gRPC and Raft (enables TLS)")
	f.StringVar(&cfg.TLS.Key, "tls-key", "", "PEM key of --tls-cert")
	f.StringVar(&cfg.TLS.CA, "tls-ca", "", "PEM CA: verify peers and require client certificates (mutual TLS)")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", 15*time.Second, "a node without a heartbeat for this long is marked down and its workers re-placed")
	f.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", 5*time.Second, "placement re-runs at least this often")
	return cmd
}
