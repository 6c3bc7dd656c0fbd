// Package routing is the gateway's choice of a worker for a request. A
// Policy ranks the routable workers of a model; each policy lives in its
// own package under gateway/routing (kv, approxkv, leastloaded, roundrobin,
// random, session) and registers nothing globally: the gateway builds the
// ones it offers by name (see gateway.Policies).
//
// Policies see the same view: the request's prompt as block hashes, and per
// worker its load (this gateway's in-flight requests plus what the engine
// last reported through its agent and the brain). The cost function that
// kv and approx-kv share is DESIGN.md's (Cost).
package routing

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
)

// Worker is one routable engine as the policies see it.
type Worker struct {
	ID       string
	Endpoint string // host:port of the engine's OpenAI server

	// Reported by the engine (its /metrics, scraped by the agent, through
	// the brain): every gateway's requests, a heartbeat or two behind.
	Running, Waiting int
	KVUsage          float64

	// This gateway's own in-flight requests, current: their count, the
	// uncached prompt blocks of those not past prefill yet, and the KV
	// blocks (prompt and output so far) of those decoding.
	Inflight      int
	PrefillBlocks float64
	DecodeBlocks  float64
	// OthersBlocks estimates the requests the engine reports beyond this
	// gateway's (other gateways', canaries'), in blocks of the model's
	// average request: they load the worker too.
	OthersPrefillBlocks, OthersDecodeBlocks float64
}

// ActivePrefill is the prefill work queued on the worker, in blocks.
func (w *Worker) ActivePrefill() float64 { return w.PrefillBlocks + w.OthersPrefillBlocks }

// ActiveDecode is the KV the worker's decoding sequences hold, in blocks.
func (w *Worker) ActiveDecode() float64 { return w.DecodeBlocks + w.OthersDecodeBlocks }

// Load orders workers by how busy they are: active prefill and decode
// blocks together.
func (w *Worker) Load() float64 { return w.ActivePrefill() + w.ActiveDecode() }

// Request is what a policy routes.
type Request struct {
	Model string
	// Hashes are the sequence hashes (kvhash) of the prompt's full blocks.
	Hashes       []uint64
	PromptTokens int
	BlockSize    int
	// SessionKey is the affinity key (a header, the request's user, or the
	// session id hint); empty when the request has none.
	SessionKey string

	// Overlaps are the brain's answer for Hashes, by worker id, as a
	// Preparer fetched it: Scored says it did, ScoreErr why it failed.
	Overlaps map[string]Overlap
	ScoreErr error
	Scored   bool
}

// PromptBlocks is the prompt's length in blocks, a partial last block
// counting as a fraction.
func (r *Request) PromptBlocks() float64 {
	if r.BlockSize <= 0 {
		return 0
	}
	return float64(r.PromptTokens) / float64(r.BlockSize)
}

// Overlap is the leading blocks of the request a worker already has, per
// tier, each block counted on its fastest tier.
type Overlap struct {
	GPU, CPU, Disk, Remote uint32
}

// Blocks is the overlap's total prefix length in blocks.
func (o Overlap) Blocks() uint32 { return o.GPU + o.CPU + o.Disk + o.Remote }

// Decision is a policy's pick.
type Decision struct {
	Worker *Worker
	// Policy is the name of the policy that decided: the one asked, or the
	// one it fell back to.
	Policy string
	// Reason says why, for metrics: a small fixed set per policy.
	Reason string
	// Overlap is what the policy expects the worker to have cached.
	Overlap Overlap
}

// Policy picks a worker for a request among the candidates, which the
// gateway has already filtered (routable, not busy) and never leaves
// empty. Pick must be safe for concurrent use and must not keep workers.
type Policy interface {
	Name() string
	Pick(ctx context.Context, req *Request, workers []*Worker) (Decision, error)
}

// Preparer is a policy whose pick needs a lookup that is slow next to the
// pick and does not depend on load: kv's Score call to the brain. The
// gateway calls Prepare first, then reads the workers' load and calls Pick
// under a lock per model that also covers counting the request on the
// worker picked — so each request of a burst sees the load of the ones
// just before it, not the load from before their lookups.
type Preparer interface {
	Prepare(ctx context.Context, req *Request)
}

// Observer is a policy that learns from where requests were sent (by any
// policy): approx-kv remembers routed prefixes.
type Observer interface {
	Observe(req *Request, workerID string)
}

// ErrNoWorker is returned when there is no candidate to pick.
var ErrNoWorker = errors.New("no routable worker")

// Weights are the cost function's parameters (DESIGN.md, Routing).
type Weights struct {
	// Credit per cached block by tier: what a block found there saves of
	// prefill, relative to computing it (1 for the GPU).
	GPU, CPU, Disk, Remote float64
	// PrefillScale weighs prefill blocks against decode blocks.
	PrefillScale float64
	// Temperature above 0 picks by softmax over -cost/Temperature (in
	// blocks) instead of the lowest cost: spreads near-ties.
	Temperature float64
}

// DefaultWeights are DESIGN.md's credits, 1, 0.75, 0.25 and 0.1 for the
// remote tier (a network fetch), no temperature, and prefill weighted 16:
// a block prefilled costs an engine far more than a block held by a
// decoding sequence (ENGINES.md's H100 fit: 0.24 ms of prefill per 16-token
// block against 54 ms per step for the whole KV cache, a few µs per block
// per step), so a cached prefix must not be given up for a decode load of
// about its own size, the prompt of one more sequence. At weight 1 it was,
// and the routing benchmark's prefix-heavy workload got 42 % of the
// cache hits the cluster's pooled capacity allows; at 16, 99.8 %
// (docs/benchmarks.md, Routing benchmark).
var DefaultWeights = Weights{GPU: 1, CPU: 0.75, Disk: 0.25, Remote: 0.1, PrefillScale: 16}

// Credits is what an overlap saves, in blocks of prefill.
func (wt *Weights) Credits(o Overlap) float64 {
	return wt.GPU*float64(o.GPU) + wt.CPU*float64(o.CPU) + wt.Disk*float64(o.Disk) + wt.Remote*float64(o.Remote)
}

// Cost is DESIGN.md's cost of sending req to w when w has overlap o:
//
//	prefill_scale·max(active_prefill + prompt_blocks − credits, 0) + active_decode
func (wt *Weights) Cost(req *Request, w *Worker, o Overlap) float64 {
	return wt.PrefillScale*math.Max(w.ActivePrefill()+req.PromptBlocks()-wt.Credits(o), 0) + w.ActiveDecode()
}

// LeastLoaded picks the worker of lowest Load, ties broken at random.
func LeastLoaded(workers []*Worker) int {
	best, ties := -1, 0
	for i, w := range workers {
		switch {
		case best < 0 || w.Load() < workers[best].Load():
			best, ties = i, 1
		case w.Load() == workers[best].Load():
			ties++
			if rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}

// Cheapest picks the worker of lowest cost, ties broken by load and then at
// random, or by softmax when wt.Temperature > 0. overlaps[i] is workers[i]'s.
func (wt *Weights) Cheapest(req *Request, workers []*Worker, overlaps []Overlap) (int, float64) {
	if wt.Temperature > 0 {
		return wt.softmax(req, workers, overlaps)
	}
	best, bestCost, ties := -1, math.Inf(1), 0
	for i, w := range workers {
		c := wt.Cost(req, w, overlaps[i])
		switch {
		case best < 0 || c < bestCost || (c == bestCost && w.Load() < workers[best].Load()):
			best, bestCost, ties = i, c, 1
		case c == bestCost && w.Load() == workers[best].Load():
			// Reservoir sampling over exact ties: each is kept with
			// equal probability.
			ties++
			if rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best, bestCost
}

func (wt *Weights) softmax(req *Request, workers []*Worker, overlaps []Overlap) (int, float64) {
	costs := make([]float64, len(workers))
	lowest := math.Inf(1)
	for i, w := range workers {
		costs[i] = wt.Cost(req, w, overlaps[i])
		lowest = math.Min(lowest, costs[i])
	}
	var sum float64
	for i, c := range costs {
		costs[i] = math.Exp(-(c - lowest) / wt.Temperature)
		sum += costs[i]
	}
	r := rand.Float64() * sum
	for i, p := range costs {
		if r -= p; r <= 0 {
			return i, wt.Cost(req, workers[i], overlaps[i])
		}
	}
	last := len(workers) - 1
	return last, wt.Cost(req, workers[last], overlaps[last])
}
