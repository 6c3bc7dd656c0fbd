package command

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-llm/strata/sim"
	"github.com/strata-llm/strata/sim/engine"
	"github.com/strata-llm/strata/sim/kvevents"
	"github.com/strata-llm/strata/sim/server"
)

func newSimCommand(logger func() (*slog.Logger, error)) *cobra.Command {
	opts := sim.Options{Engine: engine.DefaultConfig()}
	var (
		role, encoding, hashes, prefill, decode string
		noPrefixCaching                         bool
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated engine that speaks vLLM's protocols (OpenAI API, KV events, metrics, P/D)",
		Long: `sim serves the OpenAI API like 'vllm serve', with vLLM's flags, metrics and KV
event stream, but computes nothing: a timing model prices each scheduler step
as a GPU would. It is the default engine on machines without GPUs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger()
			if err != nil {
				return err
			}
			opts.Logger = log
			opts.Role = server.Role(role)
			opts.Engine.EnablePrefixCaching = !noPrefixCaching
			if err := parseCoefficients(prefill, &opts.Engine.Timing.PrefillA, &opts.Engine.Timing.PrefillB, &opts.Engine.Timing.PrefillC); err != nil {
				return fmt.Errorf("--prefill-coefficients: %w", err)
			}
			if err := parseCoefficients(decode, &opts.Engine.Timing.DecodeA, &opts.Engine.Timing.DecodeB, &opts.Engine.Timing.DecodeC); err != nil {
				return fmt.Errorf("--decode-coefficients: %w", err)
			}
			switch encoding {
			case "map":
				opts.EventEncoding = kvevents.EncodingMap
			case "array":
				opts.EventEncoding = kvevents.EncodingArray
			default:
				return fmt.Errorf("--kv-events-encoding %q: want map or array", encoding)
			}
			switch hashes {
			case "int":
				opts.EventHashes = kvevents.HashUint64
			case "bytes":
				opts.EventHashes = kvevents.HashBytes
			default:
				return fmt.Errorf("--kv-events-hashes %q: want int or bytes", hashes)
			}
			s, err := sim.New(cmd.Context(), opts)
			if err != nil {
				return err
			}
			log.Info("strata sim serving", "addr", s.Addr.String(), "model", opts.ServedNames()[0],
				"gpu_blocks", opts.Engine.NumGPUBlocks, "block_size", opts.Engine.BlockSize, "speedup", opts.Engine.Speedup)
			return s.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	e := &opts.Engine
	// Flags named as vLLM names them.
	f.StringVar(&opts.Host, "host", "", "host to listen on (all interfaces when empty)")
	f.IntVar(&opts.Port, "port", 8000, "port to listen on")
	f.StringVar(&opts.Model, "model", "strata-sim", "model name")
	f.StringSliceVar(&opts.ServedModelNames, "served-model-name", nil, "names the model answers to (default: --model)")
	f.StringVar(&opts.TokenizerDir, "tokenizer", "", "model directory with the Hugging Face tokenizer (tokenizer.json, tokenizer_config.json) to tokenize with (default: a built-in byte-level tokenizer)")
	f.IntVar(&e.BlockSize, "block-size", e.BlockSize, "tokens per KV-cache block")
	f.IntVar(&e.NumGPUBlocks, "num-gpu-blocks-override", e.NumGPUBlocks, "number of GPU KV-cache blocks")
	f.IntVar(&e.MaxNumSeqs, "max-num-seqs", e.MaxNumSeqs, "maximum sequences per step")
	f.IntVar(&e.MaxNumBatchedTokens, "max-num-batched-tokens", e.MaxNumBatchedTokens, "maximum tokens per step (chunked prefill budget)")
	f.IntVar(&e.MaxModelLen, "max-model-len", e.MaxModelLen, "model context length")
	f.BoolVar(&noPrefixCaching, "no-enable-prefix-caching", false, "disable prefix caching")
	f.StringVar(&opts.KVEventsConfig, "kv-events-config", "", `KV event publisher, vLLM's JSON: {"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","replay_endpoint":"tcp://*:5558","topic":""}`)
	f.StringVar(&opts.KVTransferConfig, "kv-transfer-config", "", `P/D connector, vLLM's JSON: {"kv_connector":"NixlConnector","kv_role":"kv_both"}`)
	f.Int64Var(&opts.MaxBodyBytes, "max-request-body-bytes", 32<<20, "largest accepted request body")
	f.IntVar(&opts.StallAfter, "fault-stall-after", 0, "fault injection: hang every completion request after this many, /health staying up (0: off)")
	// Simulator-only flags.
	f.Float64Var(&e.Speedup, "speedup", e.Speedup, "divide every simulated duration by this factor")
	f.Uint64Var(&e.Seed, "seed", 0, "seed for block hashes and sampling")
	f.StringVar(&role, "role", "", "P/D role: prefill, decode or both (default: from kv_role)")
	f.IntVar(&e.MeanOutputTokens, "mean-output-tokens", e.MeanOutputTokens, "mean natural response length before EOS (0: never EOS)")
	f.Int64Var(&e.Timing.KVBytesPerToken, "kv-bytes-per-token", e.Timing.KVBytesPerToken, "KV-cache bytes per token (layers·2·kv_heads·head_dim·dtype bytes): prices P/D transfers and sizes the blocks offloaded to the KV tiers")
	f.Float64Var(&e.Timing.KVTransferGBps, "kv-transfer-gbps", e.Timing.KVTransferGBps, "P/D KV transfer bandwidth, GB/s")
	f.DurationVar(&e.KVHoldTimeout, "kv-hold-timeout", e.KVHoldTimeout, "free KV held for a remote decode after this long")
	f.StringVar(&prefill, "prefill-coefficients", coefficients(e.Timing.PrefillA, e.Timing.PrefillB, e.Timing.PrefillC), "prefill ms = A·T²+B·T+C, as A,B,C")
	f.StringVar(&decode, "decode-coefficients", coefficients(e.Timing.DecodeA, e.Timing.DecodeB, e.Timing.DecodeC), "decode step ms = A·u²+B·u+C, as A,B,C")
	f.StringVar(&encoding, "kv-events-encoding", "map", "KV event encoding: map (vLLM >= 0.24) or array (<= 0.23)")
	f.StringVar(&hashes, "kv-events-hashes", "int", "block hashes on the wire: int (uint64) or bytes (raw digest)")
	f.BoolVar(&opts.ReplayWithTopic, "kv-events-replay-topic", true, "replay replies carry the topic (vLLM >= 0.26)")
	f.StringVar(&opts.KVBMSocket, "kvbm-socket", "", "the node agent's KV block API socket: offload evicted blocks there and onboard GPU misses from it (docs/kvbm.md)")
	f.StringVar(&opts.KVBMWorkerID, "kvbm-worker-id", "", "the worker id the agent launched this engine as (with --kvbm-socket)")
	f.Float64Var(&e.Timing.KVConnectorGBps, "kv-connector-gbps", e.Timing.KVConnectorGBps, "host-to-GPU bandwidth, GB/s, charged for blocks onboarded from the KV tiers")
	return cmd
}

func coefficients(a, b, c float64) string {
	return strings.Join([]string{
		strconv.FormatFloat(a, 'g', -1, 64), strconv.FormatFloat(b, 'g', -1, 64), strconv.FormatFloat(c, 'g', -1, 64),
	}, ",")
}

func parseCoefficients(s string, a, b, c *float64) error {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return fmt.Errorf("%q: want three comma-separated numbers", s)
	}
	for i, dst := range []*float64{a, b, c} {
		v, err := strconv.ParseFloat(strings.TrimSpace(parts[i]), 64)
		if err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		*dst = v
	}
	return nil
}
