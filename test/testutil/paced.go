package testutil

import (
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// PacedLatency runs call b.N times from callers goroutines, paced so that
// call i starts at i/rate seconds (an open loop: a slow call does not
// delay the schedule of the others, as with real traffic), and reports
// the achieved rate and the p50/p99 latency of the calls. call gets the
// call's number and reports failure with an error.
func PacedLatency(b *testing.B, rate, callers int, call func(i uint64) error) {
	lat := make(chan time.Duration, b.N)
	var next atomic.Uint64
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				t := time.NewTimer(d)
				<-t.C
			}
			q := time.Now()
			if err := call(i); err != nil {
				b.Error(err)
				return
			}
			lat <- time.Since(q)
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	close(lat)
	var all []time.Duration
	for d := range lat {
		all = append(all, d)
	}
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "queries/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
