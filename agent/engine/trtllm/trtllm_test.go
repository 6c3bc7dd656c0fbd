package trtllm

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

func baseSpec() engine.Spec {
	return engine.Spec{
		WorkerID:           "ds-both-0",
		Deployment:         "ds",
		Model:              "/models/DeepSeek-R1-Distill-Llama-8B",
		Role:               stratav1.WorkerRole_WORKER_ROLE_BOTH,
		GPUs:               []string{"GPU-1"},
		GPUIndices:         []int{5},
		TensorParallelSize: 1,
		Host:               "0.0.0.0",
		AdvertiseHost:      "10.0.0.9",
		Port:               22000,
		BlockSize:          32,
		WorkDir:            "/var/lib/strata/workers/ds-both-0",
	}
}

const optionsPath = "/var/lib/strata/workers/ds-both-0/trtllm-llm-api-options.yaml"

func TestCommand(t *testing.T) {
	header := "# Written by the Strata agent for worker ds-both-0; regenerated on every start.\n" +
		"enable_iter_perf_stats: true\n" +
		"kv_cache_config:\n" +
		"  enable_block_reuse: true\n" +
		"  event_buffer_max_size: 65536\n"
	tests := []struct {
		name        string
		edit        func(*engine.Spec)
		wantArgs    []string
		wantEnv     []string
		wantOptions string
	}{
		{
			name: "aggregated",
			edit: func(*engine.Spec) {},
			wantArgs: []string{
				"/models/DeepSeek-R1-Distill-Llama-8B",
				"--host", "0.0.0.0", "--port", "22000", "--tp_size", "1",
				"--extra_llm_api_options", optionsPath,
			},
			wantEnv:     []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=5", "PYTHONUNBUFFERED=1"},
			wantOptions: header + "  tokens_per_block: 32\n",
		},
		{
			name: "TP 2, tokenizer, default block size, extra args last",
			edit: func(s *engine.Spec) {
				s.GPUs, s.GPUIndices, s.TensorParallelSize = []string{"GPU-1", "GPU-2"}, nil, 2
				s.Tokenizer = "/models/tok"
				s.BlockSize = 0
				s.ExtraArgs = []string{"--backend", "pytorch", "--max_batch_size", "64"}
			},
			wantArgs: []string{
				"/models/DeepSeek-R1-Distill-Llama-8B",
				"--host", "0.0.0.0", "--port", "22000", "--tp_size", "2",
				"--tokenizer", "/models/tok",
				"--extra_llm_api_options", optionsPath,
				"--backend", "pytorch", "--max_batch_size", "64",
			},
			wantEnv:     []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1"},
			wantOptions: header,
		},
		{
			name: "prefill (context server)",
			edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL },
			wantArgs: []string{
				"/models/DeepSeek-R1-Distill-Llama-8B",
				"--host", "0.0.0.0", "--port", "22000", "--tp_size", "1",
				"--extra_llm_api_options", optionsPath,
			},
			wantEnv: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=5", "PYTHONUNBUFFERED=1"},
			wantOptions: header + "  tokens_per_block: 32\n" +
				"cache_transceiver_config:\n  backend: DEFAULT\ndisable_overlap_scheduler: true\n",
		},
		{
			name: "decode (generation server)",
			edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE },
			wantArgs: []string{
				"/models/DeepSeek-R1-Distill-Llama-8B",
				"--host", "0.0.0.0", "--port", "22000", "--tp_size", "1",
				"--extra_llm_api_options", optionsPath,
			},
			wantEnv:     []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=5", "PYTHONUNBUFFERED=1"},
			wantOptions: header + "  tokens_per_block: 32\n" + "cache_transceiver_config:\n  backend: DEFAULT\n",
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
			if got.Path != "trtllm-serve" {
				t.Errorf("path %q", got.Path)
			}
			if !reflect.DeepEqual(got.Args, tt.wantArgs) {
				t.Errorf("args\n got %q\nwant %q", got.Args, tt.wantArgs)
			}
			if !reflect.DeepEqual(got.Env, tt.wantEnv) {
				t.Errorf("env\n got %q\nwant %q", got.Env, tt.wantEnv)
			}
			if len(got.Files) != 1 || string(got.Files[OptionsFile]) != tt.wantOptions {
				t.Errorf("files %q\nwant %s: %q", got.Files, OptionsFile, tt.wantOptions)
			}
		})
	}
}

func TestCommandInvalid(t *testing.T) {
	for name, edit := range map[string]func(*engine.Spec){
		"GPUs != TP":        func(s *engine.Spec) { s.TensorParallelSize = 2 },
		"empty model":       func(s *engine.Spec) { s.Model = "" },
		"port out of range": func(s *engine.Spec) { s.Port = 70000 },
		"no work dir":       func(s *engine.Spec) { s.WorkDir = "" },
		"relative work dir": func(s *engine.Spec) { s.WorkDir = "ds" },
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

func TestOptionsCommentIsOneLine(t *testing.T) {
	s := baseSpec()
	s.WorkerID = "evil\nenable_block_reuse: false"
	got := string(Options(s))
	want := "# Written by the Strata agent for worker evil enable_block_reuse: false; regenerated on every start.\n"
	if got[:len(want)] != want {
		t.Fatalf("got %q", got)
	}
}

func TestKVEventsAndPaths(t *testing.T) {
	a := New()
	got := a.KVEvents(baseSpec())
	want := engine.KVEventSource{Format: engine.KVFormatTRTLLM, PollURL: "http://127.0.0.1:22000/kv_cache_events"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if a.Kind() != "trtllm" || a.HealthPath() != "/health" || a.MetricsPath() != "/metrics" {
		t.Fatal("kind/paths")
	}
	c := a.Canary(baseSpec())
	if c.Path != "/v1/completions" || string(c.Body) != `{"max_tokens":1,"model":"ds","prompt":"ping"}` {
		t.Fatalf("canary %s %s", c.Path, c.Body)
	}
}

func TestParseLoad(t *testing.T) {
	for _, tt := range []struct {
		file string
		want engine.Load
	}{
		{"metrics.json", engine.Load{
			Running: 17, Waiting: 1, KVUsage: 4800.0 / 8192,
			PrefixHits: 5720 * 32, PrefixQueries: (5720 + 9110) * 32,
		}},
		{"metrics_free_only.json", engine.Load{Running: 2, KVUsage: 0.25}},
		{"metrics_idle.json", engine.Load{}},
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
		"empty":        "",
		"prometheus":   "vllm:num_requests_running 1\n",
		"not stats":    `[{"foo": 1}]`,
		"wrong type":   `[{"numActiveRequests": "many"}]`,
		"truncated":    `[{"numActiveRequests": 1`,
		"number":       `42`,
		"null in list": `[null]`,
		"huge number":  `[{"numActiveRequests": 1e999}]`,
	} {
		t.Run(name, func(t *testing.T) {
			if l, err := New().ParseLoad([]byte(body)); err == nil {
				t.Fatalf("no error, load %+v", l)
			}
		})
	}
}

func FuzzParseLoad(f *testing.F) {
	for _, name := range []string{"metrics.json", "metrics_free_only.json", "metrics_idle.json"} {
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
