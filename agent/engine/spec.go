package engine

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// DefaultHost is what an empty Spec.Host binds: all interfaces, because
// gateways on other hosts send requests to the engine directly.
const DefaultHost = "0.0.0.0"

// invalid wraps ErrInvalidSpec with a reason.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

// Validate checks what every adapter needs: a model, a known role, a port
// range that fits in 16 bits, sane sizes, and an address P/D peers can reach
// when the role needs one. Errors wrap ErrInvalidSpec.
func (s Spec) Validate() error {
	if strings.TrimSpace(s.Model) == "" {
		return invalid("worker %q: empty model", s.WorkerID)
	}
	if s.Port < 1 || s.Port+PortsPerWorker-1 > 65535 {
		return invalid("worker %q: port %d: the worker owns ports %d..%d, which must lie in 1..65535",
			s.WorkerID, s.Port, s.Port, s.Port+PortsPerWorker-1)
	}
	switch s.Role {
	case stratav1.WorkerRole_WORKER_ROLE_UNSPECIFIED, stratav1.WorkerRole_WORKER_ROLE_BOTH,
		stratav1.WorkerRole_WORKER_ROLE_PREFILL, stratav1.WorkerRole_WORKER_ROLE_DECODE:
	default:
		return invalid("worker %q: unknown role %d", s.WorkerID, int32(s.Role))
	}
	if s.TensorParallelSize < 1 {
		return invalid("worker %q: tensor parallel size %d, want at least 1", s.WorkerID, s.TensorParallelSize)
	}
	if s.BlockSize < 0 {
		return invalid("worker %q: negative block size %d", s.WorkerID, s.BlockSize)
	}
	if strings.ContainsAny(s.Host, " \t\r\n") || strings.ContainsAny(s.AdvertiseHost, " \t\r\n/") {
		return invalid("worker %q: malformed host %q / advertise host %q", s.WorkerID, s.Host, s.AdvertiseHost)
	}
	if s.Disaggregated() && s.PeerHost() == "" {
		return invalid("worker %q: role %s binds %q and has no advertise host for its P/D peers",
			s.WorkerID, s.Role, s.BindHost())
	}
	if s.WorkDir != "" && !filepath.IsAbs(s.WorkDir) {
		return invalid("worker %q: work dir %q is not absolute", s.WorkerID, s.WorkDir)
	}
	return nil
}

// ValidateGPUs checks the gang of a GPU engine: exactly TensorParallelSize
// GPUs, UUIDs that fit in CUDA_VISIBLE_DEVICES, and indices (if given) that
// match them one for one.
func (s Spec) ValidateGPUs() error {
	if len(s.GPUs) != s.TensorParallelSize {
		return invalid("worker %q: %d GPUs for tensor parallel size %d", s.WorkerID, len(s.GPUs), s.TensorParallelSize)
	}
	seen := make(map[string]bool, len(s.GPUs))
	for _, g := range s.GPUs {
		if g == "" || strings.ContainsAny(g, ", \t\r\n=") {
			return invalid("worker %q: malformed GPU UUID %q", s.WorkerID, g)
		}
		if seen[g] {
			return invalid("worker %q: GPU %s listed twice", s.WorkerID, g)
		}
		seen[g] = true
	}
	if len(s.GPUIndices) == 0 {
		return nil
	}
	if len(s.GPUIndices) != len(s.GPUs) {
		return invalid("worker %q: %d GPU indices for %d GPUs", s.WorkerID, len(s.GPUIndices), len(s.GPUs))
	}
	seenIdx := make(map[int]bool, len(s.GPUIndices))
	for _, i := range s.GPUIndices {
		if i < 0 || seenIdx[i] {
			return invalid("worker %q: bad or repeated GPU index %d", s.WorkerID, i)
		}
		seenIdx[i] = true
	}
	return nil
}

// EffectiveRole maps UNSPECIFIED (proto3's zero value) to BOTH.
func (s Spec) EffectiveRole() stratav1.WorkerRole {
	if s.Role == stratav1.WorkerRole_WORKER_ROLE_UNSPECIFIED {
		return stratav1.WorkerRole_WORKER_ROLE_BOTH
	}
	return s.Role
}

// Disaggregated reports whether the worker is half of a prefill/decode pair.
func (s Spec) Disaggregated() bool {
	r := s.EffectiveRole()
	return r == stratav1.WorkerRole_WORKER_ROLE_PREFILL || r == stratav1.WorkerRole_WORKER_ROLE_DECODE
}

// ServedName is the name clients use: ServedModelName, else the deployment
// name (DeploymentSpec's default), else the model.
func (s Spec) ServedName() string {
	switch {
	case s.ServedModelName != "":
		return s.ServedModelName
	case s.Deployment != "":
		return s.Deployment
	}
	return s.Model
}

// BindHost is the address the engine binds.
func (s Spec) BindHost() string {
	if s.Host == "" {
		return DefaultHost
	}
	return s.Host
}

// DialHost is the address the agent, on the same node, reaches the engine
// at: loopback for a wildcard bind, else the bound address.
func (s Spec) DialHost() string {
	if isWildcard(s.BindHost()) {
		return "127.0.0.1"
	}
	return s.BindHost()
}

// PeerHost is the address P/D peers on other hosts reach the worker at:
// AdvertiseHost, else a specific bind address, else "".
func (s Spec) PeerHost() string {
	if s.AdvertiseHost != "" && !isWildcard(s.AdvertiseHost) {
		return s.AdvertiseHost
	}
	if !isWildcard(s.BindHost()) {
		return s.BindHost()
	}
	return ""
}

func isWildcard(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || host == "*" || (ip != nil && ip.IsUnspecified())
}

// PortAt is the port at offset from Spec.Port (OffsetKVEvents, …).
func (s Spec) PortAt(offset int) int { return s.Port + offset }

// DialURL is the base URL the agent reaches the engine's HTTP server at.
func (s Spec) DialURL() string {
	return "http://" + net.JoinHostPort(s.DialHost(), strconv.Itoa(s.Port))
}

// ZMQEventSource is the KV event source of an engine that binds vLLM's
// PUB/ROUTER pair on Port+1 and Port+2 (vLLM, SGLang, the simulator).
func ZMQEventSource(s Spec, format KVFormat) KVEventSource {
	host := s.DialHost()
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	return KVEventSource{
		Format:         format,
		Endpoint:       "tcp://" + host + ":" + strconv.Itoa(s.PortAt(OffsetKVEvents)),
		ReplayEndpoint: "tcp://" + host + ":" + strconv.Itoa(s.PortAt(OffsetKVReplay)),
		Topic:          "",
	}
}

// CUDAEnv is the environment that confines an engine to its gang: the NVML
// indices in PCI bus order when the Spec has them (every engine accepts
// those), else the UUIDs (which CUDA accepts but some engines do not parse).
func CUDAEnv(s Spec) []string {
	if len(s.GPUIndices) > 0 {
		idx := make([]string, len(s.GPUIndices))
		for i, v := range s.GPUIndices {
			idx[i] = strconv.Itoa(v)
		}
		return []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=" + strings.Join(idx, ",")}
	}
	return []string{"CUDA_VISIBLE_DEVICES=" + strings.Join(s.GPUs, ",")}
}

// CompletionCanary is the canary every OpenAI-compatible engine accepts:
// POST /v1/completions with a one-word prompt and max_tokens 1. extra adds
// engine-specific fields (SGLang's bootstrap parameters in P/D mode).
func CompletionCanary(s Spec, extra map[string]any) Canary {
	body := map[string]any{"model": s.ServedName(), "prompt": "ping", "max_tokens": 1}
	for k, v := range extra {
		body[k] = v
	}
	b, err := json.Marshal(body) // map keys are sorted: deterministic
	if err != nil {
		// An extra value JSON cannot encode: send the plain canary.
		b, _ = json.Marshal(map[string]any{"model": s.ServedName(), "prompt": "ping", "max_tokens": 1})
	}
	return Canary{Path: "/v1/completions", Body: b}
}

// ExecutableOr is s.Executable, else def.
func (s Spec) ExecutableOr(def string) string {
	if s.Executable != "" {
		return s.Executable
	}
	return def
}
