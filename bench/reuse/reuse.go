// Package reuse computes the prompt-cache reuse a workload allows, to read
// a measured cached-token fraction against its physical limit:
//
//   - the infinite-cache bound: every full block ever seen stays cached, so
//     a prompt hits the leading blocks some earlier prompt already had;
//   - the pooled-cache bound: one LRU cache with the cluster's whole KV
//     capacity, as if every engine's cache were one and routing were
//     perfect.
//
// Blocks are identified as the gateway and the brain identify them
// (package kvhash: a chain of XXH3 hashes of the token ids), and a prompt
// whose every block is cached still recomputes its last token, as vLLM
// does, so a bound is directly comparable with usage.cached_tokens.
package reuse

import (
	"fmt"
	"math"

	"github.com/strata-llm/strata/kvhash"
)

// Bounds are the hits a workload allows, in prompt tokens.
type Bounds struct {
	BlockSize      int
	CapacityBlocks int
	PromptTokens   uint64
	// InfiniteHitTokens and PooledHitTokens are the cached prompt tokens
	// under each bound.
	InfiniteHitTokens, PooledHitTokens uint64
}

// InfiniteFraction is InfiniteHitTokens / PromptTokens.
func (b Bounds) InfiniteFraction() float64 { return fraction(b.InfiniteHitTokens, b.PromptTokens) }

// PooledFraction is PooledHitTokens / PromptTokens.
func (b Bounds) PooledFraction() float64 { return fraction(b.PooledHitTokens, b.PromptTokens) }

func fraction(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Tracker computes the bounds over requests observed one by one, in the
// order they reach the cache. It is not safe for concurrent use.
type Tracker struct {
	b      Bounds
	seen   map[uint64]struct{}
	lru    lru
	hasher kvhash.Hasher
	// outputs numbers the placeholder blocks of generated tokens whose ids
	// are unknown: they take cache space but are never shared.
	outputs uint64
}

// NewTracker tracks blocks of blockSize tokens in a pooled cache of
// capacityBlocks blocks.
func NewTracker(blockSize, capacityBlocks int) (*Tracker, error) {
	if blockSize < 1 || capacityBlocks < 1 || capacityBlocks > math.MaxInt32 {
		return nil, fmt.Errorf("reuse bounds: block size %d and capacity %d blocks must be positive (capacity below 2^31)", blockSize, capacityBlocks)
	}
	return &Tracker{
		b:    Bounds{BlockSize: blockSize, CapacityBlocks: capacityBlocks},
		seen: map[uint64]struct{}{},
		lru:  newLRU(capacityBlocks),
	}, nil
}

// Request is a request between Start and Finish.
type Request struct {
	blocks []uint64
	// tail are the prompt tokens after its last full block.
	tail []uint32
}

// Start adds a request as it reaches the engine: its prompt's hits are
// counted under both bounds, then its prompt blocks enter the caches, so
// requests started later can hit them.
func (t *Tracker) Start(prompt []uint32) *Request { return t.start(prompt, true) }

// StartWarmup is Start for a request that is not measured (warm-up): its
// prompt enters the caches, so later requests hit it, but it counts under
// neither bound, as its cached tokens count in no measured fraction.
func (t *Tracker) StartWarmup(prompt []uint32) *Request { return t.start(prompt, false) }

func (t *Tracker) start(prompt []uint32, counted bool) *Request {
	bs := t.b.BlockSize
	r := &Request{blocks: t.hasher.Sequence(nil, prompt, bs, "", 0, false)}
	r.tail = prompt[len(r.blocks)*bs:]
	if len(prompt) == 0 {
		return r
	}
	// The last prompt token is always computed: at most (n−1)/bs blocks hit.
	maxHit := (len(prompt) - 1) / bs
	inf := 0
	for inf < len(r.blocks) && inf < maxHit {
		if _, ok := t.seen[r.blocks[inf]]; !ok {
			break
		}
		inf++
	}
	pooled := 0
	for pooled < len(r.blocks) && pooled < maxHit && t.lru.contains(r.blocks[pooled]) {
		pooled++
	}
	if counted {
		t.b.PromptTokens += uint64(len(prompt))
		t.b.InfiniteHitTokens += uint64(inf * bs)
		t.b.PooledHitTokens += uint64(pooled * bs)
	}
	for _, h := range r.blocks {
		t.seen[h] = struct{}{}
		t.lru.touch(h)
	}
	return r
}

// Finish adds the blocks a request's answer completed (engines cache
// generated tokens too) and releases its blocks the way vLLM frees a
// finished request's: tail first, so a shared prefix outlives the suffixes
// behind it. output are the generated token ids when known (a chat's
// answer, which its next round repeats); otherwise outputTokens blocks'
// worth of placeholders that take space but are never shared.
func (t *Tracker) Finish(r *Request, output []uint32, outputTokens int) {
	bs := t.b.BlockSize
	var gen []uint64
	if output != nil {
		// KV exists for every token but the last generated one.
		rest := append(append([]uint32(nil), r.tail...), output[:max(len(output)-1, 0)]...)
		parent, has := uint64(0), len(r.blocks) > 0
		if has {
			parent = r.blocks[len(r.blocks)-1]
		}
		gen = t.hasher.Sequence(nil, rest, bs, "", parent, has)
		for _, h := range gen {
			t.seen[h] = struct{}{}
		}
	} else {
		for range (len(r.tail) + max(outputTokens-1, 0)) / bs {
			t.outputs++
			gen = append(gen, outputKey(t.outputs))
		}
	}
	for i := len(gen) - 1; i >= 0; i-- {
		t.lru.touch(gen[i])
	}
	for i := len(r.blocks) - 1; i >= 0; i-- {
		t.lru.touch(r.blocks[i])
	}
}

// Observe is Start then Finish with outputTokens unknown generated tokens:
// a request that ends before the next starts.
func (t *Tracker) Observe(prompt []uint32, outputTokens int) {
	t.Finish(t.Start(prompt), nil, outputTokens)
}

// Bounds returns the bounds so far.
func (t *Tracker) Bounds() Bounds { return t.b }

// outputKey is a key for the n-th output block that no prompt block hash
// collides with in practice (both are uniform 64-bit values).
func outputKey(n uint64) uint64 {
	return kvhash.Chain(0x6f7574707574, n) // "output"
}

// lru is a fixed-capacity LRU set of block hashes: a map to slots of an
// intrusive doubly linked list in a slice, so touching a block allocates
// nothing once the cache is full.
type lru struct {
	index      map[uint64]int32
	slots      []slot
	head, tail int32 // most and least recently used; -1 when empty
	capacity   int
}

type slot struct {
	key        uint64
	prev, next int32
}

func newLRU(capacity int) lru {
	return lru{index: make(map[uint64]int32, min(capacity, 1<<20)), head: -1, tail: -1, capacity: capacity}
}

func (l *lru) contains(key uint64) bool {
	_, ok := l.index[key]
	return ok
}

// touch makes key the most recently used, inserting it and evicting the
// least recently used key if the cache is full.
func (l *lru) touch(key uint64) {
	if i, ok := l.index[key]; ok {
		l.unlink(i)
		l.pushFront(i)
		return
	}
	var i int32
	if len(l.slots) < l.capacity {
		l.slots = append(l.slots, slot{})
		i = int32(len(l.slots) - 1)
	} else {
		i = l.tail
		l.unlink(i)
		delete(l.index, l.slots[i].key)
	}
	l.slots[i].key = key
	l.index[key] = i
	l.pushFront(i)
}

func (l *lru) unlink(i int32) {
	s := &l.slots[i]
	if s.prev >= 0 {
		l.slots[s.prev].next = s.next
	} else {
		l.head = s.next
	}
	if s.next >= 0 {
		l.slots[s.next].prev = s.prev
	} else {
		l.tail = s.prev
	}
}

func (l *lru) pushFront(i int32) {
	s := &l.slots[i]
	s.prev, s.next = -1, l.head
	if l.head >= 0 {
		l.slots[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}
