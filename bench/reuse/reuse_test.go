package reuse_test

import (
	"math/rand/v2"
	"testing"

	"github.com/strata-llm/strata/bench/reuse"
)

// A hand-checked run with 2-token blocks and a pooled cache of 3 blocks.
// A = (1,2), B = (1,2)(3,4), C = (7,8); Oi are output blocks.
func TestBoundsByHand(t *testing.T) {
	tr, err := reuse.NewTracker(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		prompt           []uint32
		output           int
		infinite, pooled uint64 // hit tokens of this request
	}{
		// Nothing seen yet. Cache (MRU first): A B.
		{[]uint32{1, 2, 3, 4, 5}, 0, 0, 0},
		// A and B hit: 4 tokens.
		{[]uint32{1, 2, 3, 4, 9}, 0, 4, 4},
		// Fully cached, but the last token is recomputed: only A counts.
		{[]uint32{1, 2, 3, 4}, 0, 2, 2},
		// One block, which is also the last: no hit. Cache: C A B.
		{[]uint32{7, 8}, 0, 0, 0},
		// A, B hit and are touched (B A C); then 5+3 computed tokens = 4
		// blocks, 2 of them output, released tail first: O2 evicts C, O1
		// evicts A, B, then A evicts O2. Cache: A B O1.
		{[]uint32{1, 2, 3, 4, 5}, 4, 4, 4},
		// The shared prefix outlived the rest: A, B hit.
		{[]uint32{1, 2, 3, 4, 5}, 0, 4, 4},
		// C was evicted from the pool, never from the infinite cache.
		{[]uint32{7, 8, 1}, 0, 2, 0},
	}
	var inf, pooled, prompt uint64
	for i, s := range steps {
		tr.Observe(s.prompt, s.output)
		inf += s.infinite
		pooled += s.pooled
		prompt += uint64(len(s.prompt))
		b := tr.Bounds()
		if b.InfiniteHitTokens != inf || b.PooledHitTokens != pooled || b.PromptTokens != prompt {
			t.Fatalf("after request %d: infinite %d pooled %d of %d, want %d %d of %d",
				i, b.InfiniteHitTokens, b.PooledHitTokens, b.PromptTokens, inf, pooled, prompt)
		}
	}
	b := tr.Bounds()
	if b.InfiniteFraction() != 16.0/29 || b.PooledFraction() != 14.0/29 {
		t.Fatalf("fractions %v %v", b.InfiniteFraction(), b.PooledFraction())
	}
}

// A warm-up request fills the caches without counting: the requests after
// it hit its blocks, and the bounds cover only them.
func TestWarmupFillsButDoesNotCount(t *testing.T) {
	tr, err := reuse.NewTracker(2, 8)
	if err != nil {
		t.Fatal(err)
	}
	tr.Finish(tr.StartWarmup([]uint32{1, 2, 3, 4, 5}), nil, 0)
	if b := tr.Bounds(); b.PromptTokens != 0 || b.InfiniteHitTokens != 0 || b.PooledHitTokens != 0 {
		t.Fatalf("warm-up counted: %+v", b)
	}
	tr.Observe([]uint32{1, 2, 3, 4, 9}, 0)
	if b := tr.Bounds(); b.PromptTokens != 5 || b.InfiniteHitTokens != 4 || b.PooledHitTokens != 4 {
		t.Fatalf("after the warm-up: %+v", b)
	}
}

// The pooled bound never exceeds the infinite one, equals it when the
// cache holds everything, and shrinks with the capacity.
func TestBoundsOrdering(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	prefixes := make([][]uint32, 8)
	for i := range prefixes {
		for range 64 {
			prefixes[i] = append(prefixes[i], rng.Uint32N(1000))
		}
	}
	var prompts [][]uint32
	for range 400 {
		p := append([]uint32(nil), prefixes[rng.IntN(len(prefixes))]...)
		for range 16 {
			p = append(p, rng.Uint32N(1000))
		}
		prompts = append(prompts, p)
	}
	run := func(capacity int) reuse.Bounds {
		tr, err := reuse.NewTracker(16, capacity)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range prompts {
			tr.Observe(p, 32)
		}
		return tr.Bounds()
	}
	huge, small, tiny := run(1<<20), run(40), run(6)
	if huge.PooledHitTokens != huge.InfiniteHitTokens {
		t.Fatalf("unbounded pool %d != infinite %d", huge.PooledHitTokens, huge.InfiniteHitTokens)
	}
	// 8 prefixes × 4 blocks: every request after a prefix's first hits 4
	// blocks of its 5 (the suffix block is new).
	if want := uint64(400-8) * 64; huge.InfiniteHitTokens != want {
		t.Fatalf("infinite %d, want %d", huge.InfiniteHitTokens, want)
	}
	if tiny.PooledHitTokens >= small.PooledHitTokens || small.PooledHitTokens > huge.PooledHitTokens {
		t.Fatalf("pooled hits do not grow with capacity: %d %d %d", tiny.PooledHitTokens, small.PooledHitTokens, huge.PooledHitTokens)
	}
	if small.InfiniteHitTokens != huge.InfiniteHitTokens {
		t.Fatal("the infinite bound depends on the capacity")
	}
}

// Generated tokens whose ids are known (a chat answer) are blocks the next
// prompt that repeats them hits; the last generated token has no KV yet.
func TestFinishWithOutput(t *testing.T) {
	tr, _ := reuse.NewTracker(2, 100)
	r := tr.Start([]uint32{1, 2, 3})
	tr.Finish(r, []uint32{4, 5, 6}, 3) // KV for 1 2 3 4 5: blocks (1,2) (3,4)
	tr.Observe([]uint32{1, 2, 3, 4, 5, 6, 7}, 1)
	if b := tr.Bounds(); b.InfiniteHitTokens != 4 || b.PooledHitTokens != 4 {
		t.Fatalf("hits %d/%d, want the prompt block and the one the answer completed (4 tokens)", b.InfiniteHitTokens, b.PooledHitTokens)
	}
	// Requests in flight together: the second starts after the first
	// started, so it hits the first's prompt blocks already.
	tr2, _ := reuse.NewTracker(2, 100)
	a := tr2.Start([]uint32{9, 9, 8, 8, 7})
	b := tr2.Start([]uint32{9, 9, 8, 8, 6})
	tr2.Finish(a, nil, 10)
	tr2.Finish(b, nil, 10)
	if got := tr2.Bounds().InfiniteHitTokens; got != 4 {
		t.Fatalf("concurrent hits %d, want 4", got)
	}
}

func TestTrackerErrors(t *testing.T) {
	for _, tc := range [][2]int{{0, 10}, {16, 0}, {-1, 1}, {16, 1 << 40}} {
		if _, err := reuse.NewTracker(tc[0], tc[1]); err == nil {
			t.Errorf("block size %d, capacity %d accepted", tc[0], tc[1])
		}
	}
	tr, _ := reuse.NewTracker(16, 10)
	tr.Observe(nil, 5) // an empty prompt counts nothing and breaks nothing
	if b := tr.Bounds(); b.PromptTokens != 0 || b.InfiniteFraction() != 0 {
		t.Fatalf("%+v", b)
	}
}
