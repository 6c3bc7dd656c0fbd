package sim_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/sim"
)

// BenchmarkLoopbackShortRequests measures how many short completions one sim
// process serves over loopback HTTP when the timing model is sped up so far
// that the process is CPU-bound: the capacity that decides how many
// simulated engines one machine can host for routing benchmarks. The client
// runs in the same process and shares the cores, so the figure is a floor.
func BenchmarkLoopbackShortRequests(b *testing.B) {
	s := sim.TestSim(b, func(o *sim.Options) { o.Engine.Speedup = 1e6 })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	url := s.URL() + "/v1/completions"
	body := `{"model":"sim-model","prompt":"Summarise the plot of a short story in one line.","max_tokens":8,"ignore_eos":true}`
	b.SetParallelism(32)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
