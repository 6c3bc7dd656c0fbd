package hf

import (
	"container/list"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// The runs of text between added tokens encode independently of each other
// (added tokens are matched first, and every later step works inside a
// run), so a long run seen before, such as the system prompt and tool
// definitions that open every request of an application, can take its ids
// from a cache: exact, and without pre-tokenizing it again.
const (
	// minCachedSegment is the shortest run worth a cache entry; shorter
	// ones encode faster than they hash.
	minCachedSegment = 256
	// DefaultSegmentCacheBytes bounds the segment cache (text and ids).
	DefaultSegmentCacheBytes = 16 << 20
)

// WithSegmentCache bounds the cache of long text runs (system prompts) to
// about maxBytes; 0 turns it off. The default is DefaultSegmentCacheBytes.
func WithSegmentCache(maxBytes int) Option {
	return func(o *options) { o.segmentCacheBytes = &maxBytes }
}

// segmentCache is an LRU of runs' ids, bounded by their size.
type segmentCache struct {
	mu       sync.Mutex
	max, cur int
	byKey    map[segmentKey]*list.Element
	lru      list.List // of *segmentEntry, most recent first
	hits     atomic.Uint64
	misses   atomic.Uint64
}

// segmentKey is a run and whether it starts the input (Metaspace's
// prepend_scheme "first" treats that one differently).
type segmentKey struct {
	text  string
	first bool
}

type segmentEntry struct {
	key segmentKey
	ids []uint32
}

func newSegmentCache(maxBytes int) *segmentCache {
	if maxBytes <= 0 {
		return nil
	}
	return &segmentCache{max: maxBytes, byKey: map[segmentKey]*list.Element{}}
}

func (e *segmentEntry) size() int { return len(e.key.text) + 4*len(e.ids) + 64 }

func (c *segmentCache) get(text string, first bool) ([]uint32, bool) {
	c.mu.Lock()
	el, ok := c.byKey[segmentKey{text, first}]
	if ok {
		c.lru.MoveToFront(el)
	}
	c.mu.Unlock()
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return el.Value.(*segmentEntry).ids, true
}

func (c *segmentCache) put(text string, first bool, ids []uint32) {
	e := &segmentEntry{key: segmentKey{strings.Clone(text), first}, ids: slices.Clone(ids)}
	if e.size() > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[e.key]; ok {
		return
	}
	c.byKey[e.key] = c.lru.PushFront(e)
	c.cur += e.size()
	for c.cur > c.max {
		old := c.lru.Back()
		oe := old.Value.(*segmentEntry)
		c.lru.Remove(old)
		delete(c.byKey, oe.key)
		c.cur -= oe.size()
	}
}

// SegmentCacheStats reports the segment cache's hits and misses (runs long
// enough to be cached that were found, or not).
func (t *Tokenizer) SegmentCacheStats() (hits, misses uint64) {
	if t.segments == nil {
		return 0, 0
	}
	return t.segments.hits.Load(), t.segments.misses.Load()
}
