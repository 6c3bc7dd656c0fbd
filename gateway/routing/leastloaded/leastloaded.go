// Package leastloaded routes each request to the worker with the least
// active work (prefill and decode blocks), ignoring caches.
package leastloaded

import (
	"context"

	"github.com/strata-llm/strata/gateway/routing"
)

// Name is the policy's name in configuration and metrics.
const Name = "least-loaded"

// Policy is the least-loaded policy.
type Policy struct{}

var _ routing.Policy = (*Policy)(nil)

// New returns the policy.
func New() *Policy { return &Policy{} }

// Name implements routing.Policy.
func (*Policy) Name() string { return Name }

// Pick implements routing.Policy.
func (*Policy) Pick(_ context.Context, _ *routing.Request, workers []*routing.Worker) (routing.Decision, error) {
	if len(workers) == 0 {
		return routing.Decision{}, routing.ErrNoWorker
	}
	return routing.Decision{Worker: workers[routing.LeastLoaded(workers)], Policy: Name, Reason: "load"}, nil
}
