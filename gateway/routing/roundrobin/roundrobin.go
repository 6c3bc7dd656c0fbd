// Package roundrobin routes requests to the candidates in turn: the plain
// load balancer Strata's other policies are measured against.
package roundrobin

import (
	"context"
	"sync/atomic"

	"github.com/strata-llm/strata/gateway/routing"
)

// Name is the policy's name in configuration and metrics.
const Name = "round-robin"

// Policy is the round-robin policy. The gateway passes candidates in a
// stable order (by worker id), so turns go around the workers.
type Policy struct {
	next atomic.Uint64
}

var _ routing.Policy = (*Policy)(nil)

// New returns the policy.
func New() *Policy { return &Policy{} }

// Name implements routing.Policy.
func (*Policy) Name() string { return Name }

// Pick implements routing.Policy.
func (p *Policy) Pick(_ context.Context, _ *routing.Request, workers []*routing.Worker) (routing.Decision, error) {
	if len(workers) == 0 {
		return routing.Decision{}, routing.ErrNoWorker
	}
	i := (p.next.Add(1) - 1) % uint64(len(workers))
	return routing.Decision{Worker: workers[i], Policy: Name, Reason: "turn"}, nil
}
