// Package session routes every request of a session to the same worker:
// rendezvous (highest-random-weight) hashing of the session key over the
// candidates, so that a session moves only when its worker leaves or is
// busy, and only the sessions of that worker move. Requests without a
// session key go to the least-loaded worker.
package session

import (
	"context"

	"github.com/zeebo/xxh3"

	"github.com/strata-llm/strata/gateway/routing"
)

// Name is the policy's name in configuration and metrics.
const Name = "session"

// Policy is the session-affinity policy.
type Policy struct{}

var _ routing.Policy = (*Policy)(nil)

// New returns the policy.
func New() *Policy { return &Policy{} }

// Name implements routing.Policy.
func (*Policy) Name() string { return Name }

// Pick implements routing.Policy.
func (*Policy) Pick(_ context.Context, req *routing.Request, workers []*routing.Worker) (routing.Decision, error) {
	if len(workers) == 0 {
		return routing.Decision{}, routing.ErrNoWorker
	}
	if req.SessionKey == "" {
		return routing.Decision{Worker: workers[routing.LeastLoaded(workers)], Policy: Name, Reason: "no-session"}, nil
	}
	key := xxh3.HashString(req.SessionKey)
	best, bestWeight := 0, uint64(0)
	for i, w := range workers {
		if wt := xxh3.HashStringSeed(w.ID, key); i == 0 || wt > bestWeight {
			best, bestWeight = i, wt
		}
	}
	return routing.Decision{Worker: workers[best], Policy: Name, Reason: "affinity"}, nil
}
