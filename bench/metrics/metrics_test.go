package metrics_test

import (
	"math"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench/metrics"
)

const ms = time.Millisecond

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4}
	// numpy.percentile([1, 2, 3, 4], q) for these q.
	for q, want := range map[float64]float64{0: 1, 0.25: 1.75, 0.5: 2.5, 0.9: 3.7, 0.99: 3.97, 1: 4} {
		if got := metrics.Percentile(s, q); !near(got, want) {
			t.Errorf("p%v = %v, want %v", q*100, got, want)
		}
	}
	if metrics.Percentile(nil, 0.5) != 0 || metrics.Percentile([]float64{7}, 0.99) != 7 {
		t.Fatal("empty or single-sample percentiles")
	}
}

func TestSummarize(t *testing.T) {
	samples := []float64{5, 1, 4, 2, 3} // unsorted on purpose
	d := metrics.Summarize(samples)
	if d.Count != 5 || d.Mean != 3 || d.Min != 1 || d.Max != 5 || d.P50 != 3 || !near(d.P90, 4.6) || !near(d.P99, 4.96) {
		t.Fatalf("summary %+v", d)
	}
	if !near(d.Stddev, math.Sqrt(2)) { // population stddev of 1..5
		t.Fatalf("stddev %v", d.Stddev)
	}
	if len(d.Cdf) != len(metrics.CDFQuantiles) || d.Cdf[0].Value != 1 || d.Cdf[len(d.Cdf)-1].Value != 5 || d.Cdf[len(d.Cdf)-1].Q != 1 {
		t.Fatalf("cdf ends %v … %v", d.Cdf[0], d.Cdf[len(d.Cdf)-1])
	}
	for i := 1; i < len(d.Cdf); i++ {
		if d.Cdf[i].Q <= d.Cdf[i-1].Q || d.Cdf[i].Value < d.Cdf[i-1].Value {
			t.Fatalf("cdf not increasing at %d", i)
		}
	}
	if d := metrics.Summarize(nil); d.Count != 0 || d.Cdf != nil {
		t.Fatalf("empty summary %+v", d)
	}
}

func TestSLO(t *testing.T) {
	ok := metrics.Record{Sent: true, SentAt: 0, Done: 500 * ms, Chunks: []time.Duration{100 * ms, 200 * ms, 500 * ms}, OutputTokens: 5}
	// TTFT 100 ms, TPOT (500−100)/4 = 100 ms, E2E 500 ms.
	oneToken := metrics.Record{Sent: true, Done: 50 * ms, Chunks: []time.Duration{50 * ms}, OutputTokens: 1}
	noToken := metrics.Record{Sent: true, Done: 50 * ms, OutputTokens: 0}
	failed := ok
	failed.ErrKind = "http_503"
	for _, tc := range []struct {
		name string
		slo  metrics.SLO
		r    metrics.Record
		want bool
	}{
		{"no objective", metrics.SLO{}, ok, true},
		{"ttft met at the limit", metrics.SLO{TTFT: 100 * ms}, ok, true},
		{"ttft missed", metrics.SLO{TTFT: 99 * ms}, ok, false},
		{"tpot met", metrics.SLO{TPOT: 100 * ms}, ok, true},
		{"tpot missed", metrics.SLO{TPOT: 99 * ms}, ok, false},
		{"e2e missed", metrics.SLO{E2E: 499 * ms}, ok, false},
		{"all met", metrics.SLO{TTFT: time.Second, TPOT: time.Second, E2E: time.Second}, ok, true},
		{"one token has no tpot", metrics.SLO{TPOT: ms}, oneToken, true},
		{"no token misses ttft", metrics.SLO{TTFT: time.Second}, noToken, false},
		{"failed never counts", metrics.SLO{}, failed, false},
	} {
		if got := tc.slo.Met(&tc.r); got != tc.want {
			t.Errorf("%s: Met = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// records is a hand-made run: two measured successes, one failure, one
// warm-up request and one never sent.
func records() []metrics.Record {
	return []metrics.Record{
		{ // warm-up: sent first, not measured
			Index: 0, Warmup: true, Sent: true, SentAt: 0, Done: 50 * ms,
			Chunks: []time.Duration{10 * ms}, PromptTokens: 1000, OutputTokens: 1, Worker: "w1",
		},
		{ // TTFT 100, ITL 50 and 50, E2E 210, TPOT (210−100)/2 = 55
			Index: 1, Sent: true, Scheduled: 100 * ms, SentAt: 101 * ms, Done: 311 * ms,
			Chunks: []time.Duration{100 * ms, 150 * ms, 200 * ms}, PromptTokens: 100, CachedTokens: 50,
			HasCached: true, HasUsage: true, MaxTokens: 3, OutputTokens: 3, Worker: "w1",
		},
		{ // TTFT 400, ITL 100, E2E 500, TPOT (500−400)/3 ≈ 33.3; output 4 in 2 chunks
			Index: 2, Sent: true, Scheduled: 600 * ms, SentAt: 700 * ms, Done: 1200 * ms, Throttled: true,
			Chunks: []time.Duration{400 * ms, 500 * ms}, PromptTokens: 300, CachedTokens: 0,
			HasCached: true, HasUsage: true, MaxTokens: 5, OutputTokens: 4, Worker: "w2",
		},
		{ // failed
			Index: 3, Sent: true, Scheduled: 1000 * ms, SentAt: 1001 * ms, Done: 1005 * ms,
			ErrKind: "http_503", Err: "http_503: busy", Worker: "w2",
		},
		{Index: 4, Scheduled: 5 * time.Second}, // never sent
	}
}

func TestAggregate(t *testing.T) {
	res := metrics.Aggregate(records(), metrics.Options{SLO: metrics.SLO{TTFT: 300 * ms}, SaveRequests: true})
	check := func(name string, got, want float64) {
		t.Helper()
		if !near(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("sent", float64(res.RequestsSent), 3)
	check("succeeded", float64(res.RequestsSucceeded), 2)
	check("failed", float64(res.RequestsFailed), 1)
	check("warm-up", float64(res.WarmupRequests), 1)
	check("not sent", float64(res.RequestsNotSent), 1)
	check("throttled", float64(res.RequestsThrottled), 1)
	check("output mismatch", float64(res.RequestsOutputMismatch), 1)
	check("prompt tokens", float64(res.PromptTokens), 400)
	check("output tokens", float64(res.OutputTokens), 7)
	check("cached tokens", float64(res.CachedTokens), 50)
	check("cached fraction", res.CachedTokenFraction, 50.0/400)
	// Window: first measured send (101 ms) to last end (1205 ms... the
	// failure ended at 1005, the last success at 1200).
	check("duration", res.DurationSeconds, 1.099)
	check("request throughput", res.RequestThroughputPerSecond, 2/1.099)
	check("output throughput", res.OutputTokenThroughputPerSecond, 7/1.099)
	check("total throughput", res.TotalTokenThroughputPerSecond, 407/1.099)
	check("goodput requests", float64(res.Goodput.Requests), 1)
	check("goodput fraction", res.Goodput.Fraction, 1.0/3)
	check("goodput rate", res.Goodput.RequestsPerSecond, 1/1.099)
	check("ttft mean", res.TtftMs.Mean, 250)
	check("ttft p50", res.TtftMs.P50, 250)
	check("ttft p99", res.TtftMs.P99, 100+0.99*300)
	check("itl count", float64(res.ItlMs.Count), 3)
	check("itl mean", res.ItlMs.Mean, 200.0/3)
	check("itl p50", res.ItlMs.P50, 50)
	// TPOT is a time.Duration: 100/3 ms truncates to the nanosecond.
	if want := (55 + 100.0/3) / 2; math.Abs(res.TpotMs.Mean-want) > 1e-6 {
		t.Errorf("tpot mean = %v, want %v", res.TpotMs.Mean, want)
	}
	check("e2e p50", res.E2ELatencyMs.P50, 355)
	check("lag max", res.ScheduleLagMs.Max, 100)
	check("lag p50", res.ScheduleLagMs.P50, 1)
	if res.Errors["http_503"] != 1 || res.ErrorExamples["http_503"] != "http_503: busy" {
		t.Errorf("errors %v %v", res.Errors, res.ErrorExamples)
	}

	// Seconds 0 (warm-up only) and 1.
	ts := res.TimeSeries
	if len(ts) != 2 {
		t.Fatalf("%d seconds, want 2", len(ts))
	}
	s0, s1 := ts[0], ts[1]
	if s0.Warmup != false || s0.RequestsSent != 3 || s1.RequestsSent != 1 {
		// The first measured request is sent at 101 ms, inside second 0.
		t.Errorf("sent per second %d %d, warm-up %v", s0.RequestsSent, s1.RequestsSent, s0.Warmup)
	}
	if s0.RequestsSucceeded != 2 || s1.RequestsSucceeded != 1 || s1.RequestsFailed != 1 {
		t.Errorf("ends per second: %d, %d+%d", s0.RequestsSucceeded, s1.RequestsSucceeded, s1.RequestsFailed)
	}
	// Tokens by chunk time: warm-up 1 at 10 ms, request 1 at 201/251/301 ms,
	// request 2 (4 tokens over 2 chunks) at 1100 and 1200 ms.
	if s0.OutputTokens != 4 || s1.OutputTokens != 4 {
		t.Errorf("output tokens per second %d %d, want 4 4", s0.OutputTokens, s1.OutputTokens)
	}
	if s0.InFlight != 1 || s1.InFlight != 0 {
		t.Errorf("in flight %d %d, want 1 0", s0.InFlight, s1.InFlight)
	}
	// First tokens in second 0: warm-up (10) and request 1 (100); second 1: 400.
	if !near(s0.TtftP50Ms, 55) || !near(s1.TtftP50Ms, 400) || !near(s0.ScheduleLagMaxMs, 100) {
		t.Errorf("ttft p50 per second %v %v, lag %v", s0.TtftP50Ms, s1.TtftP50Ms, s0.ScheduleLagMaxMs)
	}

	if len(res.Workers) != 2 {
		t.Fatalf("workers %v", res.Workers)
	}
	w1, w2 := res.Workers[0], res.Workers[1]
	if w1.Worker != "w1" || w1.Requests != 1 || w1.PromptTokens != 100 || !near(w1.CachedTokenFraction, 0.5) ||
		len(w1.RequestsPerSecond) != 2 || w1.RequestsPerSecond[0] != 2 {
		t.Errorf("w1 %+v", w1)
	}
	if w2.Requests != 2 || w2.Failed != 1 || w2.RequestsPerSecond[0] != 1 || w2.RequestsPerSecond[1] != 1 || w2.TtftP50Ms != 400 {
		t.Errorf("w2 %+v", w2)
	}

	if len(res.Requests) != 5 || res.Requests[4].ErrorKind != "not_sent" || res.Requests[1].TtftMs != 100 || res.Requests[2].Chunks != 2 {
		t.Errorf("request list %v", res.Requests)
	}
}

func TestAggregateNothingSent(t *testing.T) {
	res := metrics.Aggregate([]metrics.Record{{Index: 0}}, metrics.Options{})
	if res.RequestsNotSent != 1 || res.DurationSeconds != 0 || res.TimeSeries != nil || res.TtftMs.Count != 0 {
		t.Fatalf("%+v", res)
	}
}
