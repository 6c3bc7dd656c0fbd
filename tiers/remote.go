package tiers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-llm/strata/backoff"
)

// remoteTier is the cluster-shared tier behind its health state. Reads and
// lookups call it in the caller's goroutine, each bounded by the remote
// timeout; writes go through a bounded queue to background writers, so a
// slow or dead remote store never holds up an offload. The first failure
// marks it unavailable: from then on every call skips it at once (a miss, a
// dropped write) while one prober retries with backoff until it answers.
type remoteTier struct {
	h       *Hierarchy
	store   Store
	tier    *tier // counters, under the Remote medium
	timeout time.Duration
	retry   backoff.Backoff
	log     *slog.Logger
	m       *Metrics

	available atomic.Bool
	queue     chan Block
	queued    atomic.Int64
	maxQueued int64
	dropped   atomic.Int64

	mu      sync.Mutex
	lastErr string
	since   time.Time
	outages int64
	closed  bool
}

// probeKey is a key no block has (scope and hash both derive from a name
// no model has): the prober asks the remote store whether it holds it, and
// any answer, "no" included, means the store is back.
var probeKey = Key{Scope: ScopeOf("strata tiers remote probe"), Hash: uint64(ScopeOf("probe"))}

func newRemoteTier(h *Hierarchy, cfg Config) *remoteTier {
	r := &remoteTier{
		h: h, store: cfg.Remote, timeout: cfg.RemoteTimeout, retry: cfg.RemoteRetry, log: h.log, m: cfg.Metrics,
		tier:      &tier{Tier: Tier{Medium: Remote, Store: cfg.Remote}, i: -1, c: cfg.Metrics.forTier(Remote)},
		queue:     make(chan Block, 4096),
		maxQueued: cfg.RemoteQueueBytes,
		since:     time.Now(),
	}
	r.available.Store(true)
	if r.m != nil {
		r.m.remoteAvailable.Set(1)
	}
	for range cfg.RemoteWriters {
		h.wg.Go(r.writer)
	}
	return r
}

// enqueue queues blocks for writing, copying their bytes when the caller
// keeps its buffers. It never waits: a block the queue has no room for, or
// any block while the tier is unavailable, is dropped and counted.
func (r *remoteTier) enqueue(blocks []Block, copyData bool) {
	for _, b := range blocks {
		size := int64(len(b.Data))
		if !r.available.Load() {
			r.drop(1)
			continue
		}
		if r.queued.Add(size) > r.maxQueued {
			r.queued.Add(-size)
			r.drop(1)
			continue
		}
		if copyData {
			b.Data = append(make([]byte, 0, len(b.Data)), b.Data...)
		}
		select {
		case r.queue <- b:
			r.setQueued()
		default:
			r.queued.Add(-size)
			r.drop(1)
		}
	}
}

func (r *remoteTier) drop(n int) {
	r.dropped.Add(int64(n))
	if r.m != nil {
		r.m.remoteDropped.Add(float64(n))
	}
}

func (r *remoteTier) setQueued() {
	if r.m != nil {
		r.m.remoteQueued.Set(float64(r.queued.Load()))
	}
}

// writer writes queued blocks until the hierarchy closes.
func (r *remoteTier) writer() {
	ctx := r.h.ctx
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-r.queue:
			r.queued.Add(-int64(len(b.Data)))
			r.setQueued()
			if !r.available.Load() {
				r.drop(1)
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			start := time.Now()
			err := r.store.Put(cctx, []Block{b})
			r.tier.c.observe("put", start)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.failed(ctx, err)
				r.drop(1)
				continue
			}
			r.tier.c.offloads.add(1)
			r.tier.c.offloadBytes.add(len(b.Data))
			r.h.mu.Lock()
			if e := r.h.index[b.Key]; e != nil {
				e.remote = true
			}
			r.h.events.push(Stored, Remote, []Key{b.Key})
			r.h.mu.Unlock()
		}
	}
}

// get serves what it can of keys[pending] from the remote tier and returns
// the indexes still pending and the blocks it served (to promote). A key
// the remote tier turns out not to hold is reported Removed: whoever said
// it was there (this node's events, or another node's) was out of date.
func (r *remoteTier) get(ctx context.Context, keys []Key, pending []int, hits []Hit) ([]int, []Block) {
	c := r.tier.c
	if !r.available.Load() {
		c.misses.add(len(pending))
		return pending, nil
	}
	ask := make([]Key, len(pending))
	for j, i := range pending {
		ask[j] = keys[i]
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	start := time.Now()
	res := r.store.Get(cctx, ask)
	c.observe("get", start)
	cancel()
	var served []Block
	var gone []Key
	var failure error
	rest := pending[:0]
	bytes := 0
	for j, res := range res {
		i := pending[j]
		switch {
		case res.Err == nil:
			hits[i] = Hit{Data: res.Data, Medium: Remote}
			served = append(served, Block{Key: keys[i], Data: res.Data})
			bytes += len(res.Data)
			continue
		case errors.Is(res.Err, ErrNotFound):
			gone = append(gone, keys[i])
		case errors.Is(res.Err, ErrCorrupt):
			c.corrupt.add(1)
			r.log.Warn("tiers: dropped a corrupt remote block", "key", keys[i], "err", res.Err)
			gone = append(gone, keys[i])
		default:
			failure = res.Err
		}
		rest = append(rest, i)
	}
	c.hits.add(len(served))
	c.misses.add(len(rest))
	c.onboards.add(len(served))
	c.onboardBytes.add(bytes)
	if failure != nil {
		r.failed(ctx, failure)
	}
	if len(gone) > 0 {
		r.h.mu.Lock()
		for _, k := range gone {
			if e := r.h.index[k]; e != nil {
				e.remote = false
			}
		}
		r.h.events.push(Removed, Remote, gone)
		r.h.mu.Unlock()
	}
	return rest, served
}

// lookup sets out[i] to Remote for the keys[rest] the remote tier holds.
func (r *remoteTier) lookup(ctx context.Context, keys []Key, rest []int, out []Medium) {
	if !r.available.Load() {
		return
	}
	ask := make([]Key, len(rest))
	for j, i := range rest {
		ask[j] = keys[i]
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	start := time.Now()
	has, err := r.store.Has(cctx, ask)
	r.tier.c.observe("has", start)
	cancel()
	if err != nil {
		r.failed(ctx, err)
		return
	}
	for j, ok := range has {
		if ok {
			out[rest[j]] = Remote
		}
	}
}

// failed records a failed remote call. One that says the store could not
// serve the call (unreachable, timed out, refused the credentials, server
// error) marks it unavailable, unless it was the caller's own context that
// ended; a per-block answer (corrupt, too large) does not.
func (r *remoteTier) failed(callerCtx context.Context, err error) {
	if callerCtx.Err() != nil {
		return
	}
	r.tier.c.errors.add(1)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrOverCapacity) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || !r.available.Load() {
		return
	}
	r.available.Store(false)
	r.lastErr, r.since = err.Error(), time.Now()
	r.outages++
	if r.m != nil {
		r.m.remoteAvailable.Set(0)
		r.m.remoteOutages.Inc()
	}
	r.log.Warn("tiers: remote tier unavailable: serving from the local tiers, retrying with backoff", "err", err)
	r.h.wg.Go(r.probe)
}

// probe retries the remote store with backoff until it answers or the
// hierarchy closes.
func (r *remoteTier) probe() {
	b := r.retry
	b.Reset()
	for b.Wait(r.h.ctx) {
		ctx, cancel := context.WithTimeout(r.h.ctx, r.timeout)
		_, err := r.store.Has(ctx, []Key{probeKey})
		cancel()
		r.mu.Lock()
		if err == nil {
			r.available.Store(true)
			r.lastErr, r.since = "", time.Now()
			if r.m != nil {
				r.m.remoteAvailable.Set(1)
			}
			r.mu.Unlock()
			r.log.Info("tiers: remote tier available again")
			return
		}
		r.lastErr = err.Error()
		r.mu.Unlock()
	}
}

func (r *remoteTier) health() RemoteStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RemoteStats{
		Available: r.available.Load(), LastError: r.lastErr, Since: r.since,
		WriteThrough: r.h.cfg.WriteThrough, QueuedBytes: r.queued.Load(), DroppedWrites: r.dropped.Load(), Outages: r.outages,
	}
}

// close stops new probes; Close then waits for the writers and the prober.
func (r *remoteTier) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
}
