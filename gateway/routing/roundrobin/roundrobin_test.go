package roundrobin

import (
	"context"
	"testing"

	"github.com/strata-llm/strata/gateway/routing"
	"github.com/strata-llm/strata/gateway/routing/random"
)

func TestTurnsAndRandom(t *testing.T) {
	ws := []*routing.Worker{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	for _, tc := range []struct {
		name  string
		p     routing.Policy
		check func(t *testing.T, picks []string)
	}{
		{"round-robin goes around", New(), func(t *testing.T, picks []string) {
			for i, id := range picks {
				if want := ws[i%3].ID; id != want {
					t.Fatalf("pick %d: %s, want %s", i, id, want)
				}
			}
		}},
		{"random reaches everyone", random.New(), func(t *testing.T, picks []string) {
			seen := map[string]int{}
			for _, id := range picks {
				seen[id]++
			}
			if len(seen) != 3 {
				t.Fatalf("picks %v", seen)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var picks []string
			for range 300 {
				d, err := tc.p.Pick(context.Background(), &routing.Request{}, ws)
				if err != nil {
					t.Fatal(err)
				}
				picks = append(picks, d.Worker.ID)
			}
			tc.check(t, picks)
			if _, err := tc.p.Pick(context.Background(), &routing.Request{}, nil); err != routing.ErrNoWorker {
				t.Fatalf("no workers: %v", err)
			}
		})
	}
}
