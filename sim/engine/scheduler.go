package engine

import "time"

// batch is one step's work: how many tokens each scheduled request computes.
type batch struct {
	items         []scheduled
	prefillTokens int
	decodes       int
}

type scheduled struct {
	r *request
	n int
}

func (b *batch) add(r *request, n int) {
	b.items = append(b.items, scheduled{r, n})
	if n == 1 && r.numOutput > 0 && r.computed == len(r.tokens)-1 {
		b.decodes++
	} else {
		b.prefillTokens += n
	}
}

// schedule builds the next step like vLLM v1's Scheduler.schedule: running
// requests first (each decode needs one token, an unfinished prefill its next
// chunk), preempting from the back of the running queue when blocks run out;
// then, if nothing was preempted, waiting requests in arrival order while the
// token budget, max-num-seqs and free blocks allow.
func (e *Engine) schedule(now time.Time) batch {
	var b batch
	budget := e.cfg.MaxNumBatchedTokens
	preempted := false
	for i := 0; i < len(e.running) && budget > 0; i++ {
		r := e.running[i]
		n := min(len(r.tokens)-r.computed, budget)
		scheduledSelf := true
		for !e.growBlocks(r, r.computed+n) {
			victim := e.running[len(e.running)-1]
			e.running = e.running[:len(e.running)-1]
			e.preempt(victim)
			preempted = true
			if victim == r {
				scheduledSelf = false
				break
			}
		}
		if scheduledSelf {
			b.add(r, n)
			budget -= n
		}
	}
	if preempted {
		return b
	}
	var skipped []*request
	for len(e.waiting) > 0 && len(e.running) < e.cfg.MaxNumSeqs && budget > 0 {
		r := e.waiting[0]
		if r.readyAt.After(now) || e.startLoad(r, now) {
			// Its KV is still in flight from the prefill worker or the
			// node's tiers; later arrivals may go ahead, as vLLM does for
			// WAITING_FOR_REMOTE_KVS.
			skipped = append(skipped, r)
			e.waiting = e.waiting[1:]
			continue
		}
		n, ok := e.admit(r, budget)
		if !ok {
			break
		}
		e.waiting = e.waiting[1:]
		e.running = append(e.running, r)
		b.add(r, n)
		budget -= n
	}
	if len(skipped) > 0 {
		e.waiting = append(skipped, e.waiting...)
	}
	return b
}

// admit gives a waiting request its cached prefix and the blocks for its
// first chunk. It returns the chunk size, or false when the blocks are not
// there, leaving the request untouched.
func (e *Engine) admit(r *request, budget int) (int, bool) {
	bs := e.cfg.BlockSize
	// The last token is always computed, even on a full hit, because its
	// logits are needed to sample.
	maxHit := (len(r.tokens) - 1) / bs
	var hits []*block
	if e.cfg.EnablePrefixCaching {
		hits = e.pool.lookup(r.hashes[:min(maxHit, len(r.hashes))])
	}
	computed := len(hits) * bs
	remote := 0
	if !r.started && r.RemoteTokens > computed {
		remote = min(r.RemoteTokens, len(r.tokens)-1) - computed
	}
	if ext := r.externalBlocks(len(hits)); !r.started && ext*bs > remote {
		remote = ext * bs // onboarded from the tiers: it lands like a remote prefill's
	}
	n := min(len(r.tokens)-computed-remote, budget)
	need := blocksFor(computed+remote+n, bs) - len(hits)
	evictableHits := 0
	for _, b := range hits {
		if b.ref == 0 {
			evictableHits++
		}
	}
	if need > e.pool.numFree-evictableHits {
		return 0, false
	}
	e.pool.touch(hits)
	r.blocks = append(append(r.blocks[:0], hits...), e.pool.allocate(need)...)
	r.numCached = len(hits)
	r.computed = computed + remote
	if remote > 0 && e.cfg.EnablePrefixCaching {
		// KV received from the prefill worker lands in the cache like any
		// computed block, as vLLM caches blocks loaded by a connector.
		e.cacheComputed(r)
	}
	if !r.started {
		r.started = true
		r.cachedToks = r.computed
		r.result.Scheduled = time.Now()
		e.counts.PrefixQueries += uint64(len(r.tokens))
		e.counts.PrefixHits += uint64(computed)
		if r.RemoteTokens > 0 || r.loadTried {
			e.counts.ExternalQueries += uint64(len(r.tokens) - computed)
			e.counts.ExternalHits += uint64(remote)
		}
		if r.loadTried {
			e.counts.Onboarded += uint64(remote / bs)
		}
	}
	return n, true
}

// growBlocks makes r hold enough blocks for total tokens.
func (e *Engine) growBlocks(r *request, total int) bool {
	need := blocksFor(total, e.cfg.BlockSize) - len(r.blocks)
	if need <= 0 {
		return true
	}
	if need > e.pool.numFree {
		return false
	}
	r.blocks = append(r.blocks, e.pool.allocate(need)...)
	return true
}

// preempt frees r's blocks and puts it at the head of the waiting queue; it
// will recompute its tokens, reusing whatever of them is still cached.
func (e *Engine) preempt(r *request) {
	e.pool.release(r.blocks)
	r.blocks = nil
	r.computed = 0
	r.numCached = 0
	e.waiting = append([]*request{r}, e.waiting...)
	e.counts.Preemptions++
}

// startLoad starts onboarding the prompt blocks a waiting request misses
// on the GPU from the node's tiers, once per request (vLLM's connector
// lookup, then an asynchronous load). The request waits meanwhile; when
// the load answers, it becomes ready after a host-to-GPU copy of the
// bytes read, at KVConnectorGBps, so the tiers' cost shows in its TTFT.
// It reports whether a load was started.
func (e *Engine) startLoad(r *request, now time.Time) bool {
	c := e.cfg.Connector
	if c == nil || r.started || r.loadTried || !e.cfg.EnablePrefixCaching || r.RemoteTokens > 0 {
		return false
	}
	r.loadTried = true
	// As admit: the last token is always computed.
	want := min((len(r.tokens)-1)/e.cfg.BlockSize, len(r.seqs))
	gpu := len(e.pool.lookup(r.hashes[:min(want, len(r.hashes))]))
	if gpu >= want {
		return false
	}
	seqs := append([]uint64(nil), r.seqs[gpu:want]...)
	r.readyAt = now.Add(time.Hour) // until the load answers (it wakes the engine)
	ctx := e.runCtx
	go func() {
		n, bytes := c.Load(ctx, seqs)
		_ = e.do(func() {
			r.ext = external{from: gpu, blocks: n, bytes: bytes}
			r.readyAt = time.Now().Add(e.scale(e.cfg.Timing.Onboard(bytes)))
		})
	}()
	return true
}

// externalBlocks is how many blocks after the first gpu ones the tiers
// onboarded: none if GPU blocks in front of the onboarded run were evicted
// while it loaded (the run no longer continues the prefix).
func (r *request) externalBlocks(gpu int) int {
	if r.ext.blocks == 0 || gpu < r.ext.from {
		return 0
	}
	return max(r.ext.from+r.ext.blocks-gpu, 0)
}

func (e *Engine) cacheComputed(r *request) {
	full := r.computed / e.cfg.BlockSize
	e.pool.cacheFull(r.blocks, r.hashes, r.seqs, r.tokens, r.numCached, full)
	r.numCached = full
}

// complete applies a finished step: advance computed tokens, cache newly
// full blocks, sample a token for every request whose tokens are all
// computed, and finish requests that hit EOS or a length limit.
func (e *Engine) complete(b batch, now time.Time) {
	finished := false
	for _, it := range b.items {
		r := it.r
		r.computed += it.n
		if e.cfg.EnablePrefixCaching {
			e.cacheComputed(r)
		}
		if r.computed < len(r.tokens) {
			continue // a prefill chunk that does not end the prompt
		}
		tok := e.sample(r)
		r.tokens = append(r.tokens, tok)
		r.numOutput++
		if e.cfg.EnablePrefixCaching {
			r.extendHashes(e.cfg.BlockSize, e.root, e.cfg.Connector != nil)
		}
		if r.numOutput == 1 {
			r.result.FirstToken = now
		}
		r.stream.push(tok, now)
		switch {
		case tok == e.cfg.EOS:
			r.result.Reason = FinishStop
		case r.numOutput >= r.MaxTokens || len(r.tokens) >= e.cfg.MaxModelLen:
			r.result.Reason = FinishLength
		default:
			continue
		}
		finished = true
	}
	if !finished {
		return
	}
	kept := e.running[:0]
	for _, r := range e.running {
		if r.result.Reason != "" {
			e.finish(r, r.result.Reason, now)
			continue
		}
		kept = append(kept, r)
	}
	clear(e.running[len(kept):])
	e.running = kept
}

func (e *Engine) sample(r *request) uint32 {
	if r.eosAt > 0 && r.numOutput+1 >= r.eosAt {
		return e.cfg.EOS
	}
	return e.cfg.TextTokens[r.rng.IntN(len(e.cfg.TextTokens))]
}
