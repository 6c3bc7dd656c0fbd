package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/strata-llm/strata/sim/kvevents"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

// testEngine returns an engine with small limits whose steps the test drives
// by hand, so scheduling is checked step by step without wall-clock waits.
func testEngine(t testing.TB, cb func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NumGPUBlocks = 64
	cfg.BlockSize = 4
	cfg.MaxNumSeqs = 8
	cfg.MaxNumBatchedTokens = 64
	cfg.MaxModelLen = 256
	cfg.MeanOutputTokens = 0
	tok := bytelevel.Tokenizer{}
	cfg.EOS, cfg.TextTokens = tok.EOS(), tok.TextTokens()
	if cb != nil {
		cb(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// step runs one engine step synchronously and returns its batch.
func (e *Engine) step() batch {
	e.runCommands()
	now := time.Now()
	b := e.schedule(now)
	e.complete(b, now)
	e.endStep()
	return b
}

func prompt(n int, base uint32) []uint32 {
	p := make([]uint32, n)
	for i := range p {
		p[i] = base + uint32(i%200)
	}
	return p
}

func add(t testing.TB, e *Engine, id string, p []uint32, maxTokens int) *Stream {
	t.Helper()
	s, err := e.Add(Request{ID: id, Prompt: p, MaxTokens: maxTokens, IgnoreEOS: true})
	if err != nil {
		t.Fatalf("Add %s: %v", id, err)
	}
	return s
}

func drain(t testing.TB, s *Stream) ([]uint32, Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var toks []uint32
	for {
		d, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		toks = append(toks, d.Tokens...)
		if d.Done {
			return toks, s.Result()
		}
	}
}

func runUntilIdle(t testing.TB, e *Engine) int {
	t.Helper()
	for i := range 10000 {
		e.runCommands()
		if len(e.running) == 0 && len(e.waiting) == 0 {
			return i
		}
		e.step()
	}
	t.Fatal("engine did not go idle")
	return 0
}

func TestPrefixCacheHit(t *testing.T) {
	e := testEngine(t, nil)
	p := prompt(18, 10) // 4 full blocks of 4 and 2 spare tokens
	s1 := add(t, e, "a", p, 2)
	runUntilIdle(t, e)
	_, r1 := drain(t, s1)
	if r1.CachedTokens != 0 {
		t.Fatalf("first request cached %d tokens, want 0", r1.CachedTokens)
	}
	s := add(t, e, "b", p, 2)
	runUntilIdle(t, e)
	_, r2 := drain(t, s)
	if r2.CachedTokens != 16 {
		t.Fatalf("repeat cached %d tokens, want 16", r2.CachedTokens)
	}
	st := e.Stats()
	if st.PrefixQueries != 36 || st.PrefixHits != 16 {
		t.Fatalf("prefix counters queries=%d hits=%d, want 36 and 16", st.PrefixQueries, st.PrefixHits)
	}
}

func TestFullHitStillComputesLastToken(t *testing.T) {
	e := testEngine(t, nil)
	p := prompt(16, 10) // exactly 4 blocks
	add(t, e, "a", p, 1)
	runUntilIdle(t, e)
	s := add(t, e, "b", p, 1)
	b := e.step()
	if b.prefillTokens != 4 {
		t.Fatalf("prefill tokens on a full hit = %d, want the last block's 4", b.prefillTokens)
	}
	_, r := drain(t, s)
	if r.CachedTokens != 12 {
		t.Fatalf("cached = %d, want 12", r.CachedTokens)
	}
}

func TestEvictionOrderAndEvents(t *testing.T) {
	sink := &recordingSink{}
	e := testEngine(t, func(c *Config) { c.NumGPUBlocks = 6; c.Events = sink })
	// a: 8 prompt tokens + 1 output -> 3 blocks, 2 full and cached.
	add(t, e, "a", prompt(8, 10), 1)
	runUntilIdle(t, e)
	// b fills the pool: a's blocks are free but cached; b's allocation must
	// evict the LRU head first: a's tail block before its first block.
	add(t, e, "b", prompt(23, 100), 1)
	runUntilIdle(t, e)
	var stored, removed int
	var removedOrder []kvevents.BlockHash
	for _, ev := range sink.events {
		switch v := ev.(type) {
		case kvevents.BlockStored:
			stored += len(v.BlockHashes)
			if v.Medium != "GPU" || v.BlockSize != 4 || len(v.TokenIDs) != 4*len(v.BlockHashes) {
				t.Fatalf("bad BlockStored %+v", v)
			}
		case kvevents.BlockRemoved:
			removed += len(v.BlockHashes)
			removedOrder = append(removedOrder, v.BlockHashes...)
		}
	}
	if stored != 2+5 {
		t.Fatalf("stored %d blocks, want 7", stored)
	}
	// a freed its blocks last first, behind the 4 never used: [2 3 4 5 a1 a0].
	// b needs all 6, evicting both cached blocks of a, a1 before a0.
	if removed != 2 {
		t.Fatalf("removed %d blocks, want 2", removed)
	}
	add(t, e, "probe", prompt(8, 10), 1)
	e.runCommands()
	r := e.waiting[0]
	if removedOrder[0] != r.hashes[1] || removedOrder[1] != r.hashes[0] {
		t.Fatalf("eviction order: want the tail block of a first")
	}
}

type recordingSink struct{ events []kvevents.Event }

func (s *recordingSink) Publish(ev []kvevents.Event) { s.events = append(s.events, ev...) }

func TestRefCountsSharedPrefix(t *testing.T) {
	e := testEngine(t, nil)
	p := prompt(12, 10)
	add(t, e, "a", p, 1)
	runUntilIdle(t, e)
	add(t, e, "b", p, 50)
	add(t, e, "c", p, 50)
	e.step()
	e.step()
	// b and c share the two cached leading blocks.
	shared := e.running[0].blocks[0]
	if shared != e.running[1].blocks[0] {
		t.Fatal("requests with the same prefix do not share blocks")
	}
	if shared.ref != 2 {
		t.Fatalf("shared block ref = %d, want 2", shared.ref)
	}
	e.Abort("b")
	e.step()
	if shared.ref != 1 {
		t.Fatalf("after abort ref = %d, want 1", shared.ref)
	}
	runUntilIdle(t, e)
	if shared.ref != 0 || e.pool.numFree != e.cfg.NumGPUBlocks {
		t.Fatalf("blocks leaked: ref=%d free=%d/%d", shared.ref, e.pool.numFree, e.cfg.NumGPUBlocks)
	}
}

func TestBatchingLimits(t *testing.T) {
	tests := []struct {
		name                string
		maxSeqs, maxBatched int
		requests, promptLen int
		wantRunning         int
		wantPrefill         int
	}{
		{"max-num-seqs caps the batch", 4, 1000, 10, 8, 4, 32},
		{"token budget caps admission", 16, 20, 10, 8, 3, 20},
		{"chunked prefill splits a long prompt", 16, 32, 1, 100, 1, 32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := testEngine(t, func(c *Config) {
				c.MaxNumSeqs, c.MaxNumBatchedTokens = tc.maxSeqs, tc.maxBatched
			})
			for i := range tc.requests {
				add(t, e, fmt.Sprint(i), prompt(tc.promptLen, uint32(i*7)), 4)
			}
			b := e.step()
			if len(e.running) != tc.wantRunning || b.prefillTokens != tc.wantPrefill {
				t.Fatalf("running=%d prefill=%d, want %d and %d", len(e.running), b.prefillTokens, tc.wantRunning, tc.wantPrefill)
			}
			if b.prefillTokens+b.decodes > tc.maxBatched {
				t.Fatalf("step scheduled %d tokens over the budget %d", b.prefillTokens+b.decodes, tc.maxBatched)
			}
			runUntilIdle(t, e)
		})
	}
}

func TestChunkedPrefillFirstTokenAfterLastChunk(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.MaxNumBatchedTokens = 32 })
	s := add(t, e, "long", prompt(100, 1), 3)
	for i := range 3 {
		e.step()
		if d, _ := s.Next(expired()); len(d.Tokens) != 0 {
			t.Fatalf("token emitted after chunk %d of 4", i+1)
		}
	}
	e.step()
	toks, _ := drainAfter(t, e, s)
	if len(toks) != 3 {
		t.Fatalf("got %d tokens, want 3", len(toks))
	}
}

func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func drainAfter(t *testing.T, e *Engine, s *Stream) ([]uint32, Result) {
	runUntilIdle(t, e)
	return drain(t, s)
}

func TestPreemptionRecomputes(t *testing.T) {
	// 10 blocks of 4: two requests of 8 prompt tokens growing to 28 tokens
	// need 14 blocks together, so the later one is preempted and recomputed.
	e := testEngine(t, func(c *Config) { c.NumGPUBlocks = 10 })
	s1 := add(t, e, "first", prompt(8, 1), 20)
	s2 := add(t, e, "second", prompt(8, 50), 20)
	runUntilIdle(t, e)
	t1, r1 := drain(t, s1)
	t2, r2 := drain(t, s2)
	if e.Stats().Preemptions == 0 {
		t.Fatal("no preemption under block pressure")
	}
	if len(t1) != 20 || len(t2) != 20 || r1.Reason != FinishLength || r2.Reason != FinishLength {
		t.Fatalf("outputs %d/%d tokens, reasons %s/%s", len(t1), len(t2), r1.Reason, r2.Reason)
	}
	if e.pool.numFree != 10 {
		t.Fatalf("free blocks after idle = %d, want 10", e.pool.numFree)
	}
}

func TestDeterministicOutput(t *testing.T) {
	gen := func() []uint32 {
		e := testEngine(t, func(c *Config) { c.MeanOutputTokens = 30 })
		s, err := e.Add(Request{ID: "x", Prompt: prompt(10, 3), MaxTokens: 100, Seed: 42})
		if err != nil {
			t.Fatal(err)
		}
		runUntilIdle(t, e)
		toks, r := drain(t, s)
		if r.Reason == FinishStop && toks[len(toks)-1] != e.cfg.EOS {
			t.Fatal("finish reason stop without EOS")
		}
		return toks
	}
	a, b := gen(), gen()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("same seed gave different outputs:\n%v\n%v", a, b)
	}
}

func TestAddRejectsBadRequests(t *testing.T) {
	e := testEngine(t, nil)
	tests := []struct {
		name string
		req  Request
	}{
		{"no id", Request{Prompt: prompt(4, 1), MaxTokens: 1}},
		{"empty prompt", Request{ID: "a", MaxTokens: 1}},
		{"zero max tokens", Request{ID: "a", Prompt: prompt(4, 1)}},
		{"over context", Request{ID: "a", Prompt: prompt(250, 1), MaxTokens: 10}},
		{"remote beyond prompt", Request{ID: "a", Prompt: prompt(4, 1), MaxTokens: 1, RemoteTokens: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.Add(tc.req); !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
		})
	}
}

func TestHeldKVForRemoteDecode(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.KVHoldTimeout = time.Hour })
	p := prompt(10, 1)
	s, _ := e.Add(Request{ID: "p", Prompt: p, MaxTokens: 1, HoldKV: true})
	runUntilIdle(t, e)
	_, r := drain(t, s)
	if len(r.HeldBlocks) != 3 || e.pool.numFree != e.cfg.NumGPUBlocks-3 {
		t.Fatalf("held %v, free %d", r.HeldBlocks, e.pool.numFree)
	}
	ctx := context.Background()
	go func() { _ = e.Run(ctxT(t)) }()
	toks, err := e.TakeHeld(ctx, "p")
	if err != nil || len(toks) != 8 {
		t.Fatalf("TakeHeld = %d tokens, %v; want 8", len(toks), err)
	}
	if _, err := e.TakeHeld(ctx, "p"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second TakeHeld err = %v, want ErrNotHeld", err)
	}
}

func TestHeldKVExpires(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.KVHoldTimeout = time.Nanosecond })
	s, _ := e.Add(Request{ID: "p", Prompt: prompt(10, 1), MaxTokens: 1, HoldKV: true})
	runUntilIdle(t, e)
	drain(t, s)
	go func() { _ = e.Run(ctxT(t)) }()
	if _, err := e.TakeHeld(context.Background(), "p"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("TakeHeld after expiry err = %v, want ErrNotHeld", err)
	}
}

func TestRemoteTokensChargedAsTransfer(t *testing.T) {
	e := testEngine(t, nil)
	s, err := e.Add(Request{ID: "d", Prompt: prompt(18, 1), MaxTokens: 2, RemoteTokens: 16, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.Run(ctxT(t)) }()
	toks, r := drain(t, s)
	if len(toks) != 2 || r.CachedTokens != 16 {
		t.Fatalf("tokens=%d cached=%d, want 2 and 16", len(toks), r.CachedTokens)
	}
	// Stats are published at the end of the step, which may come after
	// the answer.
	testutil.WaitForResult(t, 10*time.Second, func() error {
		if st := e.Stats(); st.ExternalHits != 16 || st.PrefixHits != 0 {
			return fmt.Errorf("external hits %d, prefix hits %d", st.ExternalHits, st.PrefixHits)
		}
		return nil
	})
}

func TestRunAbortsOnShutdown(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.Speedup = 1e-3 }) // steps take seconds
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	s := add(t, e, "x", prompt(8, 1), 5)
	cancel()
	<-done
	_, r := drain(t, s)
	if r.Reason != FinishAbort {
		t.Fatalf("reason %s, want abort", r.Reason)
	}
	if _, err := e.Add(Request{ID: "y", Prompt: prompt(4, 1), MaxTokens: 1}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add after stop err = %v", err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

func TestTimingModel(t *testing.T) {
	m := DefaultTiming()
	tests := []struct {
		name string
		got  time.Duration
		want float64 // ms
	}{
		{"prefill 1000 tokens", m.Prefill(1000), 4.209989e-7*1e6 + 15.18344 + 16.50142},
		{"prefill nothing", m.Prefill(0), 0},
		{"decode empty cache", m.Decode(0), 5.74},
		{"decode half full", m.Decode(0.5), -25.74*0.25 + 27.005 + 5.74},
		{"step mixes both", m.Step(1000, 3, 0.5), 4.209989e-7*1e6 + 15.18344 + 16.50142 + -25.74*0.25 + 27.005 + 5.74},
		{"transfer 1000 tokens", m.Transfer(1000), 1000 * 131072 / 25e9 * 1e3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := float64(tc.got) / float64(time.Millisecond)
			if d := got - tc.want; d > 1e-3 || d < -1e-3 {
				t.Fatalf("got %.4f ms, want %.4f ms", got, tc.want)
			}
		})
	}
	low := DefaultTiming()
	low.DecodeC = -100
	if low.Decode(0) != time.Millisecond {
		t.Fatalf("decode floor: got %v", low.Decode(0))
	}
}
