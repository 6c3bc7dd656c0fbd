package engine

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/strata-llm/strata/sim/kvevents"
)

// block is one GPU KV-cache block. A block whose hash is set holds a full,
// reusable block of tokens; it stays in the cached map, even while free,
// until it is handed out again.
type block struct {
	id     int
	ref    int
	hash   kvevents.BlockHash
	hashed bool
	// seq is the block's Strata sequence hash (package kvhash), set when
	// the engine has a KV connector: the name it is offloaded under.
	seq    uint64
	hasSeq bool
	// free-list links; both nil when the block is in use.
	prev, next *block
}

// blockPool mirrors vLLM v1's BlockPool: a fixed set of blocks, a free list
// ordered for eviction (least recently freed first), and a map from block
// hash to cached block for prefix reuse. Every change of what is cached is
// recorded as a KV event, which the engine publishes once per step.
type blockPool struct {
	blockSize int
	blocks    []block
	free      block // sentinel of the circular free list
	numFree   int
	cached    map[kvevents.BlockHash]*block
	events    []kvevents.Event
	// evicted are the Strata hashes of cached blocks handed out again
	// since the last takeEvicted: what a KV connector offloads.
	evicted []uint64
}

func newBlockPool(numBlocks, blockSize int) *blockPool {
	p := &blockPool{
		blockSize: blockSize,
		blocks:    make([]block, numBlocks),
		cached:    make(map[kvevents.BlockHash]*block),
	}
	p.free.prev, p.free.next = &p.free, &p.free
	for i := range p.blocks {
		p.blocks[i].id = i
		p.pushFree(&p.blocks[i])
	}
	return p
}

func (p *blockPool) pushFree(b *block) {
	b.prev, b.next = p.free.prev, &p.free
	p.free.prev.next = b
	p.free.prev = b
	p.numFree++
}

func (p *blockPool) removeFree(b *block) {
	b.prev.next, b.next.prev = b.next, b.prev
	b.prev, b.next = nil, nil
	p.numFree--
}

// lookup returns the cached blocks for the longest prefix of hashes.
func (p *blockPool) lookup(hashes []kvevents.BlockHash) []*block {
	var hit []*block
	for _, h := range hashes {
		b, ok := p.cached[h]
		if !ok {
			break
		}
		hit = append(hit, b)
	}
	return hit
}

// touch takes a reference on blocks found by lookup, pulling free ones out
// of the eviction order.
func (p *blockPool) touch(blocks []*block) {
	for _, b := range blocks {
		if b.ref == 0 {
			p.removeFree(b)
		}
		b.ref++
	}
}

// allocate hands out n blocks from the head of the free list, evicting the
// cached content of each. The caller checks numFree first.
func (p *blockPool) allocate(n int) []*block {
	out := make([]*block, 0, n)
	var evicted []kvevents.BlockHash
	for range n {
		b := p.free.next
		p.removeFree(b)
		if b.hashed {
			delete(p.cached, b.hash)
			evicted = append(evicted, b.hash)
			b.hashed = false
			if b.hasSeq {
				p.evicted = append(p.evicted, b.seq)
			}
		}
		b.hasSeq = false
		b.ref = 1
		out = append(out, b)
	}
	if len(evicted) > 0 {
		p.events = append(p.events, kvevents.BlockRemoved{BlockHashes: evicted, Medium: "GPU"})
	}
	return out
}

// release drops one reference on each block, last block first, so that the
// tail of a sequence — the part least likely to be shared — is evicted first.
func (p *blockPool) release(blocks []*block) {
	for i := len(blocks) - 1; i >= 0; i-- {
		b := blocks[i]
		b.ref--
		if b.ref == 0 {
			p.pushFree(b)
		}
	}
}

// cacheFull records blocks[from:to] of a sequence as cached full blocks with
// the given hashes (and Strata hashes seqs, when the engine keeps them),
// and emits one BlockStored for them. tokens holds the sequence's tokens. A
// hash already cached by another block is left alone: the duplicate block
// stays private to its request and is not announced.
func (p *blockPool) cacheFull(blocks []*block, hashes []kvevents.BlockHash, seqs []uint64, tokens []uint32, from, to int) {
	if from >= to {
		return
	}
	ev := kvevents.BlockStored{BlockSize: p.blockSize, Medium: "GPU"}
	if from > 0 {
		parent := hashes[from-1]
		ev.ParentBlockHash = &parent
	}
	for i := from; i < to; i++ {
		b, h := blocks[i], hashes[i]
		if _, dup := p.cached[h]; dup || b.hashed {
			continue
		}
		b.hash, b.hashed = h, true
		if i < len(seqs) {
			b.seq, b.hasSeq = seqs[i], true
		}
		p.cached[h] = b
		ev.BlockHashes = append(ev.BlockHashes, h)
		ev.TokenIDs = append(ev.TokenIDs, tokens[i*p.blockSize:(i+1)*p.blockSize]...)
	}
	if len(ev.BlockHashes) > 0 {
		p.events = append(p.events, ev)
	}
}

// resetCache forgets every cached block. Like vLLM it refuses while any
// block is in use, since a running request's blocks cannot be dropped.
func (p *blockPool) resetCache() bool {
	if p.numFree != len(p.blocks) {
		return false
	}
	for i := range p.blocks {
		p.blocks[i].hashed = false
	}
	clear(p.cached)
	p.events = append(p.events, kvevents.AllBlocksCleared{})
	return true
}

func (p *blockPool) usage() float64 {
	if len(p.blocks) == 0 {
		return 0
	}
	return 1 - float64(p.numFree)/float64(len(p.blocks))
}

func (p *blockPool) takeEvicted() []uint64 {
	ev := p.evicted
	p.evicted = nil
	return ev
}

func (p *blockPool) takeEvents() []kvevents.Event {
	ev := p.events
	p.events = nil
	return ev
}

// hashBlock chains a block's tokens onto its parent's hash the way vLLM's
// hash_block_tokens does: sha256 over the parent digest and the tokens. The
// root parent is a per-engine seed digest, like vLLM's NONE_HASH.
func hashBlock(parent kvevents.BlockHash, tokens []uint32) kvevents.BlockHash {
	buf := make([]byte, 0, len(parent)+4*len(tokens))
	buf = append(buf, parent[:]...)
	for _, t := range tokens {
		buf = binary.LittleEndian.AppendUint32(buf, t)
	}
	return sha256.Sum256(buf)
}
