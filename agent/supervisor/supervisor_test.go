package supervisor

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-llm/strata/test/testutil"
)

func TestNewValidates(t *testing.T) {
	valid := Config{WorkerID: "w", Dir: "/tmp/x", Path: "/bin/true"}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no worker id", func(c *Config) { c.WorkerID = "" }, "WorkerID"},
		{"no dir", func(c *Config) { c.Dir = "" }, "Dir"},
		{"no path", func(c *Config) { c.Path = "" }, "Path"},
		{"negative grace", func(c *Config) { c.StopGrace = -time.Second }, "negative"},
		{"bad health url", func(c *Config) { c.HealthURL = "localhost:8000/health" }, "HealthURL"},
		{"backoff inverted", func(c *Config) { c.Backoff = Backoff{Initial: time.Minute, Max: time.Second} }, "Backoff"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.modify(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
		})
	}
	s, err := New(valid)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.cfg; c.ReadyTimeout != 10*time.Minute || c.StopGrace != 30*time.Second ||
		c.Backoff != (Backoff{time.Second, 5 * time.Minute}) || c.CrashLoopAfter != 5 || c.LogMaxMB != 100 || c.LogMaxFiles != 5 {
		t.Fatalf("defaults: %+v", c)
	}
	if st := s.Status(); st.State != Stopped {
		t.Fatalf("state before Run: %v", st.State)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 5 * time.Minute}
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {9, 256 * time.Second},
		{10, 5 * time.Minute}, {1000, 5 * time.Minute},
	} {
		if got := b.delay(tc.failures); got != tc.want {
			t.Errorf("delay(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestParseStat(t *testing.T) {
	tail := " 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10"
	tests := []struct {
		name, stat string
		want       procStat
		wantErr    bool
	}{
		{"plain", "42 (vllm)" + strings.Replace(tail, " ", " S ", 1), procStat{'S', 123456}, false},
		{"name with spaces and parens", "42 (a) (b c)" + strings.Replace(tail, " ", " Z ", 1), procStat{'Z', 123456}, false},
		{"no name", "42 vllm S 1", procStat{}, true},
		{"truncated", "42 (vllm) S 1 1", procStat{}, true},
		{"bad start time", "42 (vllm) S" + strings.Replace(tail, "123456", "x", 1), procStat{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.stat))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseStat = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	own, err := readStat(os.Getpid())
	if err != nil || own.startTime == 0 {
		t.Fatalf("own stat: %+v, %v", own, err)
	}
}

func TestLaunchHash(t *testing.T) {
	base := launchHash("vllm", []string{"serve", "m"}, []string{"A=1"})
	if base != launchHash("vllm", []string{"serve", "m"}, []string{"A=1"}) {
		t.Fatal("same launch, different hash")
	}
	for name, h := range map[string]string{
		"arg changed":       launchHash("vllm", []string{"serve", "n"}, []string{"A=1"}),
		"args joined":       launchHash("vllm", []string{"servem"}, []string{"A=1"}),
		"arg moved to env":  launchHash("vllm", []string{"serve"}, []string{"m", "A=1"}),
		"env changed":       launchHash("vllm", []string{"serve", "m"}, []string{"A=2"}),
		"path absorbs args": launchHash("vllmserve", []string{"m"}, []string{"A=1"}),
	} {
		if h == base {
			t.Errorf("%s: same hash", name)
		}
	}
}

func TestStartReadyStop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		health bool
	}{
		{"health url", true},
		{"no health url", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var states stateLog
			cfg := engineConfig(t, "-ready-after", "300ms")
			cfg.OnState = states.record
			if !tc.health {
				cfg.HealthURL = ""
			}
			s, errc := run(t, cfg)
			st := waitState(t, s, Ready)
			if st.PID == 0 || !alive(st.PID) || st.Adopted || st.Restarts != 0 || st.ReadyAt.Before(st.StartedAt) {
				t.Fatalf("status when ready: %+v", st)
			}
			if tc.health && st.ReadyAt.Sub(st.StartedAt) < 300*time.Millisecond {
				t.Fatalf("ready after %v, before the health URL said so", st.ReadyAt.Sub(st.StartedAt))
			}
			waitLog(t, cfg.Dir, "engine: started") // its SIGTERM handler is set
			rec, err := readPidFile(cfg.Dir)
			if err != nil || rec == nil || rec.PID != st.PID || rec.Launch != s.launch {
				t.Fatalf("pid file: %+v, %v", rec, err)
			}
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := recvErr(t, errc); err != nil {
				t.Fatalf("Run: %v", err)
			}
			end := s.Status()
			if end.State != Stopped || end.PID != 0 || end.LastExit != "exit status 0" || alive(st.PID) {
				t.Fatalf("after Stop: %+v (engine alive: %v)", end, alive(st.PID))
			}
			if rec, err := readPidFile(cfg.Dir); rec != nil || err != nil {
				t.Fatalf("pid file left: %+v, %v", rec, err)
			}
			if log := readLog(t, cfg.Dir); !strings.Contains(log, "engine: started") || !strings.Contains(log, "engine: SIGTERM") {
				t.Fatalf("engine.log:\n%s", log)
			}
			got, _ := states.snapshot()
			if want := []State{Starting, Ready, Stopped}; !slices.Equal(got, want) {
				t.Fatalf("OnState: %v, want %v", got, want)
			}
		})
	}
}

func TestStopKillsGroup(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	tests := []struct {
		name     string
		args     []string
		wantExit string
		minStop  time.Duration
	}{
		{"SIGTERM", nil, "exit status 0", 0},
		{"SIGKILL after grace", []string{"-ignore-term"}, "signal: killed", grace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			childFile := filepath.Join(t.TempDir(), "child.pid")
			cfg := engineConfig(t, append(tc.args, "-child", childFile)...)
			cfg.StopGrace = grace
			s, errc := run(t, cfg)
			engine := waitState(t, s, Ready).PID
			var child int
			testutil.WaitForResult(t, waitLong, func() error {
				b, err := os.ReadFile(childFile)
				if err == nil {
					child, err = strconv.Atoi(string(b))
				}
				return err
			})
			start := time.Now()
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if err := recvErr(t, errc); err != nil {
				t.Fatal(err)
			}
			if got := s.Status().LastExit; got != tc.wantExit {
				t.Errorf("LastExit %q, want %q; log:\n%s", got, tc.wantExit, readLog(t, cfg.Dir))
			}
			if took < tc.minStop {
				t.Errorf("stopped in %v, before the grace of %v", took, tc.minStop)
			}
			if alive(engine) {
				t.Errorf("engine %d still runs", engine)
			}
			// The child is reaped by whoever adopted it: wait for it.
			testutil.WaitFor(t, waitLong, func() bool { return !alive(child) })
		})
	}
}

func TestCrashLoop(t *testing.T) {
	t.Parallel()
	var states stateLog
	cfg := engineConfig(t, "-exit", "3")
	cfg.CrashLoopAfter = 3
	cfg.OnState = states.record
	s, _ := run(t, cfg)
	waitState(t, s, CrashLoop)
	// Still retried in the crash loop.
	testutil.WaitForResult(t, waitLong, func() error {
		if st := s.Status(); st.Restarts < 5 {
			return fmt.Errorf("%d restarts", st.Restarts)
		}
		return nil
	})
	st := s.Status()
	if st.Failures < 3 || st.LastExit != "exit status 3" {
		t.Fatalf("status: %+v", st)
	}
	_, msgs := states.snapshot()
	var delays []string
	for _, m := range msgs {
		if _, d, ok := strings.Cut(m, "relaunch in "); ok {
			delays = append(delays, strings.Fields(d)[0])
		}
	}
	if want := []string{"5ms", "10ms", "20ms", "20ms"}; len(delays) < len(want) || !slices.Equal(delays[:len(want)], want) {
		t.Fatalf("backoff delays %v, want %v first", delays, want)
	}
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	t.Parallel()
	var states stateLog
	// Exits 200ms after it is ready; stable after 2×20ms.
	cfg := engineConfig(t, "-exit", "0", "-exit-after-ready", "200ms")
	cfg.CrashLoopAfter = 2
	cfg.OnState = states.record
	s, _ := run(t, cfg)
	testutil.WaitForResult(t, waitLong, func() error {
		if st := s.Status(); st.Restarts < 3 {
			return fmt.Errorf("%d restarts", st.Restarts)
		}
		return nil
	})
	got, msgs := states.snapshot()
	if slices.Contains(got, CrashLoop) {
		t.Fatalf("crash loop for an engine that ran stably: %v\n%s", got, strings.Join(msgs, "\n"))
	}
	if f := s.Status().Failures; f > 1 {
		t.Fatalf("%d failures in a row", f)
	}
}

func TestReadyTimeout(t *testing.T) {
	t.Parallel()
	cfg := engineConfig(t, "-ready-after", "1h")
	cfg.ReadyTimeout = time.Second
	s, _ := run(t, cfg)
	testutil.WaitForResult(t, waitLong, func() error {
		if st := s.Status(); st.Restarts < 1 || st.Failures < 1 {
			return fmt.Errorf("%d restarts, %d failures", st.Restarts, st.Failures)
		}
		return nil
	})
	st := s.Status()
	if !strings.Contains(st.LastError, "not ready within 1s") || st.LastExit == "" {
		t.Fatalf("status: %+v", st)
	}
}

func TestDrain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		deadline time.Duration
		finish   bool // requests finish during the drain
	}{
		{"waits for in-flight requests", waitLong, true},
		{"stops at the deadline", 200 * time.Millisecond, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, errc := run(t, engineConfig(t))
			pid := waitState(t, s, Ready).PID
			var inflight atomic.Int64
			inflight.Store(2)
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			drained := make(chan error, 1)
			go func() { drained <- s.Drain(ctx, func() int { return int(inflight.Load()) }) }()
			waitState(t, s, Draining)
			s.MarkHealthy() // no effect while draining
			if tc.finish {
				if !alive(pid) || s.Status().State != Draining {
					t.Fatalf("engine stopped with requests in flight: %+v", s.Status())
				}
				inflight.Store(0)
			}
			select {
			case err := <-drained:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(waitLong):
				t.Fatal("Drain did not return")
			}
			if err := recvErr(t, errc); err != nil {
				t.Fatal(err)
			}
			if st := s.Status(); st.State != Stopped || alive(pid) {
				t.Fatalf("after Drain: %+v", st)
			}
		})
	}
}

func TestRestartAndHealthMarks(t *testing.T) {
	t.Parallel()
	var states stateLog
	cfg := engineConfig(t)
	cfg.OnState = states.record
	s, _ := run(t, cfg)
	first := waitState(t, s, Ready).PID

	s.MarkHealthy() // already healthy: no change
	s.MarkUnhealthy("canary timed out")
	if st := s.Status(); st.State != Unhealthy || st.Message != "canary timed out" || st.PID != first {
		t.Fatalf("after MarkUnhealthy: %+v", st)
	}
	s.MarkHealthy()
	waitState(t, s, Ready)

	s.Restart()
	testutil.WaitForResult(t, waitLong, func() error {
		st := s.Status()
		if st.Restarts != 1 || st.State != Ready || st.PID == first {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if alive(first) {
		t.Fatalf("old engine %d still runs", first)
	}
	if st := s.Status(); st.Failures != 0 {
		t.Fatalf("a restart counted as a failure: %+v", st)
	}
	got, _ := states.snapshot()
	if want := []State{Starting, Ready, Unhealthy, Ready, Starting, Ready}; !slices.Equal(got, want) {
		t.Fatalf("OnState: %v, want %v", got, want)
	}
}

func TestAdoptAfterAgentRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		sameLaunch bool
	}{
		{"same launch is adopted", true},
		{"different launch is replaced", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := engineConfig(t)
			orphan := orphanEngine(t, cfg)
			// Output while no agent reads waits in the pipe.
			if err := get(say(cfg, "while-orphaned")); err != nil {
				t.Fatal(err)
			}
			if !tc.sameLaunch {
				cfg.Args = append(cfg.Args, "-tag", "v2")
			}
			s, _ := run(t, cfg)
			st := waitState(t, s, Ready)
			if tc.sameLaunch {
				if st.PID != orphan || !st.Adopted || st.Restarts != 0 {
					t.Fatalf("not adopted: %+v (orphan %d)", st, orphan)
				}
				if err := get(say(cfg, "after-adoption")); err != nil {
					t.Fatal(err)
				}
				waitLog(t, cfg.Dir, "while-orphaned", "after-adoption")
				if err := s.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(s.Status().LastExit, "adopted") {
					t.Fatalf("LastExit %q", s.Status().LastExit)
				}
			} else {
				if st.PID == orphan || st.Adopted {
					t.Fatalf("old launch adopted: %+v", st)
				}
				waitLog(t, cfg.Dir, "while-orphaned", "engine: SIGTERM")
			}
			testutil.WaitFor(t, waitLong, func() bool { return !alive(orphan) })
		})
	}
}

func say(cfg Config, msg string) string {
	return strings.TrimSuffix(cfg.HealthURL, "/health") + "/say?msg=" + url.QueryEscape(msg)
}

func TestStalePidFile(t *testing.T) {
	t.Parallel()
	// An idle process in its own group stands for an unrelated process
	// that got the recorded pid: it must be neither adopted nor signalled.
	idle := startIdle(t)
	idleStat, err := readStat(idle)
	if err != nil {
		t.Fatal(err)
	}
	dead := deadPid(t)
	tests := []struct {
		name string
		rec  func(launch string) pidRecord
	}{
		{"dead pid", func(l string) pidRecord {
			return pidRecord{PID: dead, BootID: bootID(), StartTime: 1, Launch: l}
		}},
		{"pid reused", func(l string) pidRecord {
			return pidRecord{PID: idle, BootID: bootID(), StartTime: idleStat.startTime + 1, Launch: l}
		}},
		{"other boot", func(l string) pidRecord {
			return pidRecord{PID: idle, BootID: "another-boot", StartTime: idleStat.startTime, Launch: l}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := engineConfig(t)
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rec := tc.rec(s.launch)
			if err := writePidFile(cfg.Dir, rec); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- s.Run(context.Background()) }()
			st := waitState(t, s, Ready)
			if st.PID == rec.PID || st.Adopted {
				t.Fatalf("stale record adopted: %+v", st)
			}
			if !alive(idle) {
				t.Fatal("the process that reused the pid was killed")
			}
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := recvErr(t, errc); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnreadablePidFile(t *testing.T) {
	t.Parallel()
	cfg := engineConfig(t)
	if err := os.WriteFile(filepath.Join(cfg.Dir, pidFileName), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, errc := run(t, cfg)
	if err := recvErr(t, errc); err == nil || !strings.Contains(err.Error(), "unreadable pid file") {
		t.Fatalf("Run: %v", err)
	}
	if st := s.Status(); st.State != Stopped || !strings.Contains(st.LastError, "pid file") {
		t.Fatalf("status: %+v", st)
	}
}

// startIdle starts a process that runs until the test ends, in its own
// process group.
func startIdle(t *testing.T) int {
	t.Helper()
	cfg := engineConfig(t)
	cfg.HealthURL = ""
	s, _ := run(t, cfg)
	return waitState(t, s, Ready).PID
}

// deadPid returns the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	cfg := engineConfig(t, "-exit", "0")
	cfg.HealthURL = ""
	s, errc := run(t, cfg)
	var pid int
	testutil.WaitForResult(t, waitLong, func() error {
		rec, err := readPidFile(cfg.Dir)
		if rec != nil {
			pid = rec.PID
			return nil
		}
		return fmt.Errorf("no pid file yet: %v", err)
	})
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := recvErr(t, errc); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d still runs", pid)
	}
	return pid
}

func TestStopStale(t *testing.T) {
	t.Parallel()
	cfg := engineConfig(t)
	orphan := orphanEngine(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := StopStale(ctx, cfg.Dir, time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, waitLong, func() bool { return !alive(orphan) })
	if rec, err := readPidFile(cfg.Dir); rec != nil || err != nil {
		t.Fatalf("pid file left: %+v, %v", rec, err)
	}
	for _, dir := range []string{cfg.Dir, filepath.Join(t.TempDir(), "never-created")} {
		if err := StopStale(ctx, dir, time.Second); err != nil {
			t.Fatalf("StopStale(%s) with nothing to stop: %v", dir, err)
		}
	}
}

func TestOneSupervisorPerDir(t *testing.T) {
	t.Parallel()
	cfg := engineConfig(t)
	first, _ := run(t, cfg)
	waitState(t, first, Ready)
	_, errc := run(t, cfg)
	if err := recvErr(t, errc); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second supervisor on one dir: %v", err)
	}
	if err := StopStale(context.Background(), cfg.Dir, time.Second); err == nil {
		t.Fatal("StopStale stopped the engine of a running supervisor")
	}
	if st := first.Status(); st.State != Ready {
		t.Fatalf("first supervisor: %+v", st)
	}
}

func TestRunOnce(t *testing.T) {
	t.Parallel()
	s, err := New(engineConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("Stop before Run: %v", err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatalf("Run after Stop: %v", err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
	if st := s.Status(); st.State != Stopped || st.PID != 0 {
		t.Fatalf("status: %+v", st)
	}
}

// TestRunDetachesOnContextCancel: the end of Run's context (the agent
// stopping) leaves the engine running, and the next supervisor adopts it.
func TestRunDetachesOnContextCancel(t *testing.T) {
	t.Parallel()
	cfg := engineConfig(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	pid := waitState(t, s, Ready).PID
	cancel()
	if err := recvErr(t, errc); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.State != Stopped || !alive(pid) {
		t.Fatalf("after cancel: %+v, engine alive %v", st, alive(pid))
	}
	next, _ := run(t, cfg)
	if st := waitState(t, next, Ready); st.PID != pid || !st.Adopted {
		t.Fatalf("not adopted after detach: %+v (pid %d)", st, pid)
	}
	if err := next.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, waitLong, func() bool { return !alive(pid) })
}

func TestLogRotation(t *testing.T) {
	t.Parallel()
	cfg := engineConfig(t, "-spam", "3000000")
	cfg.HealthURL = ""
	cfg.LogMaxMB, cfg.LogMaxFiles = 1, 2
	s, _ := run(t, cfg)
	waitState(t, s, Ready)
	testutil.WaitForResult(t, waitLong, func() error {
		rotated, err := filepath.Glob(filepath.Join(cfg.Dir, "logs", "engine-*.log"))
		if err != nil {
			return err
		}
		if len(rotated) < 2 {
			return fmt.Errorf("%d rotated files", len(rotated))
		}
		return nil
	})
	fi, err := os.Stat(filepath.Join(cfg.Dir, "logs", "engine.log"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 1<<20 {
		t.Fatalf("engine.log is %d bytes, over LogMaxMB", fi.Size())
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	cfg := engineConfig(t)
	cfg.Path = filepath.Join(t.TempDir(), "missing-engine")
	cfg.CrashLoopAfter = 2
	s, _ := run(t, cfg)
	st := waitState(t, s, CrashLoop)
	if !strings.Contains(st.LastError, "missing-engine") || !strings.Contains(st.LastError, "no such file") {
		t.Fatalf("status: %+v", st)
	}
}

func TestEngineEnvironDropsStrataSecrets(t *testing.T) {
	t.Setenv("STRATA_CLUSTER_TOKEN", "secret")
	t.Setenv("STRATA_OPS_TOKEN", "secret")
	t.Setenv("KEEP_ME", "1")
	env := engineEnviron()
	for _, kv := range env {
		if strings.HasPrefix(kv, "STRATA_") {
			t.Fatalf("engine would inherit %s", kv)
		}
	}
	if !slices.Contains(env, "KEEP_ME=1") {
		t.Fatal("other variables must be inherited")
	}
}
