package llamacpp

import (
	"testing"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/engine/enginetest"
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
	enginetest.RunCommandCases(t, New(), baseSpec, []enginetest.CommandCase{
		{
			Name: "one GPU, default host",
			Edit: func(*engine.Spec) {},
			Path: "llama-server",
			Args: []string{
				"-m", "/models/gemma-3-4b-it-Q4_K_M.gguf",
				"--host", "0.0.0.0", "--port", "23000",
				"--metrics", "--alias", "gemma", "-ngl", "999",
			},
			Env: []string{"CUDA_VISIBLE_DEVICES=GPU-1"},
		},
		{
			Name: "layer split over 2 GPUs, extra args last",
			Edit: func(s *engine.Spec) {
				s.GPUs, s.GPUIndices, s.TensorParallelSize = []string{"GPU-1", "GPU-2"}, []int{0, 1}, 2
				s.ServedModelName = "gemma-3"
				s.Executable = "/opt/llama.cpp/build/bin/llama-server"
				s.ExtraArgs = []string{"-c", "16384", "--parallel", "8", "-ngl", "20"}
			},
			Path: "/opt/llama.cpp/build/bin/llama-server",
			Args: []string{
				"-m", "/models/gemma-3-4b-it-Q4_K_M.gguf",
				"--host", "0.0.0.0", "--port", "23000",
				"--metrics", "--alias", "gemma-3", "-ngl", "999",
				"-c", "16384", "--parallel", "8", "-ngl", "20",
			},
			Env: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1"},
		},
	})
}

func TestCommandInvalid(t *testing.T) {
	enginetest.RunInvalidSpecs(t, New(), baseSpec, map[string]func(*engine.Spec){
		"GPUs != TP":    func(s *engine.Spec) { s.TensorParallelSize = 2 },
		"no GPU":        func(s *engine.Spec) { s.GPUs = nil },
		"empty model":   func(s *engine.Spec) { s.Model = "" },
		"port too high": func(s *engine.Spec) { s.Port = 65530 },
		"prefill role": func(s *engine.Spec) {
			s.Role, s.AdvertiseHost = stratav1.WorkerRole_WORKER_ROLE_PREFILL, "10.0.0.1"
		},
	})
}

func TestNoKVEvents(t *testing.T) {
	a := New()
	if got := a.KVEvents(baseSpec()); got != (engine.KVEventSource{Format: engine.KVFormatNone}) {
		t.Fatalf("got %+v", got)
	}
	enginetest.CheckPaths(t, a, "llamacpp")
	enginetest.CheckCanary(t, a, baseSpec(), `{"max_tokens":1,"model":"gemma","prompt":"ping"}`)
}

func TestParseLoad(t *testing.T) {
	enginetest.RunParseLoadFiles(t, New(), []enginetest.LoadCase{
		{File: "metrics.txt", Want: engine.Load{Running: 3, Waiting: 5}},
		{File: "metrics_kv_ratio.txt", Want: engine.Load{Running: 1, KVUsage: 0.4375}},
	})
}

func TestParseLoadGarbage(t *testing.T) {
	enginetest.RunParseLoadGarbage(t, New(), map[string]string{
		"empty":          "",
		"metrics off":    "Error: This server does not support metrics endpoint. Start it with `--metrics`",
		"json error":     `{"error":{"code":501,"message":"This server does not support metrics endpoint.","type":"not_supported_error"}}`,
		"no processing":  "llamacpp:requests_deferred 1\n",
		"label syntax":   "llamacpp:requests_processing{a=} 1\n",
		"control chars":  "\x01\x02\x03",
		"value overflow": "llamacpp:requests_processing 1e999999\n",
	})
}

func FuzzParseLoad(f *testing.F) {
	enginetest.FuzzParseLoad(f, New(), "metrics.txt", "metrics_kv_ratio.txt")
}
