package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	healthPoll    = 250 * time.Millisecond
	healthTimeout = 2 * time.Second
	drainPoll     = 50 * time.Millisecond
)

// Config describes one engine launch and how to supervise it. Zero
// durations and counts take the defaults given.
type Config struct {
	WorkerID string
	// Dir is the worker's directory under the agent's data dir: the pid
	// file, the log pipe and logs/engine.log live there.
	Dir  string
	Path string
	Args []string
	// Env is added to the agent's environment (and wins over it).
	Env []string
	// HealthURL answers 200 once the engine is ready. Empty: ready as soon
	// as it runs.
	HealthURL string
	// ReadyTimeout bounds loading (models take minutes): 10m.
	ReadyTimeout time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL: 30s.
	StopGrace time.Duration
	// Backoff is the restart delay: 1s doubling up to 5m.
	Backoff Backoff
	// CrashLoopAfter consecutive failed starts make the state CrashLoop: 5.
	CrashLoopAfter int
	// LogMaxMB and LogMaxFiles rotate logs/engine.log: 100 MB, 5 old files.
	LogMaxMB, LogMaxFiles int
	Logger                *slog.Logger
	// OnState is called on every state change, in order, from the goroutine
	// making it. It must not block, and may call Status but not the methods
	// that change the state.
	OnState func(State, string)
}

// Backoff is an exponential restart delay.
type Backoff struct {
	Initial, Max time.Duration
}

// delay is the wait before the relaunch that follows the n-th consecutive
// failure (n ≥ 1).
func (b Backoff) delay(n int) time.Duration {
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// State is where the engine is in its life.
type State int

const (
	// Stopped: no engine runs (before Run, and after it).
	Stopped State = iota
	// Starting: launched (or waiting to relaunch), not ready yet.
	Starting
	// Ready: the health URL answered 200.
	Ready
	// Unhealthy: ready, but the agent's canaries fail (MarkUnhealthy).
	Unhealthy
	// Draining: taking no new requests, stopping once idle (Drain).
	Draining
	// CrashLoop: CrashLoopAfter consecutive failed starts; still retried.
	CrashLoop
)

func (s State) String() string {
	switch s {
	case Stopped:
		return "stopped"
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Unhealthy:
		return "unhealthy"
	case Draining:
		return "draining"
	case CrashLoop:
		return "crash-loop"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status is a snapshot for the agent's reports and ops API.
type Status struct {
	State    State
	Message  string
	PID      int  // 0 while no engine runs
	Adopted  bool // started by an earlier agent and adopted
	Restarts int  // launches after the first
	Failures int  // consecutive failed starts
	// LastExit says how the last engine exited: "exit status 1",
	// "signal: killed".
	LastExit  string
	LastError string
	StartedAt time.Time
	ReadyAt   time.Time
}

// Supervisor runs one engine. Run it once.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	launch string
	client *http.Client

	stopOnce  sync.Once
	stopCh    chan struct{}
	restartCh chan struct{}
	done      chan struct{} // closed when Run returns

	notifyMu sync.Mutex // orders state changes with their OnState calls
	mu       sync.Mutex
	started  bool // Run was called
	launched bool // an engine ran once: later launches are restarts
	draining bool
	status   Status
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Supervisor, error) {
	switch {
	case cfg.WorkerID == "":
		return nil, errors.New("supervisor: WorkerID is required")
	case cfg.Dir == "":
		return nil, fmt.Errorf("supervisor %s: Dir is required", cfg.WorkerID)
	case cfg.Path == "":
		return nil, fmt.Errorf("supervisor %s: Path is required", cfg.WorkerID)
	case cfg.ReadyTimeout < 0, cfg.StopGrace < 0, cfg.Backoff.Initial < 0, cfg.Backoff.Max < 0,
		cfg.CrashLoopAfter < 0, cfg.LogMaxMB < 0, cfg.LogMaxFiles < 0:
		return nil, fmt.Errorf("supervisor %s: negative duration or count", cfg.WorkerID)
	}
	if cfg.HealthURL != "" {
		u, err := url.Parse(cfg.HealthURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("supervisor %s: HealthURL %q is not an http(s) URL", cfg.WorkerID, cfg.HealthURL)
		}
	}
	setDefault(&cfg.ReadyTimeout, 10*time.Minute)
	setDefault(&cfg.StopGrace, 30*time.Second)
	setDefault(&cfg.Backoff.Initial, time.Second)
	setDefault(&cfg.Backoff.Max, 5*time.Minute)
	setDefault(&cfg.CrashLoopAfter, 5)
	setDefault(&cfg.LogMaxMB, 100)
	setDefault(&cfg.LogMaxFiles, 5)
	if cfg.Backoff.Initial > cfg.Backoff.Max {
		return nil, fmt.Errorf("supervisor %s: Backoff.Initial %v exceeds Backoff.Max %v", cfg.WorkerID, cfg.Backoff.Initial, cfg.Backoff.Max)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{
		cfg:    cfg,
		log:    log.With("worker", cfg.WorkerID),
		launch: launchHash(cfg.Path, cfg.Args, cfg.Env),
		// Probes go straight to a local engine: no proxy, no idle
		// connections kept between polls.
		client:    &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		stopCh:    make(chan struct{}),
		restartCh: make(chan struct{}, 1),
		done:      make(chan struct{}),
		status:    Status{State: Stopped, Message: "not started"},
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Run adopts or starts the engine and keeps it running — readiness,
// restarts with backoff — until Stop or Drain, which stop the engine
// gracefully, or until ctx ends, which leaves the engine running (the agent
// is stopping or restarting; the next one adopts it). It returns nil then;
// an error only when it cannot supervise (directory, pid file, or an engine
// it cannot stop).
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return fmt.Errorf("worker %s: Run called twice", s.cfg.WorkerID)
	}
	s.started = true
	s.mu.Unlock()
	defer close(s.done)
	select {
	case <-s.stopCh:
		return nil
	default:
	}
	if err := s.run(ctx); err != nil {
		err = fmt.Errorf("worker %s: %w", s.cfg.WorkerID, err)
		s.setError(err)
		s.transition(nil, Stopped, err.Error())
		return err
	}
	return nil
}

func (s *Supervisor) run(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", s.cfg.Dir, err)
	}
	lock, err := lockDir(s.cfg.Dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	logs, err := openLogs(s.cfg.Dir, s.cfg.LogMaxMB, s.cfg.LogMaxFiles, s.log)
	if err != nil {
		return err
	}
	defer func() {
		if err := logs.close(); err != nil {
			s.log.Warn("closing engine log", "err", err)
		}
	}()
	p, err := s.reattach(ctx)
	if err != nil {
		return err
	}
	return s.loop(ctx, p, logs)
}

// reattach reads the pid file: it returns the engine to adopt, or nil after
// stopping an engine of another launch or dropping a stale record.
func (s *Supervisor) reattach(ctx context.Context) (*proc, error) {
	rec, err := readPidFile(s.cfg.Dir)
	if err != nil || rec == nil {
		return nil, err
	}
	p := adopt(rec)
	switch {
	case p == nil:
		s.log.Info("stale pid file: its engine no longer runs", "pid", rec.PID)
	case rec.Launch == s.launch:
		s.log.Info("adopting the running engine", "pid", p.pid)
		return p, nil
	default:
		s.log.Warn("an engine of another launch runs: stopping it", "pid", p.pid)
		if err := terminate(context.WithoutCancel(ctx), p, s.cfg.StopGrace); err != nil {
			return nil, fmt.Errorf("stop the previous engine: %w", err)
		}
	}
	return nil, removePidFile(s.cfg.Dir)
}

// outcome is how one engine's run ended.
type outcome int

const (
	failed           outcome = iota // exited, or not ready in time
	exitedStable                    // exited after being ready for a while
	stopRequested                   // Stop or Drain
	restartRequested                // Restart
	detached                        // Run's context ended: the engine stays
)

func (s *Supervisor) loop(ctx context.Context, p *proc, logs *logPipe) error {
	failures := 0
	for {
		if p == nil {
			if s.isDraining() {
				return s.stopped()
			}
			var err error
			if p, err = s.start(logs); err != nil {
				failures++
				s.setError(err)
				if !s.backoff(ctx, failures, err.Error()) {
					return s.stopped()
				}
				continue
			}
		}
		s.running(p, failures)
		end, why, err := s.watch(ctx, p)
		if err != nil {
			return err
		}
		if end == detached {
			s.transition(nil, Stopped, fmt.Sprintf("agent detached; engine pid %d left running for the next agent to adopt", p.pid))
			return nil
		}
		s.exited(p)
		p = nil
		if end == stopRequested || s.isDraining() {
			return s.stopped()
		}
		switch end {
		case restartRequested:
			continue
		case exitedStable:
			failures = 1
		default:
			failures++
		}
		if !s.backoff(ctx, failures, why) {
			return s.stopped()
		}
	}
}

// engineEnviron is the agent's environment minus its own configuration:
// STRATA_* variables carry the cluster and ops tokens, which are none of
// an engine's business (and would show in its /proc/<pid>/environ).
func engineEnviron() []string {
	env := os.Environ()
	return slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "STRATA_") })
}

// start launches the engine in its own process group and records it.
func (s *Supervisor) start(logs *logPipe) (*proc, error) {
	out, err := logs.writer()
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(s.cfg.Path, s.cfg.Args...)
	cmd.Env = append(engineEnviron(), s.cfg.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.cfg.Path, err)
	}
	p := &proc{pid: cmd.Process.Pid, startedAt: time.Now(), exited: make(chan struct{})}
	// Read before waitChild runs: an engine that exits at once stays a
	// zombie, with its stat, until then.
	st, err := readStat(p.pid)
	if err == nil {
		p.startTime = st.startTime
		err = writePidFile(s.cfg.Dir, pidRecord{
			PID:       p.pid,
			BootID:    bootID(),
			StartTime: p.startTime,
			Launch:    s.launch,
			StartedAt: p.startedAt,
		})
	}
	go p.waitChild(cmd)
	if err != nil {
		// Unrecorded, a restarted agent would not find this engine and
		// would start a second one: it must not run.
		if kerr := p.signal(syscall.SIGKILL); kerr != nil {
			return nil, fmt.Errorf("record pid %d: %w", p.pid, errors.Join(err, kerr))
		}
		<-p.exited
		return nil, fmt.Errorf("record pid %d: %w", p.pid, err)
	}
	return p, nil
}

// watch follows one engine until it exits or is stopped. An error means it
// could not be stopped.
func (s *Supervisor) watch(ctx context.Context, p *proc) (outcome, string, error) {
	readyCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- s.waitReady(readyCtx) }()
	stableTimer := time.NewTimer(time.Hour)
	stableTimer.Stop() // armed once ready
	defer stableTimer.Stop()
	stable := false
	for {
		select {
		case <-p.exited:
			if stable {
				return exitedStable, "engine exited: " + p.exitStatus(), nil
			}
			return failed, "engine exited: " + p.exitStatus(), nil
		case err := <-ready:
			ready = nil
			switch {
			case err == nil:
				s.ready(p)
				stableTimer.Reset(2 * s.cfg.Backoff.Max)
			case ctx.Err() == nil:
				s.setError(err)
				return failed, err.Error(), s.stop(ctx, p)
			}
		case <-stableTimer.C:
			stable = true
			s.mu.Lock()
			s.status.Failures = 0
			s.mu.Unlock()
		case <-ctx.Done():
			return detached, "", nil
		case <-s.stopCh:
			return stopRequested, "", s.stop(ctx, p)
		case <-s.restartCh:
			s.log.Info("restart requested", "pid", p.pid)
			return restartRequested, "", s.stop(ctx, p)
		}
	}
}

func (s *Supervisor) stop(ctx context.Context, p *proc) error {
	s.log.Info("stopping engine", "pid", p.pid, "grace", s.cfg.StopGrace)
	// Run's context may be what ended: the engine is stopped regardless.
	if err := terminate(context.WithoutCancel(ctx), p, s.cfg.StopGrace); err != nil {
		return fmt.Errorf("stop engine: %w", err)
	}
	return nil
}

// waitReady polls the health URL until it answers 200, ReadyTimeout passes
// or ctx ends.
func (s *Supervisor) waitReady(ctx context.Context) error {
	if s.cfg.HealthURL == "" {
		return nil
	}
	pollCtx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	var last error
	for {
		err := s.probe(pollCtx)
		if err == nil {
			return nil
		}
		if last == nil || pollCtx.Err() == nil {
			last = err // not the probe the deadline cut short
		}
		select {
		case <-pollCtx.Done():
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("not ready within %v: %w", s.cfg.ReadyTimeout, last)
		case <-tick.C:
		}
	}
}

func (s *Supervisor) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.HealthURL, nil)
	if err != nil {
		return fmt.Errorf("health request: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", s.cfg.HealthURL, resp.Status)
	}
	return nil
}

// backoff reports the failure and waits before the next launch. False
// means stop instead.
func (s *Supervisor) backoff(ctx context.Context, failures int, why string) bool {
	d := s.cfg.Backoff.delay(failures)
	s.mu.Lock()
	s.status.Failures = failures
	s.mu.Unlock()
	s.transition(nil, s.startingState(failures), fmt.Sprintf("%s; relaunch in %v (%d failed in a row)", why, d, failures))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.restartCh:
		return true
	case <-ctx.Done():
		return false
	case <-s.stopCh:
		return false
	}
}

func (s *Supervisor) startingState(failures int) State {
	if failures >= s.cfg.CrashLoopAfter {
		return CrashLoop
	}
	return Starting
}

func (s *Supervisor) running(p *proc, failures int) {
	s.mu.Lock()
	if s.launched {
		s.status.Restarts++
	}
	s.launched = true
	s.status.PID = p.pid
	s.status.Adopted = p.adopted
	s.status.StartedAt = p.startedAt
	s.status.ReadyAt = time.Time{}
	s.mu.Unlock()
	msg := fmt.Sprintf("launched pid %d", p.pid)
	if p.adopted {
		msg = fmt.Sprintf("adopted running pid %d", p.pid)
	}
	s.transition(nil, s.startingState(failures), msg)
}

func (s *Supervisor) ready(p *proc) {
	s.mu.Lock()
	s.status.ReadyAt = time.Now()
	s.mu.Unlock()
	s.transition(nil, Ready, fmt.Sprintf("pid %d ready", p.pid))
}

func (s *Supervisor) exited(p *proc) {
	s.mu.Lock()
	s.status.PID = 0
	s.status.Adopted = false
	s.status.LastExit = p.exitStatus()
	s.mu.Unlock()
	s.log.Info("engine exited", "pid", p.pid, "status", p.exitStatus())
	if err := removePidFile(s.cfg.Dir); err != nil {
		s.log.Warn("engine exited; its pid file stays", "err", err)
	}
}

func (s *Supervisor) stopped() error {
	s.transition(nil, Stopped, "stopped")
	return nil
}

func (s *Supervisor) setError(err error) {
	s.mu.Lock()
	s.status.LastError = err.Error()
	s.mu.Unlock()
}

func (s *Supervisor) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// transition sets the state and reports it if allowed (nil: always) accepts
// the current one. While draining, only Draining and Stopped are taken.
func (s *Supervisor) transition(allowed func(State) bool, to State, msg string) bool {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	s.mu.Lock()
	if (allowed != nil && !allowed(s.status.State)) || (s.draining && to != Draining && to != Stopped) {
		s.mu.Unlock()
		return false
	}
	s.status.State, s.status.Message = to, msg
	s.mu.Unlock()
	level := slog.LevelInfo
	if to == CrashLoop || to == Unhealthy {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "engine "+to.String(), "msg", msg)
	if s.cfg.OnState != nil {
		s.cfg.OnState(to, msg)
	}
	return true
}

// Stop stops the engine gracefully — SIGTERM to its process group,
// StopGrace, SIGKILL — and waits until Run has returned, or ctx ends. A
// Supervisor whose Run has not started will not start.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stopCh) })
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("worker %s: stop: %w", s.cfg.WorkerID, ctx.Err())
	}
}

// Drain sets the state to Draining (so the gateway stops routing to the
// worker; the engine is not relaunched any more), waits until inflight
// reports 0 or ctx ends, then stops the engine as Stop does, whatever ctx.
func (s *Supervisor) Drain(ctx context.Context, inflight func() int) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	if s.transition(func(st State) bool { return st != Stopped && st != Draining }, Draining, "draining") && inflight != nil {
		s.awaitIdle(ctx, inflight)
	}
	return s.Stop(context.WithoutCancel(ctx))
}

func (s *Supervisor) awaitIdle(ctx context.Context, inflight func() int) {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		n := inflight()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Warn("drain ended with requests in flight", "inflight", n, "err", ctx.Err())
			return
		case <-s.done:
			return
		case <-tick.C:
		}
	}
}

// Restart stops the engine gracefully and launches it again at once, or
// cuts a restart backoff short. It does not wait, and is not a failure.
// Before Run it does nothing.
func (s *Supervisor) Restart() {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return
	}
	select {
	case s.restartCh <- struct{}{}:
	default:
	}
}

// MarkUnhealthy moves a Ready engine to Unhealthy: the agent's canaries
// failed. The engine keeps running.
func (s *Supervisor) MarkUnhealthy(reason string) {
	s.transition(func(st State) bool { return st == Ready }, Unhealthy, reason)
}

// MarkHealthy moves an Unhealthy engine back to Ready.
func (s *Supervisor) MarkHealthy() {
	s.transition(func(st State) bool { return st == Unhealthy }, Ready, "canary passed")
}

// Status returns a snapshot.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}
