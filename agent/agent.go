// Package agent is the sidecar on every GPU node: it registers the node
// with the brain, runs the engine processes the brain assigns to it
// (one supervisor each), reports their state and load in heartbeats, keeps
// unhealthy engines out of rotation with canaries, streams their KV cache
// events to every brain replica, and serves an ops API.
//
// The brain is the source of truth: the agent's job is to make the node's
// engines match the assignments it watches, and it survives brain leader
// changes and restarts by reconnecting (the brain client fails over between
// replicas). It also survives its own restart: engines run in their own
// process groups, and a restarted agent re-adopts an engine whose worker is
// still assigned and whose launch is unchanged, and stops the others.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/engine/engines"
	"github.com/strata-llm/strata/agent/inventory"
	"github.com/strata-llm/strata/agent/kvbm"
	"github.com/strata-llm/strata/agent/supervisor"
	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/backoff"
	"github.com/strata-llm/strata/brain/client"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Config is everything an agent needs; zero fields take defaults.
type Config struct {
	NodeID  string
	DataDir string
	// Brains are the brain replicas' gRPC addresses.
	Brains       []string
	ClusterToken auth.Token
	TLS          auth.TLSFiles
	// HTTPAddr serves the ops API; Advertise is the host:port the brain
	// records for the node (its host is also where engines are reached).
	HTTPAddr, Advertise string
	// OpsToken guards the ops API (bearer). Required.
	OpsToken auth.Token
	// FakeGPUs > 0 replaces NVML with simulated GPUs.
	FakeGPUs int
	// Inventory overrides the inventory source (tests).
	Inventory inventory.Source
	// EngineHost is the address engines bind ("" = all interfaces).
	EngineHost string
	// EnginePortBase, when set, is the first port the brain gives this
	// node's engines (the inventory reports it; 0: the brain's default).
	EnginePortBase int
	// SimExecutable is the strata binary `sim` engines run (default: this
	// process's own executable).
	SimExecutable string
	// KV is the node's KV tiers behind the KVBM's block API (docs/kvbm.md);
	// its zero value (no CPU tier) runs none.
	KV kvbm.TierConfig

	MetricsInterval    time.Duration // load scrape period, default 500ms
	CanaryIdle         time.Duration // canary after this long without traffic, default 30s
	CanaryTimeout      time.Duration // default 10s
	CanaryRestartAfter int           // failed canaries in a row before a restart, default 3
	ReadyTimeout       time.Duration // engine start to /health, default 10m
	StopGrace          time.Duration // drain and SIGTERM grace, default 30s
	RestartBackoff     time.Duration // first restart delay, default 1s
	RestartBackoffMax  time.Duration // default 5m

	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if len(c.Brains) == 0 {
		errs = append(errs, errors.New("at least one brain address is required"))
	}
	if c.OpsToken == "" {
		errs = append(errs, errors.New("an ops token is required: the ops API can restart engines"))
	}
	if c.EnginePortBase < 0 || c.EnginePortBase > 65000 {
		errs = append(errs, fmt.Errorf("engine port base %d: want 1-65000, or 0 for the brain's", c.EnginePortBase))
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MetricsInterval, 500*time.Millisecond)
	def(&c.CanaryIdle, 30*time.Second)
	def(&c.CanaryTimeout, 10*time.Second)
	def(&c.ReadyTimeout, 10*time.Minute)
	def(&c.StopGrace, 30*time.Second)
	def(&c.RestartBackoff, time.Second)
	def(&c.RestartBackoffMax, 5*time.Minute)
	if c.CanaryRestartAfter <= 0 {
		c.CanaryRestartAfter = 3
	}
	if c.SimExecutable == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("find own executable for sim engines: %w", err)
		}
		c.SimExecutable = exe
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Agent is one node's agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	brain   *client.Client
	inv     inventory.Source
	engines func(kind string) (engine.Adapter, error)

	opsLn   net.Listener
	kv      *kvStreamer
	kvbm    *kvbm.Server // nil without tiers
	metrics *prometheus.Registry

	wakeCh chan struct{}   // state changed: heartbeat early
	runCtx context.Context // Run's context: workers live within it

	mu          sync.Mutex
	node        *stratav1.Inventory
	workers     map[string]*worker
	leaseTTL    time.Duration
	brains      []*stratav1.BrainMember
	assignments []*stratav1.Assignment
	assignedAt  uint64
	registered  bool
}

// New validates the config and connects the brain client (lazily: no
// brain needs to be up yet).
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	bc, err := client.New(cfg.Brains, cfg.ClusterToken, cfg.TLS)
	if err != nil {
		return nil, err
	}
	inv := cfg.Inventory
	if inv == nil {
		inv = inventory.New(cfg.Logger, cfg.NodeID, cfg.FakeGPUs)
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), brain: bc, inv: inv, engines: engines.Lookup,
		wakeCh: make(chan struct{}, 1), workers: map[string]*worker{}, leaseTTL: 15 * time.Second,
	}
	a.kv = newKVStreamer(a)
	a.metrics = prometheus.NewRegistry()
	if err := a.openKVBM(); err != nil {
		_ = bc.Close()
		return nil, fmt.Errorf("kvbm: %w", err)
	}
	if cfg.HTTPAddr != "" {
		if a.opsLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			_ = bc.Close()
			if a.kvbm != nil {
				_ = a.kvbm.Close()
			}
			return nil, fmt.Errorf("ops listen: %w", err)
		}
	}
	return a, nil
}

// OpsAddr is the ops API's bound address.
func (a *Agent) OpsAddr() string {
	if a.opsLn == nil {
		return ""
	}
	return a.opsLn.Addr().String()
}

func (a *Agent) wake() {
	select {
	case a.wakeCh <- struct{}{}:
	default:
	}
}

// Run registers, then heartbeats, watches assignments and serves the ops
// API until ctx ends. Engines keep running when Run returns: stopping the
// agent (for an upgrade, say) must not stop serving; Shutdown stops them.
func (a *Agent) Run(ctx context.Context) error {
	defer func() { _ = a.brain.Close() }()
	inv, err := a.inv.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	inv.EnginePortBase = uint32(a.cfg.EnginePortBase)
	a.mu.Lock()
	a.node = inv
	a.runCtx = ctx
	a.mu.Unlock()
	a.log.Info("agent starting", "gpus", len(inv.GetGpus()), "brains", a.cfg.Brains)

	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	if a.opsLn != nil {
		run(a.serveOps)
	}
	if a.kvbm != nil {
		// The tiers live in this process: they end with it, and engines
		// keep serving from their GPU until a new agent opens them again.
		run(func(context.Context) {
			if err := a.kvbm.Serve(); err != nil {
				a.log.Error("kvbm", "error", err)
			}
		})
		go func() { <-ctx.Done(); _ = a.kvbm.Close() }()
	}
	a.register(ctx)
	run(a.heartbeatLoop)
	run(a.watchLoop)
	<-ctx.Done()
	wg.Wait()
	a.detach()
	return nil
}

// detach lets go of the engines without stopping them (agent restart).
func (a *Agent) detach() {
	a.mu.Lock()
	ws := slices.Collect(maps.Values(a.workers))
	a.mu.Unlock()
	for _, w := range ws {
		w.cancel()
		<-w.done
	}
}

// Shutdown drains and stops every engine (the node leaves service).
func (a *Agent) Shutdown(ctx context.Context) {
	a.mu.Lock()
	ws := slices.Collect(maps.Values(a.workers))
	a.workers = map[string]*worker{}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop(ctx, a.cfg.StopGrace) }()
	}
	wg.Wait()
}

// register retries until the brain accepts the node.
func (a *Agent) register(ctx context.Context) {
	retry := backoff.New()
	for ctx.Err() == nil {
		a.mu.Lock()
		req := &stratav1.RegisterRequest{NodeId: a.cfg.NodeID, Address: a.advertise(), Inventory: a.node}
		a.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		res, err := a.brain.Agent().Register(cctx, req)
		cancel()
		if err == nil {
			a.mu.Lock()
			a.registered = true
			a.brains = res.GetBrains()
			if ttl := time.Duration(res.GetLeaseTtlMs()) * time.Millisecond; ttl > 0 {
				a.leaseTTL = ttl
			}
			a.mu.Unlock()
			a.log.Info("registered", "lease_ttl", a.leaseTTL, "brains", len(res.GetBrains()))
			a.kv.setReplicas(ctx, a.brainAddrs())
			return
		}
		a.log.Warn("register", "error", err)
		retry.Wait(ctx)
	}
}

// advertise is the node address the brain records.
func (a *Agent) advertise() string {
	if a.cfg.Advertise != "" {
		return a.cfg.Advertise
	}
	if a.opsLn != nil {
		return a.opsLn.Addr().String()
	}
	return "127.0.0.1:0"
}

// advertiseHost is where other hosts reach this node's engines.
func (a *Agent) advertiseHost() string {
	host, _, err := net.SplitHostPort(a.advertise())
	if err != nil || host == "" {
		return "127.0.0.1"
	}
	return host
}

// gpuIndicesLocked maps GPU uuids to NVML indices; the caller holds a.mu.
func (a *Agent) gpuIndicesLocked(uuids []string) []int {
	idx := map[string]int{}
	for _, g := range a.node.GetGpus() {
		idx[g.GetUuid()] = int(g.GetIndex())
	}
	out := make([]int, 0, len(uuids))
	for _, u := range uuids {
		i, ok := idx[u]
		if !ok {
			return nil
		}
		out = append(out, i)
	}
	return out
}

// heartbeatLoop renews the lease at a third of its TTL, and at once when a
// worker changes state.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	for {
		a.mu.Lock()
		every := a.leaseTTL / 3
		a.mu.Unlock()
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-a.wakeCh:
			t.Stop()
		}
		a.heartbeat(ctx)
	}
}

func (a *Agent) heartbeat(ctx context.Context) {
	a.mu.Lock()
	req := &stratav1.HeartbeatRequest{NodeId: a.cfg.NodeID}
	for _, id := range slices.Sorted(maps.Keys(a.workers)) {
		req.Workers = append(req.Workers, a.workers[id].status())
	}
	every := a.leaseTTL / 3
	a.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	res, err := a.brain.Agent().Heartbeat(cctx, req)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("heartbeat", "error", err)
		}
		return
	}
	if res.GetReregister() {
		a.log.Warn("brain does not know this node; registering again")
		a.register(ctx)
	}
}

// watchLoop follows the node's assignments, reconnecting on errors.
func (a *Agent) watchLoop(ctx context.Context) {
	retry := backoff.New()
	first := true
	for ctx.Err() == nil {
		stream, err := a.brain.Agent().WatchAssignments(ctx, &stratav1.WatchAssignmentsRequest{NodeId: a.cfg.NodeID})
		for err == nil {
			var msg *stratav1.WatchAssignmentsResponse
			if msg, err = stream.Recv(); err == nil {
				retry.Reset()
				a.reconcile(ctx, msg, first)
				first = false
			}
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("watch assignments", "error", err)
		retry.Wait(ctx)
	}
}

// reconcile makes the running engines match the assignments: it stops
// workers no longer assigned and starts new ones, but never starts an
// engine on a GPU another engine of this node still holds (a replaced
// worker is stopped first; the next update retries). On the first update
// after the agent started, engines left by an earlier agent whose workers
// are gone are stopped.
func (a *Agent) reconcile(ctx context.Context, msg *stratav1.WatchAssignmentsResponse, first bool) {
	want := map[string]*stratav1.Assignment{}
	for _, as := range msg.GetAssignments() {
		want[as.GetWorker().GetId()] = as
	}
	a.mu.Lock()
	a.assignments, a.assignedAt = msg.GetAssignments(), msg.GetIndex()
	var gone []*worker
	for id, w := range a.workers {
		if want[id] == nil {
			gone = append(gone, w)
			delete(a.workers, id)
			if a.kvbm != nil {
				a.kvbm.ForgetWorker(id)
			}
		}
	}
	a.mu.Unlock()

	if first {
		a.stopOrphans(ctx, want)
	}
	var wg sync.WaitGroup
	for _, w := range gone {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.log.Info("worker unassigned: draining")
			w.stop(ctx, a.cfg.StopGrace)
			a.retryReconcile()
		}()
	}
	// Stopping happens in the background; new engines wait for their GPUs.
	go wg.Wait()

	a.mu.Lock()
	busy := map[string]bool{}
	for _, w := range a.workers {
		for _, g := range w.spec.GPUs {
			busy[g] = true
		}
	}
	for _, w := range gone {
		for _, g := range w.spec.GPUs {
			busy[g] = true // until its engine has stopped
		}
	}
	var start []*worker
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if a.workers[id] != nil {
			continue
		}
		as := want[id]
		if slices.ContainsFunc(as.GetWorker().GetGpuUuids(), func(g string) bool { return busy[g] }) {
			a.log.Info("worker waits for its GPUs to be released", "worker", id)
			continue
		}
		w, err := a.newWorkerLocked(as)
		if err != nil {
			a.log.Error("cannot start worker", "worker", id, "error", err)
			continue
		}
		for _, g := range w.spec.GPUs {
			busy[g] = true
		}
		a.workers[id] = w
		start = append(start, w)
	}
	a.mu.Unlock()
	for _, w := range start {
		w.log.Info("starting engine", "engine", w.adapter.Kind(), "gpus", w.spec.GPUs, "port", w.spec.Port)
		w.start(ctx)
	}
	a.wake()
}

// retryReconcile re-applies the last assignments (after an engine stopped
// and released its GPUs).
func (a *Agent) retryReconcile() {
	a.mu.Lock()
	msg := &stratav1.WatchAssignmentsResponse{Index: a.assignedAt, Assignments: a.assignments}
	ctx := a.runCtx
	a.mu.Unlock()
	if ctx.Err() == nil {
		a.reconcile(ctx, msg, false)
	}
}

// stopOrphans stops engines an earlier agent left running for workers that
// are no longer assigned here: never two engines on one GPU.
func (a *Agent) stopOrphans(ctx context.Context, want map[string]*stratav1.Assignment) {
	dirs, err := os.ReadDir(filepath.Join(a.cfg.DataDir, "workers"))
	if err != nil {
		return
	}
	for _, d := range dirs {
		if !d.IsDir() || want[d.Name()] != nil {
			continue
		}
		dir := filepath.Join(a.cfg.DataDir, "workers", d.Name())
		if err := supervisor.StopStale(ctx, dir, a.cfg.StopGrace); err != nil {
			a.log.Warn("stop orphaned engine", "worker", d.Name(), "error", err)
			continue
		}
		_ = os.RemoveAll(dir)
		a.log.Info("removed orphaned worker", "worker", d.Name())
	}
}
