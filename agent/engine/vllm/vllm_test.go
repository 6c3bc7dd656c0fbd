package vllm

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

const (
	kvEvents20000 = `{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:20001","replay_endpoint":"tcp://*:20002","topic":""}`
	nixl          = `{"kv_connector":"NixlConnector","kv_role":"kv_both"}`
)

func baseSpec() engine.Spec {
	return engine.Spec{
		WorkerID:           "llama-both-0",
		Deployment:         "llama",
		Model:              "meta-llama/Llama-3.1-8B-Instruct",
		Role:               stratav1.WorkerRole_WORKER_ROLE_BOTH,
		GPUs:               []string{"GPU-8f3c0000-0000-0000-0000-000000000001"},
		GPUIndices:         []int{2},
		TensorParallelSize: 1,
		Host:               "0.0.0.0",
		AdvertiseHost:      "10.0.0.7",
		Port:               20000,
		BlockSize:          16,
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
			name:     "aggregated",
			edit:     func(*engine.Spec) {},
			wantPath: "vllm",
			wantArgs: []string{
				"serve", "meta-llama/Llama-3.1-8B-Instruct",
				"--host", "0.0.0.0", "--port", "20000",
				"--served-model-name", "llama",
				"--tensor-parallel-size", "1",
				"--block-size", "16",
				"--kv-events-config", kvEvents20000,
			},
			wantEnv: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=2", "PYTHONUNBUFFERED=1"},
		},
		{
			name: "tensor parallel, tokenizer, served name, extra args last",
			edit: func(s *engine.Spec) {
				s.GPUs = []string{"GPU-a", "GPU-b", "GPU-c", "GPU-d"}
				s.GPUIndices = []int{4, 5, 6, 7}
				s.TensorParallelSize = 4
				s.ServedModelName = "llama-8b"
				s.Tokenizer = "/models/tok"
				s.BlockSize = 0
				s.Port = 20010
				s.Executable = "/opt/vllm/bin/vllm"
				s.ExtraArgs = []string{"--max-model-len", "8192", "--port", "1"}
			},
			wantPath: "/opt/vllm/bin/vllm",
			wantArgs: []string{
				"serve", "meta-llama/Llama-3.1-8B-Instruct",
				"--host", "0.0.0.0", "--port", "20010",
				"--served-model-name", "llama-8b",
				"--tensor-parallel-size", "4",
				"--tokenizer", "/models/tok",
				"--kv-events-config", `{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:20011","replay_endpoint":"tcp://*:20012","topic":""}`,
				"--max-model-len", "8192", "--port", "1",
			},
			wantEnv: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=4,5,6,7", "PYTHONUNBUFFERED=1"},
		},
		{
			name:     "prefill",
			edit:     func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL },
			wantPath: "vllm",
			wantArgs: []string{
				"serve", "meta-llama/Llama-3.1-8B-Instruct",
				"--host", "0.0.0.0", "--port", "20000",
				"--served-model-name", "llama",
				"--tensor-parallel-size", "1",
				"--block-size", "16",
				"--kv-events-config", kvEvents20000,
				"--kv-transfer-config", nixl,
			},
			wantEnv: []string{
				"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=2", "PYTHONUNBUFFERED=1",
				"VLLM_NIXL_SIDE_CHANNEL_HOST=10.0.0.7", "VLLM_NIXL_SIDE_CHANNEL_PORT=20003",
			},
		},
		{
			name: "decode bound to one address, no advertise host",
			edit: func(s *engine.Spec) {
				s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE
				s.Host = "10.0.0.9"
				s.AdvertiseHost = ""
			},
			wantPath: "vllm",
			wantArgs: []string{
				"serve", "meta-llama/Llama-3.1-8B-Instruct",
				"--host", "10.0.0.9", "--port", "20000",
				"--served-model-name", "llama",
				"--tensor-parallel-size", "1",
				"--block-size", "16",
				"--kv-events-config", kvEvents20000,
				"--kv-transfer-config", nixl,
			},
			wantEnv: []string{
				"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=2", "PYTHONUNBUFFERED=1",
				"VLLM_NIXL_SIDE_CHANNEL_HOST=10.0.0.9", "VLLM_NIXL_SIDE_CHANNEL_PORT=20003",
			},
		},
		{
			name: "unspecified role is aggregated, empty host binds all",
			edit: func(s *engine.Spec) {
				s.Role = stratav1.WorkerRole_WORKER_ROLE_UNSPECIFIED
				s.Host = ""
			},
			wantPath: "vllm",
			wantArgs: []string{
				"serve", "meta-llama/Llama-3.1-8B-Instruct",
				"--host", "0.0.0.0", "--port", "20000",
				"--served-model-name", "llama",
				"--tensor-parallel-size", "1",
				"--block-size", "16",
				"--kv-events-config", kvEvents20000,
			},
			wantEnv: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=2", "PYTHONUNBUFFERED=1"},
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
			if len(got.Files) != 0 {
				t.Errorf("files %v, want none", got.Files)
			}
		})
	}
}

func TestCommandInvalid(t *testing.T) {
	tests := []struct {
		name string
		edit func(*engine.Spec)
	}{
		{"fewer GPUs than TP", func(s *engine.Spec) { s.TensorParallelSize = 2 }},
		{"more GPUs than TP", func(s *engine.Spec) { s.GPUs = append(s.GPUs, "GPU-x"); s.GPUIndices = append(s.GPUIndices, 3) }},
		{"no GPUs", func(s *engine.Spec) { s.GPUs, s.GPUIndices = nil, nil }},
		{"zero TP", func(s *engine.Spec) { s.TensorParallelSize = 0; s.GPUs, s.GPUIndices = nil, nil }},
		{"empty model", func(s *engine.Spec) { s.Model = " " }},
		{"port zero", func(s *engine.Spec) { s.Port = 0 }},
		{"negative port", func(s *engine.Spec) { s.Port = -5 }},
		{"ports spill past 65535", func(s *engine.Spec) { s.Port = 65530 }},
		{"unknown role", func(s *engine.Spec) { s.Role = stratav1.WorkerRole(9) }},
		{"negative block size", func(s *engine.Spec) { s.BlockSize = -16 }},
		{"UUIDs without indices", func(s *engine.Spec) { s.GPUIndices = nil }},
		{"index count mismatch", func(s *engine.Spec) { s.GPUIndices = []int{1, 2} }},
		{"negative index", func(s *engine.Spec) { s.GPUIndices = []int{-1} }},
		{"UUID with comma", func(s *engine.Spec) { s.GPUs = []string{"GPU-a,GPU-b"} }},
		{"duplicate GPU", func(s *engine.Spec) {
			s.GPUs, s.GPUIndices, s.TensorParallelSize = []string{"GPU-a", "GPU-a"}, []int{0, 1}, 2
		}},
		{"P/D without reachable address", func(s *engine.Spec) {
			s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL
			s.AdvertiseHost = "0.0.0.0"
		}},
		{"relative work dir", func(s *engine.Spec) { s.WorkDir = "workers/x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.edit(&s)
			_, err := New().Command(s)
			if !errors.Is(err, engine.ErrInvalidSpec) {
				t.Fatalf("error %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func TestHighestValidPort(t *testing.T) {
	s := baseSpec()
	s.Port = 65535 - engine.PortsPerWorker + 1
	if _, err := New().Command(s); err != nil {
		t.Fatalf("port %d: %v", s.Port, err)
	}
}

func TestKVEvents(t *testing.T) {
	got := New().KVEvents(baseSpec())
	want := engine.KVEventSource{
		Format:         engine.KVFormatVLLM,
		Endpoint:       "tcp://127.0.0.1:20001",
		ReplayEndpoint: "tcp://127.0.0.1:20002",
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestCanary(t *testing.T) {
	a := New()
	if a.HealthPath() != "/health" || a.MetricsPath() != "/metrics" {
		t.Fatalf("paths %q %q", a.HealthPath(), a.MetricsPath())
	}
	c := a.Canary(baseSpec())
	if c.Path != "/v1/completions" || string(c.Body) != `{"max_tokens":1,"model":"llama","prompt":"ping"}` {
		t.Fatalf("canary %s %s", c.Path, c.Body)
	}
}

func TestParseLoad(t *testing.T) {
	tests := []struct {
		file string
		want engine.Load
	}{
		{"metrics.txt", engine.Load{
			Running: 21, Waiting: 3, KVUsage: 0.5, Preemptions: 7,
			PrefixQueries: 1572864, PrefixHits: 1048576,
		}},
		{"metrics_v0_9.txt", engine.Load{
			Running: 4, Waiting: 1, KVUsage: 0.25, PrefixQueries: 4096, PrefixHits: 1024,
		}},
	}
	for _, tt := range tests {
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
		"empty":          "",
		"html":           "<html><body>502 Bad Gateway</body></html>",
		"json":           `{"error":"not found"}`,
		"other engine":   "# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs 1\n",
		"no waiting":     "vllm:num_requests_running 1\n",
		"bad value":      "vllm:num_requests_running one\n",
		"duplicate TYPE": "# TYPE vllm:num_requests_running gauge\n# TYPE vllm:num_requests_running counter\n",
		"binary":         "\x00\xff\xfe{{{",
	} {
		t.Run(name, func(t *testing.T) {
			if l, err := New().ParseLoad([]byte(body)); err == nil {
				t.Fatalf("no error, load %+v", l)
			}
		})
	}
}

func TestParseLoadClamps(t *testing.T) {
	body := "vllm:num_requests_running -3\nvllm:num_requests_waiting 1e20\n" +
		"vllm:kv_cache_usage_perc 7\nvllm:num_preemptions_total NaN\nvllm:prefix_cache_hits_total +Inf\n"
	got, err := New().ParseLoad([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := engine.Load{Running: 0, Waiting: math.MaxUint32, KVUsage: 1}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func FuzzParseLoad(f *testing.F) {
	for _, name := range []string{"metrics.txt", "metrics_v0_9.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	a := New()
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := a.ParseLoad(body)
		if err != nil {
			return
		}
		if !(l.KVUsage >= 0 && l.KVUsage <= 1) {
			t.Fatalf("KV usage %v out of [0,1]", l.KVUsage)
		}
	})
}
