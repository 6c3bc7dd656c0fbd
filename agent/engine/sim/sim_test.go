package sim

import (
	"testing"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/engine/enginetest"
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
	enginetest.RunCommandCases(t, New(), baseSpec, []enginetest.CommandCase{
		{Name: "aggregated", Edit: func(*engine.Spec) {}, Path: "strata", Args: with("--role", "both")},
		{Name: "unspecified role", Edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_UNSPECIFIED },
			Path: "strata", Args: with("--role", "both")},
		{Name: "prefill", Edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_PREFILL },
			Path: "strata", Args: with("--role", "prefill", "--kv-transfer-config", nixl)},
		{Name: "decode", Edit: func(s *engine.Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE },
			Path: "strata", Args: with("--role", "decode", "--kv-transfer-config", nixl)},
		{Name: "fake GPUs, TP 2, binary path, extra args last", Edit: func(s *engine.Spec) {
			s.GPUs, s.TensorParallelSize = []string{"GPU-fake-0", "GPU-fake-1"}, 2
			s.Executable = "/usr/local/bin/strata"
			s.ExtraArgs = []string{"--speedup", "10", "--block-size", "32"}
		}, Path: "/usr/local/bin/strata", Args: with("--role", "both", "--speedup", "10", "--block-size", "32")},
		{Name: "the node's KVBM", Edit: func(s *engine.Spec) { s.KVBMSocket = "/var/lib/strata/kvbm/kvbm.sock" }, Path: "strata",
			Args: with("--role", "both", "--kvbm-socket", "/var/lib/strata/kvbm/kvbm.sock", "--kvbm-worker-id", baseSpec().WorkerID)},
		{Name: "tokenizer directory", Edit: func(s *engine.Spec) { s.Tokenizer = "/models/qwen3" }, Path: "strata",
			Args: append(append(append([]string(nil), head[:9]...), "--tokenizer", "/models/qwen3"), append(head[9:], "--role", "both")...)},
	})
}

func TestCommandInvalid(t *testing.T) {
	enginetest.RunInvalidSpecs(t, New(), baseSpec, map[string]func(*engine.Spec){
		"GPUs != TP":        func(s *engine.Spec) { s.GPUs = []string{"GPU-0", "GPU-1"} },
		"zero TP":           func(s *engine.Spec) { s.TensorParallelSize = 0 },
		"empty model":       func(s *engine.Spec) { s.Model = "" },
		"port out of range": func(s *engine.Spec) { s.Port = 65527 },
		"negative port":     func(s *engine.Spec) { s.Port = -1 },
	})
}

func TestKVEventsAndPaths(t *testing.T) {
	a := New()
	got := a.KVEvents(baseSpec())
	want := engine.KVEventSource{Format: engine.KVFormatVLLM, Endpoint: "tcp://127.0.0.1:24001", ReplayEndpoint: "tcp://127.0.0.1:24002"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	enginetest.CheckPaths(t, a, "sim")
	enginetest.CheckCanary(t, a, baseSpec(), `{"max_tokens":1,"model":"llama","prompt":"ping"}`)
}

// testdata/metrics.txt is a capture of `strata sim` /metrics after three
// completions of a 95-token prompt.
func TestParseLoad(t *testing.T) {
	enginetest.RunParseLoadFiles(t, New(), []enginetest.LoadCase{
		{File: "metrics.txt", Want: engine.Load{PrefixQueries: 285, PrefixHits: 160}},
	})
	enginetest.RunParseLoadGarbage(t, New(), map[string]string{"garbage": "not metrics"})
}

func FuzzParseLoad(f *testing.F) {
	enginetest.FuzzParseLoad(f, New(), "metrics.txt")
}
