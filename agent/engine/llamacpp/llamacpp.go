// Package llamacpp adapts llama.cpp's `llama-server` to the Strata agent.
//
// llama.cpp is the small-fleet engine: GGUF models, no KV cache events (the
// gateway routes its deployments with approx-kv) and no P/D. Its tensor
// "parallelism" is a layer split over every visible GPU, so the gang is
// still confined with CUDA_VISIBLE_DEVICES.
//
// Flags are llama.cpp's own (tools/server/README.md, common/arg.cpp);
// metrics come from tools/server/server.cpp's /metrics handler.
package llamacpp

import (
	"fmt"
	"strconv"

	"github.com/strata-llm/strata/agent/engine"
)

// Kind is the engine kind in a DeploymentSpec.
const Kind = "llamacpp"

// Adapter launches and reads llama.cpp.
type Adapter struct{}

var _ engine.Adapter = (*Adapter)(nil)

// New returns the llama.cpp adapter.
func New() *Adapter { return &Adapter{} }

// Kind implements engine.Adapter.
func (*Adapter) Kind() string { return Kind }

// Command implements engine.Adapter:
//
//	llama-server -m MODEL --host H --port P --metrics --alias N -ngl 999 EXTRA...
//
// -ngl 999 offloads every layer: the worker was placed on GPUs to use them,
// and llama.cpp's default has changed across versions (0, then "auto");
// an operator wanting partial offload passes -ngl in engine_args. --metrics
// is required for /metrics. llama.cpp has no KV block size, tokenizer or
// P/D flags, so those Spec fields are ignored; the roles other than BOTH are
// refused.
func (*Adapter) Command(s engine.Spec) (engine.Launch, error) {
	if err := s.Validate(); err != nil {
		return engine.Launch{}, err
	}
	if err := s.ValidateGPUs(); err != nil {
		return engine.Launch{}, err
	}
	if s.Disaggregated() {
		return engine.Launch{}, fmt.Errorf("%w: worker %q: llama.cpp has no prefill/decode disaggregation (role %s)",
			engine.ErrInvalidSpec, s.WorkerID, s.Role)
	}
	args := []string{
		"-m", s.Model,
		"--host", s.BindHost(),
		"--port", strconv.Itoa(s.Port),
		"--metrics",
		"--alias", s.ServedName(),
		"-ngl", "999",
	}
	args = append(args, s.ExtraArgs...)
	return engine.Launch{Path: s.ExecutableOr("llama-server"), Args: args, Env: engine.CUDAEnv(s)}, nil
}

// KVEvents implements engine.Adapter: llama.cpp publishes none.
func (*Adapter) KVEvents(engine.Spec) engine.KVEventSource {
	return engine.KVEventSource{Format: engine.KVFormatNone}
}

// HealthPath implements engine.Adapter: 503 while the model loads, then 200.
func (*Adapter) HealthPath() string { return "/health" }

// MetricsPath implements engine.Adapter.
func (*Adapter) MetricsPath() string { return "/metrics" }

// Canary implements engine.Adapter.
func (*Adapter) Canary(s engine.Spec) engine.Canary { return engine.CompletionCanary(s, nil) }

// Metric names. kv_cache_usage_ratio was removed from recent builds; it is
// read when present.
const (
	metricRunning = "llamacpp:requests_processing"
	metricWaiting = "llamacpp:requests_deferred"
	metricKVUsage = "llamacpp:kv_cache_usage_ratio"
)

// ParseLoad implements engine.Adapter: Running is requests_processing (busy
// slots), Waiting requests_deferred (queued for a slot), KVUsage
// kv_cache_usage_ratio when the build reports it. llama.cpp has no
// preemption or prefix-cache counters.
func (*Adapter) ParseLoad(body []byte) (engine.Load, error) {
	m, err := engine.ParsePrometheus(body)
	if err != nil {
		return engine.Load{}, fmt.Errorf("llama.cpp metrics: %w", err)
	}
	running, ok := m.Sum(metricRunning)
	if !ok {
		return engine.Load{}, fmt.Errorf("llama.cpp metrics: no %s (is --metrics set?)", metricRunning)
	}
	waiting, _ := m.Sum(metricWaiting)
	usage, _ := m.Mean(metricKVUsage)
	return engine.Load{
		Running: engine.Count(running),
		Waiting: engine.Count(waiting),
		KVUsage: engine.Fraction(usage),
	}, nil
}
