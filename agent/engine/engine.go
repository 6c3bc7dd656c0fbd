// Package engine is the seam between the Strata agent and the inference
// engines it supervises (vLLM, SGLang, TensorRT-LLM, llama.cpp and Strata's
// own simulator).
//
// The agent's supervisor, KV-event ingester, load reporter and canary all
// work the same way whatever the engine; what differs is a handful of facts:
// how to start the process (argv, environment, config files), where its KV
// cache events come from and in which format, which HTTP paths report health
// and metrics, how its metrics map to one load figure, and what a minimal
// request looks like. Adapter captures exactly those facts, so adding an
// engine is one small package and no change to the supervisor.
//
// Adapters are pure: Command, KVEvents and Canary compute values from a Spec
// and ParseLoad from a metrics body, with no I/O, so they are table-tested
// without GPUs. The concrete adapters live in sub-packages (engine/vllm, …)
// and the registry that maps a deployment's engine kind to one of them in
// engine/engines, which keeps this package free of import cycles.
//
// Ports: placement gives every worker PortsPerWorker consecutive ports on its
// node, starting at Spec.Port. Adapters use them as follows, so two workers on
// one node never collide:
//
//	Port+0  engine HTTP server (OpenAI API, /health, /metrics)
//	Port+1  KV cache event PUB socket (ZMQ), engine binds tcp://*:Port+1
//	Port+2  KV cache event replay ROUTER socket (ZMQ)
//	Port+3  P/D side channel: vLLM NIXL handshake, SGLang bootstrap server
//	Port+4… reserved
package engine

import (
	"errors"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// PortsPerWorker is how many consecutive ports a worker owns on its node,
// from Spec.Port. It equals brain/placement.PortStride (a test checks it).
const PortsPerWorker = 10

// Offsets of the ports a worker owns, from Spec.Port.
const (
	OffsetHTTP       = 0
	OffsetKVEvents   = 1
	OffsetKVReplay   = 2
	OffsetKVTransfer = 3
)

// ErrInvalidSpec is wrapped by every error Command returns for a Spec that
// cannot be launched, so the supervisor can tell a broken deployment (do not
// retry) from a failure to start (retry with backoff).
var ErrInvalidSpec = errors.New("invalid engine spec")

// Spec is everything an adapter needs to know about one worker to launch it.
// The agent fills it from the brain's Worker and DeploymentSpec.
type Spec struct {
	// WorkerID and Deployment name the worker, for logs and labels.
	WorkerID   string
	Deployment string

	// Model is what the engine loads: a Hugging Face id or a local path (a
	// GGUF file for llama.cpp).
	Model string
	// ServedModelName is the name clients put in "model"; see ServedName.
	ServedModelName string
	// Tokenizer overrides the model's tokenizer (a directory or HF id).
	Tokenizer string

	// Role is BOTH (aggregated), PREFILL or DECODE; UNSPECIFIED means BOTH.
	Role stratav1.WorkerRole

	// GPUs are the NVML UUIDs of the gang, in order.
	GPUs []string
	// GPUIndices are the NVML indices of the same GPUs, in the same order.
	// When set, CUDA_VISIBLE_DEVICES lists them (with
	// CUDA_DEVICE_ORDER=PCI_BUS_ID, so that CUDA's numbering is NVML's)
	// instead of the UUIDs: vLLM parses every CUDA_VISIBLE_DEVICES entry as
	// an integer and crashes at startup on UUIDs, so the vLLM adapter
	// requires them.
	GPUIndices []int
	// TensorParallelSize is the gang size; it must equal len(GPUs) for the
	// GPU engines.
	TensorParallelSize int

	// Host is the address the engine binds (the agent decides; "" means
	// 0.0.0.0, all interfaces, because gateways on other hosts reach it).
	Host string
	// AdvertiseHost is the address other hosts reach this worker at, given
	// to P/D peers (NIXL side channel, SGLang bootstrap). Required for the
	// PREFILL and DECODE roles when Host is a wildcard.
	AdvertiseHost string
	// Port is the first of the PortsPerWorker ports the worker owns.
	Port int

	// BlockSize is the engine's KV block size in tokens; 0 keeps the
	// engine's default.
	BlockSize int
	// ExtraArgs are the deployment's and the pool's engine_args, appended
	// last so that an operator can override anything the adapter sets
	// (argument parsers keep the last value of a repeated flag).
	ExtraArgs []string
	// Executable overrides the program to run (for the simulator, the path
	// of the strata binary; for SGLang, the Python interpreter).
	Executable string
	// WorkDir is the worker's directory (absolute). Adapters that need
	// configuration files return them in Launch.Files and refer to them
	// under this directory.
	WorkDir string
	// KVBMSocket is the agent's KV block API (docs/kvbm.md) for the
	// engine's KV connector, "" when the node has no tiers.
	KVBMSocket string
}

// Launch is how to start one engine process.
type Launch struct {
	// Path is the program; a bare name is looked up in PATH.
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env are KEY=VALUE additions to the agent's environment.
	Env []string
	// Files are configuration files the engine reads, by path relative to
	// Spec.WorkDir. The agent writes them (mode 0600) before starting the
	// process; Args refer to them by absolute path.
	Files map[string][]byte
}

// KVFormat is the wire format of an engine's KV cache event stream.
type KVFormat string

// KV event formats.
const (
	// KVFormatNone: the engine publishes no KV events (route with
	// approx-kv).
	KVFormatNone KVFormat = ""
	// KVFormatVLLM: ZMQ PUB of msgpack batches, vLLM's encoding (also the
	// simulator's).
	KVFormatVLLM KVFormat = "vllm"
	// KVFormatSGLang: the same framing with SGLang's batch and hash
	// conventions (ENGINES.md).
	KVFormatSGLang KVFormat = "sglang"
	// KVFormatTRTLLM: JSON list drained by POST /kv_cache_events.
	KVFormatTRTLLM KVFormat = "trtllm"
)

// KVEventSource says where the agent reads a worker's KV cache events.
type KVEventSource struct {
	Format KVFormat
	// Endpoint is the ZMQ address the agent's SUB socket connects to, e.g.
	// tcp://127.0.0.1:<Port+1>; the engine binds tcp://*:<Port+1>.
	Endpoint string
	// ReplayEndpoint is the ZMQ ROUTER the agent's DEALER connects to for
	// replay after a gap, "" if the engine has none.
	ReplayEndpoint string
	// Topic is the subscription prefix.
	Topic string
	// PollURL is, for engines that serve events over HTTP (TensorRT-LLM),
	// the URL to POST to drain them.
	PollURL string
}

// Load is one reading of an engine's load, from its metrics endpoint.
type Load struct {
	// Running and Waiting are requests being computed and queued.
	Running, Waiting uint32
	// KVUsage is the fraction of the GPU KV cache in use, 0 to 1.
	KVUsage float64
	// Preemptions is a cumulative count of preempted (recomputed) requests.
	Preemptions uint64
	// PrefixQueries and PrefixHits are cumulative counts of prompt tokens
	// looked up in, and found in, the engine's prefix cache.
	PrefixQueries, PrefixHits uint64
}

// Canary is a tiny request (one output token) that proves an engine can
// still generate; the agent POSTs Body to Path.
type Canary struct {
	Path string
	Body []byte
}

// Adapter captures what differs between engines. Implementations are
// stateless and safe for concurrent use.
type Adapter interface {
	// Kind is the engine kind of DeploymentSpec.engine ("vllm", …).
	Kind() string
	// Command validates s and builds the process to start. Errors wrap
	// ErrInvalidSpec.
	Command(s Spec) (Launch, error)
	// KVEvents says where the worker's KV events are read from.
	KVEvents(s Spec) KVEventSource
	// HealthPath answers 200 once the engine serves ("/health").
	HealthPath() string
	// MetricsPath serves the engine's metrics ("/metrics").
	MetricsPath() string
	// ParseLoad turns a metrics body into one Load. It never panics: a body
	// it cannot read is an error.
	ParseLoad(body []byte) (Load, error)
	// Canary is the tiny request the agent sends to a quiet worker.
	Canary(s Spec) Canary
}
