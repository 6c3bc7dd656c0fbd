package report_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/strata-llm/strata/bench/metrics"
	"github.com/strata-llm/strata/bench/report"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// result is a small run of two workers over three seconds, with an error,
// aggregated by the metrics package as a real run is.
func result(scale time.Duration) *report.Result {
	ms := time.Millisecond
	var recs []metrics.Record
	for i := range 60 {
		sent := time.Duration(i) * 50 * ms
		ttft := scale * time.Duration(20+i%7)
		chunks := []time.Duration{ttft, ttft + 5*ms, ttft + 11*ms}
		r := metrics.Record{
			Index: i, Sent: true, Scheduled: sent, SentAt: sent + ms, Done: sent + ms + ttft + 12*ms, Chunks: chunks,
			PromptTokens: 512, CachedTokens: 256, HasCached: true, HasUsage: true, OutputTokens: 3, MaxTokens: 3,
			Worker: []string{"node-1/w0", "node-2/w1"}[i%2],
		}
		if i == 13 {
			r.ErrKind, r.Err = "http_503", "http_503: <script>alert(1)</script>"
		}
		recs = append(recs, r)
	}
	res := metrics.Aggregate(recs, metrics.Options{})
	res.SchemaVersion = 1
	res.CommandLine = []string{"strata", "bench", "--url", "http://127.0.0.1:8000/v1"}
	res.Config = &stratav1.BenchConfig{
		Url: "http://127.0.0.1:8000/v1", Endpoint: "completions", Model: "m", Workload: "prefix",
		WorkloadParams: &stratav1.BenchConfig_Prefix{Prefix: &stratav1.BenchPrefixWorkload{NumPrefixes: 4, PrefixLen: 256, SuffixLen: 256, OutputLen: 3}},
		Arrival:        &stratav1.BenchArrival{Process: "poisson", RequestRate: 20, Burstiness: 1},
		Headers:        map[string]string{"X-Strata-Routing": "kv"},
	}
	res.ReuseBounds = &stratav1.BenchReuseBounds{InfiniteHitFraction: 0.6, PooledHitFraction: 0.55}
	return res
}

// walk calls fn on every element node.
func walk(n *html.Node, fn func(*html.Node)) {
	if n.Type == html.ElementNode {
		fn(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// parse checks that page is HTML with no external reference and returns
// its plots by data-plot id, with their series names.
func parse(t *testing.T, page []byte) map[string][]string {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	plots := map[string][]string{}
	walk(doc, func(n *html.Node) {
		switch n.Data {
		case "script", "link", "img", "iframe", "object", "embed":
			t.Errorf("<%s> in a self-contained report", n.Data)
		}
		for _, a := range n.Attr {
			if (a.Key == "src" || a.Key == "href" || strings.HasSuffix(a.Key, "href")) && !strings.HasPrefix(a.Val, "#") {
				t.Errorf("<%s %s=%q>: external reference", n.Data, a.Key, a.Val)
			}
		}
		if n.Data == "svg" {
			id := attr(n, "data-plot")
			var names []string
			walk(n, func(c *html.Node) {
				if c.Data == "polyline" && attr(c, "class") == "series" {
					if len(strings.Fields(attr(c, "points"))) < 2 {
						t.Errorf("plot %s: series %q has fewer than two points", id, attr(c, "data-series"))
					}
					names = append(names, attr(c, "data-series"))
				}
			})
			plots[id] = names
		}
	})
	if bytes.Contains(page, []byte("http://www")) || bytes.Contains(page, []byte("https://")) {
		t.Error("the page names an external URL")
	}
	return plots
}

func TestHTMLReport(t *testing.T) {
	var b bytes.Buffer
	if err := report.WriteHTML(&b, "run.json", result(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	plots := parse(t, b.Bytes())
	for _, id := range []string{"ttft-cdf", "itl-cdf", "e2e-cdf", "throughput", "requests", "ttft-time", "workers"} {
		if _, ok := plots[id]; !ok {
			t.Errorf("no %s plot (have %v)", id, plots)
		}
	}
	if got := strings.Join(plots["workers"], ","); got != "node-1/w0,node-2/w1" {
		t.Errorf("worker plot series %q", got)
	}
	if got := strings.Join(plots["ttft-time"], ","); got != "p50,p99" {
		t.Errorf("ttft-time series %q", got)
	}
	page := b.String()
	for _, want := range []string{"P99 TTFT (ms)", "Cached-token fraction", "0.500", "Pooled-cache (LRU) bound", "node-2/w1", "http_503", "prefix",
		"Header X-Strata-Routing", "Cached / pooled bound"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Text from outside (an error message) is escaped, not markup.
	if strings.Contains(page, "<script>alert") {
		t.Error("error text was not escaped")
	}
}

// A run without workers or samples still renders, with empty plots saying
// so instead of failing.
func TestHTMLReportEmpty(t *testing.T) {
	res := metrics.Aggregate(nil, metrics.Options{})
	res.SchemaVersion = 1
	var b bytes.Buffer
	if err := report.WriteHTML(&b, "empty.json", res); err != nil {
		t.Fatal(err)
	}
	plots := parse(t, b.Bytes())
	if _, ok := plots["workers"]; ok || len(plots) != 6 {
		t.Fatalf("plots %v", plots)
	}
	if !strings.Contains(b.String(), "no samples") {
		t.Fatal("empty plots do not say so")
	}
}

func TestCompare(t *testing.T) {
	runs := []report.Named{{Name: "rr.json", Result: result(2 * time.Millisecond)}, {Name: "kv.json", Result: result(time.Millisecond)}}
	var text bytes.Buffer
	if err := report.WriteCompare(&text, runs); err != nil {
		t.Fatal(err)
	}
	var ttft string
	for _, line := range strings.Split(text.String(), "\n") {
		if strings.Contains(line, "P50 TTFT") {
			ttft = line
		}
	}
	// TTFT scales 2:1 between the runs: the second is half the first.
	if !strings.Contains(ttft, "(0.50×)") || !strings.Contains(text.String(), "rr.json") {
		t.Fatalf("compare table:\n%s", text.String())
	}
	var some bytes.Buffer
	if err := report.WriteCompare(&some, runs, "P99 TTFT (ms)", "Cached-token fraction"); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(some.String()), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "P99 TTFT (ms)") {
		t.Fatalf("selected metrics:\n%s", some.String())
	}
	if err := report.WriteCompare(&some, runs, "TTFT"); err == nil {
		t.Fatal("an unknown metric label accepted")
	}
	var page bytes.Buffer
	if err := report.WriteCompareHTML(&page, runs); err != nil {
		t.Fatal(err)
	}
	plots := parse(t, page.Bytes())
	if got := strings.Join(plots["ttft-cdf"], ","); got != "rr.json,kv.json" {
		t.Fatalf("overlaid series %q", got)
	}
	if !strings.Contains(page.String(), `class="better">(0.50×)`) {
		t.Fatal("the lower TTFT is not marked better")
	}
}

func TestSummary(t *testing.T) {
	var b bytes.Buffer
	if err := report.WriteSummary(&b, result(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"Successful requests:", "59", "Failed requests:", "Mean TTFT (ms):", "http_503:", "Cached-token fraction:",
		// 0.500 cached of a 0.55 pooled bound.
		"Cached / pooled bound:                       0.909"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}
