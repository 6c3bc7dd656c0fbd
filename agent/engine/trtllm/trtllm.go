// Package trtllm adapts TensorRT-LLM's `trtllm-serve` to the Strata agent.
//
// TensorRT-LLM differs from the other engines in three ways the adapter
// hides: most settings (KV event buffering, iteration statistics, P/D cache
// transceiver) exist only in the LLM API options, so the adapter writes an
// options file and passes it with --extra_llm_api_options; KV events are not
// pushed over ZMQ but drained by POST /kv_cache_events; and /metrics is not
// Prometheus but a JSON list of per-iteration statistics.
//
// Sources: tensorrt_llm/commands/serve.py (click options; `trtllm-serve
// MODEL` runs the default "serve" command), tensorrt_llm/llmapi/llm_args.py
// (KvCacheConfig.event_buffer_max_size, enable_block_reuse,
// tokens_per_block; TorchLlmArgs.enable_iter_perf_stats;
// cache_transceiver_config), tensorrt_llm/serve/openai_server.py (/metrics,
// /kv_cache_events), cpp/tensorrt_llm/executor/jsonSerialization.cpp
// (IterationStats field names).
package trtllm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/strata-llm/strata/agent/engine"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Kind is the engine kind in a DeploymentSpec.
const Kind = "trtllm"

// OptionsFile is the LLM API options file the adapter writes, relative to
// Spec.WorkDir.
const OptionsFile = "trtllm-llm-api-options.yaml"

// EventBufferSize is how many KV cache events TensorRT-LLM keeps between
// two drains of /kv_cache_events (0 disables events). The agent polls often;
// the margin absorbs a slow poll during a burst of long prompts.
const EventBufferSize = 65536

// Adapter launches and reads TensorRT-LLM.
type Adapter struct{}

var _ engine.Adapter = (*Adapter)(nil)

// New returns the TensorRT-LLM adapter.
func New() *Adapter { return &Adapter{} }

// Kind implements engine.Adapter.
func (*Adapter) Kind() string { return Kind }

// Options is the LLM API options file for s (YAML):
//
//   - enable_iter_perf_stats: without it the PyTorch backend (the default)
//     serves an empty /metrics;
//   - kv_cache_config: block reuse (prefix caching) and an event buffer, so
//     /kv_cache_events has something to drain; tokens_per_block when the
//     deployment fixes the block size. Setting kv_cache_config here replaces
//     the one trtllm-serve builds from --kv_cache_free_gpu_memory_fraction,
//     so that flag no longer applies (the fraction stays 0.9, TensorRT-LLM's
//     default);
//   - for P/D workers, cache_transceiver_config with the DEFAULT backend
//     (NIXL in current releases), and on the prefill (context) worker
//     disable_overlap_scheduler, which context servers do not support.
//
// An operator who passes their own --extra_llm_api_options in engine_args
// replaces this file entirely (click keeps the last value).
func Options(s engine.Spec) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by the Strata agent for worker %s; regenerated on every start.\n", yamlComment(s.WorkerID))
	b.WriteString("enable_iter_perf_stats: true\n")
	b.WriteString("kv_cache_config:\n")
	b.WriteString("  enable_block_reuse: true\n")
	fmt.Fprintf(&b, "  event_buffer_max_size: %d\n", EventBufferSize)
	if s.BlockSize > 0 {
		fmt.Fprintf(&b, "  tokens_per_block: %d\n", s.BlockSize)
	}
	if s.Disaggregated() {
		b.WriteString("cache_transceiver_config:\n")
		b.WriteString("  backend: DEFAULT\n")
		if s.EffectiveRole() == stratav1.WorkerRole_WORKER_ROLE_PREFILL {
			b.WriteString("disable_overlap_scheduler: true\n")
		}
	}
	return b.Bytes()
}

func yamlComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// Command implements engine.Adapter:
//
//	trtllm-serve MODEL --host H --port P --tp_size T [--tokenizer TOK]
//	  --extra_llm_api_options WORKDIR/trtllm-llm-api-options.yaml EXTRA...
//
// trtllm-serve has no served-model-name flag: /v1/models reports the model
// directory's base name (or the HF id), and requests are served whatever
// "model" they carry. Spec.BlockSize goes to the options file. In P/D mode
// the cache transceiver (UCX/NIXL) opens its own ports outside the worker's
// range; the router drives P/D with disaggregated_params (ENGINES.md), so no
// --server_role is needed.
func (*Adapter) Command(s engine.Spec) (engine.Launch, error) {
	if err := s.Validate(); err != nil {
		return engine.Launch{}, err
	}
	if err := s.ValidateGPUs(); err != nil {
		return engine.Launch{}, err
	}
	if s.WorkDir == "" {
		return engine.Launch{}, fmt.Errorf("%w: worker %q: TensorRT-LLM needs a work dir for its options file",
			engine.ErrInvalidSpec, s.WorkerID)
	}
	args := []string{
		s.Model,
		"--host", s.BindHost(),
		"--port", strconv.Itoa(s.Port),
		"--tp_size", strconv.Itoa(s.TensorParallelSize),
	}
	if s.Tokenizer != "" {
		args = append(args, "--tokenizer", s.Tokenizer)
	}
	args = append(args, "--extra_llm_api_options", filepath.Join(s.WorkDir, OptionsFile))
	args = append(args, s.ExtraArgs...)
	return engine.Launch{
		Path:  s.ExecutableOr("trtllm-serve"),
		Args:  args,
		Env:   append(engine.CUDAEnv(s), "PYTHONUNBUFFERED=1"),
		Files: map[string][]byte{OptionsFile: Options(s)},
	}, nil
}

// KVEvents implements engine.Adapter: TensorRT-LLM queues events in the
// engine and hands them out on POST /kv_cache_events, which drains the
// queue, so the agent must be its only caller.
func (*Adapter) KVEvents(s engine.Spec) engine.KVEventSource {
	return engine.KVEventSource{Format: engine.KVFormatTRTLLM, PollURL: s.DialURL() + "/kv_cache_events"}
}

// HealthPath implements engine.Adapter.
func (*Adapter) HealthPath() string { return "/health" }

// MetricsPath implements engine.Adapter. Like /kv_cache_events, /metrics
// drains: it returns the iteration statistics gathered since the previous
// call, so only the agent may scrape it.
func (*Adapter) MetricsPath() string { return "/metrics" }

// Canary implements engine.Adapter.
func (*Adapter) Canary(s engine.Spec) engine.Canary { return engine.CompletionCanary(s, nil) }

// iterationStats is the part of TensorRT-LLM's IterationStats JSON the
// agent uses. Pointers tell an absent field from a zero.
type iterationStats struct {
	Iter              *float64 `json:"iter"`
	NumActiveRequests *float64 `json:"numActiveRequests"`
	NumQueuedRequests *float64 `json:"numQueuedRequests"`
	KVCacheStats      *struct {
		MaxNumBlocks   *float64 `json:"maxNumBlocks"`
		FreeNumBlocks  *float64 `json:"freeNumBlocks"`
		UsedNumBlocks  *float64 `json:"usedNumBlocks"`
		TokensPerBlock *float64 `json:"tokensPerBlock"`
		ReusedBlocks   *float64 `json:"reusedBlocks"`
		MissedBlocks   *float64 `json:"missedBlocks"`
	} `json:"kvCacheStats"`
}

// ParseLoad implements engine.Adapter. /metrics is a JSON list of the
// iterations since the last scrape; the newest (highest "iter") is used:
//
//	Running       numActiveRequests
//	Waiting       numQueuedRequests
//	KVUsage       kvCacheStats.usedNumBlocks / maxNumBlocks
//	              (or 1 - freeNumBlocks / maxNumBlocks)
//	PrefixHits    kvCacheStats.reusedBlocks × tokensPerBlock
//	PrefixQueries (reusedBlocks + missedBlocks) × tokensPerBlock
//	              (TensorRT-LLM counts both cumulatively, in blocks)
//	Preemptions   0: TensorRT-LLM reports none
//
// An empty list means no iteration ran since the last scrape, so nothing
// is running or queued: a zero Load, without KV usage. A single object is
// accepted as a list of one.
func (*Adapter) ParseLoad(body []byte) (engine.Load, error) {
	body = bytes.TrimSpace(body)
	var list []iterationStats
	switch {
	case len(body) == 0:
		return engine.Load{}, errors.New("trtllm metrics: empty body")
	case body[0] == '{':
		var one iterationStats
		if err := json.Unmarshal(body, &one); err != nil {
			return engine.Load{}, fmt.Errorf("trtllm metrics: %w", err)
		}
		list = []iterationStats{one}
	default:
		if err := json.Unmarshal(body, &list); err != nil {
			return engine.Load{}, fmt.Errorf("trtllm metrics: %w", err)
		}
	}
	if len(list) == 0 {
		return engine.Load{}, nil
	}
	last := 0
	for i, st := range list {
		if st.Iter != nil && (list[last].Iter == nil || *st.Iter >= *list[last].Iter) {
			last = i
		}
	}
	st := list[last]
	if st.NumActiveRequests == nil {
		return engine.Load{}, errors.New("trtllm metrics: no numActiveRequests: not TensorRT-LLM iteration stats")
	}
	l := engine.Load{Running: engine.Count(*st.NumActiveRequests)}
	if st.NumQueuedRequests != nil {
		l.Waiting = engine.Count(*st.NumQueuedRequests)
	}
	if kv := st.KVCacheStats; kv != nil {
		if kv.MaxNumBlocks != nil && *kv.MaxNumBlocks > 0 {
			switch {
			case kv.UsedNumBlocks != nil:
				l.KVUsage = engine.Fraction(*kv.UsedNumBlocks / *kv.MaxNumBlocks)
			case kv.FreeNumBlocks != nil:
				l.KVUsage = engine.Fraction(1 - *kv.FreeNumBlocks / *kv.MaxNumBlocks)
			}
		}
		tokens := 1.0
		if kv.TokensPerBlock != nil && *kv.TokensPerBlock > 0 {
			tokens = *kv.TokensPerBlock
		}
		var reused, missed float64
		if kv.ReusedBlocks != nil {
			reused = *kv.ReusedBlocks
		}
		if kv.MissedBlocks != nil {
			missed = *kv.MissedBlocks
		}
		l.PrefixHits = engine.Total(reused * tokens)
		l.PrefixQueries = engine.Total((reused + missed) * tokens)
	}
	return l, nil
}
