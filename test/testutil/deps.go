package testutil

import (
	"os"
	"testing"
)

// MissingDep ends a test that needs a real part the test tooling installs (a
// server binary, model files) and cannot find it: it skips with a message
// naming the make target that installs it, or fails under `make test`, which
// sets STRATA_REQUIRE_TEST_DEPS=1 after installing every dependency, so that
// CI can never pass by skipping the real thing.
func MissingDep(t testing.TB, what, target string) {
	t.Helper()
	if os.Getenv("STRATA_REQUIRE_TEST_DEPS") == "1" {
		t.Fatalf("%s is missing although `make test` installed the test dependencies (run `make %s`)", what, target)
	}
	t.Skipf("%s is missing: run `make %s` (make test does)", what, target)
}
