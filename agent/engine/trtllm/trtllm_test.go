package trtllm

import (
	"testing"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/engine/enginetest"
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
	options := func(yaml string) map[string]string { return map[string]string{OptionsFile: yaml} }
	// args and env are the base spec's (any role).
	args := []string{
		"/models/DeepSeek-R1-Distill-Llama-8B",
		"--host", "0.0.0.0", "--port", "22000", "--tp_size", "1",
		"--extra_llm_api_options", optionsPath,
	}
	env := []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=5", "PYTHONUNBUFFERED=1"}
	enginetest.RunCommandCases(t, New(), baseSpec, []enginetest.CommandCase{
		{
			Name:  "aggregated",
			Edit:  func(*engine.Spec) {},
			Path:  "trtllm-serve",
			Args:  args,
			Env:   env,
			Files: options(header + "  tokens_per_block: 32\n"),
		},
		{
			Name: "TP 2, tokenizer, default block size, extra args last",
			Edit: func(s *engine.Spec) {
				s.GPUs, s.GPUIndices, s.TensorParallelSize = []string{"GPU-1", "GPU-2"}, nil, 2
				s.Tokenizer = "/models/tok"
				s.BlockSize = 0
				s.ExtraArgs = []string{"--backend", "pytorch", "--max_batch_size", "64"}
			},
			Path: "trtllm-serve",
			Args: []string{
				"/models/DeepSeek-R1-Distill-Llama-8B",
				"--host", "0.0.0.0", "--port", "22000", "--tp_size", "2",
				"--tokenizer", "/models/tok",
				"--extra_llm_api_options", optionsPath,
				"--backend", "pytorch", "--max_batch_size", "64",
			},
			Env:   []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1"},
			Files: options(header),
		},
		{
			Name: "prefill (context server)",
			Edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL },
			Path: "trtllm-serve",
			Args: args,
			Env:  env,
			Files: options(header + "  tokens_per_block: 32\n" +
				"cache_transceiver_config:\n  backend: DEFAULT\ndisable_overlap_scheduler: true\n"),
		},
		{
			Name:  "decode (generation server)",
			Edit:  func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE },
			Path:  "trtllm-serve",
			Args:  args,
			Env:   env,
			Files: options(header + "  tokens_per_block: 32\n" + "cache_transceiver_config:\n  backend: DEFAULT\n"),
		},
	})
}

func TestCommandInvalid(t *testing.T) {
	enginetest.RunInvalidSpecs(t, New(), baseSpec, map[string]func(*engine.Spec){
		"GPUs != TP":        func(s *engine.Spec) { s.TensorParallelSize = 2 },
		"empty model":       func(s *engine.Spec) { s.Model = "" },
		"port out of range": func(s *engine.Spec) { s.Port = 70000 },
		"no work dir":       func(s *engine.Spec) { s.WorkDir = "" },
		"relative work dir": func(s *engine.Spec) { s.WorkDir = "ds" },
	})
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
	enginetest.CheckPaths(t, a, "trtllm")
	enginetest.CheckCanary(t, a, baseSpec(), `{"max_tokens":1,"model":"ds","prompt":"ping"}`)
}

func TestParseLoad(t *testing.T) {
	enginetest.RunParseLoadFiles(t, New(), []enginetest.LoadCase{
		{File: "metrics.json", Want: engine.Load{
			Running: 17, Waiting: 1, KVUsage: 4800.0 / 8192,
			PrefixHits: 5720 * 32, PrefixQueries: (5720 + 9110) * 32,
		}},
		{File: "metrics_free_only.json", Want: engine.Load{Running: 2, KVUsage: 0.25}},
		{File: "metrics_idle.json", Want: engine.Load{}},
	})
}

func TestParseLoadGarbage(t *testing.T) {
	enginetest.RunParseLoadGarbage(t, New(), map[string]string{
		"empty":        "",
		"prometheus":   "vllm:num_requests_running 1\n",
		"not stats":    `[{"foo": 1}]`,
		"wrong type":   `[{"numActiveRequests": "many"}]`,
		"truncated":    `[{"numActiveRequests": 1`,
		"number":       `42`,
		"null in list": `[null]`,
		"huge number":  `[{"numActiveRequests": 1e999}]`,
	})
}

func FuzzParseLoad(f *testing.F) {
	enginetest.FuzzParseLoad(f, New(), "metrics.json", "metrics_free_only.json", "metrics_idle.json")
}
