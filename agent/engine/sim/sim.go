// Package sim adapts `strata sim`, Strata's vLLM-faithful engine simulator,
// to the Strata agent.
//
// The simulator is the engine of machines without GPUs (`strata dev`, CI,
// benchmarks). It speaks vLLM's protocols, so the adapter reuses the vLLM
// package's KV event configuration, P/D connector config and metrics
// parser; only the command line differs (command/sim.go, docs/sim.md).
package sim

import (
	"fmt"
	"strconv"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/engine/vllm"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Kind is the engine kind in a DeploymentSpec.
const Kind = "sim"

// Adapter launches and reads `strata sim`.
type Adapter struct{}

var _ engine.Adapter = (*Adapter)(nil)

// New returns the simulator adapter.
func New() *Adapter { return &Adapter{} }

// Kind implements engine.Adapter.
func (*Adapter) Kind() string { return Kind }

// Command implements engine.Adapter:
//
//	strata sim --host H --port P --model MODEL --served-model-name N
//	  [--tokenizer DIR] [--block-size B] --kv-events-config JSON
//	  --role both|prefill|decode [--kv-transfer-config JSON] EXTRA...
//
// Spec.Executable is the strata binary (default "strata" from PATH). The
// simulator uses no GPU: GPUs are optional (when given they must still
// number TensorParallelSize, as placement assigns them) and no
// CUDA_VISIBLE_DEVICES is set. It has no --tensor-parallel-size flag; its
// tokenizer is byte-level unless the deployment names a directory.
// For P/D the role is explicit because the connector's kv_role is kv_both,
// as for vLLM. The simulator's KV transfer runs over its HTTP port and it
// advertises its bind address (127.0.0.1 for a wildcard), not
// AdvertiseHost, so cross-host P/D needs Host set to a reachable address.
// With the node's KVBM the simulator's KV connector dials its socket and
// offloads and onboards blocks there under the worker's id.
func (*Adapter) Command(s engine.Spec) (engine.Launch, error) {
	if err := s.Validate(); err != nil {
		return engine.Launch{}, err
	}
	if len(s.GPUs) > 0 {
		if err := s.ValidateGPUs(); err != nil {
			return engine.Launch{}, err
		}
	}
	args := []string{
		"sim",
		"--host", s.BindHost(),
		"--port", strconv.Itoa(s.Port),
		"--model", s.Model,
		"--served-model-name", s.ServedName(),
	}
	if s.Tokenizer != "" {
		args = append(args, "--tokenizer", s.Tokenizer)
	}
	if s.BlockSize > 0 {
		args = append(args, "--block-size", strconv.Itoa(s.BlockSize))
	}
	args = append(args,
		"--kv-events-config", vllm.KVEventsConfig(s),
		"--role", role(s.EffectiveRole()))
	if s.Disaggregated() {
		args = append(args, "--kv-transfer-config", vllm.KVTransferConfig())
	}
	if s.KVBMSocket != "" {
		args = append(args, "--kvbm-socket", s.KVBMSocket, "--kvbm-worker-id", s.WorkerID)
	}
	args = append(args, s.ExtraArgs...)
	return engine.Launch{Path: s.ExecutableOr("strata"), Args: args}, nil
}

func role(r stratav1.WorkerRole) string {
	switch r {
	case stratav1.WorkerRole_WORKER_ROLE_PREFILL:
		return "prefill"
	case stratav1.WorkerRole_WORKER_ROLE_DECODE:
		return "decode"
	}
	return "both"
}

// KVEvents implements engine.Adapter: the simulator publishes vLLM's stream.
func (*Adapter) KVEvents(s engine.Spec) engine.KVEventSource {
	return engine.ZMQEventSource(s, engine.KVFormatVLLM)
}

// HealthPath implements engine.Adapter.
func (*Adapter) HealthPath() string { return "/health" }

// MetricsPath implements engine.Adapter.
func (*Adapter) MetricsPath() string { return "/metrics" }

// ParseLoad implements engine.Adapter: the simulator serves vLLM's metrics.
func (*Adapter) ParseLoad(body []byte) (engine.Load, error) {
	l, err := vllm.ParseLoad(body)
	if err != nil {
		return engine.Load{}, fmt.Errorf("sim: %w", err)
	}
	return l, nil
}

// Canary implements engine.Adapter.
func (*Adapter) Canary(s engine.Spec) engine.Canary { return engine.CompletionCanary(s, nil) }
