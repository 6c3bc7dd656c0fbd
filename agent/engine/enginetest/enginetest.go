// Package enginetest holds the checks that every engine adapter's tests run
// (engine/vllm, engine/sglang, …), so that each adapter's tests hold only
// its own expectations: the tables of specs, argv, environments and metrics
// bodies. Only tests import it.
package enginetest

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/strata-llm/strata/agent/engine"
)

// CanaryPath is where every adapter's canary goes.
const CanaryPath = "/v1/completions"

// kvTolerance is how far a parsed KV usage may be from the expected one
// (metrics are fractions computed from counts).
const kvTolerance = 1e-9

// CheckLaunch checks a launch's program, arguments and environment. An
// empty wantArgs or wantEnv means none, however got spells it.
func CheckLaunch(t testing.TB, got engine.Launch, wantPath string, wantArgs, wantEnv []string) {
	t.Helper()
	if got.Path != wantPath {
		t.Errorf("path %q, want %q", got.Path, wantPath)
	}
	if !sameStrings(got.Args, wantArgs) {
		t.Errorf("args\n got %q\nwant %q", got.Args, wantArgs)
	}
	if !sameStrings(got.Env, wantEnv) {
		t.Errorf("env\n got %q\nwant %q", got.Env, wantEnv)
	}
}

// CheckFiles checks a launch's configuration files: want maps each path to
// its contents, nil meaning none.
func CheckFiles(t testing.TB, got engine.Launch, want map[string]string) {
	t.Helper()
	same := len(got.Files) == len(want)
	for path, contents := range want {
		b, ok := got.Files[path]
		same = same && ok && string(b) == contents
	}
	if !same {
		t.Errorf("files %q\nwant %q", got.Files, want)
	}
}

func sameStrings(got, want []string) bool {
	return len(got) == 0 && len(want) == 0 || reflect.DeepEqual(got, want)
}

// CommandCase is one valid spec and the launch an adapter must build for it.
type CommandCase struct {
	Name string
	// Edit changes the base spec into this case's.
	Edit  func(*engine.Spec)
	Path  string
	Args  []string
	Env   []string
	Files map[string]string
}

// RunCommandCases runs each case as a subtest: it applies Edit to a fresh
// base spec, builds the command and checks the launch with CheckLaunch and
// CheckFiles.
func RunCommandCases(t *testing.T, a engine.Adapter, base func() engine.Spec, cases []CommandCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			s := base()
			tc.Edit(&s)
			got, err := a.Command(s)
			if err != nil {
				t.Fatal(err)
			}
			CheckLaunch(t, got, tc.Path, tc.Args, tc.Env)
			CheckFiles(t, got, tc.Files)
		})
	}
}

// RunInvalidSpecs runs each edit of a fresh base spec as a subtest and
// checks that Command refuses it with an error wrapping
// engine.ErrInvalidSpec.
func RunInvalidSpecs(t *testing.T, a engine.Adapter, base func() engine.Spec, edits map[string]func(*engine.Spec)) {
	t.Helper()
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			s := base()
			edit(&s)
			if _, err := a.Command(s); !errors.Is(err, engine.ErrInvalidSpec) {
				t.Fatalf("error %v, want ErrInvalidSpec", err)
			}
		})
	}
}

// CheckPaths checks an adapter's kind and that it serves health and
// metrics at /health and /metrics.
func CheckPaths(t testing.TB, a engine.Adapter, kind string) {
	t.Helper()
	if a.Kind() != kind || a.HealthPath() != "/health" || a.MetricsPath() != "/metrics" {
		t.Fatalf("kind/paths %q %q %q, want %q /health /metrics", a.Kind(), a.HealthPath(), a.MetricsPath(), kind)
	}
}

// CheckCanary checks that the canary for s is wantBody POSTed to
// CanaryPath.
func CheckCanary(t testing.TB, a engine.Adapter, s engine.Spec, wantBody string) {
	t.Helper()
	if c := a.Canary(s); c.Path != CanaryPath || string(c.Body) != wantBody {
		t.Fatalf("canary %s %s, want %s %s", c.Path, c.Body, CanaryPath, wantBody)
	}
}

// LoadCase is a metrics body in the package's testdata directory and the
// load an adapter must read from it.
type LoadCase struct {
	File string
	Want engine.Load
}

// RunParseLoadFiles runs each case as a subtest: it parses
// testdata/<File> and compares the load with Want, KVUsage within 1e-9.
func RunParseLoadFiles(t *testing.T, a engine.Adapter, cases []LoadCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.File, func(t *testing.T) {
			got, err := a.ParseLoad(readTestdata(t, tc.File))
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got.KVUsage-tc.Want.KVUsage) > kvTolerance {
				t.Errorf("KV usage %v, want %v", got.KVUsage, tc.Want.KVUsage)
			}
			got.KVUsage = tc.Want.KVUsage
			if got != tc.Want {
				t.Errorf("got %+v, want %+v", got, tc.Want)
			}
		})
	}
}

// RunParseLoadGarbage runs each named body as a subtest and checks that
// ParseLoad returns an error for it, without panicking.
func RunParseLoadGarbage(t *testing.T, a engine.Adapter, bodies map[string]string) {
	t.Helper()
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			if l, err := a.ParseLoad([]byte(body)); err == nil {
				t.Fatalf("no error, load %+v", l)
			}
		})
	}
}

// FuzzParseLoad seeds f with the named files of the package's testdata
// directory and fuzzes ParseLoad: whatever the body, it must not panic, and
// a load it reads has a KV usage in [0, 1].
func FuzzParseLoad(f *testing.F, a engine.Adapter, seeds ...string) {
	f.Helper()
	for _, name := range seeds {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := a.ParseLoad(body)
		if err == nil && !(l.KVUsage >= 0 && l.KVUsage <= 1) {
			t.Fatalf("KV usage %v out of [0,1]", l.KVUsage)
		}
	})
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
