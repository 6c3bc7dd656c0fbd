// Package kvindex is the brain's global KV-cache index: for every model,
// which workers hold which Strata sequence hashes (kvhash) on which tier,
// plus the cluster-shared remote tier. The gateway asks it, on every
// request, how many leading blocks of a prompt each worker already has.
//
// It is soft state, outside the Raft log: every brain replica builds its own
// from the agents' event streams, so any replica answers Score and a new
// leader starts warm. A replica that misses events (a sequence gap, its own
// restart) asks the agent for a worker snapshot and ignores that worker's
// events until the snapshot arrives.
//
// Layout, chosen for Score's speed and for memory per entry:
//   - per model, a slab of block slots (see slot) and a map from sequence
//     hash to slot; a slot holds the block's holders, a small set of
//     (worker, tier bits) sorted by a dense worker number, the first inline
//     (most blocks have one), the rest in a pointer-free arena;
//   - the remote tier is a second map per model with no worker dimension:
//     a block offloaded by one node can be onboarded by any worker;
//   - Score walks the prompt's hashes in order, following each slot's link
//     to the block stored after it and probing the map only when the link
//     does not lead to the next hash, keeps the workers still matching by
//     merging sorted holder lists, and stops as soon as no worker
//     and no remote block continues the prefix. Each block counts once, on
//     the fastest tier it is found on (GPU, then CPU, then disk, then
//     remote), so the per-tier counts add up to the matched prefix.
//
// Readers hold a model's read lock for one query; a batch of events takes
// the write lock once. Dropping a worker (gone, down, cleared, replaced by
// a snapshot) scans its model's slab: it is rare, and a reverse index would
// double the memory of the common path.
package kvindex

import (
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"sync"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Tier bits of a holder.
const (
	tierGPU  uint8 = 1 << 0
	tierCPU  uint8 = 1 << 1
	tierDisk uint8 = 1 << 2
)

func tierBit(m stratav1.Medium) (uint8, error) {
	switch m {
	case stratav1.Medium_MEDIUM_GPU:
		return tierGPU, nil
	case stratav1.Medium_MEDIUM_CPU:
		return tierCPU, nil
	case stratav1.Medium_MEDIUM_DISK:
		return tierDisk, nil
	}
	return 0, fmt.Errorf("medium %v: %w", m, ErrBadEvent)
}

// Errors.
var (
	ErrUnknownWorker = errors.New("unknown worker")
	ErrBadEvent      = errors.New("bad KV event")
)

// ref is one holder of a block: a dense worker number and tier bits.
type ref struct {
	worker uint32
	mask   uint8
}

// holders is a block's holders sorted by worker, the first one inline: a
// working copy of a slot's first holder and overflow list.
type holders struct {
	first ref
	rest  []ref
}

func (h *holders) len() int {
	if h.first.mask == 0 {
		return 0
	}
	return 1 + len(h.rest)
}

func (h *holders) at(i int) ref {
	if i == 0 {
		return h.first
	}
	return h.rest[i-1]
}

// maskOf is worker w's tier bits, 0 when it does not hold the block.
func (h *holders) maskOf(w uint32) uint8 {
	for i := range h.len() {
		if r := h.at(i); r.worker == w {
			return r.mask
		} else if r.worker > w {
			break
		}
	}
	return 0
}

// set ORs bits into worker's mask, inserting it in order.
func (h *holders) set(w uint32, bits uint8) {
	n := h.len()
	i, found := 0, false
	for ; i < n; i++ {
		r := h.at(i)
		if r.worker >= w {
			found = r.worker == w
			break
		}
	}
	if found {
		if i == 0 {
			h.first.mask |= bits
		} else {
			h.rest[i-1].mask |= bits
		}
		return
	}
	nr := ref{worker: w, mask: bits}
	if n == 0 {
		h.first = nr
		return
	}
	if i == 0 {
		h.rest = slices.Insert(h.rest, 0, h.first)
		h.first = nr
		return
	}
	h.rest = slices.Insert(h.rest, i-1, nr)
}

// clear removes bits from worker's mask, dropping it at zero. It returns the
// bits that were actually set.
func (h *holders) clear(w uint32, bits uint8) uint8 {
	n := h.len()
	for i := range n {
		r := h.at(i)
		if r.worker != w {
			continue
		}
		had := r.mask & bits
		r.mask &^= bits
		switch {
		case r.mask != 0 && i == 0:
			h.first = r
		case r.mask != 0:
			h.rest[i-1] = r
		case i == 0 && len(h.rest) > 0:
			// Two statements: in one assignment Go may run Delete (which
			// zeroes the vacated tail) before reading rest[0].
			h.first = h.rest[0]
			h.rest = slices.Delete(h.rest, 0, 1)
		case i == 0:
			h.first = ref{}
		default:
			h.rest = slices.Delete(h.rest, i-1, i)
		}
		if len(h.rest) == 0 {
			h.rest = nil
		}
		return had
	}
	return 0
}

// workerState is what the index keeps about one worker.
type workerState struct {
	id    string
	model string
	num   uint32
	// seq is the last batch sequence applied; resync is set when a batch
	// was missed, until a snapshot arrives.
	seq     uint64
	synced  bool
	resync  bool
	entries [3]int // blocks per local tier (GPU, CPU, disk)
}

// slot is one block of a model, in a slab. Blocks are given slots in the
// order engines store them, so a prompt's blocks, stored as runs, mostly
// sit next to each other, and next links each block to the one stored
// right after it: Score follows the link (checking the hash) before it
// falls back to the map, so walking a cached prefix reads memory mostly in
// sequence instead of one random map probe per block.
//
// Nothing here holds a pointer — the slab, the overflow arena, the maps of
// integers — so the garbage collector never scans the index: with millions
// of blocks, marking them was what stretched Score's tail.
type slot struct {
	hash    uint64
	touched uint32 // the model's clock at the last store or Score match: eviction age (atomic under the read lock)
	next    uint32 // slot+1 of the block last stored after this one; 0: none
	first   ref    // first holder; mask 0 means the slot is free
	more    uint32 // 1 + offset in model.arena of the other holders; 0: none
	moreLen uint16 // how many; the region's capacity is the next power of two
}

// maxHolders bounds the holders of one block (moreLen is 16 bits).
const maxHolders = 1 << 15

// model is the index of one served model.
type model struct {
	mu      sync.RWMutex
	index   map[uint64]uint32 // sequence hash → slot+1
	slots   []slot
	free    []uint32 // free slots
	arena   []ref    // overflow holder lists, sorted by worker
	freeReg [16][]uint32
	remote  map[uint64]uint32
	clock   uint32
	hand    uint32 // the slot eviction's walk resumes at
	workers map[uint32]*workerState
}

func newModel() *model {
	return &model{index: map[uint64]uint32{}, remote: map[uint64]uint32{}, workers: map[uint32]*workerState{}}
}

// class is the power-of-two capacity class of an overflow list of n refs.
func class(n int) int { return bits.Len(uint(n - 1)) }

// holdersAt is slot i's holders; rest aliases the arena, with the region's
// capacity, so an insert that fits is done in place.
func (m *model) holdersAt(i uint32) holders {
	s := &m.slots[i]
	h := holders{first: s.first}
	if s.more != 0 {
		off, n := int(s.more-1), int(s.moreLen)
		h.rest = m.arena[off : off+n : off+1<<class(n)]
	}
	return h
}

// storeHolders writes h back into slot i, freeing the slot when h is empty.
func (m *model) storeHolders(i uint32, h holders) {
	if h.len() == 0 {
		m.freeSlot(i)
		return
	}
	s := &m.slots[i]
	s.first = h.first
	n := min(len(h.rest), maxHolders-1)
	if s.more != 0 && (n == 0 || class(n) != class(int(s.moreLen))) {
		m.releaseRegion(s)
	}
	if n == 0 {
		return
	}
	if s.more == 0 {
		c := class(n)
		if k := len(m.freeReg[c]); k > 0 {
			s.more = m.freeReg[c][k-1] + 1
			m.freeReg[c] = m.freeReg[c][:k-1]
		} else {
			s.more = uint32(len(m.arena)) + 1
			m.arena = append(m.arena, make([]ref, 1<<c)...)
		}
	}
	copy(m.arena[s.more-1:], h.rest[:n])
	s.moreLen = uint16(n)
}

func (m *model) releaseRegion(s *slot) {
	c := class(int(s.moreLen))
	m.freeReg[c] = append(m.freeReg[c], s.more-1)
	s.more, s.moreLen = 0, 0
}

// slotFor returns the slot of hash h, allocating one if needed.
func (m *model) slotFor(h uint64) uint32 {
	if i := m.index[h]; i != 0 {
		return i - 1
	}
	var i uint32
	if n := len(m.free); n > 0 {
		i = m.free[n-1]
		m.free = m.free[:n-1]
	} else {
		m.slots = append(m.slots, slot{})
		i = uint32(len(m.slots) - 1)
	}
	m.slots[i] = slot{hash: h}
	m.index[h] = i + 1
	return i
}

// freeSlot forgets slot i's block. Links to it from other slots stay: a
// walk checks the hash of every slot it follows a link to.
func (m *model) freeSlot(i uint32) {
	s := &m.slots[i]
	delete(m.index, s.hash)
	if s.more != 0 {
		m.releaseRegion(s)
	}
	*s = slot{}
	m.free = append(m.free, i)
}

// Options bound the index.
type Options struct {
	// MaxBlocksPerModel caps the distinct blocks kept per model (local and
	// remote maps each); beyond it, the least recently touched (stored, or
	// matched by a Score) are evicted, down to a sixty-fourth below the cap.
	// 0 means 4,000,000.
	MaxBlocksPerModel int
}

// Index is the global KV index.
type Index struct {
	opts    Options
	metrics *Metrics

	mu      sync.RWMutex // guards models, byID and nextNum
	models  map[string]*model
	byID    map[string]*workerState
	nextNum uint32
}

// New returns an empty index. metrics may be nil.
func New(opts Options, metrics *Metrics) *Index {
	if opts.MaxBlocksPerModel <= 0 {
		opts.MaxBlocksPerModel = 4_000_000
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Index{opts: opts, metrics: metrics, models: map[string]*model{}, byID: map[string]*workerState{}}
}

func (x *Index) model(name string) *model {
	x.mu.RLock()
	m := x.models[name]
	x.mu.RUnlock()
	return m
}

// SyncWorkers makes the index's workers exactly want (worker id → served
// model name): new workers are added empty (they must send a snapshot
// first), workers that left or changed model lose all their blocks.
func (x *Index) SyncWorkers(want map[string]string) {
	x.mu.Lock()
	var gone []*workerState
	for id, w := range x.byID {
		if m, ok := want[id]; !ok || m != w.model {
			gone = append(gone, w)
			delete(x.byID, id)
		}
	}
	var added []*workerState
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if _, ok := x.byID[id]; ok {
			continue
		}
		x.nextNum++
		w := &workerState{id: id, model: want[id], num: x.nextNum}
		x.byID[id] = w
		added = append(added, w)
		if x.models[w.model] == nil {
			x.models[w.model] = newModel()
		}
	}
	models := maps.Clone(x.models)
	x.mu.Unlock()

	for _, w := range gone {
		m := models[w.model]
		m.mu.Lock()
		m.dropWorker(w)
		delete(m.workers, w.num)
		m.mu.Unlock()
	}
	for _, w := range added {
		m := models[w.model]
		m.mu.Lock()
		m.workers[w.num] = w
		m.mu.Unlock()
	}
	x.metrics.workers.Set(float64(len(want)))
}

// dropWorker removes every block entry of w. Caller holds m.mu.
func (m *model) dropWorker(w *workerState) {
	if w.entries == [3]int{} {
		return
	}
	all := tierGPU | tierCPU | tierDisk
	for i := range m.slots {
		if m.slots[i].first.mask == 0 {
			continue // free
		}
		hs := m.holdersAt(uint32(i))
		if hs.clear(w.num, all) != 0 {
			m.storeHolders(uint32(i), hs)
		}
	}
	w.entries = [3]int{}
}

// Apply folds one batch of a worker's events into the index. It reports
// whether the index needs a snapshot of the worker (a sequence gap, or
// events before the first snapshot); until one arrives, the worker's
// batches are ignored. A snapshot replaces the worker's state atomically:
// Score never sees it half applied.
func (x *Index) Apply(b *stratav1.KVEventBatch) (needSnapshot bool, err error) {
	x.mu.RLock()
	w := x.byID[b.GetWorkerId()]
	var m *model
	if w != nil {
		m = x.models[w.model]
	}
	x.mu.RUnlock()
	if w == nil {
		return false, fmt.Errorf("worker %q: %w", b.GetWorkerId(), ErrUnknownWorker)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.workers[w.num] != w {
		return false, fmt.Errorf("worker %q: %w", b.GetWorkerId(), ErrUnknownWorker) // removed meanwhile
	}
	switch {
	case b.GetSnapshot():
		m.dropWorker(w)
		w.synced, w.resync = true, false
		x.metrics.snapshots.Inc()
	case !w.synced || w.resync:
		return !w.resync && x.markResync(w), nil
	case b.GetSeq() != w.seq+1:
		x.metrics.gaps.Inc()
		return x.markResync(w), nil
	}
	w.seq = b.GetSeq()
	var bad error
	applied := 0
	for _, e := range b.GetEvents() {
		if err := m.apply(w, e, x.opts.MaxBlocksPerModel, x.metrics); err != nil {
			bad = err
			continue
		}
		applied++
	}
	x.metrics.events.Add(float64(applied))
	return false, bad
}

// markResync flags w as waiting for a snapshot and reports that the agent
// must be asked (once per gap).
func (x *Index) markResync(w *workerState) bool {
	if w.resync {
		return false
	}
	w.resync = true
	return true
}

func (m *model) apply(w *workerState, e *stratav1.KVEvent, maxBlocks int, met *Metrics) error {
	switch ev := e.GetEvent().(type) {
	case *stratav1.KVEvent_Stored:
		s := ev.Stored
		m.clock++
		if s.GetMedium() == stratav1.Medium_MEDIUM_REMOTE {
			for _, h := range s.GetSeqHashes() {
				m.remote[h] = m.clock
			}
			m.evict(maxBlocks, met)
			return nil
		}
		bit, err := tierBit(s.GetMedium())
		if err != nil {
			return err
		}
		tier := bits.TrailingZeros8(bit)
		// The run continues its parent's chain: link the parent to it.
		var prev uint32
		if s.GetHasParent() {
			prev = m.index[s.GetParentSeqHash()]
		}
		for _, h := range s.GetSeqHashes() {
			i := m.slotFor(h)
			hs := m.holdersAt(i)
			if hs.maskOf(w.num)&bit == 0 {
				w.entries[tier]++
			}
			hs.set(w.num, bit)
			m.storeHolders(i, hs)
			m.slots[i].touched = m.clock
			if prev != 0 && prev != i+1 {
				m.slots[prev-1].next = i + 1
			}
			prev = i + 1
		}
		m.evict(maxBlocks, met)
	case *stratav1.KVEvent_Removed:
		r := ev.Removed
		if r.GetMedium() == stratav1.Medium_MEDIUM_REMOTE {
			for _, h := range r.GetSeqHashes() {
				delete(m.remote, h)
			}
			return nil
		}
		bit, err := tierBit(r.GetMedium())
		if err != nil {
			return err
		}
		tier := bits.TrailingZeros8(bit)
		for _, h := range r.GetSeqHashes() {
			i := m.index[h]
			if i == 0 {
				continue
			}
			hs := m.holdersAt(i - 1)
			if hs.clear(w.num, bit) != 0 {
				w.entries[tier]--
				m.storeHolders(i-1, hs)
			}
		}
	case *stratav1.KVEvent_Cleared:
		m.dropWorker(w)
	default:
		return fmt.Errorf("empty event: %w", ErrBadEvent)
	}
	return nil
}

// Known says whether the index tracks the worker (it learns workers from the
// brain's state, which a follower may apply after the agent's first batch).
func (x *Index) Known(workerID string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.byID[workerID]
	return ok
}

// AwaitingSnapshot says whether the index ignores the worker's events until
// a snapshot arrives (never synced, or a gap since).
func (x *Index) AwaitingSnapshot(workerID string) bool {
	x.mu.RLock()
	w := x.byID[workerID]
	var m *model
	if w != nil {
		m = x.models[w.model]
	}
	x.mu.RUnlock()
	if w == nil {
		return false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return !w.synced || w.resync
}
