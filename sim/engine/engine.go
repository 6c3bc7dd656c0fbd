// Package engine is the simulated inference engine behind `strata sim`: a
// vLLM-v1-style scheduler (waiting and running queues, continuous batching,
// chunked prefill, preemption by recompute) over a prefix-caching block pool,
// with a GPU timing model in place of a GPU. One goroutine owns all engine
// state, as vLLM's EngineCore does; callers talk to it through commands.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/strata-llm/strata/sim/kvevents"
)

// Errors returned by Add and TakeHeld.
var (
	ErrInvalidRequest = errors.New("invalid request")
	ErrStopped        = errors.New("engine stopped")
	ErrNotHeld        = errors.New("no KV held for this request: unknown or expired")
)

// EventSink receives the KV events of one engine step; it must not block.
type EventSink interface {
	Publish(events []kvevents.Event)
}

// Config sizes the engine. Names follow vLLM's flags.
type Config struct {
	BlockSize           int
	NumGPUBlocks        int
	MaxNumSeqs          int
	MaxNumBatchedTokens int
	MaxModelLen         int
	EnablePrefixCaching bool
	Timing              TimingModel
	// Speedup divides every simulated duration: tests run at 100× or more,
	// benchmarks at 1×.
	Speedup float64
	// Seed picks the root of the block hash chain (vLLM's NONE_HASH) and
	// seeds sampling for requests that do not bring their own seed.
	Seed uint64
	// EOS and TextTokens come from the tokenizer: the simulated model samples
	// TextTokens and ends with EOS.
	EOS        uint32
	TextTokens []uint32
	// MeanOutputTokens is the mean of the exponentially distributed length at
	// which a request emits EOS unless it sets IgnoreEOS; 0 never emits EOS.
	MeanOutputTokens int
	// KVHoldTimeout frees blocks held for a remote decode that never pulls
	// them (vLLM's VLLM_NIXL_ABORT_REQUEST_TIMEOUT).
	KVHoldTimeout time.Duration
	Events        EventSink
	// Connector is the KV connector to the node's tiers (the agent's
	// KVBM), nil for none: blocks the GPU pool evicts are offloaded to it,
	// and the prompt blocks a request misses on the GPU are looked for
	// there and onboarded, charged at Timing.KVConnectorGBps.
	Connector KVConnector
	Logger    *slog.Logger
}

// KVConnector is the engine's side of a KV connector (package
// sim/kvconnector), named by Strata sequence hashes.
type KVConnector interface {
	// Offload takes blocks evicted from the GPU pool; it must not block.
	Offload(seqHashes []uint64)
	// Load onboards the leading run of seqHashes the tiers hold and
	// returns its length and bytes; it is called off the engine goroutine
	// and may take a while.
	Load(ctx context.Context, seqHashes []uint64) (blocks int, bytes int64)
}

// DefaultConfig returns vLLM's defaults for an 8B model on one H100.
func DefaultConfig() Config {
	return Config{
		BlockSize:           16,
		NumGPUBlocks:        16384,
		MaxNumSeqs:          256,
		MaxNumBatchedTokens: 8192,
		MaxModelLen:         32768,
		EnablePrefixCaching: true,
		Timing:              DefaultTiming(),
		Speedup:             1,
		MeanOutputTokens:    256,
		KVHoldTimeout:       480 * time.Second,
	}
}

func (c Config) validate() error {
	switch {
	case c.BlockSize <= 0:
		return fmt.Errorf("block size %d: must be positive", c.BlockSize)
	case c.NumGPUBlocks <= 0:
		return fmt.Errorf("GPU blocks %d: must be positive", c.NumGPUBlocks)
	case c.MaxNumSeqs <= 0:
		return fmt.Errorf("max-num-seqs %d: must be positive", c.MaxNumSeqs)
	case c.MaxNumBatchedTokens <= 0:
		return fmt.Errorf("max-num-batched-tokens %d: must be positive", c.MaxNumBatchedTokens)
	case c.MaxModelLen <= 1:
		return fmt.Errorf("max-model-len %d: must be above 1", c.MaxModelLen)
	case !(c.Speedup > 0):
		return fmt.Errorf("speedup %v: must be positive", c.Speedup)
	case len(c.TextTokens) == 0:
		return errors.New("no text tokens to sample from")
	}
	return nil
}

// Stats is a snapshot of the engine, refreshed after every step.
type Stats struct {
	Running, Waiting int
	KVUsage          float64
	HeldRequests     int
	Steps            uint64
	Preemptions      uint64
	// Prefix-cache counters, in tokens, as vLLM's prefix_cache_* metrics.
	PrefixQueries, PrefixHits     uint64
	ExternalQueries, ExternalHits uint64
	// KV connector counters, in blocks: offered for offload (evicted from
	// the GPU pool) and onboarded.
	Offloaded, Onboarded uint64
}

type heldKV struct {
	blocks  []*block
	tokens  []uint32
	expires time.Time
}

// Engine is one simulated engine. Create it with New and drive it with Run.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	root kvevents.BlockHash

	mu       sync.Mutex
	commands []func()
	stopped  bool
	wake     chan struct{}

	// Owned by the Run goroutine.
	runCtx  context.Context
	pool    *blockPool
	waiting []*request
	running []*request
	byID    map[string]*request
	held    map[string]*heldKV
	counts  Stats

	statsMu sync.Mutex
	stats   Stats
}

// New validates cfg and builds an engine; call Run to start it.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		cfg:  cfg,
		log:  log,
		root: sha256.Sum256(binary.BigEndian.AppendUint64([]byte("strata-sim-none-hash"), cfg.Seed)),
		wake: make(chan struct{}, 1),
		pool: newBlockPool(cfg.NumGPUBlocks, cfg.BlockSize),
		byID: make(map[string]*request),
		held: make(map[string]*heldKV),
	}, nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Stats returns the snapshot taken after the last step.
func (e *Engine) Stats() Stats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	return e.stats
}

// do queues fn to run on the engine goroutine before the next step.
func (e *Engine) do(fn func()) error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return ErrStopped
	}
	e.commands = append(e.commands, fn)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return nil
}

// Add submits a request and returns the stream of its output tokens.
func (e *Engine) Add(req Request) (*Stream, error) {
	if err := e.check(req); err != nil {
		return nil, err
	}
	r := &request{
		Request:   req,
		tokens:    append(make([]uint32, 0, len(req.Prompt)+req.MaxTokens), req.Prompt...),
		numPrompt: len(req.Prompt),
		rng:       rand.New(rand.NewPCG(req.Seed, e.cfg.Seed)),
		stream:    newStream(),
	}
	if e.cfg.MeanOutputTokens > 0 && !req.IgnoreEOS {
		r.eosAt = 1 + int(r.rng.ExpFloat64()*float64(e.cfg.MeanOutputTokens))
	}
	r.result.Arrival = time.Now()
	r.result.PromptTokens = len(req.Prompt)
	if req.RemoteTokens > 0 {
		r.readyAt = r.result.Arrival.Add(e.scale(e.cfg.Timing.Transfer(req.RemoteTokens)))
	}
	if e.cfg.EnablePrefixCaching {
		r.extendHashes(e.cfg.BlockSize, e.root, e.cfg.Connector != nil)
	}
	err := e.do(func() {
		if _, dup := e.byID[r.ID]; dup {
			r.result.Reason = FinishAbort
			r.result.Finished = time.Now()
			r.stream.finish(r.result)
			e.log.Warn("duplicate request id aborted", "request_id", r.ID)
			return
		}
		e.byID[r.ID] = r
		e.waiting = append(e.waiting, r)
	})
	if err != nil {
		return nil, err
	}
	return r.stream, nil
}

func (e *Engine) check(req Request) error {
	c := e.cfg
	switch {
	case req.ID == "":
		return fmt.Errorf("%w: empty request id", ErrInvalidRequest)
	case len(req.Prompt) == 0:
		return fmt.Errorf("%w: empty prompt", ErrInvalidRequest)
	case req.MaxTokens < 1:
		return fmt.Errorf("%w: max_tokens %d must be at least 1", ErrInvalidRequest, req.MaxTokens)
	case len(req.Prompt)+req.MaxTokens > c.MaxModelLen:
		return fmt.Errorf("%w: %d prompt tokens + %d max_tokens exceed the model's context length %d",
			ErrInvalidRequest, len(req.Prompt), req.MaxTokens, c.MaxModelLen)
	case blocksFor(len(req.Prompt)+req.MaxTokens, c.BlockSize) > c.NumGPUBlocks:
		return fmt.Errorf("%w: request needs more KV blocks than the engine's %d", ErrInvalidRequest, c.NumGPUBlocks)
	case req.RemoteTokens < 0 || req.RemoteTokens > len(req.Prompt):
		return fmt.Errorf("%w: %d remote tokens for a %d-token prompt", ErrInvalidRequest, req.RemoteTokens, len(req.Prompt))
	}
	return nil
}

// Abort stops a request; its stream finishes with FinishAbort.
func (e *Engine) Abort(id string) {
	_ = e.do(func() { e.abort(id) })
}

// ResetPrefixCache drops every cached block, as vLLM's /reset_prefix_cache.
// It reports false while requests hold blocks.
func (e *Engine) ResetPrefixCache(ctx context.Context) (bool, error) {
	reply := make(chan bool, 1)
	if err := e.do(func() { reply <- e.pool.resetCache() }); err != nil {
		return false, err
	}
	select {
	case ok := <-reply:
		return ok, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// TakeHeld hands the KV held for a finished prefill request to a remote
// decode: it returns the prompt tokens whose blocks were held and frees them.
func (e *Engine) TakeHeld(ctx context.Context, id string) ([]uint32, error) {
	type reply struct {
		tokens []uint32
		ok     bool
	}
	ch := make(chan reply, 1)
	err := e.do(func() {
		h, ok := e.held[id]
		if ok {
			delete(e.held, id)
			e.pool.release(h.blocks)
			ok = time.Now().Before(h.expires)
		}
		ch <- reply{tokens: h.tokensOrNil(), ok: ok}
	})
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if !r.ok {
			return nil, fmt.Errorf("request %q: %w", id, ErrNotHeld)
		}
		return r.tokens, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *heldKV) tokensOrNil() []uint32 {
	if h == nil {
		return nil
	}
	return h.tokens
}

// Run drives the engine until ctx ends, then aborts what is left.
func (e *Engine) Run(ctx context.Context) error {
	e.runCtx = ctx
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		e.runCommands()
		now := time.Now()
		e.expireHeld(now)
		batch := e.schedule(now)
		if len(batch.items) == 0 {
			e.endStep()
			resetTimer(timer, e.nextWake(now))
			select {
			case <-e.wake:
			case <-timer.C:
			case <-ctx.Done():
				e.shutdown()
				return nil
			}
			continue
		}
		if d := e.scale(e.cfg.Timing.Step(batch.prefillTokens, batch.decodes, e.pool.usage())); d > 0 {
			resetTimer(timer, d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				e.shutdown()
				return nil
			}
		}
		e.complete(batch, time.Now())
		e.counts.Steps++
		e.endStep()
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}

func (e *Engine) scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) / e.cfg.Speedup)
}

func (e *Engine) runCommands() {
	e.mu.Lock()
	cmds := e.commands
	e.commands = nil
	e.mu.Unlock()
	for _, fn := range cmds {
		fn()
	}
}

// nextWake is how long an idle engine may sleep: until a remote transfer
// lands or a held block expires, at most a minute.
func (e *Engine) nextWake(now time.Time) time.Duration {
	next := now.Add(time.Minute)
	for _, r := range e.waiting {
		if r.readyAt.After(now) && r.readyAt.Before(next) {
			next = r.readyAt
		}
	}
	for _, h := range e.held {
		if h.expires.Before(next) {
			next = h.expires
		}
	}
	return max(next.Sub(now), 0)
}

func (e *Engine) expireHeld(now time.Time) {
	for id, h := range e.held {
		if !now.Before(h.expires) {
			delete(e.held, id)
			e.pool.release(h.blocks)
			e.log.Info("freed KV held for a remote decode that never came", "request_id", id)
		}
	}
}

func (e *Engine) endStep() {
	if ev := e.pool.takeEvents(); len(ev) > 0 && e.cfg.Events != nil {
		e.cfg.Events.Publish(ev)
	}
	if ev := e.pool.takeEvicted(); len(ev) > 0 && e.cfg.Connector != nil {
		e.cfg.Connector.Offload(ev)
		e.counts.Offloaded += uint64(len(ev))
	}
	s := e.counts
	s.Running, s.Waiting = len(e.running), len(e.waiting)
	s.KVUsage = e.pool.usage()
	s.HeldRequests = len(e.held)
	e.statsMu.Lock()
	e.stats = s
	e.statsMu.Unlock()
}

func (e *Engine) shutdown() {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.runCommands()
	for id := range e.byID {
		e.abort(id)
	}
	e.endStep()
}

func (e *Engine) abort(id string) {
	r, ok := e.byID[id]
	if !ok {
		return
	}
	e.waiting = remove(e.waiting, r)
	e.running = remove(e.running, r)
	e.finish(r, FinishAbort, time.Now())
}

func remove(rs []*request, r *request) []*request {
	for i, x := range rs {
		if x == r {
			return append(rs[:i], rs[i+1:]...)
		}
	}
	return rs
}

// finish ends r, which is no longer in either queue, and frees or holds its
// blocks.
func (e *Engine) finish(r *request, reason FinishReason, now time.Time) {
	delete(e.byID, r.ID)
	if r.HoldKV && reason != FinishAbort && len(r.blocks) > 0 {
		full := r.numPrompt / e.cfg.BlockSize * e.cfg.BlockSize
		e.held[r.ID] = &heldKV{blocks: r.blocks, tokens: r.tokens[:full:full], expires: now.Add(e.cfg.KVHoldTimeout)}
		for _, b := range r.blocks {
			r.result.HeldBlocks = append(r.result.HeldBlocks, b.id)
		}
	} else {
		e.pool.release(r.blocks)
	}
	r.blocks = nil
	r.result.Reason = reason
	r.result.CompletionTokens = r.numOutput
	r.result.CachedTokens = r.cachedToks
	r.result.Finished = now
	r.stream.finish(r.result)
}

func blocksFor(tokens, blockSize int) int { return (tokens + blockSize - 1) / blockSize }
