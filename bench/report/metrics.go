// Package report renders `strata bench` results: a self-contained HTML
// report with inline SVG plots (latency CDFs, throughput and TTFT over
// time, per-worker load), a text summary, and the comparison of several
// results side by side with ratios to the first.
package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Result is a run's result file.
type Result = stratav1.BenchResult

// metric is one row of the summary and comparison tables.
type metric struct {
	group, label string
	value        func(*Result) float64
	// decimals to print; better says which way is an improvement (-1
	// lower, +1 higher, 0 neither), for highlighting ratios.
	decimals int
	better   int
}

func dist(get func(*Result) *stratav1.BenchDistribution, pick func(*stratav1.BenchDistribution) float64) func(*Result) float64 {
	return func(r *Result) float64 { return pick(get(r)) }
}

func latencyRows(group, short string, get func(*Result) *stratav1.BenchDistribution) []metric {
	return []metric{
		{group, "Mean " + short + " (ms)", dist(get, (*stratav1.BenchDistribution).GetMean), 2, -1},
		{group, "P50 " + short + " (ms)", dist(get, (*stratav1.BenchDistribution).GetP50), 2, -1},
		{group, "P90 " + short + " (ms)", dist(get, (*stratav1.BenchDistribution).GetP90), 2, -1},
		{group, "P99 " + short + " (ms)", dist(get, (*stratav1.BenchDistribution).GetP99), 2, -1},
	}
}

// metrics are the rows, in the order `vllm bench serve` prints them, then
// Strata's own.
var metrics = func() []metric {
	const run, cache, sched = "Run", "Prefix cache", "Load generator"
	m := []metric{
		{run, "Successful requests", func(r *Result) float64 { return float64(r.GetRequestsSucceeded()) }, 0, +1},
		{run, "Failed requests", func(r *Result) float64 { return float64(r.GetRequestsFailed()) }, 0, -1},
		{run, "Benchmark duration (s)", (*Result).GetDurationSeconds, 2, 0},
		{run, "Total input tokens", func(r *Result) float64 { return float64(r.GetPromptTokens()) }, 0, 0},
		{run, "Total generated tokens", func(r *Result) float64 { return float64(r.GetOutputTokens()) }, 0, 0},
		{run, "Request throughput (req/s)", (*Result).GetRequestThroughputPerSecond, 2, +1},
		{run, "Output token throughput (tok/s)", (*Result).GetOutputTokenThroughputPerSecond, 1, +1},
		{run, "Total token throughput (tok/s)", (*Result).GetTotalTokenThroughputPerSecond, 1, +1},
		{run, "Request goodput (req/s)", func(r *Result) float64 { return r.GetGoodput().GetRequestsPerSecond() }, 2, +1},
		{run, "Goodput fraction", func(r *Result) float64 { return r.GetGoodput().GetFraction() }, 3, +1},
		{cache, "Cached-token fraction", (*Result).GetCachedTokenFraction, 3, +1},
		{cache, "Infinite-cache bound", func(r *Result) float64 { return r.GetReuseBounds().GetInfiniteHitFraction() }, 3, 0},
		{cache, "Pooled-cache (LRU) bound", func(r *Result) float64 { return r.GetReuseBounds().GetPooledHitFraction() }, 3, 0},
		{cache, "Cached / pooled bound", cachedOfPooled, 3, +1},
	}
	m = append(m, latencyRows("Time to first token", "TTFT", (*Result).GetTtftMs)...)
	m = append(m, latencyRows("Time per output token (excl. 1st token)", "TPOT", (*Result).GetTpotMs)...)
	m = append(m, latencyRows("Inter-token latency", "ITL", (*Result).GetItlMs)...)
	m = append(m, latencyRows("End-to-end latency", "E2EL", (*Result).GetE2ELatencyMs)...)
	return append(m,
		metric{sched, "P50 schedule lag (ms)", dist((*Result).GetScheduleLagMs, (*stratav1.BenchDistribution).GetP50), 3, -1},
		metric{sched, "P99 schedule lag (ms)", dist((*Result).GetScheduleLagMs, (*stratav1.BenchDistribution).GetP99), 3, -1},
		metric{sched, "Throttled by --max-concurrency", func(r *Result) float64 { return float64(r.GetRequestsThrottled()) }, 0, 0},
	)
}()

// cachedOfPooled is the cached-token fraction as a share of what one
// cache of the cluster's capacity would have hit: how close routing came
// to the physical limit (0 when the bound is 0).
func cachedOfPooled(r *Result) float64 {
	if b := r.GetReuseBounds().GetPooledHitFraction(); b > 0 {
		return r.GetCachedTokenFraction() / b
	}
	return 0
}

func (m metric) format(r *Result) string {
	return formatNumber(m.value(r), m.decimals)
}

func formatNumber(v float64, decimals int) string {
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// ratio is b/a as text ("0.33×"), or "–" when a is 0.
func ratio(a, b float64) (string, float64, bool) {
	if a == 0 {
		if b == 0 {
			return "1.00×", 1, true
		}
		return "–", 0, false
	}
	q := b / a
	return strconv.FormatFloat(q, 'f', 2, 64) + "×", q, true
}

// WriteSummary prints a result as `vllm bench serve` prints its own: one
// line per metric under group headings, then errors and bounds.
func WriteSummary(w io.Writer, r *Result) error {
	var b strings.Builder
	const width = 50
	b.WriteString(center(" Serving Benchmark Result ", width, '=') + "\n")
	group := ""
	for _, m := range metrics {
		if m.group != group {
			if group != "" {
				b.WriteString(center(m.group, width, '-') + "\n")
			}
			group = m.group
		}
		fmt.Fprintf(&b, "%-40s%10s\n", m.label+":", m.format(r))
	}
	if len(r.GetErrors()) > 0 {
		b.WriteString(center("Errors", width, '-') + "\n")
		for _, kind := range sortedKeys(r.GetErrors()) {
			fmt.Fprintf(&b, "%-40s%10d\n", kind+":", r.GetErrors()[kind])
			fmt.Fprintf(&b, "  e.g. %s\n", truncate(r.GetErrorExamples()[kind], 200))
		}
	}
	if n := r.GetRequestsOutputMismatch(); n > 0 {
		fmt.Fprintf(&b, "note: %d requests got another output length than asked: the endpoint may ignore ignore_eos/min_tokens\n", n)
	}
	if n := r.GetRequestsNotSent(); n > 0 {
		fmt.Fprintf(&b, "note: %d requests were not sent (duration or cancellation)\n", n)
	}
	b.WriteString(strings.Repeat("=", width) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func center(s string, width int, fill byte) string {
	if len(s) >= width {
		return s
	}
	left := (width - len(s)) / 2
	return strings.Repeat(string(fill), left) + s + strings.Repeat(string(fill), width-len(s)-left)
}
