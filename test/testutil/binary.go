package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// StrataBinary builds the strata binary once per test process and returns
// its path, for tests that run real processes. CleanupBinary removes it.
func StrataBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "strata-bin-")
		if build.err != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		build.path = filepath.Join(build.dir, "strata")
		cmd := exec.Command("go", "build", "-o", build.path, ".")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.out, build.err = cmd.CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("build strata: %v\n%s", build.err, build.out)
	}
	return build.path
}

// CleanupBinary removes what StrataBinary built; call it from TestMain.
func CleanupBinary() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// KillStrayProcesses kills every process still running the binary that
// StrataBinary built. Engines run in their own process groups and outlive
// an agent on purpose, so a test that fails before its cleanup leaves
// them behind, holding ports the next tests place engines on. Call it from
// TestMain after m.Run, before CleanupBinary.
func KillStrayProcesses() {
	if build.path == "" {
		return
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, exe := range procs {
		target, err := os.Readlink(exe)
		if err != nil || target != build.path {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(exe)))
		if err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
