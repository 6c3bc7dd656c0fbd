package approxkv

import (
	"context"
	"testing"
	"time"

	"github.com/strata-llm/strata/gateway/routing"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestPredictAndPick(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	p := New(Config{Weights: routing.DefaultWeights, TTL: time.Minute, Now: c.now})
	ws := []*routing.Worker{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	req := func(hashes ...uint64) *routing.Request {
		return &routing.Request{Model: "m", Hashes: hashes, PromptTokens: 16 * len(hashes), BlockSize: 16}
	}
	p.Observe(req(1, 2, 3, 4), "b")
	p.Observe(req(1, 2, 9), "c")
	p.Observe(req(1, 2, 3), "a")
	p.Observe(req(1, 2, 3), "a") // again: still one holder entry

	for _, tc := range []struct {
		name   string
		hashes []uint64
		want   []uint32
	}{
		{"longest on b", []uint64{1, 2, 3, 4, 5}, []uint32{3, 4, 2}},
		{"divergence after the shared part", []uint64{1, 2, 9}, []uint32{2, 2, 3}},
		{"unknown first block", []uint64{7, 1, 2}, []uint32{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Predict(tc.hashes, ws)
			for i, o := range got {
				if o.GPU != tc.want[i] {
					t.Fatalf("predicted %+v, want GPU %v", got, tc.want)
				}
			}
		})
	}
	if d, _ := p.Pick(context.Background(), req(1, 2, 3, 4, 5, 6), ws); d.Worker.ID != "b" || d.Reason != "predicted-hit" {
		t.Fatalf("picked %s (%s)", d.Worker.ID, d.Reason)
	}
	// Past the TTL, nothing is predicted: the pick is by load.
	c.t = c.t.Add(2 * time.Minute)
	ws[0].DecodeBlocks, ws[1].DecodeBlocks = 3, 3
	if d, _ := p.Pick(context.Background(), req(1, 2, 3, 4, 5, 6), ws); d.Worker.ID != "c" || d.Reason != "load" {
		t.Fatalf("after the TTL picked %s (%s)", d.Worker.ID, d.Reason)
	}
}

func TestMemoryBounded(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	p := New(Config{TTL: time.Hour, MaxBlocks: 1000, Now: c.now})
	for i := range uint64(5000) {
		c.t = c.t.Add(time.Millisecond)
		p.Observe(&routing.Request{Hashes: []uint64{i}}, "a")
	}
	if n := len(p.blocks); n > 1000 {
		t.Fatalf("%d blocks remembered, bound 1000", n)
	}
	// The newest survive the pruning.
	if got := p.Predict([]uint64{4999}, []*routing.Worker{{ID: "a"}}); got[0].GPU != 1 {
		t.Fatal("newest block pruned")
	}
}
