// Package testutil holds helpers shared by Strata's tests.
package testutil

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test after timeout. Tests
// wait on observable state this way instead of sleeping a guessed time.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("condition not met within %v", timeout)
		case <-tick.C:
		}
	}
}

// WaitForResult polls fn until it returns nil, failing the test with fn's
// last error after timeout, so a failure says what was still wrong.
func WaitForResult(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("not within %v: %v", timeout, err)
		case <-tick.C:
		}
	}
}
