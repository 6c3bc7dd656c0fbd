package sglang

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/strata-llm/strata/agent/engine"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

const kvEvents = `{"publisher":"zmq","endpoint":"tcp://*:21001","replay_endpoint":"tcp://*:21002","topic":""}`

func baseSpec() engine.Spec {
	return engine.Spec{
		WorkerID:           "qwen-both-0",
		Deployment:         "qwen",
		Model:              "Qwen/Qwen3-8B",
		Role:               stratav1.WorkerRole_WORKER_ROLE_BOTH,
		GPUs:               []string{"GPU-1", "GPU-2"},
		TensorParallelSize: 2,
		Host:               "0.0.0.0",
		AdvertiseHost:      "10.0.0.8",
		Port:               21000,
		BlockSize:          16,
	}
}

func TestCommand(t *testing.T) {
	common := []string{
		"-m", "sglang.launch_server",
		"--model-path", "Qwen/Qwen3-8B",
		"--host", "0.0.0.0", "--port", "21000",
		"--served-model-name", "qwen",
		"--tp-size", "2",
		"--page-size", "16",
	}
	tail := []string{"--enable-metrics", "--kv-events-config", kvEvents}
	join := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name     string
		edit     func(*engine.Spec)
		wantPath string
		wantArgs []string
		wantEnv  []string
	}{
		{
			name:     "aggregated, TP 2, UUIDs",
			edit:     func(*engine.Spec) {},
			wantPath: "python3",
			wantArgs: join(common, tail),
			wantEnv:  []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1"},
		},
		{
			name: "indices, tokenizer, interpreter, extra args last",
			edit: func(s *engine.Spec) {
				s.GPUIndices = []int{0, 1}
				s.Tokenizer = "/models/qwen-tok"
				s.Executable = "/opt/sglang/bin/python"
				s.ExtraArgs = []string{"--mem-fraction-static", "0.8", "--page-size", "64"}
			},
			wantPath: "/opt/sglang/bin/python",
			wantArgs: join(common, []string{"--tokenizer-path", "/models/qwen-tok"}, tail,
				[]string{"--mem-fraction-static", "0.8", "--page-size", "64"}),
			wantEnv: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1", "PYTHONUNBUFFERED=1"},
		},
		{
			name:     "prefill",
			edit:     func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL },
			wantPath: "python3",
			wantArgs: join(common, tail, []string{"--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port", "21003"}),
			wantEnv:  []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1", "SGLANG_HOST_IP=10.0.0.8"},
		},
		{
			name:     "decode",
			edit:     func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE },
			wantPath: "python3",
			wantArgs: join(common, tail, []string{"--disaggregation-mode", "decode", "--disaggregation-bootstrap-port", "21003"}),
			wantEnv:  []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1", "SGLANG_HOST_IP=10.0.0.8"},
		},
		{
			name:     "engine default page size",
			edit:     func(s *engine.Spec) { s.BlockSize = 0 },
			wantPath: "python3",
			wantArgs: join(common[:len(common)-2], tail),
			wantEnv:  []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1"},
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
		"GPUs != TP":       func(s *engine.Spec) { s.TensorParallelSize = 4 },
		"empty model":      func(s *engine.Spec) { s.Model = "" },
		"port too high":    func(s *engine.Spec) { s.Port = 65533 },
		"port zero":        func(s *engine.Spec) { s.Port = 0 },
		"P/D, no address":  func(s *engine.Spec) { s.Role, s.AdvertiseHost = stratav1.WorkerRole_WORKER_ROLE_DECODE, "" },
		"indices mismatch": func(s *engine.Spec) { s.GPUIndices = []int{0} },
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
	want := engine.KVEventSource{Format: engine.KVFormatSGLang, Endpoint: "tcp://127.0.0.1:21001", ReplayEndpoint: "tcp://127.0.0.1:21002"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if a.Kind() != "sglang" || a.HealthPath() != "/health" || a.MetricsPath() != "/metrics" {
		t.Fatalf("kind/paths %q %q %q", a.Kind(), a.HealthPath(), a.MetricsPath())
	}
}

func TestCanary(t *testing.T) {
	for _, tt := range []struct {
		role stratav1.WorkerRole
		want string
	}{
		{stratav1.WorkerRole_WORKER_ROLE_BOTH, `{"max_tokens":1,"model":"qwen","prompt":"ping"}`},
		{stratav1.WorkerRole_WORKER_ROLE_PREFILL,
			`{"bootstrap_host":"2.2.2.2","bootstrap_port":21003,"bootstrap_room":0,"max_tokens":1,"model":"qwen","prompt":"ping"}`},
		{stratav1.WorkerRole_WORKER_ROLE_DECODE,
			`{"bootstrap_host":"2.2.2.2","bootstrap_port":21003,"bootstrap_room":0,"max_tokens":1,"model":"qwen","prompt":"ping"}`},
	} {
		s := baseSpec()
		s.Role = tt.role
		c := New().Canary(s)
		if c.Path != "/v1/completions" || string(c.Body) != tt.want {
			t.Errorf("%s: %s %s, want %s", tt.role, c.Path, c.Body, tt.want)
		}
	}
}

func TestParseLoad(t *testing.T) {
	for _, tt := range []struct {
		file string
		want engine.Load
	}{
		{"metrics.txt", engine.Load{
			Running: 48, Waiting: 8, KVUsage: 0.68, Preemptions: 5,
			PrefixQueries: 2097152, PrefixHits: 1248576,
		}},
		{"metrics_old.txt", engine.Load{Running: 7, KVUsage: 0.2}},
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
			if math.Abs(got.KVUsage-tt.want.KVUsage) > 1e-9 {
				t.Errorf("KV usage %v, want %v", got.KVUsage, tt.want.KVUsage)
			}
			got.KVUsage = tt.want.KVUsage
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseLoadGarbage(t *testing.T) {
	for name, body := range map[string]string{
		"empty":       "",
		"vllm":        "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\n",
		"no queue":    "sglang:num_running_reqs 1\n",
		"truncated":   "sglang:num_running_reqs{model_name=\"Qwen",
		"json":        `[{"numActiveRequests":1}]`,
		"bad comment": "# TYPE sglang:num_running_reqs nonsense\n",
	} {
		t.Run(name, func(t *testing.T) {
			if l, err := New().ParseLoad([]byte(body)); err == nil {
				t.Fatalf("no error, load %+v", l)
			}
		})
	}
}

func FuzzParseLoad(f *testing.F) {
	for _, name := range []string{"metrics.txt", "metrics_old.txt"} {
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
