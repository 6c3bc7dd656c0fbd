package sglang

import (
	"testing"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/engine/enginetest"
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
	enginetest.RunCommandCases(t, New(), baseSpec, []enginetest.CommandCase{
		{
			Name: "aggregated, TP 2, UUIDs",
			Edit: func(*engine.Spec) {},
			Path: "python3",
			Args: join(common, tail),
			Env:  []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1"},
		},
		{
			Name: "indices, tokenizer, interpreter, extra args last",
			Edit: func(s *engine.Spec) {
				s.GPUIndices = []int{0, 1}
				s.Tokenizer = "/models/qwen-tok"
				s.Executable = "/opt/sglang/bin/python"
				s.ExtraArgs = []string{"--mem-fraction-static", "0.8", "--page-size", "64"}
			},
			Path: "/opt/sglang/bin/python",
			Args: join(common, []string{"--tokenizer-path", "/models/qwen-tok"}, tail,
				[]string{"--mem-fraction-static", "0.8", "--page-size", "64"}),
			Env: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1", "PYTHONUNBUFFERED=1"},
		},
		{
			Name: "prefill",
			Edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL },
			Path: "python3",
			Args: join(common, tail, []string{"--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port", "21003"}),
			Env:  []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1", "SGLANG_HOST_IP=10.0.0.8"},
		},
		{
			Name: "decode",
			Edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE },
			Path: "python3",
			Args: join(common, tail, []string{"--disaggregation-mode", "decode", "--disaggregation-bootstrap-port", "21003"}),
			Env:  []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1", "SGLANG_HOST_IP=10.0.0.8"},
		},
		{
			Name: "engine default page size",
			Edit: func(s *engine.Spec) { s.BlockSize = 0 },
			Path: "python3",
			Args: join(common[:len(common)-2], tail),
			Env:  []string{"CUDA_VISIBLE_DEVICES=GPU-1,GPU-2", "PYTHONUNBUFFERED=1"},
		},
	})
}

func TestCommandInvalid(t *testing.T) {
	enginetest.RunInvalidSpecs(t, New(), baseSpec, map[string]func(*engine.Spec){
		"GPUs != TP":       func(s *engine.Spec) { s.TensorParallelSize = 4 },
		"empty model":      func(s *engine.Spec) { s.Model = "" },
		"port too high":    func(s *engine.Spec) { s.Port = 65533 },
		"port zero":        func(s *engine.Spec) { s.Port = 0 },
		"P/D, no address":  func(s *engine.Spec) { s.Role, s.AdvertiseHost = stratav1.WorkerRole_WORKER_ROLE_DECODE, "" },
		"indices mismatch": func(s *engine.Spec) { s.GPUIndices = []int{0} },
	})
}

func TestKVEventsAndPaths(t *testing.T) {
	a := New()
	got := a.KVEvents(baseSpec())
	want := engine.KVEventSource{Format: engine.KVFormatSGLang, Endpoint: "tcp://127.0.0.1:21001", ReplayEndpoint: "tcp://127.0.0.1:21002"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	enginetest.CheckPaths(t, a, "sglang")
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
		t.Run(tt.role.String(), func(t *testing.T) {
			s := baseSpec()
			s.Role = tt.role
			enginetest.CheckCanary(t, New(), s, tt.want)
		})
	}
}

func TestParseLoad(t *testing.T) {
	enginetest.RunParseLoadFiles(t, New(), []enginetest.LoadCase{
		{File: "metrics.txt", Want: engine.Load{
			Running: 48, Waiting: 8, KVUsage: 0.68, Preemptions: 5,
			PrefixQueries: 2097152, PrefixHits: 1248576,
		}},
		{File: "metrics_old.txt", Want: engine.Load{Running: 7, KVUsage: 0.2}},
	})
}

func TestParseLoadGarbage(t *testing.T) {
	enginetest.RunParseLoadGarbage(t, New(), map[string]string{
		"empty":       "",
		"vllm":        "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\n",
		"no queue":    "sglang:num_running_reqs 1\n",
		"truncated":   "sglang:num_running_reqs{model_name=\"Qwen",
		"json":        `[{"numActiveRequests":1}]`,
		"bad comment": "# TYPE sglang:num_running_reqs nonsense\n",
	})
}

func FuzzParseLoad(f *testing.F) {
	enginetest.FuzzParseLoad(f, New(), "metrics.txt", "metrics_old.txt")
}
