// Package metrics turns the timings of a benchmark's requests into the
// figures of its result file: latency distributions (TTFT, ITL, TPOT,
// end-to-end, schedule lag), throughput, goodput under SLOs, the
// cached-token fraction, errors by kind, a per-second time series and
// per-worker shares. It is pure code over Records, so every figure can be
// checked against hand-made timings.
package metrics

import (
	"cmp"
	"math"
	"slices"
	"time"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Record is one request of a run. Times are offsets from the start of the
// run.
type Record struct {
	Index          int
	Session, Round int
	// Warmup requests are sent but not measured.
	Warmup bool
	// Sent is false for a request the run never sent (cancelled, or past
	// its duration).
	Sent bool
	// Throttled requests waited for a concurrency slot.
	Throttled bool
	Scheduled time.Duration
	SentAt    time.Duration
	// Done is when the answer ended, or when the request failed.
	Done time.Duration
	// Chunks are the arrival times, after SentAt, of the chunks that carried
	// generated text.
	Chunks []time.Duration
	// Token counts, from the answer's usage or, without it, the workload's
	// prompt length and the number of chunks.
	PromptTokens, CachedTokens, OutputTokens int
	// HasCached is set when the answer reported cached prompt tokens.
	HasCached bool
	// HasUsage is set when the answer reported usage; MaxTokens is the
	// output length asked for.
	HasUsage  bool
	MaxTokens int
	Worker    string
	// ErrKind is empty for a request that succeeded.
	ErrKind, Err string
}

// Succeeded reports whether r was sent and answered without error.
func (r *Record) Succeeded() bool { return r.Sent && r.ErrKind == "" }

// TTFT is the time to first token, and false if no token arrived.
func (r *Record) TTFT() (time.Duration, bool) {
	if len(r.Chunks) == 0 {
		return 0, false
	}
	return r.Chunks[0], true
}

// TPOT is the time per output token after the first, and false for an
// answer of fewer than two tokens.
func (r *Record) TPOT() (time.Duration, bool) {
	ttft, ok := r.TTFT()
	if !ok || r.OutputTokens < 2 {
		return 0, false
	}
	return (r.Done - r.SentAt - ttft) / time.Duration(r.OutputTokens-1), true
}

// SLO are service-level objectives; a zero field is no objective.
type SLO struct {
	TTFT, TPOT, E2E time.Duration
}

// Met reports whether a request met every objective of s. A request with
// no token fails a TTFT objective; a one-token answer has no TPOT and
// passes that one.
func (s SLO) Met(r *Record) bool {
	if !r.Succeeded() {
		return false
	}
	if s.TTFT > 0 {
		if ttft, ok := r.TTFT(); !ok || ttft > s.TTFT {
			return false
		}
	}
	if s.TPOT > 0 {
		if tpot, ok := r.TPOT(); ok && tpot > s.TPOT {
			return false
		}
	}
	return s.E2E <= 0 || r.Done-r.SentAt <= s.E2E
}

// Options are what Aggregate needs besides the records.
type Options struct {
	SLO SLO
	// SaveRequests lists every request in the result.
	SaveRequests bool
}

// Aggregate computes the metric fields of a result from the records of a
// run (config, command line, times and bounds are the caller's).
func Aggregate(records []Record, opts Options) *stratav1.BenchResult {
	res := &stratav1.BenchResult{Errors: map[string]uint64{}, ErrorExamples: map[string]string{}, Goodput: &stratav1.BenchGoodput{}}
	var ttft, itl, tpot, e2e, lag, promptLen, outputLen []float64
	var cachedPrompt uint64
	first, last := time.Duration(math.MaxInt64), time.Duration(0)
	for i := range records {
		r := &records[i]
		switch {
		case !r.Sent:
			res.RequestsNotSent++
			continue
		case r.Warmup:
			res.WarmupRequests++
			continue
		}
		res.RequestsSent++
		if r.Throttled {
			res.RequestsThrottled++
		}
		first, last = min(first, r.SentAt), max(last, r.Done)
		lag = append(lag, ms(r.SentAt-r.Scheduled))
		if !r.Succeeded() {
			res.RequestsFailed++
			res.Errors[r.ErrKind]++
			if _, ok := res.ErrorExamples[r.ErrKind]; !ok {
				res.ErrorExamples[r.ErrKind] = r.Err
			}
			continue
		}
		res.RequestsSucceeded++
		if r.HasUsage && r.OutputTokens != r.MaxTokens {
			res.RequestsOutputMismatch++
		}
		res.PromptTokens += uint64(r.PromptTokens)
		res.OutputTokens += uint64(r.OutputTokens)
		if r.HasCached {
			res.RequestsWithCachedTokens++
			res.CachedTokens += uint64(r.CachedTokens)
			cachedPrompt += uint64(r.PromptTokens)
		}
		promptLen = append(promptLen, float64(r.PromptTokens))
		outputLen = append(outputLen, float64(r.OutputTokens))
		e2e = append(e2e, ms(r.Done-r.SentAt))
		if t, ok := r.TTFT(); ok {
			ttft = append(ttft, ms(t))
		}
		for j := 1; j < len(r.Chunks); j++ {
			itl = append(itl, ms(r.Chunks[j]-r.Chunks[j-1]))
		}
		if t, ok := r.TPOT(); ok {
			tpot = append(tpot, ms(t))
		}
		if opts.SLO.Met(r) {
			res.Goodput.Requests++
		}
	}
	if res.RequestsSent > 0 {
		res.DurationSeconds = (last - first).Seconds()
		res.Goodput.Fraction = float64(res.Goodput.Requests) / float64(res.RequestsSent)
	}
	if d := res.DurationSeconds; d > 0 {
		res.RequestThroughputPerSecond = float64(res.RequestsSucceeded) / d
		res.OutputTokenThroughputPerSecond = float64(res.OutputTokens) / d
		res.TotalTokenThroughputPerSecond = float64(res.PromptTokens+res.OutputTokens) / d
		res.Goodput.RequestsPerSecond = float64(res.Goodput.Requests) / d
	}
	if cachedPrompt > 0 {
		res.CachedTokenFraction = float64(res.CachedTokens) / float64(cachedPrompt)
	}
	res.TtftMs = Summarize(ttft)
	res.ItlMs = Summarize(itl)
	res.TpotMs = Summarize(tpot)
	res.E2ELatencyMs = Summarize(e2e)
	res.ScheduleLagMs = Summarize(lag)
	res.PromptTokensPerRequest = Summarize(promptLen)
	res.OutputTokensPerRequest = Summarize(outputLen)
	res.TimeSeries = timeSeries(records)
	res.Workers = workers(records, len(res.TimeSeries))
	if opts.SaveRequests {
		res.Requests = requestList(records)
	}
	return res
}

// CDFQuantiles are the points at which a distribution's CDF is kept: every
// percent, then every tenth of a percent above 99 %, then 99.99 % and the
// maximum.
var CDFQuantiles = func() []float64 {
	var qs []float64
	for i := range 100 {
		qs = append(qs, float64(i)/100)
	}
	for i := 1; i <= 9; i++ {
		qs = append(qs, 0.99+float64(i)/1000)
	}
	return append(qs, 0.9999, 1)
}()

// Summarize sorts samples in place and summarises them.
func Summarize(samples []float64) *stratav1.BenchDistribution {
	d := &stratav1.BenchDistribution{Count: uint64(len(samples))}
	if len(samples) == 0 {
		return d
	}
	slices.Sort(samples)
	var sum float64
	for _, v := range samples {
		sum += v
	}
	d.Mean = sum / float64(len(samples))
	var sq float64
	for _, v := range samples {
		sq += (v - d.Mean) * (v - d.Mean)
	}
	d.Stddev = math.Sqrt(sq / float64(len(samples)))
	d.Min, d.Max = samples[0], samples[len(samples)-1]
	d.P50 = Percentile(samples, 0.50)
	d.P90 = Percentile(samples, 0.90)
	d.P95 = Percentile(samples, 0.95)
	d.P99 = Percentile(samples, 0.99)
	d.P999 = Percentile(samples, 0.999)
	d.Cdf = make([]*stratav1.BenchQuantile, len(CDFQuantiles))
	for i, q := range CDFQuantiles {
		d.Cdf[i] = &stratav1.BenchQuantile{Q: q, Value: Percentile(samples, q)}
	}
	return d
}

// Percentile is the q-quantile (0 ≤ q ≤ 1) of sorted samples, interpolated
// linearly between the closest ranks (numpy's default); 0 for no samples.
func Percentile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	pos := q * float64(n-1)
	lo := int(math.Floor(pos))
	if lo >= n-1 {
		return sorted[n-1]
	}
	if lo < 0 {
		return sorted[0]
	}
	frac := pos - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timeSeries buckets the run by second of wall time. Output tokens are
// placed at the arrival of the chunks that carried them: a chunk that
// carried several tokens (a slow reader) gets its share of the usage count.
func timeSeries(records []Record) []*stratav1.BenchSecond {
	var end time.Duration
	firstMeasured := time.Duration(math.MaxInt64)
	sent := false
	for i := range records {
		r := &records[i]
		if r.Sent {
			sent = true
			end = max(end, r.Done, r.SentAt)
			if !r.Warmup {
				firstMeasured = min(firstMeasured, r.SentAt)
			}
		}
	}
	if !sent {
		return nil
	}
	n := sec(end) + 1
	// Records out of order (Done before SentAt) land in the last second
	// instead of outside the series.
	bucket := func(d time.Duration) int { return min(sec(d), n-1) }
	series := make([]*stratav1.BenchSecond, n)
	ttfts := make([][]float64, n)
	sentBy, doneBy := make([]int, n), make([]int, n)
	for s := range series {
		series[s] = &stratav1.BenchSecond{Second: uint32(s), Warmup: time.Duration(s+1)*time.Second <= firstMeasured}
	}
	for i := range records {
		r := &records[i]
		if !r.Sent {
			continue
		}
		sb := series[bucket(r.SentAt)]
		sb.RequestsSent++
		sb.ScheduleLagMaxMs = max(sb.ScheduleLagMaxMs, ms(r.SentAt-r.Scheduled))
		sentBy[bucket(r.SentAt)]++
		doneBy[bucket(r.Done)]++
		db := series[bucket(r.Done)]
		if !r.Succeeded() {
			db.RequestsFailed++
			continue
		}
		db.RequestsSucceeded++
		db.PromptTokens += uint64(r.PromptTokens)
		if t, ok := r.TTFT(); ok {
			s := bucket(r.SentAt + t)
			ttfts[s] = append(ttfts[s], ms(t))
		}
		k := len(r.Chunks)
		for j, c := range r.Chunks {
			share := (j+1)*r.OutputTokens/k - j*r.OutputTokens/k
			series[bucket(r.SentAt+c)].OutputTokens += uint64(share)
		}
	}
	inFlight := 0
	for s, b := range series {
		inFlight += sentBy[s] - doneBy[s]
		b.InFlight = uint32(inFlight)
		if len(ttfts[s]) > 0 {
			slices.Sort(ttfts[s])
			b.TtftP50Ms = Percentile(ttfts[s], 0.5)
			b.TtftP99Ms = Percentile(ttfts[s], 0.99)
		}
	}
	return series
}

func sec(d time.Duration) int { return int(max(d, 0) / time.Second) }

// workers sums the measured requests per X-Strata-Worker value, and counts
// every request sent to each worker per second of the time series.
func workers(records []Record, seconds int) []*stratav1.BenchWorker {
	by := map[string]*stratav1.BenchWorker{}
	ttfts := map[string][]float64{}
	for i := range records {
		r := &records[i]
		if !r.Sent || r.Worker == "" {
			continue
		}
		w := by[r.Worker]
		if w == nil {
			w = &stratav1.BenchWorker{Worker: r.Worker, RequestsPerSecond: make([]uint32, seconds)}
			by[r.Worker] = w
		}
		w.RequestsPerSecond[min(sec(r.SentAt), seconds-1)]++
		if r.Warmup {
			continue
		}
		w.Requests++
		if !r.Succeeded() {
			w.Failed++
			continue
		}
		w.PromptTokens += uint64(r.PromptTokens)
		w.OutputTokens += uint64(r.OutputTokens)
		if r.HasCached {
			w.CachedTokens += uint64(r.CachedTokens)
		}
		if t, ok := r.TTFT(); ok {
			ttfts[r.Worker] = append(ttfts[r.Worker], ms(t))
		}
	}
	out := make([]*stratav1.BenchWorker, 0, len(by))
	for name, w := range by {
		if w.PromptTokens > 0 {
			w.CachedTokenFraction = float64(w.CachedTokens) / float64(w.PromptTokens)
		}
		if t := ttfts[name]; len(t) > 0 {
			slices.Sort(t)
			w.TtftP50Ms, w.TtftP99Ms = Percentile(t, 0.5), Percentile(t, 0.99)
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b *stratav1.BenchWorker) int { return cmp.Compare(a.Worker, b.Worker) })
	return out
}

func requestList(records []Record) []*stratav1.BenchRequest {
	out := make([]*stratav1.BenchRequest, 0, len(records))
	for i := range records {
		r := &records[i]
		q := &stratav1.BenchRequest{
			Index: uint64(r.Index), Warmup: r.Warmup, Session: uint32(r.Session), Round: uint32(r.Round),
			ScheduledMs:  ms(r.Scheduled),
			PromptTokens: uint32(r.PromptTokens), CachedTokens: uint32(r.CachedTokens), OutputTokens: uint32(r.OutputTokens),
			Chunks: uint32(len(r.Chunks)), Worker: r.Worker, ErrorKind: r.ErrKind, Error: r.Err,
		}
		if !r.Sent {
			q.ErrorKind, q.Error = "not_sent", "the run ended before this request was due"
		} else {
			q.SentMs, q.E2ELatencyMs = ms(r.SentAt), ms(r.Done-r.SentAt)
			if t, ok := r.TTFT(); ok {
				q.TtftMs = ms(t)
			}
		}
		out = append(out, q)
	}
	return out
}
