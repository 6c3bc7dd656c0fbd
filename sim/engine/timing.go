package engine

import "time"

// TimingModel prices one scheduler step the way a GPU would take it, so the
// simulator's latencies and throughput behave like a real engine's under
// load. The defaults are the widely used polynomial fit for an 8B-class model
// on one H100 (ENGINES.md); all coefficients are in milliseconds.
type TimingModel struct {
	// Prefill: A·T² + B·T + C, T = uncached prompt tokens computed in the step.
	PrefillA, PrefillB, PrefillC float64
	// Decode: A·u² + B·u + C with u = KV-cache usage (0–1), at least MinDecode.
	DecodeA, DecodeB, DecodeC float64
	MinDecodeMS               float64
	// KVBytesPerToken and KVTransferGBps price a disaggregated transfer.
	KVBytesPerToken int64
	KVTransferGBps  float64
	// KVConnectorGBps prices onboarding blocks a KV connector read from
	// the node's tiers: the host-to-GPU copy (PCIe 4.0 x16: ~25 GB/s).
	KVConnectorGBps float64
}

// DefaultTiming returns the reference coefficients. KV bytes per token are
// Llama-3-8B's: 32 layers · 2 (K,V) · 8 KV heads · 128 dims · 2 bytes (bf16).
func DefaultTiming() TimingModel {
	return TimingModel{
		PrefillA: 4.209989e-7, PrefillB: 1.518344e-2, PrefillC: 16.50142,
		DecodeA: -25.74, DecodeB: 54.01, DecodeC: 5.74,
		MinDecodeMS:     1,
		KVBytesPerToken: 32 * 2 * 8 * 128 * 2,
		KVTransferGBps:  25,
		KVConnectorGBps: 25,
	}
}

// Prefill is the time to compute tokens uncached prompt tokens in one step.
func (m TimingModel) Prefill(tokens int) time.Duration {
	if tokens <= 0 {
		return 0
	}
	t := float64(tokens)
	return ms(m.PrefillA*t*t + m.PrefillB*t + m.PrefillC)
}

// Decode is the time of one decode step at KV-cache usage u.
func (m TimingModel) Decode(u float64) time.Duration {
	v := m.DecodeA*u*u + m.DecodeB*u + m.DecodeC
	return ms(max(v, m.MinDecodeMS))
}

// Step prices a step that computes prefillTokens prompt tokens and advances
// decodes sequences by one token. A mixed batch pays for both parts: the
// prefill chunk and the decode tokens share the same forward passes only in
// part, and charging both keeps chunked prefill from looking free.
func (m TimingModel) Step(prefillTokens, decodes int, usage float64) time.Duration {
	var d time.Duration
	if prefillTokens > 0 {
		d += m.Prefill(prefillTokens)
	}
	if decodes > 0 {
		d += m.Decode(usage)
	}
	return d
}

// Transfer is the time to move the KV cache of tokens tokens between workers.
func (m TimingModel) Transfer(tokens int) time.Duration {
	if tokens <= 0 || m.KVTransferGBps <= 0 {
		return 0
	}
	secs := float64(int64(tokens)*m.KVBytesPerToken) / (m.KVTransferGBps * 1e9)
	return time.Duration(secs * float64(time.Second))
}

// Onboard is the time to copy bytes of KV from host memory to the GPU.
func (m TimingModel) Onboard(bytes int64) time.Duration {
	if bytes <= 0 || m.KVConnectorGBps <= 0 {
		return 0
	}
	return time.Duration(float64(bytes) / (m.KVConnectorGBps * 1e9) * float64(time.Second))
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
