package leastloaded

import (
	"context"
	"errors"
	"testing"

	"github.com/strata-llm/strata/gateway/routing"
)

func TestPick(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers []*routing.Worker
		want    string
	}{
		{"the least prefill and decode", []*routing.Worker{{ID: "a", DecodeBlocks: 10}, {ID: "b", PrefillBlocks: 4, DecodeBlocks: 4}, {ID: "c", PrefillBlocks: 9}}, "b"},
		{"what the engine reports beyond the gateway counts", []*routing.Worker{{ID: "a", OthersDecodeBlocks: 50}, {ID: "b", DecodeBlocks: 20}}, "b"},
		{"a cache does not matter", []*routing.Worker{{ID: "a", DecodeBlocks: 1}, {ID: "b"}}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New().Pick(context.Background(), &routing.Request{}, tc.workers)
			if err != nil {
				t.Fatal(err)
			}
			if d.Worker.ID != tc.want || d.Policy != Name || d.Reason != "load" {
				t.Fatalf("picked %s (%s, %s), want %s", d.Worker.ID, d.Policy, d.Reason, tc.want)
			}
		})
	}
	if _, err := New().Pick(context.Background(), &routing.Request{}, nil); !errors.Is(err, routing.ErrNoWorker) {
		t.Fatalf("no workers: %v", err)
	}
}
