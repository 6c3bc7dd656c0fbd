package supervisor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	pidFileName  = "engine.pid"
	lockFileName = "engine.lock"
	// adoptedPoll is how often /proc is read to notice that an adopted
	// engine, which is not our child, has exited.
	adoptedPoll = 250 * time.Millisecond
)

// proc is one running engine: the leader of a process group, either our
// child or adopted from a pid file.
type proc struct {
	pid       int
	startTime uint64 // field 22 of /proc/<pid>/stat
	startedAt time.Time
	adopted   bool
	exited    chan struct{} // closed once the leader has exited and the group is killed

	mu     sync.Mutex
	gone   bool   // the leader has exited: signal nothing any more
	status string // how the leader exited; written before exited is closed
}

// signal sends sig to the engine's process group, unless it is gone.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return nil
	}
	if p.adopted {
		// Not our child: make sure the pid is still the process we adopted.
		st, err := readStat(p.pid)
		if err != nil || st.startTime != p.startTime {
			return nil
		}
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to process group %d: %w", sig, p.pid, err)
	}
	return nil
}

// exitStatus says how the leader exited; valid once exited is closed.
func (p *proc) exitStatus() string {
	<-p.exited
	return p.status
}

// waitChild watches a child of ours. waitid(WNOWAIT) observes the exit but
// leaves the zombie, so the pid still names our group while the rest of the
// group is killed; only then is the leader reaped.
func (p *proc) waitChild(cmd *exec.Cmd) {
	var info unix.Siginfo
	for {
		if err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil); !errors.Is(err, unix.EINTR) {
			break
		}
	}
	p.mu.Lock()
	p.gone = true
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	p.mu.Unlock()
	err := cmd.Wait()
	switch {
	case cmd.ProcessState != nil:
		p.status = cmd.ProcessState.String()
	default:
		p.status = fmt.Sprintf("wait: %v", err)
	}
	close(p.exited)
}

// watchAdopted polls /proc until an adopted engine has exited.
func (p *proc) watchAdopted() {
	t := time.NewTicker(adoptedPoll)
	defer t.Stop()
	for range t.C {
		st, err := readStat(p.pid)
		if err == nil && st.startTime == p.startTime && st.state != 'Z' {
			continue
		}
		p.mu.Lock()
		p.gone = true
		// Kill what is left of the group. Its surviving members keep the
		// number reserved as their pgid, so -pid is still our group; with
		// none left, it names nothing short of a full pid wrap-around.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		p.mu.Unlock()
		p.status = "exited (adopted: exit status unknown)"
		close(p.exited)
		return
	}
}

// terminate stops an engine: SIGTERM to its group, up to grace for the
// leader to exit, then SIGKILL. It returns once the leader has exited, or
// with ctx's error.
func terminate(ctx context.Context, p *proc, grace time.Duration) error {
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
	case <-ctx.Done():
		return fmt.Errorf("stop pid %d: %w", p.pid, ctx.Err())
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop pid %d after SIGKILL: %w", p.pid, ctx.Err())
	}
}

// procStat is what is read from /proc/<pid>/stat.
type procStat struct {
	state     byte
	startTime uint64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses itself, so fields are
// counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed /proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed /proc stat: %d fields after the command name", len(f))
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat start time: %w", err)
	}
	return procStat{state: f[0][0], startTime: start}, nil
}

// bootID tells one boot from the next: start times restart at zero.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// launchHash identifies a launch: the same hash means the same engine.
func launchHash(path string, args, env []string) string {
	h := sha256.New()
	var buf []byte
	add := func(s string) {
		buf = binary.AppendUvarint(buf[:0], uint64(len(s)))
		h.Write(buf)
		h.Write([]byte(s))
	}
	add(path)
	for _, list := range [][]string{args, env} {
		buf = binary.AppendUvarint(buf[:0], uint64(len(list)))
		h.Write(buf)
		for _, s := range list {
			add(s)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// pidRecord is the pid file.
type pidRecord struct {
	PID       int       `json:"pid"`
	BootID    string    `json:"boot_id"`
	StartTime uint64    `json:"start_time"` // /proc/<pid>/stat field 22, clock ticks after boot
	Launch    string    `json:"launch"`
	StartedAt time.Time `json:"started_at"`
}

// readPidFile returns nil without error when there is no pid file.
func readPidFile(dir string) (*pidRecord, error) {
	path := filepath.Join(dir, pidFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pid file: %w", err)
	}
	var rec pidRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("unreadable pid file %s (remove it once no engine of this worker runs): %w", path, err)
	}
	if rec.PID <= 0 {
		return nil, fmt.Errorf("pid file %s holds no pid (remove it once no engine of this worker runs)", path)
	}
	return &rec, nil
}

func writePidFile(dir string, rec pidRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode pid file: %w", err)
	}
	path := filepath.Join(dir, pidFileName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

func removePidFile(dir string) error {
	if err := os.Remove(filepath.Join(dir, pidFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

// adopt returns the engine a pid file describes, watched, or nil when that
// process no longer runs (dead, a zombie, or its pid reused).
func adopt(rec *pidRecord) *proc {
	if rec.BootID != bootID() {
		return nil
	}
	st, err := readStat(rec.PID)
	if err != nil || st.startTime != rec.StartTime || st.state == 'Z' {
		return nil
	}
	p := &proc{
		pid:       rec.PID,
		startTime: rec.StartTime,
		startedAt: rec.StartedAt,
		adopted:   true,
		exited:    make(chan struct{}),
	}
	go p.watchAdopted()
	return p
}

// lockDir takes the directory's lock, so that one supervisor at a time
// manages its engine. Closing the file releases it, and so does the death
// of the process.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another supervisor", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// StopStale stops the engine recorded in dir's pid file, if it still runs —
// SIGTERM to its process group, up to grace, then SIGKILL — and removes the
// pid file. The agent calls it for a worker directory that is no longer
// assigned, before the GPU is given to another engine. It fails if a
// Supervisor is running on dir.
func StopStale(ctx context.Context, dir string, grace time.Duration) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	lock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("stop stale engine: %w", err)
	}
	defer lock.Close()
	rec, err := readPidFile(dir)
	if err != nil || rec == nil {
		return err
	}
	if p := adopt(rec); p != nil {
		if err := terminate(ctx, p, grace); err != nil {
			return fmt.Errorf("stop stale engine in %s: %w", dir, err)
		}
	}
	return removePidFile(dir)
}
