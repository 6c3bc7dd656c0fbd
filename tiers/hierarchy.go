package tiers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/strata-llm/strata/backoff"
)

// Tier is one local level of a Hierarchy.
type Tier struct {
	Medium Medium
	// Store holds the tier's blocks; its Stats().Capacity (> 0) is the
	// tier's capacity, which the Hierarchy keeps by evicting.
	Store Store
}

// Config configures a Hierarchy.
type Config struct {
	// Local are the node's tiers, fastest first: CPU, then Disk. At least
	// one, at most four.
	Local []Tier
	// Remote is the tier the whole cluster shares (S3, Azure Blob), or nil.
	Remote Store
	// WriteThrough writes every block put to the remote tier as well, in
	// the background. Without it the remote tier gets a block only when it
	// leaves the last local tier (write-back; the frequency filter applies).
	WriteThrough bool
	// SpillMinCount is the frequency filter: a block evicted from a local
	// tier moves down to the next one only if it was put or asked for at
	// least this many times lately (default 2: a block offloaded once and
	// never read again is not worth a disk write). 1 spills every block.
	SpillMinCount int
	// FrequencyWidth is the sketch's counters per row, a few times the
	// number of blocks the tiers hold (default 1<<16: 256 KiB).
	FrequencyWidth int
	// RemoteTimeout bounds every call to the remote tier (default 5s).
	RemoteTimeout time.Duration
	// RemoteRetry spaces the probes of an unavailable remote tier
	// (default backoff.New: 100 ms doubling to 5 s).
	RemoteRetry backoff.Backoff
	// RemoteWriters is how many background writes to the remote tier run
	// at once (default 4).
	RemoteWriters int
	// RemoteQueueBytes bounds the payload waiting for a remote write
	// (default 256 MiB); a write that does not fit is dropped and counted.
	RemoteQueueBytes int64
	// OnEvent receives every tier event, in order, from one goroutine; it
	// may call the Hierarchy. Nil: no events.
	OnEvent func(Event)
	// MaxPendingEvents bounds the keys of events waiting for OnEvent
	// (default 1<<20); past it they are dropped for one Overflow event.
	MaxPendingEvents int
	// Metrics receives the hierarchy's metrics (nil: none).
	Metrics *Metrics
	// Logger receives remote outages and recoveries (default: discard).
	Logger *slog.Logger
}

const maxLocal = 4

// Hierarchy is a node's KV block store: local tiers (CPU, then disk) that
// are inclusive (a block promoted to a faster tier keeps its slower copy),
// each an LRU within its capacity, and an optional remote tier shared by
// the cluster. docs/tiers.md has the design. It is safe for concurrent use.
//
// Locks: each local tier has a write lock that serializes every change of
// that tier's store (make room, spill, write, delete), always taken in tier
// order; mu guards the index and is never held across I/O. Readers take
// only mu, so a read never waits for a write.
type Hierarchy struct {
	local  []*tier
	remote *remoteTier
	cfg    Config
	log    *slog.Logger
	events *eventQueue

	mu     sync.Mutex
	index  map[Key]*entry
	freq   *frequency
	closed bool

	ctx    context.Context // ends at Close: background work
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   chan struct{}
	evDone chan struct{}
}

type tier struct {
	Tier
	i        int
	capacity int64
	writeMu  sync.Mutex
	c        *tierCounters
	// guarded by Hierarchy.mu:
	used, blocks int64
	lru          entry // sentinel: lru.next[i] is the most recently used
}

type entry struct {
	key      Key
	size     int64
	on       uint8 // bit i: local tier i holds the block
	remote   bool  // the remote tier holds it: this node wrote or read it there
	pinUntil time.Time
	prev     [maxLocal]*entry
	next     [maxLocal]*entry
}

// Hit is the outcome of asking for one block.
type Hit struct {
	// Data is the block, nil on a miss. It is shared and read-only when
	// it came from a memory tier (see package memory); never modify it.
	Data []byte
	// Medium is the tier that served it, MediumNone on a miss.
	Medium Medium
}

// NewHierarchy composes the tiers. It lists the local tiers that are
// Listers (a disk tier after a restart) into its index, most recently
// written first, and reports those blocks as Stored events.
func NewHierarchy(ctx context.Context, cfg Config) (*Hierarchy, error) {
	if len(cfg.Local) == 0 || len(cfg.Local) > maxLocal {
		return nil, fmt.Errorf("tiers: %d local tiers, want 1 to %d", len(cfg.Local), maxLocal)
	}
	cfg.SpillMinCount = max(cmp.Or(cfg.SpillMinCount, 2), 1)
	cfg.RemoteTimeout = cmp.Or(cfg.RemoteTimeout, 5*time.Second)
	if cfg.RemoteRetry.Initial <= 0 || cfg.RemoteRetry.Max <= 0 {
		cfg.RemoteRetry = *backoff.New()
	}
	cfg.RemoteWriters = cmp.Or(cfg.RemoteWriters, 4)
	cfg.RemoteQueueBytes = cmp.Or(cfg.RemoteQueueBytes, 256<<20)
	cfg.MaxPendingEvents = cmp.Or(cfg.MaxPendingEvents, 1<<20)
	h := &Hierarchy{
		cfg: cfg, log: cfg.Logger, index: map[Key]*entry{},
		freq: newFrequency(cmp.Or(cfg.FrequencyWidth, 1<<16)),
		stop: make(chan struct{}), evDone: make(chan struct{}),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	seen := map[Medium]bool{}
	for i, lt := range cfg.Local {
		if lt.Store == nil || lt.Medium == MediumNone || lt.Medium == Remote || seen[lt.Medium] {
			return nil, fmt.Errorf("tiers: local tier %d: want a store and a distinct local medium (cpu, disk), got %v", i, lt.Medium)
		}
		seen[lt.Medium] = true
		capacity := lt.Store.Stats().Capacity
		if capacity <= 0 {
			return nil, fmt.Errorf("tiers: local tier %d (%v): its store has no capacity", i, lt.Medium)
		}
		t := &tier{Tier: lt, i: i, capacity: capacity, c: cfg.Metrics.forTier(lt.Medium)}
		t.lru.next[i], t.lru.prev[i] = &t.lru, &t.lru
		if t.c.capacity != nil {
			t.c.capacity.Set(float64(capacity))
		}
		h.local = append(h.local, t)
	}
	h.events = newEventQueue(cfg.OnEvent, cfg.MaxPendingEvents, func(n int) {
		h.log.Warn("tiers: the event consumer fell behind: events dropped, it must resync", "keys", n)
		if cfg.Metrics != nil {
			cfg.Metrics.eventsDropped.Add(float64(n))
		}
	})
	if err := h.load(ctx); err != nil {
		return nil, err
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(h.evDone)
		h.events.run(h.stop)
	}()
	if cfg.Remote != nil {
		h.remote = newRemoteTier(h, cfg)
	}
	return h, nil
}

// load indexes what the local tiers already hold, oldest first so that the
// newest end up most recently used.
func (h *Hierarchy) load(ctx context.Context) error {
	for _, t := range h.local {
		l, ok := t.Store.(Lister)
		if !ok {
			continue
		}
		var infos []BlockInfo
		err := l.List(ctx, func(info BlockInfo) bool {
			infos = append(infos, info)
			return true
		})
		if err != nil {
			return fmt.Errorf("tiers: list the %v tier: %w", t.Medium, err)
		}
		slices.SortFunc(infos, func(a, b BlockInfo) int { return a.Modified.Compare(b.Modified) })
		keys := make([]Key, 0, len(infos))
		h.mu.Lock()
		for _, info := range infos {
			e := h.index[info.Key]
			if e == nil {
				e = &entry{key: info.Key, size: info.Size}
				h.index[info.Key] = e
			}
			if e.size != info.Size || e.on&bit(t.i) != 0 {
				continue // a copy of another size on a faster tier: keep that one
			}
			h.link(t, e)
			keys = append(keys, info.Key)
		}
		h.events.push(Stored, t.Medium, keys)
		h.mu.Unlock()
	}
	return nil
}

func bit(i int) uint8 { return 1 << uint(i) }

// link records e on tier t as its most recently used block. Under mu.
func (h *Hierarchy) link(t *tier, e *entry) {
	i := t.i
	head := &t.lru
	e.prev[i], e.next[i] = head, head.next[i]
	head.next[i].prev[i] = e
	head.next[i] = e
	e.on |= bit(i)
	t.used += e.size
	t.blocks++
	t.c.setSize(t.blocks, t.used)
}

// unlink removes e from tier t, and from the index when no tier holds it
// any more. Under mu.
func (h *Hierarchy) unlink(t *tier, e *entry) {
	i := t.i
	if e.on&bit(i) == 0 {
		return
	}
	e.prev[i].next[i] = e.next[i]
	e.next[i].prev[i] = e.prev[i]
	e.prev[i], e.next[i] = nil, nil
	e.on &^= bit(i)
	t.used -= e.size
	t.blocks--
	t.c.setSize(t.blocks, t.used)
	if e.on == 0 && h.index[e.key] == e {
		delete(h.index, e.key)
	}
}

// touch makes e the most recently used block of tier t. Under mu.
func (h *Hierarchy) touch(t *tier, e *entry) {
	i := t.i
	if e.on&bit(i) == 0 || t.lru.next[i] == e {
		return
	}
	e.prev[i].next[i] = e.next[i]
	e.next[i].prev[i] = e.prev[i]
	head := &t.lru
	e.prev[i], e.next[i] = head, head.next[i]
	head.next[i].prev[i] = e
	head.next[i] = e
}

// Put offloads blocks (from the engine's GPU) into the first local tier,
// making room by eviction as needed, and, with WriteThrough, queues them
// for the remote tier. It does not keep the caller's buffers. The error is
// nil or a *BatchError naming the blocks no local tier could take.
func (h *Hierarchy) Put(ctx context.Context, blocks []Block) error {
	errs := make([]error, len(blocks))
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return fmt.Errorf("tiers: put: %w", ErrClosed)
	}
	valid := make([]Block, 0, len(blocks))
	idx := make([]int, 0, len(blocks))
	seen := make(map[Key]bool, len(blocks))
	for i, b := range blocks {
		if seen[b.Key] {
			continue // the same block twice in a batch: once is enough
		}
		seen[b.Key] = true
		h.freq.add(b.Key)
		if e := h.index[b.Key]; e != nil && e.size != int64(len(b.Data)) {
			errs[i] = fmt.Errorf("tiers: put %s: %d bytes, the stored copy has %d (keys are content-addressed): %w", b.Key, len(b.Data), e.size, ErrCorrupt)
			continue
		}
		if len(b.Data) > MaxBlockSize {
			errs[i] = fmt.Errorf("tiers: put %s: %d bytes exceed the %d-byte block limit: %w", b.Key, len(b.Data), MaxBlockSize, ErrOverCapacity)
			continue
		}
		valid, idx = append(valid, b), append(idx, i)
	}
	h.mu.Unlock()

	for j, err := range h.insert(ctx, 0, valid, false) {
		errs[idx[j]] = err
	}
	if h.remote != nil && h.cfg.WriteThrough {
		h.remote.enqueue(h.notOnRemote(valid), true)
	}
	return Batch(errs)
}

// notOnRemote is the blocks the remote tier is not known to hold.
func (h *Hierarchy) notOnRemote(blocks []Block) []Block {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := blocks[:0:0]
	for _, b := range blocks {
		if e := h.index[b.Key]; e == nil || !e.remote {
			out = append(out, b)
		}
	}
	return out
}

// insert writes blocks into local tier ti, evicting its least recently
// used blocks first (spilling those that pass the frequency filter to tier
// ti+1), and passes what does not fit on to tier ti+1. errs[j] is set for
// blocks[j] when no tier from ti down could take it.
func (h *Hierarchy) insert(ctx context.Context, ti int, blocks []Block, fromRemote bool) []error {
	errs := make([]error, len(blocks))
	if len(blocks) == 0 {
		return errs
	}
	if ti >= len(h.local) {
		for j, b := range blocks {
			errs[j] = fmt.Errorf("tiers: put %s: no local tier has room: %w", b.Key, ErrOverCapacity)
		}
		return errs
	}
	t := h.local[ti]
	next, nextIdx, fail := h.insertInto(ctx, t, blocks, fromRemote)
	for j, err := range fail {
		errs[j] = err
	}
	for j, err := range h.insert(ctx, ti+1, next, fromRemote) {
		if err != nil && errs[nextIdx[j]] == nil {
			errs[nextIdx[j]] = err
		}
	}
	return errs
}

// insertInto does tier t's part of insert, under t's write lock. It returns
// the blocks to try on the next tier (with their indexes in blocks) and
// the errors of blocks that failed for good.
func (h *Hierarchy) insertInto(ctx context.Context, t *tier, blocks []Block, fromRemote bool) (next []Block, nextIdx []int, fail map[int]error) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	fail = map[int]error{}

	// Plan: which blocks to write, and which blocks to evict for them.
	h.mu.Lock()
	var todo []Block
	var todoIdx []int
	var need int64
	for j, b := range blocks {
		e := h.index[b.Key]
		switch size := int64(len(b.Data)); {
		case e != nil && e.on&bit(t.i) != 0:
			h.touch(t, e)
			if fromRemote {
				e.remote = true
			}
		case size > t.capacity:
			next, nextIdx = append(next, b), append(nextIdx, j)
		default:
			todo, todoIdx = append(todo, b), append(todoIdx, j)
			need += size
		}
	}
	victims, freed := h.victims(t, t.used+need-t.capacity)
	for len(todo) > 0 && t.used-freed+need > t.capacity {
		// Pinned blocks leave too little room: the last blocks go down.
		last := len(todo) - 1
		need -= int64(len(todo[last].Data))
		next, nextIdx = append(next, todo[last]), append(nextIdx, todoIdx[last])
		todo, todoIdx = todo[:last], todoIdx[:last]
	}
	h.mu.Unlock()

	if len(victims) > 0 {
		h.evict(ctx, t, victims)
	}
	if len(todo) == 0 {
		return next, nextIdx, fail
	}

	start := time.Now()
	errs := ItemErrors(t.Store.Put(ctx, todo), len(todo))
	t.c.observe("put", start)

	h.mu.Lock()
	stored := make([]Key, 0, len(todo))
	var bytes int
	for j, b := range todo {
		switch err := errs[j]; {
		case err == nil:
			e := h.index[b.Key]
			if e == nil {
				e = &entry{key: b.Key, size: int64(len(b.Data))}
				h.index[b.Key] = e
			}
			if fromRemote {
				e.remote = true
			}
			if e.on&bit(t.i) == 0 {
				h.link(t, e)
			}
			stored = append(stored, b.Key)
			bytes += len(b.Data)
		case errors.Is(err, ErrOverCapacity):
			next, nextIdx = append(next, b), append(nextIdx, todoIdx[j])
		default:
			if ctx.Err() == nil {
				t.c.errors.add(1)
			}
			fail[todoIdx[j]] = err
		}
	}
	h.events.push(Stored, t.Medium, stored)
	h.mu.Unlock()
	t.c.offloads.add(len(stored))
	t.c.offloadBytes.add(bytes)
	return next, nextIdx, fail
}

// victims picks tier t's least recently used blocks, skipping pinned ones,
// until at least need bytes are picked. Under mu.
func (h *Hierarchy) victims(t *tier, need int64) ([]*entry, int64) {
	var out []*entry
	var freed int64
	now := time.Now()
	for e := t.lru.prev[t.i]; e != &t.lru && freed < need; e = e.prev[t.i] {
		if now.Before(e.pinUntil) {
			continue
		}
		out = append(out, e)
		freed += e.size
	}
	return out, freed
}

// evict removes victims from tier t, under t's write lock: those that pass
// the frequency filter (and are not there yet) are first spilled to the
// next tier, or with write-back from the last tier, queued for the remote
// one. Each spilled block is Stored below before it is Removed here.
func (h *Hierarchy) evict(ctx context.Context, t *tier, victims []*entry) {
	last := t.i == len(h.local)-1
	writeBack := last && h.remote != nil && !h.cfg.WriteThrough
	var spill []Key
	h.mu.Lock()
	for _, e := range victims {
		switch {
		case int(h.freq.estimate(e.key)) < h.cfg.SpillMinCount:
		case !last && e.on&bit(t.i+1) == 0, writeBack && !e.remote:
			spill = append(spill, e.key)
		}
	}
	h.mu.Unlock()

	if len(spill) > 0 {
		start := time.Now()
		res := t.Store.Get(ctx, spill)
		t.c.observe("get", start)
		blocks := make([]Block, 0, len(spill))
		for j, r := range res {
			if r.Err == nil {
				blocks = append(blocks, Block{Key: spill[j], Data: r.Data})
			}
		}
		if writeBack {
			h.remote.enqueue(blocks, false) // read from the store: not the caller's
		} else {
			h.insert(ctx, t.i+1, blocks, false)
		}
	}

	keys := make([]Key, len(victims))
	for j, e := range victims {
		keys[j] = e.key
	}
	start := time.Now()
	errs := ItemErrors(t.Store.Delete(ctx, keys), len(keys))
	t.c.observe("delete", start)
	h.mu.Lock()
	removed := keys[:0]
	for j, e := range victims {
		if errs[j] != nil {
			if ctx.Err() == nil {
				t.c.errors.add(1)
				h.log.Warn("tiers: evict", "tier", t.Medium, "key", e.key, "err", errs[j])
			}
			continue
		}
		if e.on&bit(t.i) != 0 {
			h.unlink(t, e)
			removed = append(removed, e.key)
		}
	}
	h.events.push(Removed, t.Medium, removed)
	h.mu.Unlock()
	t.c.evictions.add(len(removed))
}

// Get onboards blocks: each from the fastest tier that holds it, local
// tiers first, then the remote one. A block found below the first tier is
// promoted to it (a copy: the lower tier keeps its own). A block that fails
// its checksum is dropped and looked for further down. The error is for the
// call (the context ended, the hierarchy is closed); a block no tier could
// serve is a miss.
func (h *Hierarchy) Get(ctx context.Context, keys []Key) ([]Hit, error) {
	hits := make([]Hit, len(keys))
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("tiers: get: %w", ErrClosed)
	}
	for _, k := range keys {
		h.freq.add(k)
	}
	h.mu.Unlock()

	pending := make([]int, len(keys)) // indexes into keys not served yet
	for i := range pending {
		pending[i] = i
	}
	var promote []Block
	var promoteRemote []Block
	for _, t := range h.local {
		if len(pending) == 0 {
			break
		}
		pending, promote = h.getFrom(ctx, t, keys, pending, hits, promote)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(pending) > 0 && h.remote != nil {
		pending, promoteRemote = h.remote.get(ctx, keys, pending, hits)
	}
	for _, i := range pending {
		hits[i] = Hit{}
	}
	h.insert(ctx, 0, promote, false)
	h.insert(ctx, 0, promoteRemote, true)
	return hits, ctx.Err()
}

// getFrom serves what it can of keys[pending] from tier t, counting hits
// and misses, and returns the indexes still pending and the blocks to
// promote (hits below the first tier).
func (h *Hierarchy) getFrom(ctx context.Context, t *tier, keys []Key, pending []int, hits []Hit, promote []Block) ([]int, []Block) {
	var ask []Key
	var askIdx []int
	rest := pending[:0]
	h.mu.Lock()
	for _, i := range pending {
		if e := h.index[keys[i]]; e != nil && e.on&bit(t.i) != 0 {
			h.touch(t, e)
			ask, askIdx = append(ask, keys[i]), append(askIdx, i)
		} else {
			rest = append(rest, i)
		}
	}
	h.mu.Unlock()
	t.c.misses.add(len(rest))
	if len(ask) == 0 {
		return rest, promote
	}
	start := time.Now()
	res := t.Store.Get(ctx, ask)
	t.c.observe("get", start)
	var gone []Key
	served, bytes := 0, 0
	for j, r := range res {
		i := askIdx[j]
		switch {
		case r.Err == nil:
			hits[i] = Hit{Data: r.Data, Medium: t.Medium}
			served++
			bytes += len(r.Data)
			if t.i > 0 {
				promote = append(promote, Block{Key: keys[i], Data: r.Data})
			}
			continue
		case errors.Is(r.Err, ErrCorrupt):
			t.c.corrupt.add(1)
			h.log.Warn("tiers: dropped a corrupt block", "tier", t.Medium, "key", keys[i], "err", r.Err)
			gone = append(gone, keys[i])
		case errors.Is(r.Err, ErrNotFound):
			gone = append(gone, keys[i]) // removed behind the index's back
		case ctx.Err() == nil:
			t.c.errors.add(1)
			h.log.Warn("tiers: get", "tier", t.Medium, "key", keys[i], "err", r.Err)
		}
		rest = append(rest, i)
	}
	t.c.hits.add(served)
	t.c.onboards.add(served)
	t.c.onboardBytes.add(bytes)
	if len(gone) > 0 {
		h.forget(t, gone)
	}
	return rest, promote
}

// forget removes keys a tier's store no longer holds from its index.
func (h *Hierarchy) forget(t *tier, keys []Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	removed := keys[:0]
	for _, k := range keys {
		if e := h.index[k]; e != nil && e.on&bit(t.i) != 0 {
			h.unlink(t, e)
			removed = append(removed, k)
		}
	}
	h.events.push(Removed, t.Medium, removed)
}

// Lookup reports, for each key, the fastest tier holding it without
// reading it: the local tiers from the index, the remote one (when it is
// available) by asking it about the keys no local tier holds.
func (h *Hierarchy) Lookup(ctx context.Context, keys []Key) ([]Medium, error) {
	out := make([]Medium, len(keys))
	var rest []int
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("tiers: lookup: %w", ErrClosed)
	}
	for i, k := range keys {
		if out[i] = h.bestLocked(k); out[i] == MediumNone {
			rest = append(rest, i)
		}
	}
	h.mu.Unlock()
	if len(rest) > 0 && h.remote != nil {
		h.remote.lookup(ctx, keys, rest, out)
	}
	return out, ctx.Err()
}

// bestLocked is the fastest local tier holding k. Under mu.
func (h *Hierarchy) bestLocked(k Key) Medium {
	e := h.index[k]
	if e == nil {
		return MediumNone
	}
	for _, t := range h.local {
		if e.on&bit(t.i) != 0 {
			return t.Medium
		}
	}
	return MediumNone
}

// Pin keeps the keys' local copies from being evicted for ttl (an engine
// is about to onboard them), and reports the fastest local tier of each,
// MediumNone for a key no local tier holds (nothing to pin). A later Pin
// extends or shortens it; ttl 0 unpins.
func (h *Hierarchy) Pin(keys []Key, ttl time.Duration) []Medium {
	out := make([]Medium, len(keys))
	until := time.Now().Add(ttl)
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, k := range keys {
		if out[i] = h.bestLocked(k); out[i] != MediumNone {
			h.index[k].pinUntil = until
		}
	}
	return out
}

// Delete removes the keys from every local tier. The remote tier is
// shared by the cluster and keeps its copies (a bucket lifecycle rule
// expires them).
func (h *Hierarchy) Delete(ctx context.Context, keys []Key) error {
	var errs []error
	for _, t := range h.local {
		t.writeMu.Lock()
		h.mu.Lock()
		var held []Key
		for _, k := range keys {
			if e := h.index[k]; e != nil && e.on&bit(t.i) != 0 {
				held = append(held, k)
			}
		}
		h.mu.Unlock()
		if len(held) > 0 {
			start := time.Now()
			err := t.Store.Delete(ctx, held)
			t.c.observe("delete", start)
			failed := ItemErrors(err, len(held))
			h.mu.Lock()
			removed := held[:0]
			for j, k := range held {
				if failed[j] != nil {
					t.c.errors.add(1)
					errs = append(errs, failed[j])
					continue
				}
				if e := h.index[k]; e != nil {
					h.unlink(t, e)
					removed = append(removed, k)
				}
			}
			h.events.push(Removed, t.Medium, removed)
			h.mu.Unlock()
		}
		t.writeMu.Unlock()
	}
	return errors.Join(errs...)
}

// Blocks is what each tier holds now, for a consumer that must resync (at
// start, after an Overflow event): every local tier's keys, and under
// Remote the keys this node wrote or read there that a local tier still
// holds (the remote tier itself cannot be listed cheaply).
func (h *Hierarchy) Blocks() map[Medium][]Key {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[Medium][]Key{}
	for _, e := range h.index {
		for _, t := range h.local {
			if e.on&bit(t.i) != 0 {
				out[t.Medium] = append(out[t.Medium], e.key)
			}
		}
		if e.remote {
			out[Remote] = append(out[Remote], e.key)
		}
	}
	return out
}

// TierStats is one tier's accounting and counters.
type TierStats struct {
	Medium Medium
	// Blocks, Bytes and Capacity: the hierarchy's view of a local tier;
	// the store's Stats for the remote one.
	Stats
	Hits, Misses, Offloads, Onboards, Evictions, Errors, Corrupt int64
	OffloadBytes, OnboardBytes                                   int64
}

// RemoteStats is the remote tier's health.
type RemoteStats struct {
	Available bool
	// LastError is the failure that made it unavailable, if it is.
	LastError string
	// Since is when it last changed between available and not.
	Since         time.Time
	WriteThrough  bool
	QueuedBytes   int64
	DroppedWrites int64
	Outages       int64
}

// HierarchyStats is the hierarchy's view for operators (GET /v1/kv).
type HierarchyStats struct {
	// Tiers are the local tiers in order, then the remote one.
	Tiers  []TierStats
	Remote *RemoteStats
}

// Stats reports every tier.
func (h *Hierarchy) Stats() HierarchyStats {
	var out HierarchyStats
	h.mu.Lock()
	for _, t := range h.local {
		out.Tiers = append(out.Tiers, t.stats(Stats{Blocks: t.blocks, Bytes: t.used, Capacity: t.capacity}))
	}
	h.mu.Unlock()
	if r := h.remote; r != nil {
		out.Tiers = append(out.Tiers, r.tier.stats(r.store.Stats()))
		rs := r.health()
		out.Remote = &rs
	}
	return out
}

func (t *tier) stats(s Stats) TierStats {
	c := t.c
	return TierStats{
		Medium: t.Medium, Stats: s,
		Hits: c.hits.n.Load(), Misses: c.misses.n.Load(), Offloads: c.offloads.n.Load(), Onboards: c.onboards.n.Load(),
		Evictions: c.evictions.n.Load(), Errors: c.errors.n.Load(), Corrupt: c.corrupt.n.Load(),
		OffloadBytes: c.offloadBytes.n.Load(), OnboardBytes: c.onboardBytes.n.Load(),
	}
}

// Close stops the background work: remote writes still queued are
// dropped, the ones under way finish (each bounded by RemoteTimeout), and
// the events already made are delivered. It does not close the stores,
// which belong to the caller.
func (h *Hierarchy) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	if h.remote != nil {
		h.remote.close()
	}
	h.wg.Wait()
	close(h.stop)
	<-h.evDone
	return nil
}
