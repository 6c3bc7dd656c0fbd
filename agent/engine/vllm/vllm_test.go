package vllm

import (
	"math"
	"testing"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/engine/enginetest"
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
	// args is the argv for the base spec bound to host, then tail.
	args := func(host string, tail ...string) []string {
		return append([]string{
			"serve", "meta-llama/Llama-3.1-8B-Instruct",
			"--host", host, "--port", "20000",
			"--served-model-name", "llama",
			"--tensor-parallel-size", "1",
			"--block-size", "16",
			"--kv-events-config", kvEvents20000,
		}, tail...)
	}
	env := []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=2", "PYTHONUNBUFFERED=1"}
	// sideChannel is env and the NIXL side channel at host.
	sideChannel := func(host string) []string {
		return append(append([]string(nil), env...),
			"VLLM_NIXL_SIDE_CHANNEL_HOST="+host, "VLLM_NIXL_SIDE_CHANNEL_PORT=20003")
	}
	enginetest.RunCommandCases(t, New(), baseSpec, []enginetest.CommandCase{
		{
			Name: "aggregated",
			Edit: func(*engine.Spec) {},
			Path: "vllm",
			Args: args("0.0.0.0"),
			Env:  env,
		},
		{
			Name: "tensor parallel, tokenizer, served name, extra args last",
			Edit: func(s *engine.Spec) {
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
			Path: "/opt/vllm/bin/vllm",
			Args: []string{
				"serve", "meta-llama/Llama-3.1-8B-Instruct",
				"--host", "0.0.0.0", "--port", "20010",
				"--served-model-name", "llama-8b",
				"--tensor-parallel-size", "4",
				"--tokenizer", "/models/tok",
				"--kv-events-config", `{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:20011","replay_endpoint":"tcp://*:20012","topic":""}`,
				"--max-model-len", "8192", "--port", "1",
			},
			Env: []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=4,5,6,7", "PYTHONUNBUFFERED=1"},
		},
		{
			Name: "prefill",
			Edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL },
			Path: "vllm",
			Args: args("0.0.0.0", "--kv-transfer-config", nixl),
			Env:  sideChannel("10.0.0.7"),
		},
		{
			Name: "decode bound to one address, no advertise host",
			Edit: func(s *engine.Spec) {
				s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE
				s.Host = "10.0.0.9"
				s.AdvertiseHost = ""
			},
			Path: "vllm",
			Args: args("10.0.0.9", "--kv-transfer-config", nixl),
			Env:  sideChannel("10.0.0.9"),
		},
		{
			Name: "unspecified role is aggregated, empty host binds all",
			Edit: func(s *engine.Spec) {
				s.Role = stratav1.WorkerRole_WORKER_ROLE_UNSPECIFIED
				s.Host = ""
			},
			Path: "vllm",
			Args: args("0.0.0.0"),
			Env:  env,
		},
	})
}

func TestCommandInvalid(t *testing.T) {
	enginetest.RunInvalidSpecs(t, New(), baseSpec, map[string]func(*engine.Spec){
		"fewer GPUs than TP":     func(s *engine.Spec) { s.TensorParallelSize = 2 },
		"more GPUs than TP":      func(s *engine.Spec) { s.GPUs = append(s.GPUs, "GPU-x"); s.GPUIndices = append(s.GPUIndices, 3) },
		"no GPUs":                func(s *engine.Spec) { s.GPUs, s.GPUIndices = nil, nil },
		"zero TP":                func(s *engine.Spec) { s.TensorParallelSize = 0; s.GPUs, s.GPUIndices = nil, nil },
		"empty model":            func(s *engine.Spec) { s.Model = " " },
		"port zero":              func(s *engine.Spec) { s.Port = 0 },
		"negative port":          func(s *engine.Spec) { s.Port = -5 },
		"ports spill past 65535": func(s *engine.Spec) { s.Port = 65530 },
		"unknown role":           func(s *engine.Spec) { s.Role = stratav1.WorkerRole(9) },
		"negative block size":    func(s *engine.Spec) { s.BlockSize = -16 },
		"UUIDs without indices":  func(s *engine.Spec) { s.GPUIndices = nil },
		"index count mismatch":   func(s *engine.Spec) { s.GPUIndices = []int{1, 2} },
		"negative index":         func(s *engine.Spec) { s.GPUIndices = []int{-1} },
		"UUID with comma":        func(s *engine.Spec) { s.GPUs = []string{"GPU-a,GPU-b"} },
		"duplicate GPU": func(s *engine.Spec) {
			s.GPUs, s.GPUIndices, s.TensorParallelSize = []string{"GPU-a", "GPU-a"}, []int{0, 1}, 2
		},
		"P/D without reachable address": func(s *engine.Spec) {
			s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL
			s.AdvertiseHost = "0.0.0.0"
		},
		"relative work dir": func(s *engine.Spec) { s.WorkDir = "workers/x" },
	})
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
	enginetest.CheckCanary(t, a, baseSpec(), `{"max_tokens":1,"model":"llama","prompt":"ping"}`)
}

func TestParseLoad(t *testing.T) {
	enginetest.RunParseLoadFiles(t, New(), []enginetest.LoadCase{
		{File: "metrics.txt", Want: engine.Load{
			Running: 21, Waiting: 3, KVUsage: 0.5, Preemptions: 7,
			PrefixQueries: 1572864, PrefixHits: 1048576,
		}},
		{File: "metrics_v0_9.txt", Want: engine.Load{
			Running: 4, Waiting: 1, KVUsage: 0.25, PrefixQueries: 4096, PrefixHits: 1024,
		}},
	})
}

func TestParseLoadGarbage(t *testing.T) {
	enginetest.RunParseLoadGarbage(t, New(), map[string]string{
		"empty":          "",
		"html":           "<html><body>502 Bad Gateway</body></html>",
		"json":           `{"error":"not found"}`,
		"other engine":   "# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs 1\n",
		"no waiting":     "vllm:num_requests_running 1\n",
		"bad value":      "vllm:num_requests_running one\n",
		"duplicate TYPE": "# TYPE vllm:num_requests_running gauge\n# TYPE vllm:num_requests_running counter\n",
		"binary":         "\x00\xff\xfe{{{",
	})
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
	enginetest.FuzzParseLoad(f, New(), "metrics.txt", "metrics_v0_9.txt")
}
