// Package approxkv routes on a prediction of the engines' caches made from
// the gateway's own routing history, for engines without KV events
// (llama.cpp) and when the brain is unreachable: a block sent to a worker
// is assumed cached there for a while (TTL). It then applies the same cost
// function as the kv policy with the predicted overlaps as GPU hits.
//
// The history is per gateway and only approximates an engine's LRU: it
// cannot see evictions, other gateways' requests or engine restarts, which
// is why the TTL is short.
package approxkv

import (
	"context"
	"sync"
	"time"

	"github.com/strata-llm/strata/gateway/routing"
)

// Name is the policy's name in configuration and metrics.
const Name = "approx-kv"

// Config configures the policy.
type Config struct {
	Weights routing.Weights
	// TTL is how long a routed block is assumed cached. Default 2 minutes.
	TTL time.Duration
	// MaxBlocks bounds the blocks remembered; the oldest go first. Default
	// 1,000,000.
	MaxBlocks int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Policy is the approximate KV-aware policy.
type Policy struct {
	cfg Config

	mu     sync.Mutex
	blocks map[uint64][]holder // sequence hash → workers sent it, newest last
}

type holder struct {
	worker  string
	expires int64 // unix nanos
}

var (
	_ routing.Policy   = (*Policy)(nil)
	_ routing.Observer = (*Policy)(nil)
)

// New returns the policy.
func New(cfg Config) *Policy {
	if cfg.TTL <= 0 {
		cfg.TTL = 2 * time.Minute
	}
	if cfg.MaxBlocks <= 0 {
		cfg.MaxBlocks = 1_000_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Policy{cfg: cfg, blocks: map[uint64][]holder{}}
}

// Name implements routing.Policy.
func (*Policy) Name() string { return Name }

// Observe implements routing.Observer: the request's blocks are now
// predicted on the worker.
func (p *Policy) Observe(req *routing.Request, workerID string) {
	if len(req.Hashes) == 0 {
		return
	}
	now := p.cfg.Now().UnixNano()
	expires := now + p.cfg.TTL.Nanoseconds()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range req.Hashes {
		hs := p.blocks[h]
		kept := hs[:0]
		for _, x := range hs {
			if x.worker != workerID && x.expires > now {
				kept = append(kept, x)
			}
		}
		p.blocks[h] = append(kept, holder{workerID, expires})
	}
	if len(p.blocks) > p.cfg.MaxBlocks {
		p.prune(now)
	}
}

// prune drops expired blocks, then, if still over the bound, the blocks
// whose newest holder expires first among a walk of the map (which starts
// at a random place), until a tenth below the bound. Caller holds p.mu.
func (p *Policy) prune(now int64) {
	for h, hs := range p.blocks {
		if hs[len(hs)-1].expires <= now {
			delete(p.blocks, h)
		}
	}
	target := p.cfg.MaxBlocks - p.cfg.MaxBlocks/10
	if len(p.blocks) <= target {
		return
	}
	// Older than average goes: the expiry of the newest holder is the
	// block's last use.
	var sum float64
	for _, hs := range p.blocks {
		sum += float64(hs[len(hs)-1].expires - now)
	}
	mean := int64(sum / float64(len(p.blocks)))
	for h, hs := range p.blocks {
		if len(p.blocks) <= target {
			break
		}
		if hs[len(hs)-1].expires-now <= mean {
			delete(p.blocks, h)
		}
	}
}

// Predict returns the predicted leading blocks of hashes on each of
// workers. It walks the holders of each block in turn, a worker staying in
// the running only while it held every block so far, and stops at the first
// block nobody still running holds: the cost is the holders seen, not the
// workers.
func (p *Policy) Predict(hashes []uint64, workers []*routing.Worker) []routing.Overlap {
	out := make([]routing.Overlap, len(workers))
	if len(hashes) == 0 {
		return out
	}
	lead := map[string]uint32{} // worker → leading blocks held so far
	now := p.cfg.Now().UnixNano()
	p.mu.Lock()
	for j, h := range hashes {
		still := 0
		for _, x := range p.blocks[h] {
			if x.expires > now && lead[x.worker] == uint32(j) {
				lead[x.worker] = uint32(j) + 1
				still++
			}
		}
		if still == 0 {
			break
		}
	}
	p.mu.Unlock()
	for i, w := range workers {
		out[i].GPU = lead[w.ID]
	}
	return out
}

// Pick implements routing.Policy.
func (p *Policy) Pick(_ context.Context, req *routing.Request, workers []*routing.Worker) (routing.Decision, error) {
	if len(workers) == 0 {
		return routing.Decision{}, routing.ErrNoWorker
	}
	overlaps := p.Predict(req.Hashes, workers)
	i, _ := p.cfg.Weights.Cheapest(req, workers, overlaps)
	reason := "load"
	if overlaps[i].Blocks() > 0 {
		reason = "predicted-hit"
	}
	return routing.Decision{Worker: workers[i], Policy: Name, Reason: reason, Overlap: overlaps[i]}, nil
}
