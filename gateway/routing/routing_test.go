package routing

import (
	"math"
	"testing"
)

func TestCost(t *testing.T) {
	wt := DefaultWeights
	wt.PrefillScale = 1                               // the formula in blocks; the scale has its own test
	req := &Request{PromptTokens: 160, BlockSize: 16} // 10 blocks
	for _, tc := range []struct {
		name string
		w    Worker
		o    Overlap
		want float64
	}{
		{"idle, nothing cached", Worker{}, Overlap{}, 10},
		{"idle, all on GPU", Worker{}, Overlap{GPU: 10}, 0},
		{"tiers credit less", Worker{}, Overlap{GPU: 2, CPU: 4, Disk: 4}, 10 - 2 - 3 - 1},
		{"remote", Worker{}, Overlap{Remote: 10}, 9},
		{"queued prefill adds", Worker{PrefillBlocks: 5, OthersPrefillBlocks: 3}, Overlap{GPU: 4}, 14},
		{"credits cannot go below zero prefill", Worker{DecodeBlocks: 7}, Overlap{GPU: 30}, 7},
		{"decode adds", Worker{DecodeBlocks: 20, OthersDecodeBlocks: 5}, Overlap{}, 35},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wt.Cost(req, &tc.w, tc.o); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("cost %v, want %v", got, tc.want)
			}
		})
	}
}

// Under the default weights a worker keeps the prefix it holds against
// another with less decode load — one more sequence of the prompt's own
// length, or four — and gives it up only when the prefill queued on it
// outweighs recomputing the prefix elsewhere.
func TestDefaultWeightsKeepACachedPrefix(t *testing.T) {
	req := &Request{PromptTokens: 520 * 16, BlockSize: 16} // 512 blocks of prefix, 8 of suffix
	hit := []Overlap{{GPU: 512}, {}}
	for _, tc := range []struct {
		name   string
		holder Worker
		want   int
	}{
		{"one more sequence decoding on the holder", Worker{DecodeBlocks: 522}, 0},
		{"four more", Worker{DecodeBlocks: 4 * 522, Inflight: 4}, 0},
		{"a full step of prefill queued on the holder", Worker{PrefillBlocks: 600}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := DefaultWeights.Cheapest(req, []*Worker{&tc.holder, {}}, hit); got != tc.want {
				t.Fatalf("picked %d, want %d", got, tc.want)
			}
		})
	}
	// At prefill weight 1 the first case spilled.
	wt := DefaultWeights
	wt.PrefillScale = 1
	if got, _ := wt.Cheapest(req, []*Worker{{DecodeBlocks: 522}, {}}, hit); got != 1 {
		t.Fatalf("weight 1 kept the prefix (%d)", got)
	}
}

func TestCheapest(t *testing.T) {
	req := &Request{PromptTokens: 320, BlockSize: 16}
	wt := DefaultWeights
	for _, tc := range []struct {
		name     string
		workers  []*Worker
		overlaps []Overlap
		want     int
	}{
		{"the cached one", []*Worker{{}, {}, {}}, []Overlap{{}, {GPU: 15}, {GPU: 3}}, 1},
		{"equal cost: the less loaded", []*Worker{{DecodeBlocks: 10}, {PrefillBlocks: 5, DecodeBlocks: 5}}, []Overlap{{}, {GPU: 5}}, 1},
		{"cache hit on a busy worker loses", []*Worker{{DecodeBlocks: 400}, {DecodeBlocks: 10}}, []Overlap{{GPU: 20}, {}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := wt.Cheapest(req, tc.workers, tc.overlaps); got != tc.want {
				t.Fatalf("picked %d, want %d", got, tc.want)
			}
		})
	}
	// Exact ties are broken at random: every tied worker gets picked.
	seen := map[int]bool{}
	ws := []*Worker{{}, {}, {}}
	for range 200 {
		i, _ := wt.Cheapest(req, ws, make([]Overlap, 3))
		seen[i] = true
	}
	if len(seen) != 3 {
		t.Fatalf("ties went to %v only", seen)
	}
}

func TestSoftmaxSpreadsNearTies(t *testing.T) {
	req := &Request{PromptTokens: 160, BlockSize: 16}
	ws := []*Worker{{}, {DecodeBlocks: 1}, {DecodeBlocks: 1000}}
	wt := DefaultWeights
	wt.Temperature = 2
	counts := make([]int, 3)
	for range 2000 {
		i, _ := wt.Cheapest(req, ws, make([]Overlap, 3))
		counts[i]++
	}
	// Costs 10, 11, 1010: the first two share the picks (e^-0.5 ≈ 0.61),
	// the far one never wins.
	if counts[2] != 0 || counts[1] < 400 || counts[0] < counts[1] {
		t.Fatalf("picks %v", counts)
	}
}

func TestLeastLoaded(t *testing.T) {
	ws := []*Worker{{DecodeBlocks: 3}, {PrefillBlocks: 1, OthersDecodeBlocks: 1}, {OthersPrefillBlocks: 4}}
	if got := LeastLoaded(ws); got != 1 {
		t.Fatalf("picked %d", got)
	}
}
