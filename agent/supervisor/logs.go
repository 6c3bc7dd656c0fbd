package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"gopkg.in/natefinch/lumberjack.v2"
)

const (
	fifoName = "engine.fifo"
	// pipeSize is the pipe buffer asked for: what an engine can write while
	// no agent reads (the kernel caps it at /proc/sys/fs/pipe-max-size).
	pipeSize = 1 << 20
	// drainTimeout bounds copying what is left in the pipe once the engine
	// has exited and Run returns.
	drainTimeout = 200 * time.Millisecond
)

// logPipe copies the engine's output from a named pipe into a rotated file.
type logPipe struct {
	path string
	// r is opened read-write: it never sees EOF while no engine runs, and
	// opening it does not wait for a writer.
	r    *os.File
	out  *lumberjack.Logger
	log  *slog.Logger
	done chan struct{}
}

func openLogs(dir string, maxMB, maxFiles int, log *slog.Logger) (*logPipe, error) {
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	path := filepath.Join(dir, fifoName)
	if err := ensureFifo(path); err != nil {
		return nil, err
	}
	r, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open log pipe: %w", err)
	}
	l := &logPipe{
		path: path,
		r:    r,
		out: &lumberjack.Logger{
			Filename:   filepath.Join(logDir, "engine.log"),
			MaxSize:    maxMB,
			MaxBackups: maxFiles,
		},
		log:  log,
		done: make(chan struct{}),
	}
	go l.copy()
	return l, nil
}

// ensureFifo creates the named pipe unless it exists. An existing one is
// kept: an adopted engine still writes into it.
func ensureFifo(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode()&fs.ModeNamedPipe != 0:
		return nil
	case err == nil:
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("stat log pipe: %w", err)
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return fmt.Errorf("create log pipe %s: %w", path, err)
	}
	return nil
}

// writer opens the pipe for an engine's stdout and stderr. It is a fresh,
// blocking open file description, not a dup of r: the agent's is
// non-blocking, and engines do not expect EAGAIN on stdout. Read-write, so
// the engine itself keeps a reader and never gets EPIPE while no agent runs.
func (l *logPipe) writer() (*os.File, error) {
	fd, err := unix.Open(l.path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open log pipe for the engine: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, pipeSize); err != nil {
		l.log.Debug("cannot enlarge the log pipe", "err", err)
	}
	return os.NewFile(uintptr(fd), l.path), nil
}

func (l *logPipe) copy() {
	defer close(l.done)
	buf := make([]byte, 64<<10)
	failing := false
	for {
		n, err := l.r.Read(buf)
		if n > 0 {
			// On a write error the output is dropped, never left in the
			// pipe: the engine must not wait on the agent's disk.
			if _, werr := l.out.Write(buf[:n]); werr != nil {
				if !failing {
					l.log.Error("engine log write failed; dropping engine output until it recovers", "err", werr)
				}
				failing = true
			} else {
				failing = false
			}
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				l.log.Error("engine log pipe read failed", "err", err)
			}
			return
		}
	}
}

// close copies what is left in the pipe, then stops.
func (l *logPipe) close() error {
	if err := l.r.SetReadDeadline(time.Now().Add(drainTimeout)); err != nil {
		// A named pipe is pollable on Linux; if not, a blocked read cannot
		// be interrupted, and the copier is left to end with the process.
		return fmt.Errorf("close engine log: %w", errors.Join(err, l.r.Close()))
	}
	<-l.done
	if err := errors.Join(l.r.Close(), l.out.Close()); err != nil {
		return fmt.Errorf("close engine log: %w", err)
	}
	return nil
}
