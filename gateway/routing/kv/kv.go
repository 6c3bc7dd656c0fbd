// Package kv is the default routing policy: it asks the brain which workers
// already hold the request's leading KV blocks, on which tier, and sends the
// request where the prefill left to do plus the load is smallest (the cost
// function of DESIGN.md, routing.Weights.Cost). When the brain does not
// answer within its deadline, it routes with its fallback policy instead
// (approx-kv by default) and says so in the decision.
package kv

import (
	"context"
	"log/slog"
	"time"

	"github.com/strata-llm/strata/gateway/routing"
)

// Name is the policy's name in configuration and metrics.
const Name = "kv"

// Scorer answers, for a model and a prompt's block hashes, the overlap per
// worker id; workers missing from the answer have none.
type Scorer interface {
	Score(ctx context.Context, model string, hashes []uint64) (map[string]routing.Overlap, error)
}

// Config configures the policy.
type Config struct {
	Scorer  Scorer
	Weights routing.Weights
	// Timeout bounds the brain's answer: past it the request is routed
	// without it. Default 5ms.
	Timeout time.Duration
	// Fallback routes when the brain does not answer.
	Fallback routing.Policy
	Logger   *slog.Logger
}

// Policy is the KV-aware policy.
type Policy struct {
	cfg Config
}

var (
	_ routing.Policy   = (*Policy)(nil)
	_ routing.Preparer = (*Policy)(nil)
)

// New returns the policy.
func New(cfg Config) *Policy {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Policy{cfg: cfg}
}

// Name implements routing.Policy.
func (*Policy) Name() string { return Name }

// Prepare implements routing.Preparer: it asks the brain for the prompt's
// overlap per worker, within the policy's timeout.
func (p *Policy) Prepare(ctx context.Context, req *routing.Request) {
	req.Overlaps, req.ScoreErr = p.score(ctx, req)
	req.Scored = true
}

func (p *Policy) score(ctx context.Context, req *routing.Request) (map[string]routing.Overlap, error) {
	if len(req.Hashes) == 0 {
		return nil, nil
	}
	sctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	return p.cfg.Scorer.Score(sctx, req.Model, req.Hashes)
}

// Pick implements routing.Policy, on req's prepared scores or, when it has
// none, on the brain's answer now.
func (p *Policy) Pick(ctx context.Context, req *routing.Request, workers []*routing.Worker) (routing.Decision, error) {
	if len(workers) == 0 {
		return routing.Decision{}, routing.ErrNoWorker
	}
	scores, err := req.Overlaps, req.ScoreErr
	if !req.Scored {
		scores, err = p.score(ctx, req)
	}
	if err != nil {
		if ctx.Err() != nil {
			return routing.Decision{}, ctx.Err()
		}
		p.cfg.Logger.Debug("routing without the brain's scores", "model", req.Model, "error", err)
		d, ferr := p.cfg.Fallback.Pick(ctx, req, workers)
		d.Reason = "brain-unavailable"
		return d, ferr
	}
	overlaps := make([]routing.Overlap, len(workers))
	for i, w := range workers {
		overlaps[i] = scores[w.ID]
	}
	i, _ := p.cfg.Weights.Cheapest(req, workers, overlaps)
	reason := "load"
	if overlaps[i].Blocks() > 0 {
		reason = "cache-hit"
	}
	return routing.Decision{Worker: workers[i], Policy: Name, Reason: reason, Overlap: overlaps[i]}, nil
}
