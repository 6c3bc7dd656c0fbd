package bench_test

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench"
	"github.com/strata-llm/strata/bench/client"
	"github.com/strata-llm/strata/bench/workload"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/sim"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tokenizer/hf"
)

// simURL starts an in-process `strata sim` (1000× faster than modelled)
// and returns its API root.
func simURL(t *testing.T) string {
	t.Helper()
	return sim.TestSim(t, func(o *sim.Options) { o.Engine.MaxModelLen = 32768 }).URL() + "/v1"
}

func run(t *testing.T, cfg bench.Config) *bench.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func config(url string, spec workload.Spec, n int) bench.Config {
	cfg := bench.DefaultConfig()
	cfg.URL = url
	cfg.Workload = spec
	cfg.NumRequests = n
	cfg.RequestRate = 400
	cfg.Seed = 1
	cfg.SaveRequests = true
	return cfg
}

// Every workload kind runs against a real simulator: every request
// succeeds with exactly the asked lengths, the bounds count exactly the
// prompt tokens the engine saw (token ids as sent; text through the same
// byte-level tokenizer and chat template), and the engine's cache hits stay
// within the infinite-cache bound.
func TestRunWorkloads(t *testing.T) {
	url := simURL(t)
	for _, tc := range []struct {
		name   string
		spec   workload.Spec
		format workload.Format
		n      int
		// minCached is the least cached fraction the engine must reach.
		minCached float64
	}{
		{"synthetic", workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 300, OutputLen: 20, RangeRatio: 0.5}}, "", 60, 0},
		{"prefix", workload.Spec{Kind: workload.KindPrefix, Prefix: workload.Prefix{NumPrefixes: 3, PrefixLen: 1024, SuffixLen: 64, OutputLen: 16}}, "", 90, 0.75},
		{"prefix as text", workload.Spec{Kind: workload.KindPrefix, Prefix: workload.Prefix{NumPrefixes: 3, PrefixLen: 1024, SuffixLen: 64, OutputLen: 16}}, workload.FormatText, 90, 0.75},
		{"chat", workload.Spec{Kind: workload.KindChat, Chat: workload.Chat{Users: 4, Rounds: 4, SystemLen: 256, UserLen: 64, OutputLen: 32}}, "", 0, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resetPrefixCache(t, url)
			cfg := config(url, tc.spec, tc.n)
			cfg.PromptFormat = tc.format
			res := run(t, cfg)
			want := uint64(tc.n)
			if tc.n == 0 {
				want = 16
			}
			if res.RequestsSucceeded != want || res.RequestsFailed != 0 {
				t.Fatalf("%d succeeded, %d failed (%v), want %d", res.RequestsSucceeded, res.RequestsFailed, res.ErrorExamples, want)
			}
			if res.RequestsOutputMismatch != 0 || res.RequestsWithCachedTokens != want {
				t.Fatalf("%d output mismatches, %d with cached tokens", res.RequestsOutputMismatch, res.RequestsWithCachedTokens)
			}
			if res.TtftMs.Count != want || res.ItlMs.Count == 0 || res.E2ELatencyMs.P99 <= 0 || len(res.TimeSeries) == 0 {
				t.Fatalf("ttft %d, itl %d, e2e p99 %v, %d seconds", res.TtftMs.Count, res.ItlMs.Count, res.E2ELatencyMs.P99, len(res.TimeSeries))
			}
			b := res.ReuseBounds
			if b.PromptTokens != res.PromptTokens {
				t.Fatalf("bounds count %d prompt tokens, the engine saw %d", b.PromptTokens, res.PromptTokens)
			}
			if res.CachedTokenFraction > b.InfiniteHitFraction+1e-9 {
				t.Fatalf("cached %.4f above the infinite bound %.4f", res.CachedTokenFraction, b.InfiniteHitFraction)
			}
			if res.CachedTokenFraction < tc.minCached {
				t.Fatalf("cached fraction %.3f below %.2f (bound %.3f)", res.CachedTokenFraction, tc.minCached, b.InfiniteHitFraction)
			}
			if tc.spec.Kind == workload.KindChat {
				checkChatHistory(t, res)
			}
		})
	}
}

// In a chat every round carries the previous one's prompt and answer, and
// is sent only after that answer ended.
func checkChatHistory(t *testing.T, res *bench.Result) {
	t.Helper()
	last := map[uint32]int{}
	for i, r := range res.Requests {
		if r.Session == 0 {
			t.Fatalf("request %d has no session", i)
		}
		p, ok := last[r.Session]
		if ok {
			prev := res.Requests[p]
			if r.PromptTokens <= prev.PromptTokens+prev.OutputTokens {
				t.Fatalf("session %d round %d: %d prompt tokens, previous round %d+%d", r.Session, r.Round, r.PromptTokens, prev.PromptTokens, prev.OutputTokens)
			}
			if r.SentMs < prev.SentMs+prev.E2ELatencyMs {
				t.Fatalf("session %d round %d sent before the previous round ended", r.Session, r.Round)
			}
		}
		last[r.Session] = i
	}
}

func resetPrefixCache(t *testing.T, apiURL string) {
	t.Helper()
	u, _ := url.Parse(apiURL)
	u.Path = "/reset_prefix_cache"
	resp, err := http.Post(u.String(), "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reset prefix cache: %s", resp.Status)
	}
}

// gateway is a stand-in for Strata's gateway until it exists: it spreads
// requests round-robin over real simulators and names the worker in
// X-Strata-Worker.
func gateway(t *testing.T, backends ...string) string {
	t.Helper()
	var next atomic.Uint64
	proxies := make([]*httputil.ReverseProxy, len(backends))
	for i, b := range backends {
		u, _ := url.Parse(b)
		u.Path = ""
		proxies[i] = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) }, FlushInterval: -1}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(next.Add(1)-1) % len(proxies)
		w.Header().Set(client.WorkerHeader, "worker-"+strconv.Itoa(i))
		proxies[i].ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

// peakInFlight is the most requests whose [sent, ended] intervals overlap.
func peakInFlight(reqs []*stratav1.BenchRequest) int {
	type event struct {
		at    float64
		delta int
	}
	var ev []event
	for _, r := range reqs {
		ev = append(ev, event{r.SentMs, +1}, event{r.SentMs + r.E2ELatencyMs, -1})
	}
	// At equal times an end comes first: a slot is freed before it is reused.
	slices.SortFunc(ev, func(a, b event) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.delta, b.delta)) })
	n, peak := 0, 0
	for _, e := range ev {
		n += e.delta
		peak = max(peak, n)
	}
	return peak
}

// A Mooncake trace replays on the chat endpoint as text blocks: equal hash
// ids are equal text, so the engine caches the shared prefixes.
func TestRunTraceOnChat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	trace := `{"timestamp": 0, "input_length": 1100, "output_length": 8, "hash_ids": [0, 1, 2]}
{"timestamp": 10, "input_length": 1200, "output_length": 8, "hash_ids": [0, 1, 3]}
{"timestamp": 20, "input_length": 600, "output_length": 8, "hash_ids": [0, 4]}
`
	if err := os.WriteFile(path, []byte(trace), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config(simURL(t), workload.Spec{Kind: workload.KindTrace, Trace: workload.Trace{File: path, Format: workload.FormatMooncake}}, 0)
	cfg.RequestRate = 0
	cfg.Speed = 0.5 // 40 ms apart: each ends before the next starts
	cfg.Endpoint = client.Chat
	res := run(t, cfg)
	if res.RequestsSucceeded != 3 || res.Config.Arrival.Process != "trace" || res.Config.PromptFormat != "text" {
		t.Fatalf("%d succeeded %v, config %v", res.RequestsSucceeded, res.ErrorExamples, res.Config)
	}
	// The chat template's few tokens come first; then 1024 shared tokens
	// for the second request and 512 for the third, to the block.
	if r := res.Requests; r[0].CachedTokens != 0 || r[1].CachedTokens < 1024 || r[2].CachedTokens < 512 || r[2].CachedTokens >= 1024 {
		t.Fatalf("cached tokens %d %d %d", r[0].CachedTokens, r[1].CachedTokens, r[2].CachedTokens)
	}
	if res.Requests[2].ScheduledMs != 40 {
		t.Fatalf("third request due at %v ms, want the trace's 20 ms at half speed", res.Requests[2].ScheduledMs)
	}
}

func TestRunPerWorkerAndConcurrencyCap(t *testing.T) {
	cfg := config(gateway(t, simURL(t), simURL(t)), workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 256, OutputLen: 64}}, 40)
	cfg.RequestRate = 0 // all at once
	cfg.MaxConcurrency = 3
	cfg.Header = http.Header{"X-Strata-Routing": {"round-robin"}, "X-Api-Key": {"sk-secret"}}
	res := run(t, cfg)
	if h := res.Config.Headers; len(h) != 2 || h["X-Strata-Routing"] != "round-robin" || h["X-Api-Key"] != "REDACTED" {
		t.Fatalf("recorded headers %v", h)
	}
	if res.RequestsSucceeded != 40 {
		t.Fatalf("%d succeeded: %v", res.RequestsSucceeded, res.ErrorExamples)
	}
	if peak := peakInFlight(res.Requests); peak != 3 {
		t.Fatalf("%d requests in flight at once under --max-concurrency 3", peak)
	}
	if res.RequestsThrottled == 0 || res.ScheduleLagMs.Max <= 0 {
		t.Fatalf("a burst of 40 under a cap of 3: %d throttled, lag max %v", res.RequestsThrottled, res.ScheduleLagMs.Max)
	}
	if len(res.Workers) != 2 || res.Workers[0].Requests != 20 || res.Workers[1].Requests != 20 || res.Workers[0].Worker != "worker-0" {
		t.Fatalf("workers %v", res.Workers)
	}
	var perSecond uint32
	for _, n := range res.Workers[1].RequestsPerSecond {
		perSecond += n
	}
	if perSecond != 20 || len(res.Workers[1].RequestsPerSecond) != len(res.TimeSeries) {
		t.Fatalf("worker-1 per second %v over %d seconds", res.Workers[1].RequestsPerSecond, len(res.TimeSeries))
	}
}

func TestRunWarmupDurationAndRate(t *testing.T) {
	cfg := config(simURL(t), workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 64, OutputLen: 4}}, 1000)
	cfg.RequestRate = 200
	cfg.Duration = 500 * time.Millisecond
	cfg.WarmupRequests = 10
	res := run(t, cfg)
	sent := res.RequestsSent + res.WarmupRequests
	// 200/s for 0.5 s: about 100 due (Poisson: ±3σ = ±30).
	if res.WarmupRequests != 10 || sent < 70 || sent > 130 || res.RequestsNotSent != 1000-sent {
		t.Fatalf("warm-up %d, measured %d, not sent %d", res.WarmupRequests, res.RequestsSent, res.RequestsNotSent)
	}
	if res.RequestsFailed != 0 || res.ScheduleLagMs.Count != res.RequestsSent {
		t.Fatalf("%d failed, %d lag samples for %d sent", res.RequestsFailed, res.ScheduleLagMs.Count, res.RequestsSent)
	}
	// The bounds cover the measured requests, as the cached fraction does.
	if res.ReuseBounds.PromptTokens != res.PromptTokens {
		t.Fatalf("bounds over %d prompt tokens, the measured requests had %d", res.ReuseBounds.PromptTokens, res.PromptTokens)
	}
	if res.Config.Arrival.Process != "poisson" || res.Config.DurationSeconds != 0.5 {
		t.Fatalf("config %v", res.Config)
	}
}

// A burst under a concurrency cap stops at the duration: the requests
// still queued for a slot then are not sent (they once were, one by one,
// long after the end).
func TestRunDurationEndsQueuedBurst(t *testing.T) {
	url := sim.TestSim(t, func(o *sim.Options) { o.Engine.Speedup = 1 }).URL() + "/v1"
	cfg := config(url, workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 64, OutputLen: 4}}, 5000)
	cfg.RequestRate = 0
	cfg.MaxConcurrency = 2
	cfg.Duration = 300 * time.Millisecond
	cfg.SaveRequests = false
	res := run(t, cfg)
	// Each request takes the modelled ~40 ms: two at a time for 0.3 s
	// send about 15.
	if res.RequestsSent == 0 || res.RequestsSent > 100 || res.RequestsNotSent != 5000-res.RequestsSent || res.RequestsFailed != 0 {
		t.Fatalf("sent %d, not sent %d, failed %d", res.RequestsSent, res.RequestsNotSent, res.RequestsFailed)
	}
	if res.WallSeconds > 5 {
		t.Fatalf("the run took %.1f s past its 0.3 s duration", res.WallSeconds)
	}
}

// Requests to a model the endpoint does not serve fail with the endpoint's
// error, counted by kind; the run itself succeeds.
func TestRunErrorsByKind(t *testing.T) {
	cfg := config(simURL(t), workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 16, OutputLen: 2}}, 5)
	cfg.Model = "no-such-model"
	res := run(t, cfg)
	if res.RequestsFailed != 5 || res.Errors["http_404"] != 5 || res.Goodput.Requests != 0 {
		t.Fatalf("failed %d, errors %v", res.RequestsFailed, res.Errors)
	}
	if msg := res.ErrorExamples["http_404"]; msg == "" {
		t.Fatal("no example message")
	}
}

func TestRunCancelled(t *testing.T) {
	cfg := config(simURL(t), workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 16, OutputLen: 2}}, 10000)
	cfg.RequestRate = 100
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Progress = func(p bench.Progress) {
		if p.Succeeded >= 5 {
			cancel()
		}
	}
	cfg.ProgressInterval = 10 * time.Millisecond
	res, err := bench.Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) || res == nil {
		t.Fatalf("error %v", err)
	}
	if res.RequestsSucceeded < 5 || res.RequestsNotSent < 9000 {
		t.Fatalf("succeeded %d, not sent %d", res.RequestsSucceeded, res.RequestsNotSent)
	}
}

func TestRunConfigErrors(t *testing.T) {
	good := config("http://127.0.0.1:1/v1", workload.Spec{Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 1, OutputLen: 1}}, 1)
	good.Model = "m"
	for name, mutate := range map[string]func(*bench.Config){
		"no url":         func(c *bench.Config) { c.URL = "" },
		"bad url":        func(c *bench.Config) { c.URL = "127.0.0.1:8000" },
		"bad endpoint":   func(c *bench.Config) { c.Endpoint = "embeddings" },
		"tokens on chat": func(c *bench.Config) { c.Endpoint, c.PromptFormat = client.Chat, workload.FormatTokens },
		"chat on completions": func(c *bench.Config) {
			c.Workload = workload.Spec{Kind: workload.KindChat, Chat: workload.Chat{Users: 1, Rounds: 1, UserLen: 1, OutputLen: 1}}
			c.Endpoint = client.Completions
		},
		"negative rate":  func(c *bench.Config) { c.RequestRate = -1 },
		"zero timeout":   func(c *bench.Config) { c.RequestTimeout = 0 },
		"bad burstiness": func(c *bench.Config) { c.RequestRate, c.Burstiness = 10, 0 },
		"bad bounds":     func(c *bench.Config) { c.BoundBlockSize = 0 },
		"bad workload":   func(c *bench.Config) { c.Workload.Kind = "nope" },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := bench.Run(context.Background(), cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// tokenizerDir is a real model's Hugging Face tokenizer, fetched by `make
// tokenizer-data`.
func tokenizerDir(t *testing.T, name string) string {
	t.Helper()
	root := os.Getenv("STRATA_TOKENIZER_CACHE")
	if root == "" {
		root = filepath.Join("..", ".cache", "tokenizers")
	}
	dir := filepath.Join(root, name)
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		testutil.MissingDep(t, "tokenizer files in "+dir, "tokenizer-data")
	}
	return dir
}

// With the endpoint's own tokenizer (Qwen3's, engine and load generator
// alike), text prompts are sized in its tokens and the bounds render chats
// through its template exactly as the engine does.
func TestRunWithModelTokenizer(t *testing.T) {
	dir := tokenizerDir(t, "qwen3")
	tok, err := hf.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	url := sim.TestSim(t, func(o *sim.Options) { o.Engine.MaxModelLen = 32768; o.TokenizerDir = dir }).URL() + "/v1"
	for _, tc := range []struct {
		name   string
		spec   workload.Spec
		format workload.Format
	}{
		{"chat", workload.Spec{Kind: workload.KindChat, Chat: workload.Chat{Users: 3, Rounds: 3, SystemLen: 200, UserLen: 50, OutputLen: 20}}, ""},
		{"prefix as text", workload.Spec{Kind: workload.KindPrefix, Prefix: workload.Prefix{NumPrefixes: 2, PrefixLen: 500, SuffixLen: 50, OutputLen: 8}}, workload.FormatText},
		{"prefix as token ids", workload.Spec{Kind: workload.KindPrefix, Prefix: workload.Prefix{NumPrefixes: 2, PrefixLen: 500, SuffixLen: 50, OutputLen: 8}}, workload.FormatTokens},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resetPrefixCache(t, url)
			cfg := config(url, tc.spec, 0)
			if tc.spec.Kind == workload.KindPrefix {
				cfg.NumRequests = 20
			}
			cfg.Tokenizer, cfg.TokenizerName = tok, "qwen3"
			cfg.PromptFormat = tc.format
			cfg.TokenIDMin, cfg.TokenIDMax = 1000, 50000 // ordinary Qwen3 tokens
			res := run(t, cfg)
			if res.RequestsFailed != 0 || res.RequestsOutputMismatch != 0 {
				t.Fatalf("failed %d %v, output mismatches %d", res.RequestsFailed, res.ErrorExamples, res.RequestsOutputMismatch)
			}
			if b := res.ReuseBounds; b.PromptTokens != res.PromptTokens {
				t.Fatalf("bounds count %d prompt tokens, the engine saw %d", b.PromptTokens, res.PromptTokens)
			}
			if tc.spec.Kind == workload.KindPrefix {
				// 550 nominal tokens of whole words: within a few percent.
				if p := res.PromptTokensPerRequest; p.Min < 520 || p.Max > 580 {
					t.Fatalf("prompt lengths %v–%v, want about 550", p.Min, p.Max)
				}
			}
			if res.CachedTokenFraction <= 0 || res.CachedTokenFraction > res.ReuseBounds.InfiniteHitFraction+1e-9 {
				t.Fatalf("cached %.4f, infinite bound %.4f", res.CachedTokenFraction, res.ReuseBounds.InfiniteHitFraction)
			}
		})
	}
}
