package sim

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/strata-llm/strata/agent/engine"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

const kvEvents = `{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:24001","replay_endpoint":"tcp://*:24002","topic":""}`

func baseSpec() engine.Spec {
	return engine.Spec{
		WorkerID:           "sim-both-0",
		Deployment:         "sim",
		Model:              "strata-sim",
		ServedModelName:    "llama",
		Role:               stratav1.WorkerRole_WORKER_ROLE_BOTH,
		TensorParallelSize: 1,
		Host:               "0.0.0.0",
		AdvertiseHost:      "10.0.0.3",
		Port:               24000,
		BlockSize:          16,
	}
}

func TestCommand(t *testing.T) {
	head := []string{
		"sim", "--host", "0.0.0.0", "--port", "24000",
		"--model", "strata-sim", "--served-model-name", "llama",
		"--block-size", "16", "--kv-events-config", kvEvents,
	}
	with := func(tail ...string) []string { return append(append([]string(nil), head...), tail...) }
	nixl := `{"kv_connector":"NixlConnector","kv_role":"kv_both"}`
	tests := []struct {
		name     string
		edit     func(*engine.Spec)
		wantPath string
		wantArgs []string
	}{
		{"aggregated", func(*engine.Spec) {}, "strata", with("--role", "both")},
		{"unspecified role", func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_UNSPECIFIED }, "strata",
			with("--role", "both")},
		{"prefill", func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL }, "strata",
			with("--role", "prefill", "--kv-transfer-config", nixl)},
		{"decode", func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE }, "strata",
			with("--role", "decode", "--kv-transfer-config", nixl)},
		{"fake GPUs, TP 2, binary path, extra args last", func(s *engine.Spec) {
			s.GPUs, s.TensorParallelSize = []string{"GPU-fake-0", "GPU-fake-1"}, 2
			s.Tokenizer = "ignored"
			s.Executable = "/usr/local/bin/strata"
			s.ExtraArgs = []string{"--speedup", "10", "--block-size", "32"}
		}, "/usr/local/bin/strata", with("--role", "both", "--speedup", "10", "--block-size", "32")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.edit(&s)
			got, err := New().Command(s)
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != tt.wantPath {
				t.Errorf("path %q, want %q", got.Path, tt.wantPath)
			}
			if !reflect.DeepEqual(got.Args, tt.wantArgs) {
				t.Errorf("args\n got %q\nwant %q", got.Args, tt.wantArgs)
			}
			if len(got.Env) != 0 || len(got.Files) != 0 {
				t.Errorf("env %q files %v, want none", got.Env, got.Files)
			}
		})
	}
}

func TestCommandInvalid(t *testing.T) {
	for name, edit := range map[string]func(*engine.Spec){
		"GPUs != TP":        func(s *engine.Spec) { s.GPUs = []string{"GPU-0", "GPU-1"} },
		"zero TP":           func(s *engine.Spec) { s.TensorParallelSize = 0 },
		"empty model":       func(s *engine.Spec) { s.Model = "" },
		"port out of range": func(s *engine.Spec) { s.Port = 65527 },
		"negative port":     func(s *engine.Spec) { s.Port = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			s := baseSpec()
			edit(&s)
			if _, err := New().Command(s); !errors.Is(err, engine.ErrInvalidSpec) {
				t.Fatalf("error %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func TestKVEventsAndPaths(t *testing.T) {
	a := New()
	got := a.KVEvents(baseSpec())
	want := engine.KVEventSource{Format: engine.KVFormatVLLM, Endpoint: "tcp://127.0.0.1:24001", ReplayEndpoint: "tcp://127.0.0.1:24002"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if a.Kind() != "sim" || a.HealthPath() != "/health" || a.MetricsPath() != "/metrics" {
		t.Fatal("kind/paths")
	}
	c := a.Canary(baseSpec())
	if c.Path != "/v1/completions" || string(c.Body) != `{"max_tokens":1,"model":"llama","prompt":"ping"}` {
		t.Fatalf("canary %s %s", c.Path, c.Body)
	}
}

// testdata/metrics.txt is a capture of `strata sim` /metrics after three
// completions of a 95-token prompt.
func TestParseLoad(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := New().ParseLoad(body)
	if err != nil {
		t.Fatal(err)
	}
	want := engine.Load{PrefixQueries: 285, PrefixHits: 160}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := New().ParseLoad([]byte("not metrics")); err == nil {
		t.Fatal("garbage parsed")
	}
}

func FuzzParseLoad(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	a := New()
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := a.ParseLoad(body)
		if err == nil && !(l.KVUsage >= 0 && l.KVUsage <= 1) {
			t.Fatalf("KV usage %v out of [0,1]", l.KVUsage)
		}
	})
}
