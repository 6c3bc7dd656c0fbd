package storetest

import (
	"slices"
	"testing"
	"time"
)

// BenchBlock is the block size of the tiers' benchmarks: a 16-token block
// of Llama-3-8B with bf16 KV (32 layers × K and V × 8 KV heads × 128 dims ×
// 2 bytes × 16 tokens = 2 MiB).
const BenchBlock = 32 * 2 * 8 * 128 * 2 * 16

// Timer collects the durations of one kind of operation in a benchmark,
// so that a store and its baseline, timed in turns in one loop, see the
// same machine (it is shared and noisy) and can be reported as a ratio.
type Timer struct {
	name  string
	bytes int64
	d     []time.Duration
}

// NewTimer names the operation for its metrics.
func NewTimer(name string) *Timer { return &Timer{name: name} }

// Time runs fn, an operation on n bytes, and records its duration.
func (t *Timer) Time(n int, fn func()) {
	start := time.Now()
	fn()
	t.d = append(t.d, time.Since(start))
	t.bytes += int64(n)
}

// MBps is the throughput over the recorded operations, in MB/s.
func (t *Timer) MBps() float64 {
	var total time.Duration
	for _, d := range t.d {
		total += d
	}
	if total == 0 {
		return 0
	}
	return float64(t.bytes) / 1e6 / total.Seconds()
}

// Report adds "<name>-MB/s", "<name>-p50-µs" and "<name>-p99-µs" to b.
func (t *Timer) Report(b *testing.B) {
	if len(t.d) == 0 {
		return
	}
	s := slices.Clone(t.d)
	slices.Sort(s)
	b.ReportMetric(t.MBps(), t.name+"-MB/s")
	b.ReportMetric(float64(s[len(s)/2].Microseconds()), t.name+"-p50-µs")
	b.ReportMetric(float64(s[(len(s)*99)/100].Microseconds()), t.name+"-p99-µs")
}

// Compare reports both timers and tier's throughput as a fraction of
// base's, "<tier>/<base>".
func Compare(b *testing.B, tier, base *Timer) {
	tier.Report(b)
	base.Report(b)
	if m := base.MBps(); m > 0 {
		b.ReportMetric(tier.MBps()/m, tier.name+"/"+base.name)
	}
}

// Versus times tier(i) and base(i), each moving size bytes, in turns in
// every round i of b.Loop (who goes first alternates, so that neither always
// pays for what the other left behind: dirty pages to write back, a
// connection to reopen), and reports both and tier's throughput as a
// fraction of base's.
func Versus(b *testing.B, size int, baseName string, tier, base func(i int)) {
	tt, bt := NewTimer("tier"), NewTimer(baseName)
	runTier := func(i int) { tt.Time(size, func() { tier(i) }) }
	runBase := func(i int) { bt.Time(size, func() { base(i) }) }
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			runBase(i)
			runTier(i)
		} else {
			runTier(i)
			runBase(i)
		}
		i++
	}
	Compare(b, tt, bt)
}
