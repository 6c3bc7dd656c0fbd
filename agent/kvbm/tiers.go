package kvbm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/azure"
	"github.com/strata-llm/strata/tiers/disk"
	"github.com/strata-llm/strata/tiers/memory"
	"github.com/strata-llm/strata/tiers/s3"
)

// TierConfig is the node's tiers: host memory (required), local disk and
// the remote bucket the cluster shares (each optional).
type TierConfig struct {
	// CPUBytes is the host-memory tier's capacity; 0 turns the KVBM off.
	CPUBytes int64
	// DiskDir and DiskBytes are the NVMe tier (both or neither). DiskSync
	// fsyncs every block (tiers/disk Options.Sync).
	DiskDir   string
	DiskBytes int64
	DiskSync  bool
	// S3 or Azure is the remote tier (at most one).
	S3    *s3.Config
	Azure *azure.Config
	// WriteThrough also writes every offloaded block to the remote tier, in
	// the background; otherwise a block reaches it when it leaves the last
	// local tier (write-back).
	WriteThrough bool
	// SpillMinCount is the hierarchy's frequency filter (0: its default 2).
	SpillMinCount int
	// RemoteTimeout bounds each remote call (0: the hierarchy's 5 s).
	RemoteTimeout time.Duration
}

// Enabled says whether the node runs a KVBM at all.
func (c TierConfig) Enabled() bool { return c.CPUBytes > 0 }

// LogValue describes the tiers without any secret (the remote configs'
// own LogValue leave theirs out).
func (c TierConfig) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Int64("cpu_bytes", c.CPUBytes)}
	if c.DiskDir != "" {
		attrs = append(attrs, slog.String("disk_dir", c.DiskDir), slog.Int64("disk_bytes", c.DiskBytes))
	}
	switch {
	case c.S3 != nil:
		attrs = append(attrs, slog.Any("s3", *c.S3))
	case c.Azure != nil:
		attrs = append(attrs, slog.Any("azure", *c.Azure))
	}
	attrs = append(attrs, slog.Bool("write_through", c.WriteThrough))
	return slog.GroupValue(attrs...)
}

func (c TierConfig) validate() error {
	var errs []error
	if c.CPUBytes <= 0 {
		errs = append(errs, errors.New("the CPU tier needs a capacity"))
	}
	if (c.DiskDir == "") != (c.DiskBytes <= 0) {
		errs = append(errs, errors.New("the disk tier needs both a directory and a capacity"))
	}
	if c.S3 != nil && c.Azure != nil {
		errs = append(errs, errors.New("one remote tier at most: S3 or Azure"))
	}
	return errors.Join(errs...)
}

// remoteStore is a remote tier's store with its reachability check.
type remoteStore interface {
	tiers.Store
	Check(ctx context.Context) error
}

// openTiers opens the stores and composes the hierarchy. The remote tier
// is checked once (bucket, credentials); a failed check is logged and the
// tier kept, since the hierarchy retries an unavailable tier with backoff:
// a bucket down at boot must not keep the node's local tiers from serving.
// Missing credentials, though, are a configuration error.
func openTiers(ctx context.Context, c TierConfig, cfg tiers.Config, log *slog.Logger) (*tiers.Hierarchy, []tiers.Store, error) {
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	var stores []tiers.Store
	fail := func(err error) (*tiers.Hierarchy, []tiers.Store, error) {
		for _, s := range stores {
			_ = s.Close()
		}
		return nil, nil, err
	}
	cpu, err := memory.New(c.CPUBytes)
	if err != nil {
		return fail(fmt.Errorf("CPU tier: %w", err))
	}
	stores = append(stores, cpu)
	cfg.Local = []tiers.Tier{{Medium: tiers.CPU, Store: cpu}}
	if c.DiskDir != "" {
		d, err := disk.Open(ctx, disk.Options{Dir: c.DiskDir, Capacity: c.DiskBytes, Sync: c.DiskSync, Logger: log})
		if err != nil {
			return fail(fmt.Errorf("disk tier: %w", err))
		}
		stores = append(stores, d)
		cfg.Local = append(cfg.Local, tiers.Tier{Medium: tiers.Disk, Store: d})
	}
	var remote remoteStore
	switch {
	case c.S3 != nil:
		s, err := s3.New(*c.S3)
		if err != nil {
			return fail(fmt.Errorf("remote tier: %w", err))
		}
		remote = s
	case c.Azure != nil:
		s, err := azure.New(*c.Azure)
		if err != nil {
			return fail(fmt.Errorf("remote tier: %w", err))
		}
		remote = s
	}
	if remote != nil {
		stores = append(stores, remote)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := remote.Check(cctx); err != nil {
			log.Warn("kvbm: remote tier check failed; keeping it, the hierarchy retries it with backoff", "err", err)
		}
		cancel()
		cfg.Remote = remote
	}
	cfg.WriteThrough, cfg.SpillMinCount, cfg.RemoteTimeout, cfg.Logger = c.WriteThrough, c.SpillMinCount, c.RemoteTimeout, log
	h, err := tiers.NewHierarchy(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	return h, stores, nil
}
