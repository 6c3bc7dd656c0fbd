package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/supervisor"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// maxMetricsBytes bounds what the agent reads from an engine's /metrics.
const maxMetricsBytes = 8 << 20

// worker is one engine process the brain assigned to this node, with the
// loops that watch it: the supervisor, the load scraper and the canary.
type worker struct {
	id         string
	assignment *stratav1.Assignment
	spec       engine.Spec
	adapter    engine.Adapter
	sup        *supervisor.Supervisor
	kv         kvSource // nil when the engine publishes no KV events
	log        *slog.Logger
	cfg        *Config
	http       *http.Client

	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	load        engine.Load
	loadAt      time.Time
	loadErr     string
	lastTraffic time.Time // the engine last showed progress (metrics or a canary)
	canary      CanaryStatus
	removing    bool
	// drained: an operator drained the worker through the ops API; its
	// engine stays stopped, while still assigned, until a restart.
	drained bool
}

// CanaryStatus is the latest health canary of a worker.
type CanaryStatus struct {
	WorkerID string    `json:"worker_id"`
	LastRun  time.Time `json:"last_run,omitzero"`
	LastOK   time.Time `json:"last_ok,omitzero"`
	Failures int       `json:"consecutive_failures"`
	Error    string    `json:"error,omitempty"`
	Healthy  bool      `json:"healthy"`
}

// newWorkerLocked builds a worker from its assignment; the caller holds a.mu.
func (a *Agent) newWorkerLocked(as *stratav1.Assignment) (*worker, error) {
	w := as.GetWorker()
	sp := as.GetSpec()
	adapter, err := a.engines(sp.GetEngine())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(a.cfg.DataDir, "workers", w.GetId())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("worker dir: %w", err)
	}
	args := append([]string(nil), sp.GetEngineArgs()...)
	for _, p := range sp.GetPools() {
		if p.GetRole() == w.GetRole() {
			args = append(args, p.GetEngineArgs()...)
		}
	}
	tp := len(w.GetGpuUuids())
	spec := engine.Spec{
		WorkerID: w.GetId(), Deployment: w.GetDeployment(),
		Model: sp.GetModel(), ServedModelName: sp.GetServedModelName(), Tokenizer: sp.GetTokenizer(),
		Role: w.GetRole(), GPUs: w.GetGpuUuids(), GPUIndices: a.gpuIndicesLocked(w.GetGpuUuids()), TensorParallelSize: tp,
		Host: a.cfg.EngineHost, AdvertiseHost: a.advertiseHost(), Port: int(w.GetPort()),
		BlockSize: int(sp.GetBlockSize()), ExtraArgs: args, WorkDir: dir, KVBMSocket: a.kvbmSocket(),
	}
	if sp.GetEngine() == "sim" {
		spec.Executable = a.cfg.SimExecutable
	}
	launch, err := adapter.Command(spec)
	if err != nil {
		return nil, err
	}
	for name, body := range launch.Files {
		p := filepath.Join(dir, filepath.Clean("/"+name)) // never outside dir
		if err := os.WriteFile(p, body, 0o600); err != nil {
			return nil, fmt.Errorf("engine config file: %w", err)
		}
	}
	wk := &worker{
		id: w.GetId(), assignment: as, spec: spec, adapter: adapter, cfg: &a.cfg,
		log:  a.log.With("worker", w.GetId()),
		http: &http.Client{Timeout: a.cfg.CanaryTimeout},
		done: make(chan struct{}),
	}
	wk.canary = CanaryStatus{WorkerID: wk.id, Healthy: true}
	wk.sup, err = supervisor.New(supervisor.Config{
		WorkerID: w.GetId(), Dir: dir, Path: launch.Path, Args: launch.Args, Env: launch.Env,
		HealthURL:    spec.DialURL() + adapter.HealthPath(),
		ReadyTimeout: a.cfg.ReadyTimeout, StopGrace: a.cfg.StopGrace,
		Backoff: supervisor.Backoff{Initial: a.cfg.RestartBackoff, Max: a.cfg.RestartBackoffMax},
		Logger:  wk.log,
		OnState: func(st supervisor.State, msg string) {
			wk.log.Info("engine state", "state", st.String(), "message", msg)
			a.wake()
		},
	})
	if err != nil {
		return nil, err
	}
	if wk.kv, err = a.newKVSource(wk); err != nil {
		return nil, fmt.Errorf("KV event source: %w", err)
	}
	return wk, nil
}

// start runs the supervisor and the watch loops until stop.
func (w *worker) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	w.cancel = cancel
	var wg sync.WaitGroup
	if w.kv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.kv.Run(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("KV event source ended", "error", err)
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := w.sup.Run(ctx); err != nil && ctx.Err() == nil {
			w.log.Error("supervisor ended", "error", err)
		}
	}()
	go func() {
		defer wg.Done()
		w.watchLoop(ctx)
	}()
	go func() {
		wg.Wait()
		close(w.done)
	}()
}

// stop drains the engine (it finishes its in-flight requests, up to the
// grace period) and stops it; the agent reports DRAINING meanwhile so the
// gateway routes elsewhere.
func (w *worker) stop(ctx context.Context, grace time.Duration) {
	w.mu.Lock()
	w.removing = true
	w.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	if err := w.sup.Drain(dctx, w.inflight); err != nil {
		w.log.Warn("drain", "error", err)
	}
	w.cancel()
	<-w.done
}

func (w *worker) inflight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int(w.load.Running + w.load.Waiting)
}

// watchLoop scrapes the engine's load and runs the canary while it is up.
func (w *worker) watchLoop(ctx context.Context) {
	tick := time.NewTicker(w.cfg.MetricsInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		switch w.sup.Status().State {
		case supervisor.Ready, supervisor.Unhealthy:
			w.scrape(ctx)
			w.maybeCanary(ctx)
		case supervisor.Draining:
			w.scrape(ctx) // the drain waits for in-flight requests to reach 0
		}
	}
}

func (w *worker) scrape(ctx context.Context) {
	load, err := w.fetchLoad(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.loadErr = err.Error()
		return
	}
	// Any counter moving means the engine served something: no canary
	// needed while it does.
	if load.PrefixQueries != w.load.PrefixQueries || load.Running > 0 {
		w.lastTraffic = time.Now()
	}
	w.load, w.loadAt, w.loadErr = load, time.Now(), ""
}

func (w *worker) fetchLoad(ctx context.Context) (engine.Load, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.spec.DialURL()+w.adapter.MetricsPath(), nil)
	if err != nil {
		return engine.Load{}, err
	}
	res, err := w.http.Do(req)
	if err != nil {
		return engine.Load{}, fmt.Errorf("scrape metrics: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return engine.Load{}, fmt.Errorf("scrape metrics: HTTP %d", res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxMetricsBytes))
	if err != nil {
		return engine.Load{}, fmt.Errorf("scrape metrics: %w", err)
	}
	return w.adapter.ParseLoad(body)
}

// maybeCanary sends the adapter's tiny request when the engine has shown no
// traffic for CanaryIdle. A failure marks the worker unhealthy (the brain
// takes it out of routing); CanaryRestartAfter failures in a row restart it.
func (w *worker) maybeCanary(ctx context.Context) {
	w.mu.Lock()
	idle := time.Since(maxTime(w.lastTraffic, w.canary.LastRun))
	w.mu.Unlock()
	if idle < w.cfg.CanaryIdle {
		return
	}
	err := w.runCanary(ctx)
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	now := time.Now()
	w.canary.LastRun = now
	if err == nil {
		w.canary.LastOK, w.canary.Failures, w.canary.Error, w.canary.Healthy = now, 0, "", true
		w.lastTraffic = now
		w.mu.Unlock()
		w.sup.MarkHealthy()
		return
	}
	w.canary.Failures++
	w.canary.Error, w.canary.Healthy = err.Error(), false
	failures := w.canary.Failures
	w.mu.Unlock()
	w.log.Warn("canary failed", "failures", failures, "error", err)
	w.sup.MarkUnhealthy("canary: " + err.Error())
	if failures >= w.cfg.CanaryRestartAfter {
		w.log.Warn("restarting engine after failed canaries", "failures", failures)
		w.mu.Lock()
		w.canary.Failures = 0
		w.mu.Unlock()
		w.sup.Restart()
	}
}

func (w *worker) runCanary(ctx context.Context) error {
	c := w.adapter.Canary(w.spec)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.CanaryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.spec.DialURL()+c.Path, bytes.NewReader(c.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "strata-canary-"+w.id)
	res, err := w.http.Do(req)
	if err != nil {
		return fmt.Errorf("canary request: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("canary request: HTTP %d", res.StatusCode)
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// status is the worker as the brain sees it.
func (w *worker) status() *stratav1.WorkerStatus {
	st := w.sup.Status()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := &stratav1.WorkerStatus{
		WorkerId: w.id, Message: st.Message,
		Load: &stratav1.WorkerLoad{RunningRequests: w.load.Running, WaitingRequests: w.load.Waiting, KvUsage: w.load.KVUsage},
	}
	switch st.State {
	case supervisor.Starting:
		out.State = stratav1.WorkerState_WORKER_STATE_STARTING
	case supervisor.Ready:
		out.State = stratav1.WorkerState_WORKER_STATE_READY
	case supervisor.Unhealthy:
		out.State = stratav1.WorkerState_WORKER_STATE_UNHEALTHY
	case supervisor.Draining:
		out.State = stratav1.WorkerState_WORKER_STATE_DRAINING
	case supervisor.CrashLoop:
		out.State = stratav1.WorkerState_WORKER_STATE_FAILED
	default:
		out.State = stratav1.WorkerState_WORKER_STATE_PENDING
	}
	if w.removing && out.State == stratav1.WorkerState_WORKER_STATE_READY {
		out.State = stratav1.WorkerState_WORKER_STATE_DRAINING
	}
	if w.drained && st.State == supervisor.Stopped {
		// Not routable, and not FAILED: placement must not count it as a
		// crash loop; it waits for an operator.
		out.State = stratav1.WorkerState_WORKER_STATE_UNHEALTHY
		out.Message = "drained through the ops API; POST /v1/workers/" + w.id + "/restart resumes it"
	}
	return out
}
