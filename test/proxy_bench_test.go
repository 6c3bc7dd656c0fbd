package test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/strata-llm/strata/dev"
)

// BenchmarkStreamingProxy measures streamed tokens per second through the
// gateway against the same engine called directly, in alternating rounds
// of the same run, with concurrent streams of byte-level tokens:
//
//   - saturated: one simulated engine at a million times an H100's pace
//     (it emits tokens as fast as it can, many per chunk) and 16 streams of
//     4,096 tokens (rounds of ~50 ms, long enough to average over): the
//     gateway's cost shows as lost throughput, because client, gateway and
//     engine share the 2 cores;
//   - paced: two engines at an H100's pace (a decode step every ~6 ms),
//     320 streams of 128 tokens, a chunk per token: about 34k tokens/s,
//     and what the gateway adds to each stream's duration.
//
// Direct rounds spread their streams over the engines in turn.
func BenchmarkStreamingProxy(b *testing.B) {
	for _, bc := range []struct {
		name            string
		engines         int
		speedup         string
		streams, tokens int
	}{{"saturated", 1, "1000000", 16, 4096}, {"paced", 2, "1", 320, 128}} {
		b.Run(bc.name, func(b *testing.B) {
			c := TestCluster(b, func(cfg *dev.Config) {
				cfg.Engines = bc.engines
				cfg.SimArgs = []string{"--speedup", bc.speedup}
			})
			var engines []string
			for _, v := range EngineViews(b, c) {
				engines = append(engines, fmt.Sprintf("127.0.0.1:%d", v.Port))
			}
			body := fmt.Appendf(nil, `{"model":"strata-sim","prompt":"Tell me everything.","max_tokens":%d,"ignore_eos":true,"stream":true}`, bc.tokens)
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
			// round runs the streams once each, and returns the tokens and
			// the summed duration of the streams and of the round.
			round := func(addrs ...string) (tokens int64, streams, took time.Duration) {
				var n, sum atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for i := range bc.streams {
					wg.Go(func() {
						t0 := time.Now()
						res, err := hc.Post("http://"+addrs[i%len(addrs)]+"/v1/completions", "application/json", bytes.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						sc := bufio.NewScanner(res.Body)
						for sc.Scan() {
							// A byte of byte-level text is a token.
							if data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: ")); ok && data[0] == '{' {
								n.Add(int64(len(gjson.GetBytes(data, "choices.0.text").String())))
							}
						}
						_ = res.Body.Close()
						sum.Add(int64(time.Since(t0)))
					})
				}
				wg.Wait()
				return n.Load(), time.Duration(sum.Load()), time.Since(start)
			}
			round(engines...) // warm both paths
			round(c.Gateway.Addr())
			type total struct {
				tokens        int64
				streams, took time.Duration
			}
			var direct, proxied total
			add := func(t *total, addrs ...string) {
				n, s, d := round(addrs...)
				t.tokens, t.streams, t.took = t.tokens+n, t.streams+s, t.took+d
			}
			for b.Loop() {
				add(&direct, engines...)
				add(&proxied, c.Gateway.Addr())
			}
			if direct.tokens != proxied.tokens || direct.tokens != int64(b.N*bc.streams*bc.tokens) {
				b.Fatalf("tokens: direct %d, gateway %d, want %d each", direct.tokens, proxied.tokens, b.N*bc.streams*bc.tokens)
			}
			dr := float64(direct.tokens) / direct.took.Seconds()
			pr := float64(proxied.tokens) / proxied.took.Seconds()
			b.ReportMetric(dr, "direct-tokens/s")
			b.ReportMetric(pr, "gateway-tokens/s")
			b.ReportMetric(100*(1-pr/dr), "throughput-loss-%")
			b.ReportMetric(100*(float64(proxied.streams)/float64(direct.streams)-1), "stream-time-added-%")
		})
	}
}
