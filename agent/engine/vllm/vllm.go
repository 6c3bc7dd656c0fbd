// Package vllm adapts `vllm serve` to the Strata agent.
//
// vLLM is the reference engine: Strata's KV event decoder, metric names and
// P/D flow follow it (ENGINES.md, docs/engine-protocols.md), and `strata sim`
// imitates it, so the simulator adapter reuses this package's KV event
// configuration and metrics parser.
//
// Flags are vLLM's own (vllm/engine/arg_utils.py; KVEventsConfig in
// vllm/config/kv_events.py; the NIXL side channel environment in
// vllm/distributed/kv_transfer/kv_connector/v1/nixl_connector.py).
package vllm

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/strata-llm/strata/agent/engine"
)

// Kind is the engine kind in a DeploymentSpec.
const Kind = "vllm"

// Adapter launches and reads vLLM.
type Adapter struct{}

var _ engine.Adapter = (*Adapter)(nil)

// New returns the vLLM adapter.
func New() *Adapter { return &Adapter{} }

// Kind implements engine.Adapter.
func (*Adapter) Kind() string { return Kind }

// KVEventsConfig is vLLM's --kv-events-config for a worker: the PUB socket
// bound on all interfaces at Port+1 (vLLM binds only when the endpoint has a
// wildcard, and connects otherwise), the replay ROUTER at Port+2, no topic.
// vLLM's other keys (buffer_steps 10000, hwm) keep their defaults.
//
// With data parallelism vLLM publishes rank r on port+r, which would collide
// with the replay port: Strata runs one DP rank per worker.
func KVEventsConfig(s engine.Spec) string {
	return marshal(struct {
		Enable         bool   `json:"enable_kv_cache_events"`
		Publisher      string `json:"publisher"`
		Endpoint       string `json:"endpoint"`
		ReplayEndpoint string `json:"replay_endpoint"`
		Topic          string `json:"topic"`
	}{
		Enable:         true,
		Publisher:      "zmq",
		Endpoint:       "tcp://*:" + strconv.Itoa(s.PortAt(engine.OffsetKVEvents)),
		ReplayEndpoint: "tcp://*:" + strconv.Itoa(s.PortAt(engine.OffsetKVReplay)),
		Topic:          "",
	})
}

// KVTransferConfig is vLLM's --kv-transfer-config for a P/D worker. Both
// roles use kv_both: NixlConnector is symmetric and the router decides per
// request with kv_transfer_params. engine_id is left to vLLM (a fresh random
// id per process): a restarted prefill worker must not reuse an id whose
// NIXL metadata its decode peers have cached.
func KVTransferConfig() string {
	return marshal(struct {
		Connector string `json:"kv_connector"`
		Role      string `json:"kv_role"`
	}{Connector: "NixlConnector", Role: "kv_both"})
}

// NIXLEnv is the environment of NixlConnector's handshake listener: the
// address decode workers dial (it is also returned to them as remote_host in
// kv_transfer_params) and Port+3. Older vLLM (≤ 0.10) offsets the port by the
// TP rank, so a gang of more than PortsPerWorker-3 GPUs would spill out of
// the worker's ports; current vLLM uses one port per engine.
func NIXLEnv(s engine.Spec) []string {
	return []string{
		"VLLM_NIXL_SIDE_CHANNEL_HOST=" + s.PeerHost(),
		"VLLM_NIXL_SIDE_CHANNEL_PORT=" + strconv.Itoa(s.PortAt(engine.OffsetKVTransfer)),
	}
}

// Command implements engine.Adapter:
//
//	vllm serve MODEL --host H --port P --served-model-name N
//	  --tensor-parallel-size T [--block-size B] [--tokenizer TOK]
//	  --kv-events-config JSON [--kv-transfer-config JSON] EXTRA...
func (*Adapter) Command(s engine.Spec) (engine.Launch, error) {
	if err := s.Validate(); err != nil {
		return engine.Launch{}, err
	}
	if err := s.ValidateGPUs(); err != nil {
		return engine.Launch{}, err
	}
	if len(s.GPUIndices) != len(s.GPUs) {
		// vllm/platforms/interface.py device_id_to_physical_device_id does
		// int() on every CUDA_VISIBLE_DEVICES entry (vllm-project/vllm
		// issues 13815, 20939, 41848): UUIDs crash it at startup.
		return engine.Launch{}, fmt.Errorf("%w: worker %q: vLLM needs GPU indices (it cannot parse UUIDs in CUDA_VISIBLE_DEVICES)",
			engine.ErrInvalidSpec, s.WorkerID)
	}
	args := []string{
		"serve", s.Model,
		"--host", s.BindHost(),
		"--port", strconv.Itoa(s.Port),
		"--served-model-name", s.ServedName(),
		"--tensor-parallel-size", strconv.Itoa(s.TensorParallelSize),
	}
	if s.BlockSize > 0 {
		args = append(args, "--block-size", strconv.Itoa(s.BlockSize))
	}
	if s.Tokenizer != "" {
		args = append(args, "--tokenizer", s.Tokenizer)
	}
	args = append(args, "--kv-events-config", KVEventsConfig(s))
	env := append(engine.CUDAEnv(s), "PYTHONUNBUFFERED=1")
	if s.Disaggregated() {
		args = append(args, "--kv-transfer-config", KVTransferConfig())
		env = append(env, NIXLEnv(s)...)
	}
	args = append(args, s.ExtraArgs...)
	return engine.Launch{Path: s.ExecutableOr("vllm"), Args: args, Env: env}, nil
}

// KVEvents implements engine.Adapter.
func (*Adapter) KVEvents(s engine.Spec) engine.KVEventSource {
	return engine.ZMQEventSource(s, engine.KVFormatVLLM)
}

// HealthPath implements engine.Adapter.
func (*Adapter) HealthPath() string { return "/health" }

// MetricsPath implements engine.Adapter.
func (*Adapter) MetricsPath() string { return "/metrics" }

// ParseLoad implements engine.Adapter with ParseLoad.
func (*Adapter) ParseLoad(body []byte) (engine.Load, error) { return ParseLoad(body) }

// Canary implements engine.Adapter. A P/D worker with NixlConnector serves
// a request without kv_transfer_params like any other, so the canary is the
// same for every role.
func (*Adapter) Canary(s engine.Spec) engine.Canary { return engine.CompletionCanary(s, nil) }

// Metric names (vllm/v1/metrics/loggers.py). Families are summed over their
// label sets (model_name, engine: one per engine core), ratios averaged.
const (
	metricRunning       = "vllm:num_requests_running"
	metricWaiting       = "vllm:num_requests_waiting"
	metricKVUsage       = "vllm:kv_cache_usage_perc"
	metricKVUsageOld    = "vllm:gpu_cache_usage_perc" // deprecated in 0.10
	metricPreemptions   = "vllm:num_preemptions_total"
	metricPrefixQueries = "vllm:prefix_cache_queries_total"
	metricPrefixHits    = "vllm:prefix_cache_hits_total"
	// Early V1 names of the prefix cache counters.
	metricPrefixQueriesOld = "vllm:gpu_prefix_cache_queries_total"
	metricPrefixHitsOld    = "vllm:gpu_prefix_cache_hits_total"
)

// ParseLoad reads vLLM's Prometheus metrics (also the simulator's). The
// running and waiting gauges are required: a body without them is not a vLLM
// metrics page. The others are zero when absent.
func ParseLoad(body []byte) (engine.Load, error) {
	m, err := engine.ParsePrometheus(body)
	if err != nil {
		return engine.Load{}, fmt.Errorf("vllm metrics: %w", err)
	}
	running, ok := m.Sum(metricRunning)
	if !ok {
		return engine.Load{}, fmt.Errorf("vllm metrics: no %s", metricRunning)
	}
	waiting, ok := m.Sum(metricWaiting)
	if !ok {
		return engine.Load{}, fmt.Errorf("vllm metrics: no %s", metricWaiting)
	}
	usage, _ := m.FirstMean(metricKVUsage, metricKVUsageOld)
	preempt, _ := m.Sum(metricPreemptions)
	queries, _ := m.First(metricPrefixQueries, metricPrefixQueriesOld)
	hits, _ := m.First(metricPrefixHits, metricPrefixHitsOld)
	return engine.Load{
		Running:       engine.Count(running),
		Waiting:       engine.Count(waiting),
		KVUsage:       engine.Fraction(usage),
		Preemptions:   engine.Total(preempt),
		PrefixQueries: engine.Total(queries),
		PrefixHits:    engine.Total(hits),
	}, nil
}

// marshal encodes the fixed config structs above, whose strings and bools
// cannot fail to encode.
func marshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
