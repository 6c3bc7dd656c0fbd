// Package dev runs a whole Strata cluster in one process, on loopback: a
// brain (one replica), an agent with fake GPUs running `strata sim`
// engines, and a gateway. It is `strata dev` (and `make run`), and the
// in-process cluster harness of the cross-component tests.
package dev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/strata-llm/strata/agent"
	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain"
	"github.com/strata-llm/strata/brain/client"
	"github.com/strata-llm/strata/gateway"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tokenizer"
)

// Config configures a dev cluster; zero values take the defaults noted.
type Config struct {
	// DataDir holds the brain's Raft data and the agent's engine logs
	// (default: a new temporary directory, removed on Close).
	DataDir string
	// HTTPAddr is the gateway's OpenAI API address (default 127.0.0.1:8080).
	HTTPAddr string
	// Engines is the number of simulated engines, default 4; GPUs the
	// node's fake GPUs, default Engines (more leave room for other
	// deployments).
	Engines, GPUs int
	// Model is the served model name (default strata-sim).
	Model string
	// SimArgs are extra `strata sim` flags for every engine (e.g.
	// --speedup 10, --num-gpu-blocks-override 2048).
	SimArgs []string
	// Tokenizer is a model directory the engines and the gateway
	// tokenize with (default: the simulator's byte-level tokenizer).
	Tokenizer string
	// BlockSize is the engines' KV block size (default 16).
	BlockSize int
	// Routing is the gateway's default policy (default kv).
	Routing string
	// WorkerPortBase is the first engine port (default 20000).
	WorkerPortBase int
	// SimExecutable is the strata binary engines run (default: this one).
	SimExecutable string
	// Gateway adjusts the gateway's configuration before it starts.
	Gateway func(*gateway.Config)
	// LoadTokenizer loads Tokenizer for the gateway.
	LoadTokenizer func(dir string) (tokenizer.Tokenizer, error)
	Logger        *slog.Logger
}

// Cluster is a running dev cluster.
type Cluster struct {
	cfg     Config
	Brain   *brain.Server
	Agent   *agent.Agent
	Gateway *gateway.Gateway
	// ClusterToken and OpsToken are random per cluster; TokenFile holds
	// the cluster token (mode 0600).
	ClusterToken, OpsToken auth.Token
	TokenFile              string

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	tempDir string
	errs    chan error
}

// Start runs a cluster and returns once its engines serve and the gateway
// routes to them (or ctx ends).
func Start(ctx context.Context, cfg Config) (c *Cluster, err error) {
	if cfg.Engines <= 0 {
		cfg.Engines = 4
	}
	cfg.GPUs = max(cfg.GPUs, cfg.Engines)
	if cfg.Model == "" {
		cfg.Model = "strata-sim"
	}
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = 16
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.WorkerPortBase <= 0 {
		cfg.WorkerPortBase = 20000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c = &Cluster{cfg: cfg, errs: make(chan error, 2)}
	if cfg.DataDir == "" {
		if c.tempDir, err = os.MkdirTemp("", "strata-dev-"); err != nil {
			return nil, err
		}
		cfg.DataDir = c.tempDir
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	token := auth.Token(randomToken())
	c.ClusterToken, c.OpsToken = token, auth.Token(randomToken())
	// For `strata ctl` against the cluster: a file only its user reads, so
	// the token never needs printing.
	c.TokenFile = filepath.Join(cfg.DataDir, "cluster-token")
	if err = os.WriteFile(c.TokenFile, []byte(token), 0o600); err != nil {
		return nil, err
	}
	if c.Brain, err = brain.NewServer(brain.Config{
		NodeID: "dev-brain", DataDir: filepath.Join(cfg.DataDir, "brain"),
		RaftAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", Bootstrap: true, ClusterToken: token,
		WorkerPortBase: cfg.WorkerPortBase, LeaseTTL: 5 * time.Second,
		RaftHeartbeatTimeout: 100 * time.Millisecond, RaftElectionTimeout: 100 * time.Millisecond, RaftLeaderLeaseTimeout: 100 * time.Millisecond,
		WatchClusterInterval: 50 * time.Millisecond,
		Logger:               cfg.Logger.With("component", "brain"),
	}); err != nil {
		return nil, err
	}
	brains := []string{c.Brain.Member().GetGrpcAddress()}
	if c.Agent, err = agent.New(agent.Config{
		NodeID: "dev-node", DataDir: filepath.Join(cfg.DataDir, "agent"), Brains: brains, ClusterToken: token,
		HTTPAddr: "127.0.0.1:0", OpsToken: c.OpsToken, FakeGPUs: cfg.GPUs, EngineHost: "127.0.0.1",
		SimExecutable: cfg.SimExecutable, MetricsInterval: 100 * time.Millisecond, StopGrace: 5 * time.Second,
		RestartBackoff: 200 * time.Millisecond,
		Logger:         cfg.Logger.With("component", "agent"),
	}); err != nil {
		return nil, err
	}
	gcfg := gateway.Config{HTTPAddr: cfg.HTTPAddr, Brains: brains, ClusterToken: token, Routing: cfg.Routing,
		LoadTokenizer: cfg.LoadTokenizer, Logger: cfg.Logger.With("component", "gateway")}
	if cfg.Gateway != nil {
		cfg.Gateway(&gcfg)
	}
	if c.Gateway, err = gateway.New(gcfg); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for _, run := range []func(context.Context) error{c.Agent.Run, c.Gateway.Run} {
		c.wg.Go(func() {
			if err := run(runCtx); err != nil {
				c.errs <- err
			}
		})
	}
	if err = c.deploy(ctx, brains, token); err != nil {
		return nil, err
	}
	return c, c.WaitRoutable(ctx, cfg.Engines)
}

func (c *Cluster) deploy(ctx context.Context, brains []string, token auth.Token) error {
	bc, err := client.New(brains, token, auth.TLSFiles{})
	if err != nil {
		return err
	}
	defer func() { _ = bc.Close() }()
	spec := &stratav1.DeploymentSpec{
		Name: c.cfg.Model, Model: c.cfg.Model, Engine: "sim", EngineArgs: c.cfg.SimArgs, Tokenizer: c.cfg.Tokenizer,
		BlockSize: uint32(c.cfg.BlockSize),
		Pools: []*stratav1.Pool{{Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, TensorParallelSize: 1,
			Replicas: &stratav1.Replicas{Min: 1, Max: uint32(c.cfg.Engines), Initial: uint32(c.cfg.Engines)}}},
	}
	for {
		_, err := bc.Admin().ApplyDeployment(ctx, &stratav1.ApplyDeploymentRequest{Spec: spec})
		if err == nil {
			return nil
		}
		// Until the single replica elects itself.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("deploy %s: %w", c.cfg.Model, err)
		case <-t.C:
		}
	}
}

// WaitRoutable waits until the gateway routes to n engines of the model.
func (c *Cluster) WaitRoutable(ctx context.Context, n int) error {
	return c.WaitRoutableModel(ctx, c.cfg.Model, n)
}

// WaitRoutableModel waits until the gateway routes to n engines of model.
func (c *Cluster) WaitRoutableModel(ctx context.Context, model string, n int) error {
	for {
		if got := c.Gateway.Routable(model); got >= n {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %d routable engines of %s (have %d): %w", n, model, c.Gateway.Routable(model), ctx.Err())
		case err := <-c.errs:
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Err reports a component that stopped on its own.
func (c *Cluster) Err() <-chan error { return c.errs }

// Close stops the engines, the agent, the gateway and the brain.
func (c *Cluster) Close() {
	if c.Agent != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		c.Agent.Shutdown(ctx)
		cancel()
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	if c.Gateway != nil {
		c.Gateway.Shutdown()
	}
	if c.Brain != nil {
		_ = c.Brain.Shutdown()
	}
	if c.tempDir != "" {
		_ = os.RemoveAll(c.tempDir)
	}
}

func randomToken() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(errors.New("crypto/rand: " + err.Error()))
	}
	return hex.EncodeToString(b[:])
}
