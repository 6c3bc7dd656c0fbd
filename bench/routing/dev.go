package routing

import (
	"context"
	"os"

	"github.com/strata-llm/strata/dev"
)

// devCluster is a `strata dev` cluster in this process.
type devCluster struct{ c *dev.Cluster }

func (d devCluster) URL() string { return "http://" + d.c.Gateway.Addr() + "/v1" }
func (d devCluster) Close()      { d.c.Close() }

// DevStarter starts `strata dev` clusters (brain, agent with simulated
// engines, gateway, in this process) from cfg: each in a new directory (a
// temporary one, or one under cfg.DataDir kept for its engine logs), so no
// run inherits another's state, its gateway on a free loopback port unless
// cfg names one.
func DevStarter(cfg dev.Config) Starter {
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	parent := cfg.DataDir
	return func(ctx context.Context) (Cluster, error) {
		run := cfg
		if parent != "" {
			dir, err := os.MkdirTemp(parent, "cluster-")
			if err != nil {
				return nil, err
			}
			run.DataDir = dir
		}
		c, err := dev.Start(ctx, run)
		if err != nil {
			return nil, err
		}
		return devCluster{c}, nil
	}
}
