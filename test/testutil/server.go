package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverProcess is a real server a test runs on loopback (MinIO, Azurite):
// started in its own process group, killed with the test's process if that
// dies, logging to a file that a failure quotes.
type serverProcess struct {
	name  string
	bin   string
	args  []string
	env   []string
	dir   string
	log   string
	ready func() error // nil once the server serves

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// toolBinary finds a test server installed by `make test-deps`: where the
// environment variable env points (the Makefile exports it), else at rel
// under the repository's bin/tools. It ends the test with MissingDep when
// the file is not there.
func toolBinary(t testing.TB, what, env, rel, target string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		_, file, _, _ := runtime.Caller(0)
		path = filepath.Join(filepath.Dir(file), "..", "..", "bin", "tools", rel)
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		MissingDep(t, what+" ("+path+")", target)
	}
	return path
}

// freePort is a loopback TCP port nothing listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() //nolint:errcheck // only for its port
	return l.Addr().(*net.TCPAddr).Port
}

// ClosedAddr is a loopback host:port nothing listens on, for tests of an
// unreachable server.
func ClosedAddr(t testing.TB) string { return hostPort(freePort(t)) }

// start runs the server and waits until ready says it serves.
func (p *serverProcess) start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatalf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = p.dir, logf, logf
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited

	deadline := time.Now().Add(60 * time.Second) // MinIO's first start on a loaded 2-core machine
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := p.ready()
		if err == nil {
			return
		}
		select {
		case <-exited:
			p.cmd = nil
			t.Fatalf("%s exited before it served: %v\n%s", p.name, cmd.ProcessState, p.logTail())
		case <-tick.C:
			if time.Now().After(deadline) {
				p.killLocked()
				t.Fatalf("%s not ready within 60s: %v\n%s", p.name, err, p.logTail())
			}
		}
	}
}

// stop kills the server's process group and waits for it to exit.
func (p *serverProcess) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killLocked()
}

// signal sends sig to the server's process group (SIGSTOP freezes it: its
// port still accepts connections, nothing answers, as with a hung server).
func (p *serverProcess) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// waitStopped waits until every thread of the server is stopped: kill
// returns once SIGSTOP is queued, and until a thread of the server takes
// it the others go on serving, so a request sent right after the signal
// can still be answered.
func (p *serverProcess) waitStopped(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !allThreadsStopped(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) not stopped 10s after SIGSTOP", p.name, pid)
		}
		<-tick.C
	}
}

// allThreadsStopped reads each thread's state from /proc: T is stopped by
// a signal.
func allThreadsStopped(pid int) bool {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses
		// and may itself hold spaces or parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

func (p *serverProcess) killLocked() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) // a stopped process dies of SIGKILL too
	<-p.exited
	p.cmd = nil
}

func (p *serverProcess) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return fmt.Sprintf("--- %s log (%s) ---\n%s", p.name, p.log, bytes.TrimSpace(b))
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
