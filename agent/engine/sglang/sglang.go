// Package sglang adapts SGLang's `python3 -m sglang.launch_server` to the
// Strata agent.
//
// SGLang publishes KV events with vLLM's ZMQ framing (its own hash and batch
// conventions, hence its own KVFormat) and does P/D through a bootstrap
// server on the prefill worker rather than NIXL handshakes.
//
// Flags are SGLang's own (python/sglang/srt/server_args.py); the KV event
// config is KVEventsConfig in python/sglang/srt/disaggregation/kv_events.py,
// a pydantic model whose publisher defaults to "null", so "zmq" is explicit;
// the P/D address comes from SGLANG_HOST_IP (get_local_ip_auto in
// python/sglang/srt/utils.py).
package sglang

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/strata-llm/strata/agent/engine"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Kind is the engine kind in a DeploymentSpec.
const Kind = "sglang"

// fakeBootstrapHost is SGLang's FAKE_BOOTSTRAP_HOST
// (python/sglang/srt/disaggregation/utils.py): a request naming it runs
// without a real KV transfer, which is how SGLang warms up P/D servers.
const fakeBootstrapHost = "2.2.2.2"

// Adapter launches and reads SGLang.
type Adapter struct{}

var _ engine.Adapter = (*Adapter)(nil)

// New returns the SGLang adapter.
func New() *Adapter { return &Adapter{} }

// Kind implements engine.Adapter.
func (*Adapter) Kind() string { return Kind }

// KVEventsConfig is SGLang's --kv-events-config: the PUB socket bound on all
// interfaces at Port+1 (SGLang, like vLLM, binds only a wildcard endpoint),
// the replay ROUTER at Port+2.
func KVEventsConfig(s engine.Spec) string {
	b, _ := json.Marshal(struct { // strings only: cannot fail
		Publisher      string `json:"publisher"`
		Endpoint       string `json:"endpoint"`
		ReplayEndpoint string `json:"replay_endpoint"`
		Topic          string `json:"topic"`
	}{
		Publisher:      "zmq",
		Endpoint:       "tcp://*:" + strconv.Itoa(s.PortAt(engine.OffsetKVEvents)),
		ReplayEndpoint: "tcp://*:" + strconv.Itoa(s.PortAt(engine.OffsetKVReplay)),
	})
	return string(b)
}

// Command implements engine.Adapter:
//
//	python3 -m sglang.launch_server --model-path MODEL --host H --port P
//	  --served-model-name N --tp-size T [--page-size B] [--tokenizer-path TOK]
//	  --enable-metrics --kv-events-config JSON
//	  [--disaggregation-mode prefill|decode --disaggregation-bootstrap-port P+3]
//	  EXTRA...
//
// --enable-metrics is required: without it SGLang serves no /metrics. The
// bootstrap port only matters on the prefill worker (decode workers learn
// it per request) but is harmless on a decode worker. SGLang's KV transfer
// engine (Mooncake by default, --disaggregation-transfer-backend) opens its
// own ports outside the worker's range.
func (*Adapter) Command(s engine.Spec) (engine.Launch, error) {
	if err := s.Validate(); err != nil {
		return engine.Launch{}, err
	}
	if err := s.ValidateGPUs(); err != nil {
		return engine.Launch{}, err
	}
	args := []string{
		"-m", "sglang.launch_server",
		"--model-path", s.Model,
		"--host", s.BindHost(),
		"--port", strconv.Itoa(s.Port),
		"--served-model-name", s.ServedName(),
		"--tp-size", strconv.Itoa(s.TensorParallelSize),
	}
	if s.BlockSize > 0 {
		args = append(args, "--page-size", strconv.Itoa(s.BlockSize))
	}
	if s.Tokenizer != "" {
		args = append(args, "--tokenizer-path", s.Tokenizer)
	}
	args = append(args, "--enable-metrics", "--kv-events-config", KVEventsConfig(s))
	env := append(engine.CUDAEnv(s), "PYTHONUNBUFFERED=1")
	if s.Disaggregated() {
		mode := "prefill"
		if s.EffectiveRole() == stratav1.WorkerRole_WORKER_ROLE_DECODE {
			mode = "decode"
		}
		args = append(args,
			"--disaggregation-mode", mode,
			"--disaggregation-bootstrap-port", strconv.Itoa(s.PortAt(engine.OffsetKVTransfer)))
		env = append(env, "SGLANG_HOST_IP="+s.PeerHost())
	}
	args = append(args, s.ExtraArgs...)
	return engine.Launch{Path: s.ExecutableOr("python3"), Args: args, Env: env}, nil
}

// KVEvents implements engine.Adapter.
func (*Adapter) KVEvents(s engine.Spec) engine.KVEventSource {
	return engine.ZMQEventSource(s, engine.KVFormatSGLang)
}

// HealthPath implements engine.Adapter.
func (*Adapter) HealthPath() string { return "/health" }

// MetricsPath implements engine.Adapter.
func (*Adapter) MetricsPath() string { return "/metrics" }

// Canary implements engine.Adapter. A P/D server only admits requests that
// carry bootstrap parameters; the canary names SGLang's fake bootstrap host,
// as SGLang's own warmup does, so it exercises the engine without a peer.
func (*Adapter) Canary(s engine.Spec) engine.Canary {
	if !s.Disaggregated() {
		return engine.CompletionCanary(s, nil)
	}
	return engine.CompletionCanary(s, map[string]any{
		"bootstrap_host": fakeBootstrapHost,
		"bootstrap_port": s.PortAt(engine.OffsetKVTransfer),
		"bootstrap_room": 0,
	})
}

// Metric names (python/sglang/srt/metrics/collector.py).
const (
	metricRunning = "sglang:num_running_reqs"
	metricWaiting = "sglang:num_queue_reqs"
	// Fraction of the KV pool in use (0..1).
	metricTokenUsage = "sglang:token_usage"
	// Retracted (preempted and recomputed) requests; newer versions only.
	metricRetracted = "sglang:num_retracted_requests_total"
	// Tokenizer-side counters, in tokens: prompt tokens and the part of
	// them served from the radix cache (every cache_source label summed).
	metricPromptTokens = "sglang:prompt_tokens_total"
	metricCachedTokens = "sglang:cached_tokens_total"
)

// ParseLoad implements engine.Adapter. Running and waiting are summed over
// label sets (data-parallel ranks), token usage averaged. PrefixQueries and
// PrefixHits are prompt and cached tokens.
func (*Adapter) ParseLoad(body []byte) (engine.Load, error) {
	m, err := engine.ParsePrometheus(body)
	if err != nil {
		return engine.Load{}, fmt.Errorf("sglang metrics: %w", err)
	}
	running, ok := m.Sum(metricRunning)
	if !ok {
		return engine.Load{}, fmt.Errorf("sglang metrics: no %s", metricRunning)
	}
	waiting, ok := m.Sum(metricWaiting)
	if !ok {
		return engine.Load{}, fmt.Errorf("sglang metrics: no %s", metricWaiting)
	}
	usage, _ := m.Mean(metricTokenUsage)
	retracted, _ := m.Sum(metricRetracted)
	prompt, _ := m.Sum(metricPromptTokens)
	cached, _ := m.Sum(metricCachedTokens)
	return engine.Load{
		Running:       engine.Count(running),
		Waiting:       engine.Count(waiting),
		KVUsage:       engine.Fraction(usage),
		Preemptions:   engine.Total(retracted),
		PrefixQueries: engine.Total(prompt),
		PrefixHits:    engine.Total(cached),
	}, nil
}
