// Package random routes each request to a candidate chosen uniformly at
// random.
package random

import (
	"context"
	"math/rand/v2"

	"github.com/strata-llm/strata/gateway/routing"
)

// Name is the policy's name in configuration and metrics.
const Name = "random"

// Policy is the random policy.
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
	return routing.Decision{Worker: workers[rand.IntN(len(workers))], Policy: Name, Reason: "random"}, nil
}
