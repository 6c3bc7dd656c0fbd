package kv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strata-llm/strata/gateway/routing"
	"github.com/strata-llm/strata/gateway/routing/leastloaded"
)

// scorer answers from a fixed table, or fails, or waits past any deadline:
// the three ways the brain behaves.
type scorer struct {
	scores map[string]routing.Overlap
	err    error
	hang   bool
}

func (s *scorer) Score(ctx context.Context, _ string, _ []uint64) (map[string]routing.Overlap, error) {
	if s.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.scores, s.err
}

func TestPick(t *testing.T) {
	req := &routing.Request{Model: "m", Hashes: []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, PromptTokens: 170, BlockSize: 16}
	idle := func(id string) *routing.Worker { return &routing.Worker{ID: id} }
	for _, tc := range []struct {
		name       string
		scorer     *scorer
		workers    []*routing.Worker
		req        *routing.Request
		want       string
		policy     string
		reason     string
		overlapGPU uint32
	}{
		{"the worker holding the prefix", &scorer{scores: map[string]routing.Overlap{"b": {GPU: 10}, "c": {GPU: 2}}},
			[]*routing.Worker{idle("a"), idle("b"), idle("c")}, req, "b", Name, "cache-hit", 10},
		{"host memory beats nothing", &scorer{scores: map[string]routing.Overlap{"c": {CPU: 10}}},
			[]*routing.Worker{idle("a"), idle("b"), idle("c")}, req, "c", Name, "cache-hit", 0},
		{"a hot prefix spills to an idle worker once its holder is busy", &scorer{scores: map[string]routing.Overlap{"a": {GPU: 10}}},
			[]*routing.Worker{{ID: "a", PrefillBlocks: 40, DecodeBlocks: 300}, idle("b")}, req, "b", Name, "load", 0},
		{"no full block: by load", &scorer{err: errors.New("must not be asked")},
			[]*routing.Worker{{ID: "a", DecodeBlocks: 5}, idle("b")}, &routing.Request{Model: "m", PromptTokens: 3, BlockSize: 16}, "b", Name, "load", 0},
		{"brain error: the fallback decides", &scorer{err: errors.New("unavailable")},
			[]*routing.Worker{{ID: "a", DecodeBlocks: 5}, idle("b")}, req, "b", leastloaded.Name, "brain-unavailable", 0},
		{"brain too slow: the fallback decides", &scorer{hang: true},
			[]*routing.Worker{idle("a"), {ID: "b", DecodeBlocks: 5}}, req, "a", leastloaded.Name, "brain-unavailable", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Config{Scorer: tc.scorer, Weights: routing.DefaultWeights, Timeout: 20 * time.Millisecond, Fallback: leastloaded.New()})
			d, err := p.Pick(context.Background(), tc.req, tc.workers)
			if err != nil {
				t.Fatal(err)
			}
			if d.Worker.ID != tc.want || d.Policy != tc.policy || d.Reason != tc.reason || d.Overlap.GPU != tc.overlapGPU {
				t.Fatalf("decision %s by %s (%s, overlap %+v); want %s by %s (%s, %d on GPU)",
					d.Worker.ID, d.Policy, d.Reason, d.Overlap, tc.want, tc.policy, tc.reason, tc.overlapGPU)
			}
		})
	}
	// Prepared: Pick decides on the scores Prepare fetched, without asking.
	s := &scorer{scores: map[string]routing.Overlap{"b": {GPU: 10}}}
	p := New(Config{Scorer: s, Weights: routing.DefaultWeights, Fallback: leastloaded.New()})
	prepared := *req
	p.Prepare(context.Background(), &prepared)
	s.err, s.scores = errors.New("must not be asked"), nil
	if d, err := p.Pick(context.Background(), &prepared, []*routing.Worker{idle("a"), idle("b")}); err != nil || d.Worker.ID != "b" || d.Reason != "cache-hit" {
		t.Fatalf("prepared pick: %+v %v", d, err)
	}
	if _, err := New(Config{Fallback: leastloaded.New()}).Pick(context.Background(), req, nil); !errors.Is(err, routing.ErrNoWorker) {
		t.Fatalf("no workers: %v", err)
	}
}
