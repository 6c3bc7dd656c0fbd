package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench"
	"github.com/strata-llm/strata/bench/client"
	"github.com/strata-llm/strata/bench/workload"
)

// fastStream is a trivially fast OpenAI endpoint: every completion is the
// same pre-encoded stream of tokens chunks plus usage, written at once, so
// what a benchmark against it measures is the client.
func fastStream(b *testing.B, tokens int) string {
	b.Helper()
	var body bytes.Buffer
	for i := range tokens {
		fmt.Fprintf(&body, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\"t%d\",\"logprobs\":null,\"finish_reason\":null}]}\n\n", i)
	}
	fmt.Fprintf(&body, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":128,\"completion_tokens\":%d,\"total_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\ndata: [DONE]\n\n", tokens, tokens+128)
	stream := body.Bytes()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			_, _ = io.WriteString(w, `{"data":[{"id":"m"}]}`)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write(stream)
	}))
	b.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

const (
	fastTokens  = 16
	fastClients = 64
)

// BenchmarkLoadGenerator is the load generator's ceiling against the fast
// endpoint, against a baseline in the same process: a bare net/http client
// that posts the same body and discards the answer unread. The ratio of
// the two req/s figures is what the generator's request building, SSE
// parsing and per-chunk timing cost. Server and client share the cores, so
// both figures are floors.
func BenchmarkLoadGenerator(b *testing.B) {
	url := fastStream(b, fastTokens)
	b.Run("baseline-net-http", func(b *testing.B) {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: fastClients, DisableCompression: true}}
		body := bytes.Repeat([]byte("1,"), 128)
		body = append(append([]byte(`{"model":"m","prompt":[`), body[:len(body)-1]...), `],"max_tokens":16,"stream":true}`...)
		var wg sync.WaitGroup
		work := make(chan struct{})
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for range fastClients {
			wg.Go(func() {
				for range work {
					resp, err := hc.Post(url+"/completions", "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		}
		for range b.N {
			work <- struct{}{}
		}
		close(work)
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	})
	b.Run("strata-bench", func(b *testing.B) {
		cfg := bench.DefaultConfig()
		cfg.URL = url
		cfg.Model = "m"
		cfg.Workload = workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 128, OutputLen: fastTokens}}
		cfg.NumRequests = b.N
		cfg.MaxConcurrency = fastClients
		b.ReportAllocs()
		b.ResetTimer()
		res, err := bench.Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if res.RequestsSucceeded != uint64(b.N) {
			b.Fatalf("%d of %d succeeded: %v", res.RequestsSucceeded, b.N, res.ErrorExamples)
		}
		b.ReportMetric(float64(b.N)/res.WallSeconds, "req/s")
		b.ReportMetric(float64(res.ItlMs.Count+res.TtftMs.Count)/res.WallSeconds, "chunks/s")
	})
}

// BenchmarkPacedSchedule sends at a fixed Poisson rate the fast endpoint
// keeps up with, and reports how late requests left: the generator's own
// scheduling precision on a loaded machine.
func BenchmarkPacedSchedule(b *testing.B) {
	url := fastStream(b, fastTokens)
	for _, rate := range []float64{1000, 4000} {
		b.Run(fmt.Sprintf("rate-%.0f", rate), func(b *testing.B) {
			cfg := bench.DefaultConfig()
			cfg.URL = url
			cfg.Model = "m"
			cfg.Workload = workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 128, OutputLen: fastTokens}}
			cfg.NumRequests = max(b.N, 200)
			cfg.RequestRate = rate
			b.ResetTimer()
			res, err := bench.Run(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.ScheduleLagMs.P50, "lag-p50-ms")
			b.ReportMetric(res.ScheduleLagMs.P99, "lag-p99-ms")
			b.ReportMetric(float64(res.RequestsSent)/res.DurationSeconds, "req/s")
		})
	}
}

// BenchmarkClientRequest is one streamed request through the client, in
// series: its cost per request and per chunk, allocations included.
func BenchmarkClientRequest(b *testing.B) {
	url := fastStream(b, fastTokens)
	c, err := client.New(client.Config{BaseURL: url})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := &client.Request{Endpoint: client.Completions, Model: "m", Tokens: make([]uint32, 128), MaxTokens: fastTokens,
		IgnoreEOS: true, Stream: true, IncludeUsage: true}
	var resp client.Response
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Do(context.Background(), req, &resp); err != nil {
			b.Fatal(err)
		}
	}
	if !strings.HasPrefix(url, "http://") || len(resp.Chunks) != fastTokens {
		b.Fatalf("%d chunks", len(resp.Chunks))
	}
}
