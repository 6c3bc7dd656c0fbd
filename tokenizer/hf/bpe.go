package hf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// maxVocabID bounds token ids, so that a hostile file cannot make the loader
// allocate gigabytes; the largest real vocabularies are near 2^18.
const maxVocabID = 1 << 22

// maxCachedWord is the longest pre-token whose merges are cached (as
// tokenizers, which caches below 256 bytes).
const maxCachedWord = 256

// bpe is tokenizers' BPE model: a word is split into characters (bytes for
// byte-level models), then the pair with the lowest merge rank is merged,
// leftmost first, until no pair has a merge.
type bpe struct {
	vocab     map[string]uint32
	idToToken []string
	known     []bool // ids that have a token
	// merges maps a pair of ids (left<<32 | right) to rank<<32 | merged id.
	merges pairTable

	// byteLevel models read words as raw bytes; byteID is each byte's
	// token and raw each token's bytes (for ignore_merges).
	byteLevel bool
	byteID    [256]int64
	raw       map[string]uint32

	// charID is the token of each character of the Basic Multilingual
	// Plane (-1 where none) for character-level models without a prefix
	// or suffix: the lookup merging starts with, for every character.
	charID []int32

	byteFallback bool
	fallbackID   [256]int64 // <0xXX>, -1 where absent
	unk          int64      // -1: none
	fuseUnk      bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	ignoreMerges bool
	// splitAtMarker: a word may be cut before each "▁" that follows
	// another character (see markerOnlyLeads).
	splitAtMarker bool

	cache   *wordCache
	scratch sync.Pool // *mergeScratch
}

type bpeJSON struct {
	Type         string            `json:"type"`
	Dropout      *float64          `json:"dropout"`
	UnkToken     *string           `json:"unk_token"`
	Prefix       *string           `json:"continuing_subword_prefix"`
	Suffix       *string           `json:"end_of_word_suffix"`
	FuseUnk      bool              `json:"fuse_unk"`
	ByteFallback bool              `json:"byte_fallback"`
	IgnoreMerges bool              `json:"ignore_merges"`
	Vocab        map[string]uint32 `json:"vocab"`
	Merges       json.RawMessage   `json:"merges"`
}

func newModel(raw json.RawMessage, byteLevel bool) (*bpe, error) {
	var c bpeJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		// Another model's fields need not fit BPE's: name its type.
		if typ, terr := componentType(raw); terr == nil && typ != "BPE" && typ != "" {
			return nil, unsupported(typ)
		}
		return nil, err
	}
	typ := c.Type
	if typ != "BPE" && typ != "" {
		return nil, unsupported(typ)
	}
	if typ == "" && c.Merges == nil {
		// Files without a type are BPE if they have merges.
		return nil, errors.New("no model type")
	}
	if c.Dropout != nil && *c.Dropout != 0 {
		return nil, fmt.Errorf("BPE: dropout %v (sampled tokenization): %w", *c.Dropout, ErrUnsupported)
	}
	m := &bpe{
		vocab:        c.Vocab,
		byteLevel:    byteLevel,
		byteFallback: c.ByteFallback,
		unk:          -1,
		fuseUnk:      c.FuseUnk,
		ignoreMerges: c.IgnoreMerges,
		cache:        newWordCache(1 << 17),
	}
	if c.Prefix != nil {
		m.prefix = *c.Prefix
	}
	if c.Suffix != nil {
		m.suffix = *c.Suffix
	}
	if len(m.vocab) == 0 {
		return nil, errors.New("BPE: empty vocab")
	}
	maxID := uint32(0)
	for _, id := range m.vocab {
		if id >= maxVocabID {
			return nil, fmt.Errorf("BPE: token id %d is over the limit of %d", id, maxVocabID)
		}
		maxID = max(maxID, id)
	}
	m.idToToken = make([]string, maxID+1)
	m.known = make([]bool, maxID+1)
	for tok, id := range m.vocab {
		if m.known[id] {
			return nil, fmt.Errorf("BPE: tokens %q and %q share id %d", m.idToToken[id], tok, id)
		}
		m.idToToken[id], m.known[id] = tok, true
	}
	if err := m.loadMerges(c.Merges); err != nil {
		return nil, fmt.Errorf("BPE: %w", err)
	}
	if c.UnkToken != nil {
		id, ok := m.vocab[*c.UnkToken]
		if !ok {
			return nil, fmt.Errorf("BPE: unk_token %q is not in the vocab", *c.UnkToken)
		}
		m.unk = int64(id)
	}
	for b := range 256 {
		m.fallbackID[b] = -1
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallbackID[b] = int64(id)
		}
		m.byteID[b] = -1
		if id, ok := m.vocab[string(byteChar[b])]; ok {
			m.byteID[b] = int64(id)
		}
	}
	if byteLevel {
		m.raw = make(map[string]uint32, len(m.vocab))
		for tok, id := range m.vocab {
			if r, ok := byteLevelToRaw(tok); ok {
				m.raw[r] = id
			}
		}
	}
	if !byteLevel && m.prefix == "" && m.suffix == "" {
		m.charID = make([]int32, 1<<16)
		for i := range m.charID {
			m.charID[i] = -1
		}
		for tok, id := range m.vocab {
			if r, size := utf8.DecodeRuneInString(tok); size == len(tok) && r < 1<<16 && r != utf8.RuneError {
				m.charID[r] = int32(id)
			}
		}
	}
	m.splitAtMarker = !byteLevel && !m.ignoreMerges && m.prefix == "" && m.suffix == "" && markerOnlyLeads(m.vocab)
	m.scratch.New = func() any { return new(mergeScratch) }
	return m, nil
}

// sentencePieceMarker is the character SentencePiece writes spaces as.
const sentencePieceMarker = "▁"

// markerOnlyLeads reports whether "▁" occurs in tokens only as a leading
// run, as in SentencePiece vocabularies. Then no token, and so no symbol
// during merging, spans a "▁" that follows another character, and cutting
// a word there before merging gives the same tokens: a model without a
// pre-tokenizer (Llama 2) need not merge a whole text as one word.
func markerOnlyLeads(vocab map[string]uint32) bool {
	found := false
	for tok := range vocab {
		rest := strings.TrimLeft(tok, sentencePieceMarker)
		if strings.Contains(rest, sentencePieceMarker) {
			return false
		}
		found = found || len(rest) < len(tok)
	}
	return found
}

// loadMerges reads merges written as "a b" strings or as ["a", "b"] pairs. A
// pair listed twice keeps its last rank, as in tokenizers.
func (m *bpe) loadMerges(raw json.RawMessage) error {
	var pairs [][2]string
	var lines []string
	// Newer files write pairs, older ones "a b" strings; the first element
	// tells which, so the array is decoded once.
	trimmed := bytes.TrimLeft(bytes.TrimLeft(bytes.TrimSpace(raw), "["), " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return fmt.Errorf("merges: want an array of \"a b\" strings or of [a, b] pairs: %w", err)
		}
	} else if err := json.Unmarshal(raw, &lines); err == nil {
		pairs = make([][2]string, len(lines))
		for i, line := range lines {
			a, b, ok := strings.Cut(line, " ")
			if !ok || strings.Contains(b, " ") {
				return fmt.Errorf("merge %d %q: want two tokens separated by a space", i, line)
			}
			pairs[i] = [2]string{a, b}
		}
	} else if err := json.Unmarshal(raw, &pairs); err != nil {
		return fmt.Errorf("merges: want an array of \"a b\" strings or of [a, b] pairs: %w", err)
	}
	if len(pairs) >= 1<<32 {
		return errors.New("too many merges")
	}
	m.merges = newPairTable(len(pairs))
	for rank, p := range pairs {
		a, okA := m.vocab[p[0]]
		b, okB := m.vocab[p[1]]
		if !okA || !okB {
			return fmt.Errorf("merge %d (%q, %q): token not in the vocab", rank, p[0], p[1])
		}
		right := p[1]
		if m.prefix != "" {
			right = strings.TrimPrefix(right, m.prefix)
		}
		merged, ok := m.vocab[p[0]+right]
		if !ok {
			return fmt.Errorf("merge %d (%q, %q): merged token %q not in the vocab", rank, p[0], p[1], p[0]+right)
		}
		m.merges.put(uint64(a)<<32|uint64(b), uint64(rank)<<32|uint64(merged))
	}
	return nil
}

// token returns the model's token for id.
func (m *bpe) token(id uint32) (string, bool) {
	if int(id) >= len(m.idToToken) || !m.known[id] {
		return "", false
	}
	return m.idToToken[id], true
}

// encode appends the ids of one pre-token.
func (m *bpe) encode(dst []uint32, word string) []uint32 {
	if !m.splitAtMarker {
		return m.encodeWord(dst, word)
	}
	for word != "" {
		cut := len(word)
		for from := 1; from < len(word); {
			i := strings.Index(word[from:], sentencePieceMarker)
			if i < 0 {
				break
			}
			if at := from + i; !strings.HasSuffix(word[:at], sentencePieceMarker) {
				cut = at
				break
			} else {
				from = at + len(sentencePieceMarker)
			}
		}
		dst = m.encodeWord(dst, word[:cut])
		word = word[cut:]
	}
	return dst
}

func (m *bpe) encodeWord(dst []uint32, word string) []uint32 {
	if word == "" {
		return dst
	}
	if m.ignoreMerges {
		if id, ok := m.wholeWord(word); ok {
			return append(dst, id)
		}
	}
	if len(word) < maxCachedWord {
		if ids, ok := m.cache.get(word); ok {
			return append(dst, ids...)
		}
	}
	start := len(dst)
	dst = m.merge(dst, word)
	if len(word) < maxCachedWord {
		m.cache.put(word, dst[start:])
	}
	return dst
}

func (m *bpe) wholeWord(word string) (uint32, bool) {
	if m.byteLevel {
		id, ok := m.raw[word]
		return id, ok
	}
	id, ok := m.vocab[word]
	return id, ok
}

type symbol struct {
	id         uint32
	prev, next int32
	alive      bool
}

type mergeScratch struct {
	syms []symbol
	heap []uint64 // rank<<32 | position, a min-heap
	pair []uint64 // mergeShort: the merge of each symbol with the next
}

// shortWord is the most symbols mergeShort merges: up to it, scanning all
// pairs for the lowest rank costs less than keeping a heap of them.
const shortWord = 24

// noMerge sorts after every merge value (rank<<32 | merged id).
const noMerge = ^uint64(0)

func (m *bpe) merge(dst []uint32, word string) []uint32 {
	sc := m.scratch.Get().(*mergeScratch)
	defer m.scratch.Put(sc)
	syms := m.symbols(sc.syms[:0], word)
	sc.syms = syms
	if len(syms) == 0 {
		return dst
	}
	if len(syms) <= shortWord {
		return m.mergeShort(dst, sc)
	}
	return m.mergeHeap(dst, sc)
}

// mergeHeap merges sc.syms as tokenizers does: pairs in a min-heap by rank
// then position, entries made stale by an earlier merge skipped.
func (m *bpe) mergeHeap(dst []uint32, sc *mergeScratch) []uint32 {
	syms := sc.syms
	h := sc.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if v, ok := m.merges.get(uint64(syms[i].id)<<32 | uint64(syms[i+1].id)); ok {
			h = heapPush(h, v>>32<<32|uint64(i))
		}
	}
	for len(h) > 0 {
		var top uint64
		top, h = heapPop(h)
		rank, pos := top>>32, int32(top)
		s := &syms[pos]
		if !s.alive || s.next < 0 {
			continue
		}
		right := &syms[s.next]
		v, ok := m.merges.get(uint64(s.id)<<32 | uint64(right.id))
		if !ok || v>>32 != rank {
			continue // stale: one side merged since
		}
		s.id = uint32(v)
		right.alive = false
		s.next = right.next
		if s.next >= 0 {
			syms[s.next].prev = pos
		}
		if s.prev >= 0 {
			if v, ok := m.merges.get(uint64(syms[s.prev].id)<<32 | uint64(s.id)); ok {
				h = heapPush(h, v>>32<<32|uint64(s.prev))
			}
		}
		if s.next >= 0 {
			if v, ok := m.merges.get(uint64(s.id)<<32 | uint64(syms[s.next].id)); ok {
				h = heapPush(h, v>>32<<32|uint64(pos))
			}
		}
	}
	sc.heap = h
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, syms[i].id)
	}
	return dst
}

// mergeShort merges sc.syms as mergeHeap does, in place in dst: each round
// merges the leftmost pair of the lowest rank, found by a scan of every
// pair's merge value, and looks up only the two pairs the merge changed.
func (m *bpe) mergeShort(dst []uint32, sc *mergeScratch) []uint32 {
	start := len(dst)
	for _, s := range sc.syms {
		dst = append(dst, s.id)
	}
	ids := dst[start:]
	pair := sc.pair[:0]
	for i := 0; i+1 < len(ids); i++ {
		pair = append(pair, m.pairMerge(ids[i], ids[i+1]))
	}
	for len(pair) > 0 {
		best := 0
		for i := 1; i < len(pair); i++ {
			if pair[i] < pair[best] {
				best = i
			}
		}
		if pair[best] == noMerge {
			break
		}
		ids[best] = uint32(pair[best])
		ids = append(ids[:best+1], ids[best+2:]...)
		pair = append(pair[:best], pair[best+1:]...)
		if best < len(pair) {
			pair[best] = m.pairMerge(ids[best], ids[best+1])
		}
		if best > 0 {
			pair[best-1] = m.pairMerge(ids[best-1], ids[best])
		}
	}
	sc.pair = pair
	return dst[:start+len(ids)]
}

// pairMerge is the merge of two adjacent ids, or noMerge.
func (m *bpe) pairMerge(left, right uint32) uint64 {
	if v, ok := m.merges.get(uint64(left)<<32 | uint64(right)); ok {
		return v
	}
	return noMerge
}

// symbols splits a word into its initial symbols, as tokenizers'
// merge_word: each character (byte) that is in the vocab, else its bytes'
// <0xXX> tokens under byte_fallback, else the unknown token (consecutive
// unknowns fused into one under fuse_unk), else nothing.
func (m *bpe) symbols(syms []symbol, word string) []symbol {
	add := func(id uint32) {
		n := int32(len(syms))
		if n > 0 {
			syms[n-1].next = n
		}
		syms = append(syms, symbol{id: id, prev: n - 1, next: -1, alive: true})
	}
	if m.byteLevel && m.prefix == "" && m.suffix == "" {
		allKnown := true
		for i := 0; i < len(word); i++ {
			if m.byteID[word[i]] < 0 {
				allKnown = false
				break
			}
		}
		if allKnown {
			for i := 0; i < len(word); i++ {
				add(uint32(m.byteID[word[i]]))
			}
			return syms
		}
	}
	if m.byteLevel {
		word = rawToByteLevel(word)
	}
	pendingUnk := false
	for i := 0; i < len(word); {
		r, size := utf8.DecodeRuneInString(word[i:])
		s := word[i : i+size]
		i += size
		if m.charID != nil && r < 1<<16 && m.charID[r] >= 0 {
			if pendingUnk {
				add(uint32(m.unk))
				pendingUnk = false
			}
			add(uint32(m.charID[r]))
			continue
		}
		if i > size && m.prefix != "" {
			s = m.prefix + s
		}
		if i == len(word) && m.suffix != "" {
			s += m.suffix
		}
		if id, ok := m.vocab[s]; ok {
			if pendingUnk {
				add(uint32(m.unk))
				pendingUnk = false
			}
			add(id)
			continue
		}
		if m.byteFallback && m.allFallback(s) {
			if pendingUnk {
				add(uint32(m.unk))
				pendingUnk = false
			}
			for j := 0; j < len(s); j++ {
				add(uint32(m.fallbackID[s[j]]))
			}
			continue
		}
		if m.unk >= 0 {
			if pendingUnk && !m.fuseUnk {
				add(uint32(m.unk))
			}
			pendingUnk = true
		}
	}
	if pendingUnk {
		add(uint32(m.unk))
	}
	return syms
}

func (m *bpe) allFallback(s string) bool {
	for j := 0; j < len(s); j++ {
		if m.fallbackID[s[j]] < 0 {
			return false
		}
	}
	return true
}

func heapPush(h []uint64, v uint64) []uint64 {
	h = append(h, v)
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if h[parent] <= h[i] {
			break
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
	return h
}

func heapPop(h []uint64) (uint64, []uint64) {
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, small := 2*i+1, 2*i+2, i
		if l < len(h) && h[l] < h[small] {
			small = l
		}
		if r < len(h) && h[r] < h[small] {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	return top, h
}

// wordCache remembers the ids of recent words. It is sharded so that
// concurrent encoders rarely share a lock, and emptied a shard at a time
// when full.
type wordCache struct {
	seed   maphash.Seed
	shards [64]cacheShard
	limit  int // entries per shard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string][]uint32
	_  [32]byte // keep shards on separate cache lines
}

func newWordCache(entries int) *wordCache {
	c := &wordCache{seed: maphash.MakeSeed(), limit: max(1, entries/64)}
	for i := range c.shards {
		c.shards[i].m = map[string][]uint32{}
	}
	return c
}

func (c *wordCache) shard(w string) *cacheShard {
	return &c.shards[maphash.String(c.seed, w)%uint64(len(c.shards))]
}

func (c *wordCache) get(w string) ([]uint32, bool) {
	sh := c.shard(w)
	sh.mu.RLock()
	ids, ok := sh.m[w]
	sh.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []uint32) {
	sh := c.shard(w)
	// Copies: the key must not pin the caller's (possibly huge) input.
	key, val := strings.Clone(w), slices.Clone(ids)
	sh.mu.Lock()
	if len(sh.m) >= c.limit {
		clear(sh.m)
	}
	sh.m[key] = val
	sh.mu.Unlock()
}

// clear empties the cache.
func (c *wordCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// pairTable is an open-addressing hash table from merge pairs to their rank
// and result: the lookup merging does for every pair, about twice as fast as
// a Go map. A key sits beside its value, so a lookup touches one cache line.
type pairTable struct {
	slots []pairSlot
	shift uint
}

type pairSlot struct {
	key uint64 // pair+1; 0 is empty
	val uint64
}

func newPairTable(n int) pairTable {
	bits := uint(4)
	for 1<<bits < 2*n {
		bits++
	}
	return pairTable{slots: make([]pairSlot, 1<<bits), shift: 64 - bits}
}

func (t *pairTable) slot(key uint64) uint64 { return (key * 0x9E3779B97F4A7C15) >> t.shift }

func (t *pairTable) put(key, val uint64) {
	mask := uint64(len(t.slots) - 1)
	for i := t.slot(key); ; i = (i + 1) & mask {
		if sl := &t.slots[i]; sl.key == 0 || sl.key == key+1 {
			sl.key, sl.val = key+1, val
			return
		}
	}
}

func (t *pairTable) get(key uint64) (uint64, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.slot(key); ; i = (i + 1) & mask {
		switch sl := &t.slots[i]; sl.key {
		case key + 1:
			return sl.val, true
		case 0:
			return 0, false
		}
	}
}
