package session

import (
	"context"
	"fmt"
	"testing"

	"github.com/strata-llm/strata/gateway/routing"
)

func TestAffinity(t *testing.T) {
	p := New()
	var ws []*routing.Worker
	for i := range 8 {
		ws = append(ws, &routing.Worker{ID: fmt.Sprintf("w%d", i)})
	}
	pick := func(key string, ws []*routing.Worker) string {
		d, err := p.Pick(context.Background(), &routing.Request{SessionKey: key}, ws)
		if err != nil {
			t.Fatal(err)
		}
		return d.Worker.ID
	}
	before := map[string]string{}
	spread := map[string]int{}
	for i := range 400 {
		key := fmt.Sprint("user-", i)
		before[key] = pick(key, ws)
		if pick(key, ws) != before[key] {
			t.Fatalf("%s moved without a change", key)
		}
		spread[before[key]]++
	}
	if len(spread) != len(ws) {
		t.Fatalf("sessions on %d of %d workers: %v", len(spread), len(ws), spread)
	}
	// w3 leaves: only its sessions move.
	rest := append(append([]*routing.Worker{}, ws[:3]...), ws[4:]...)
	for key, was := range before {
		now := pick(key, rest)
		if was != "w3" && now != was {
			t.Fatalf("%s moved from %s to %s though its worker stayed", key, was, now)
		}
	}
	// No session key: the least-loaded worker.
	for i, w := range ws {
		if i != 5 {
			w.DecodeBlocks = 5
		}
	}
	if d, _ := p.Pick(context.Background(), &routing.Request{}, ws); d.Worker.ID != "w5" || d.Reason != "no-session" {
		t.Fatalf("without a key: %s (%s)", d.Worker.ID, d.Reason)
	}
}
