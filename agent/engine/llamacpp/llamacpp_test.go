package llamacpp

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/strata-llm/strata/agent/engine"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

func baseSpec() engine.Spec {
	return engine.Spec{
		WorkerID:           "gemma-both-0",
		Deployment:         "gemma",
		Model:              "/models/gemma-3-4b-it-Q4_K_M.gguf",
		Role:               stratav1.WorkerRole_WORKER_ROLE_BOTH,
		GPUs:               []string{"GPU-1"},
		TensorParallelSize: 1,
		Port:               23000,
		BlockSize:          16,
		Tokenizer:          "ignored",
	}
}

func TestCommand(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*engine.Spec)
		wantPath string
		wantArgs []string
		wantEnv  []string
	}{
		{
			name:     "one GPU, default host",
			edit:     func(*engine.Spec) {},
			wantPath: "llama-server",
			wantArgs: []string{
				"-m", "/models/gemma-3-4b-it-Q4_K_M.gguf",
				"--host", "0.0.0.0", "--port", "23000",
				"--metrics", "--alias", "gemma", "-ngl", "999",
			},
			wantEnv: []string{"CUDA_VISIBLE_DEVICES=GPU-1"},
		},
		{
			name: "layer split over 2 GPUs, extra args last",
			edit: func(s *engine.Spec) {
				s.GPUs, s.GPUIndices, s.TensorParallelSize = []string{"GPU-1", "GPU-2"}, []int{0, 1}, 2
				s.ServedModelName = "gemma-3"
				s.Executable = "/opt/llama.cpp/build/bin/llama-server"
				s.ExtraArgs = []string{"-c", "16384", "--parallel", "8", "-ngl", "20"}
			},
			wantPath: "/opt/llama.cpp/build/bin/llama-server",
			wantArgs: []string{
				"-m", "/models/gemma-3-4b-it-Q4_K_M.gguf",
				"--host", "0.0.0.0", "--port", "23000",
				"--metrics", "--alias", "gemma-3", "-ngl", "999",
				"-c", "16384", "--parallel", "8", "-ngl", "20",
			},
			wantEnv: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1"},
		},
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
			if !reflect.DeepEqual(got.Env, tt.wantEnv) {
				t.Errorf("env\n got %q\nwant %q", got.Env, tt.wantEnv)
			}
		})
	}
}

func TestCommandInvalid(t *testing.T) {
	for name, edit := range map[string]func(*engine.Spec){
		"GPUs != TP":    func(s *engine.Spec) { s.TensorParallelSize = 2 },
		"no GPU":        func(s *engine.Spec) { s.GPUs = nil },
		"empty model":   func(s *engine.Spec) { s.Model = "" },
		"port too high": func(s *engine.Spec) { s.Port = 65530 },
		"prefill role": func(s *engine.Spec) {
			s.Role, s.AdvertiseHost = stratav1.WorkerRole_WORKER_ROLE_PREFILL, "10.0.0.1"
		},
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

func TestNoKVEvents(t *testing.T) {
	a := New()
	if got := a.KVEvents(baseSpec()); got != (engine.KVEventSource{Format: engine.KVFormatNone}) {
		t.Fatalf("got %+v", got)
	}
	if a.Kind() != "llamacpp" || a.HealthPath() != "/health" || a.MetricsPath() != "/metrics" {
		t.Fatal("kind/paths")
	}
	c := a.Canary(baseSpec())
	if c.Path != "/v1/completions" || string(c.Body) != `{"max_tokens":1,"model":"gemma","prompt":"ping"}` {
		t.Fatalf("canary %s %s", c.Path, c.Body)
	}
}

func TestParseLoad(t *testing.T) {
	for _, tt := range []struct {
		file string
		want engine.Load
	}{
		{"metrics.txt", engine.Load{Running: 3, Waiting: 5}},
		{"metrics_kv_ratio.txt", engine.Load{Running: 1, KVUsage: 0.4375}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := New().ParseLoad(body)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseLoadGarbage(t *testing.T) {
	for name, body := range map[string]string{
		"empty":          "",
		"metrics off":    "Error: This server does not support metrics endpoint. Start it with `--metrics`",
		"json error":     `{"error":{"code":501,"message":"This server does not support metrics endpoint.","type":"not_supported_error"}}`,
		"no processing":  "llamacpp:requests_deferred 1\n",
		"label syntax":   "llamacpp:requests_processing{a=} 1\n",
		"control chars":  "\x01\x02\x03",
		"value overflow": "llamacpp:requests_processing 1e999999\n",
	} {
		t.Run(name, func(t *testing.T) {
			if l, err := New().ParseLoad([]byte(body)); err == nil {
				t.Fatalf("no error, load %+v", l)
			}
		})
	}
}

func FuzzParseLoad(f *testing.F) {
	for _, name := range []string{"metrics.txt", "metrics_kv_ratio.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	a := New()
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := a.ParseLoad(body)
		if err == nil && !(l.KVUsage >= 0 && l.KVUsage <= 1) {
			t.Fatalf("KV usage %v out of [0,1]", l.KVUsage)
		}
	})
}
