package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-llm/strata/test/testutil"
)

// The test binary doubles as the engine (and its child, and an agent):
// modeEnv switches it in TestMain.
const (
	modeEnv   = "SUPERVISOR_TEST_MODE"
	configEnv = "SUPERVISOR_TEST_CONFIG"
	waitLong  = 15 * time.Second
)

func TestMain(m *testing.M) {
	switch os.Getenv(modeEnv) {
	case "engine":
		os.Exit(engineMain(os.Args[1:]))
	case "child":
		os.Exit(childMain())
	case "agent":
		os.Exit(agentMain())
	}
	os.Exit(m.Run())
}

// engineMain is a fake engine: /health on -port (503 until -ready-after),
// /say?msg= prints msg, SIGTERM exits 0 unless ignored.
func engineMain(args []string) int {
	fs := flag.NewFlagSet("engine", flag.ContinueOnError)
	port := fs.Int("port", 0, "serve /health and /say on this port")
	readyAfter := fs.Duration("ready-after", 0, "answer /health 503 until then")
	exitCode := fs.Int("exit", -1, "exit with this code: at once, or -exit-after-ready after /health first answered 200")
	exitAfterReady := fs.Duration("exit-after-ready", 0, "delay -exit until this long after being ready")
	ignoreTerm := fs.Bool("ignore-term", false, "ignore SIGTERM")
	child := fs.String("child", "", "start a child in the process group and write its pid to this file")
	spam := fs.Int("spam", 0, "print this many bytes at start")
	fs.String("tag", "", "makes a different launch")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	fmt.Println("engine: started")
	if *spam > 0 {
		line := strings.Repeat("x", 99) + "\n"
		for n := 0; n < *spam; n += len(line) {
			if _, err := os.Stdout.WriteString(line); err != nil {
				return 1
			}
		}
	}
	if *child != "" {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), modeEnv+"=child")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "engine:", err)
			return 1
		}
		if err := os.WriteFile(*child, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "engine:", err)
			return 1
		}
	}
	exit := make(chan struct{})
	var readyOnce sync.Once
	if *exitCode >= 0 && *exitAfterReady == 0 {
		close(exit)
	}
	if *port != 0 {
		start := time.Now()
		mux := http.NewServeMux()
		mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
			if time.Since(start) < *readyAfter {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			if *exitCode >= 0 {
				readyOnce.Do(func() { time.AfterFunc(*exitAfterReady, func() { close(exit) }) })
			}
		})
		mux.HandleFunc("/say", func(_ http.ResponseWriter, r *http.Request) {
			fmt.Println(r.URL.Query().Get("msg"))
		})
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "engine:", err)
			return 1
		}
		go func() { _ = http.Serve(ln, mux) }()
	}
	select {
	case <-term:
		fmt.Println("engine: SIGTERM")
		return 0
	case <-exit:
		fmt.Println("engine: exiting with", *exitCode)
		return *exitCode
	}
}

// childMain is an engine's worker that ignores SIGTERM: only the group's
// SIGKILL ends it.
func childMain() int {
	signal.Ignore(syscall.SIGTERM)
	never := make(chan os.Signal, 1)
	signal.Notify(never, syscall.SIGUSR2)
	<-never
	return 0
}

// agentConfig is the part of Config an agent subprocess needs.
type agentConfig struct {
	WorkerID, Dir, Path, HealthURL string
	Args, Env                      []string
}

// agentMain is an agent that supervises one engine until it is killed.
func agentMain() int {
	var ac agentConfig
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &ac); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 2
	}
	s, err := New(Config{
		WorkerID: ac.WorkerID, Dir: ac.Dir, Path: ac.Path, Args: ac.Args, Env: ac.Env, HealthURL: ac.HealthURL,
		StopGrace: 2 * time.Second,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 2
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	return 0
}

// startAgent runs an agent subprocess supervising cfg's engine, waits until
// the engine is ready, SIGKILLs the agent and returns the engine's pid: an
// engine left behind by a crashed agent.
func orphanEngine(t *testing.T, cfg Config) int {
	t.Helper()
	b, err := json.Marshal(agentConfig{
		WorkerID: cfg.WorkerID, Dir: cfg.Dir, Path: cfg.Path, HealthURL: cfg.HealthURL,
		Args: cfg.Args, Env: cfg.Env,
	})
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(os.Args[0])
	agent.Env = append(os.Environ(), modeEnv+"=agent", configEnv+"="+string(b), "GORACE=atexit_sleep_ms=0")
	agent.Stderr = t.Output()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	testutil.WaitForResult(t, waitLong, func() error {
		rec, err := readPidFile(cfg.Dir)
		if err != nil || rec == nil {
			return fmt.Errorf("pid file: %v", err)
		}
		pid = rec.PID
		return get(cfg.HealthURL)
	})
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killLeftover(pid, st.startTime) })
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	if !alive(pid) {
		t.Fatalf("engine %d died with its agent", pid)
	}
	return pid
}

// killLeftover kills an engine's group a failed test left running.
func killLeftover(pid int, startTime uint64) {
	if st, err := readStat(pid); err == nil && st.startTime == startTime && st.state != 'Z' {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// engineConfig launches the fake engine with small durations.
func engineConfig(t *testing.T, args ...string) Config {
	port := freePort(t)
	return Config{
		WorkerID: "w0",
		Dir:      t.TempDir(),
		Path:     os.Args[0],
		Args:     append([]string{"-port", strconv.Itoa(port)}, args...),
		// Under -race a process sleeps 1s on exit, unless told not to.
		Env:          []string{modeEnv + "=engine", "GORACE=atexit_sleep_ms=0"},
		HealthURL:    fmt.Sprintf("http://127.0.0.1:%d/health", port),
		ReadyTimeout: waitLong,
		StopGrace:    2 * time.Second,
		Backoff:      Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		Logger:       slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// run starts a Supervisor; the test's cleanup stops it.
func run(t *testing.T, cfg Config) (*Supervisor, <-chan error) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return s, errc
}

// recvErr waits for Run's result.
func recvErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitLong):
		t.Fatal("Run did not return")
		return nil
	}
}

func waitState(t *testing.T, s *Supervisor, want State) Status {
	t.Helper()
	var st Status
	testutil.WaitForResult(t, waitLong, func() error {
		st = s.Status()
		if st.State != want {
			return fmt.Errorf("state %v (%s; last error %q), want %v", st.State, st.Message, st.LastError, want)
		}
		return nil
	})
	return st
}

// alive reports whether pid runs (a zombie has exited).
func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z'
}

func get(url string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func readLog(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "logs", "engine.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func waitLog(t *testing.T, dir string, want ...string) {
	t.Helper()
	testutil.WaitForResult(t, waitLong, func() error {
		log := readLog(t, dir)
		for _, w := range want {
			if !strings.Contains(log, w) {
				return fmt.Errorf("engine.log lacks %q:\n%s", w, log)
			}
		}
		return nil
	})
}

// stateLog records OnState calls.
type stateLog struct {
	mu     sync.Mutex
	states []State
	msgs   []string
}

func (l *stateLog) record(st State, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, st)
	l.msgs = append(l.msgs, msg)
}

func (l *stateLog) snapshot() ([]State, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]State(nil), l.states...), append([]string(nil), l.msgs...)
}
