package kvbm

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SocketName is the socket's name in Config.Dir.
const SocketName = "kvbm.sock"

// maxSocketPath is the longest path a Unix socket can be bound at
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// listen binds the socket in dir: dir is created 0700 (or tightened to it)
// and the socket is 0600, so only the agent's user (which the engines it
// launches run as) can connect; accept also checks the peer's uid. A
// socket file left by an agent that died is replaced; one a live agent
// answers on is an error.
func listen(dir string, log *slog.Logger) (net.Listener, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("kvbm socket dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("kvbm socket dir: %w", err)
	}
	path := filepath.Join(dir, SocketName)
	if len(path) > maxSocketPath {
		return nil, "", fmt.Errorf("kvbm socket %s: %d bytes, a Unix socket path has at most %d: use a shorter data dir", path, len(path), maxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, "", fmt.Errorf("kvbm socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, "", fmt.Errorf("kvbm socket %s: another process serves it (a second agent on this data dir?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, "", fmt.Errorf("kvbm socket %s: remove stale socket: %w", path, err)
		}
	}
	// The umask makes the socket 0600 from its creation: no window in
	// which another user could connect before a chmod.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, "", fmt.Errorf("kvbm listen: %w", err)
	}
	return &peerListener{Listener: ln, uid: os.Getuid(), log: log}, path, nil
}

// peerListener accepts only connections from processes of the agent's own
// user (or root): the socket's mode already says so, and SO_PEERCRED makes
// it hold even if the mode is loosened.
type peerListener struct {
	net.Listener
	uid int
	log *slog.Logger
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == l.uid || uid == 0) {
			return c, nil
		}
		l.log.Warn("kvbm: refused a connection from another user", "uid", uid, "err", err)
		_ = c.Close()
	}
}

func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}
