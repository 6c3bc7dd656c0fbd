package command

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/spf13/cobra"

	"github.com/strata-llm/strata/agent"
	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/tiers/azure"
	"github.com/strata-llm/strata/tiers/s3"
)

func newAgentCommand(logger func() (*slog.Logger, error)) *cobra.Command {
	var (
		cfg             agent.Config
		token, opsToken string
		kvCPU, kvDisk   byteSize
		kvRemote        string
		s3cfg           s3.Config
		azcfg           azure.Config
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
			cfg.KV.CPUBytes, cfg.KV.DiskBytes = int64(kvCPU), int64(kvDisk)
			switch kvRemote {
			case "":
			case "s3":
				cfg.KV.S3 = &s3cfg
			case "azure":
				cfg.KV.Azure = &azcfg
			default:
				return fmt.Errorf("--kv-remote %q: want s3, azure or nothing", kvRemote)
			}
			if cfg.KV.CPUBytes == 0 && (cfg.KV.DiskDir != "" || kvRemote != "") {
				return errors.New("the KV tiers need --kv-cpu-bytes: the CPU tier is the first one")
			}
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file of flag values (keys are flag names)")
	brainClientFlags(f, &cfg.Brains, &token, &cfg.TLS)
	f.StringVar(&cfg.NodeID, "node-id", "", "this node's id, stable across restarts (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for engine logs, pid files and config (required)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:7070", "address of the ops API")
	f.StringVar(&cfg.Advertise, "advertise", "", "host:port the brain and gateways reach this node at (default: --http-addr)")
	f.StringVar(&opsToken, "ops-token", "", "bearer token of the ops API (prefer STRATA_OPS_TOKEN; required)")
	f.IntVar(&cfg.FakeGPUs, "fake-gpus", 0, "simulate this many GPUs (with NVLink groups of 8) instead of asking NVML")
	f.StringVar(&cfg.EngineHost, "engine-host", "", "address engines bind (default: all interfaces)")
	f.IntVar(&cfg.EnginePortBase, "engine-port-base", 0, "first port of this node's engines (default: the brain's --worker-port-base)")
	f.DurationVar(&cfg.CanaryIdle, "canary-idle", 30*time.Second, "send a canary to an engine without traffic for this long")
	f.DurationVar(&cfg.CanaryTimeout, "canary-timeout", 10*time.Second, "a canary slower than this fails")
	f.DurationVar(&cfg.StopGrace, "stop-grace", 30*time.Second, "time an engine gets to drain and exit before SIGKILL")
	// The KV tiers (docs/kvbm.md). Credentials never go on the command
	// line: the remote tiers read them from the environment or from files.
	f.Var(&kvCPU, "kv-cpu-bytes", "host memory of the KV tiers, e.g. 64GiB (0: no KVBM, no block API)")
	f.StringVar(&cfg.KV.DiskDir, "kv-disk-dir", "", "directory of the NVMe KV tier (with --kv-disk-bytes)")
	f.Var(&kvDisk, "kv-disk-bytes", "capacity of the NVMe KV tier, e.g. 1TiB")
	f.BoolVar(&cfg.KV.DiskSync, "kv-disk-sync", false, "fsync every block the disk tier writes")
	f.StringVar(&kvRemote, "kv-remote", "", "the remote KV tier the cluster shares: s3 or azure (default: none)")
	f.BoolVar(&cfg.KV.WriteThrough, "kv-write-through", true, "write every offloaded block to the remote tier too (false: only blocks leaving the last local tier)")
	f.StringVar(&s3cfg.Endpoint, "kv-s3-endpoint", "", "S3 endpoint host[:port] (s3.amazonaws.com, a MinIO server)")
	f.BoolVar(&s3cfg.Secure, "kv-s3-secure", true, "use HTTPS to the S3 endpoint")
	f.StringVar(&s3cfg.Region, "kv-s3-region", "", "S3 region (default: ask the service)")
	f.StringVar(&s3cfg.Bucket, "kv-s3-bucket", "", "S3 bucket of the remote tier")
	f.StringVar(&s3cfg.Prefix, "kv-s3-prefix", "", "object name prefix in the bucket, e.g. strata/kv")
	f.StringVar(&s3cfg.CredentialsFile, "kv-s3-credentials-file", "", "AWS shared credentials file (default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment, then ~/.aws/credentials)")
	f.StringVar(&s3cfg.Profile, "kv-s3-profile", "", "profile in the credentials file (default: $AWS_PROFILE or default)")
	f.BoolVar(&s3cfg.CreateBucket, "kv-s3-create-bucket", false, "create the bucket if it is missing")
	f.StringVar(&azcfg.ServiceURL, "kv-azure-service-url", "", "Azure Blob endpoint, https://ACCOUNT.blob.core.windows.net (not needed with a connection string)")
	f.StringVar(&azcfg.Container, "kv-azure-container", "", "Azure Blob container of the remote tier")
	f.StringVar(&azcfg.Prefix, "kv-azure-prefix", "", "blob name prefix in the container")
	f.StringVar(&azcfg.AccountName, "kv-azure-account", "", "storage account name, with --kv-azure-key-file (or AZURE_STORAGE_KEY)")
	f.StringVar(&azcfg.AccountKeyFile, "kv-azure-key-file", "", "file holding the storage account key")
	f.StringVar(&azcfg.SASTokenFile, "kv-azure-sas-file", "", "file holding a SAS token for the container or account")
	f.StringVar(&azcfg.ConnectionStringFile, "kv-azure-connection-string-file", "", "file holding a connection string (default: AZURE_STORAGE_CONNECTION_STRING and the other AZURE_STORAGE_* variables)")
	f.BoolVar(&azcfg.CreateContainer, "kv-azure-create-container", false, "create the container if it is missing")
	return cmd
}
