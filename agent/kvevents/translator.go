package kvevents

import (
	"slices"

	"github.com/strata-llm/strata/kvhash"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// numMedia is the number of media a block can live on.
const numMedia = 4

// media lists them in the order snapshots use.
func media() [numMedia]stratav1.Medium {
	return [numMedia]stratav1.Medium{
		stratav1.Medium_MEDIUM_GPU,
		stratav1.Medium_MEDIUM_CPU,
		stratav1.Medium_MEDIUM_DISK,
		stratav1.Medium_MEDIUM_REMOTE,
	}
}

// TranslatorStats counts what a Translator did and what it had to skip.
type TranslatorStats struct {
	// Blocks is the number of (engine hash, medium) blocks held now.
	Blocks int
	// Stored and Removed count the blocks translated.
	Stored, Removed uint64
	// Cleared counts engine AllBlocksCleared events and Resets.
	Cleared uint64
	// UnknownParent counts stored runs dropped because their parent block
	// was not known (see Translator.Apply).
	UnknownParent uint64
	// UnknownRemoved counts removed engine hashes that were not held.
	UnknownRemoved uint64
	// NoTokens counts stored runs without token ids (offloading
	// connectors), which cannot be hashed.
	NoTokens uint64
	// BadTokens counts stored runs whose token count is not one block
	// size per hash, so hashes and blocks cannot be paired.
	BadTokens uint64
	// UnknownMedium counts events for a medium Strata does not know.
	UnknownMedium uint64
	// UnnamedLoRA counts stored runs computed with an adapter whose name
	// the engine did not send: the adapter's name is part of the hash.
	UnnamedLoRA uint64
}

// blockKey is one engine block on one medium. A block offloaded from GPU to
// CPU is two blocks here, one per medium, with the same hash.
type blockKey struct {
	medium stratav1.Medium
	hash   EngineHash
}

// block is what the Translator remembers of a held block: its Strata
// identity and what a snapshot needs to re-announce it.
type block struct {
	seq       uint64
	parent    uint64
	hasParent bool
	blockSize uint32
	lora      string
}

// seqKey is one Strata block on one medium.
type seqKey struct {
	medium stratav1.Medium
	seq    uint64
}

// Translator rewrites one worker's engine events into Strata events. It
// holds, for every block the worker has, the engine hash → Strata sequence
// hash map that translating removals and chaining later stores needs, and is
// the agent's record of the worker's cache for snapshots. It is not safe for
// concurrent use.
type Translator struct {
	blockSize int
	blocks    map[blockKey]block
	// held counts the engine blocks behind each Strata block: two engine
	// blocks can share a Strata hash (vLLM hashes extra keys such as a
	// cache salt or image hashes that Strata's token-only identity does
	// not see), and the Strata block is removed only with the last one.
	held   map[seqKey]int
	hasher kvhash.Hasher
	stats  TranslatorStats
}

// NewTranslator returns an empty Translator. blockSize is the deployment's
// block size, used for stored events that do not carry one.
func NewTranslator(blockSize int) *Translator {
	return &Translator{
		blockSize: blockSize,
		blocks:    make(map[blockKey]block),
		held:      make(map[seqKey]int),
	}
}

// Stats returns the counters.
func (t *Translator) Stats() TranslatorStats {
	s := t.stats
	s.Blocks = len(t.blocks)
	return s
}

// Reset forgets every block, as after AllBlocksCleared.
func (t *Translator) Reset() {
	clear(t.blocks)
	clear(t.held)
	t.stats.Cleared++
}

// Apply translates ev, appending the resulting Strata events to dst: a
// BlockStored (preceded by a BlockRemoved if a stored engine hash replaces
// one that named other tokens), a BlockRemoved per medium, or an
// AllBlocksCleared. What cannot be translated is counted in Stats and
// produces nothing.
//
// A stored run whose parent engine hash is unknown is dropped. A Strata hash
// names a block together with its whole prefix, and the event carries only
// the new blocks' tokens: without the parent's Strata hash there is nothing
// to chain them to. Hashing them as if they began a prompt would announce
// hashes no request for this prefix computes, and could falsely match a
// different prompt that does begin with those tokens. Unknown parents occur
// after a resync (the parent was stored before the agent was listening) and
// below runs the Translator skipped; runs that start a prompt are always
// learned, and with them everything chained to them later.
func (t *Translator) Apply(dst []*stratav1.KVEvent, ev EngineEvent) []*stratav1.KVEvent {
	switch ev.Kind {
	case Stored:
		return t.stored(dst, ev)
	case Removed:
		return t.removed(dst, ev)
	case Cleared:
		t.Reset()
		return append(dst, &stratav1.KVEvent{Event: &stratav1.KVEvent_Cleared{Cleared: &stratav1.AllBlocksCleared{}}})
	default:
		return dst
	}
}

func (t *Translator) stored(dst []*stratav1.KVEvent, ev EngineEvent) []*stratav1.KVEvent {
	if ev.Medium == stratav1.Medium_MEDIUM_UNSPECIFIED {
		t.stats.UnknownMedium++
		return dst
	}
	if ev.HasLoraID && ev.LoraName == "" {
		t.stats.UnnamedLoRA++
		return dst
	}
	if len(ev.Tokens) == 0 {
		t.stats.NoTokens++
		return dst
	}
	bs := ev.BlockSize
	if bs <= 0 {
		bs = t.blockSize
	}
	if bs <= 0 || len(ev.Hashes) == 0 || len(ev.Tokens) != len(ev.Hashes)*bs {
		t.stats.BadTokens++
		return dst
	}
	var parent uint64
	if ev.HasParent {
		p, ok := t.lookup(ev.Parent, ev.Medium)
		if !ok {
			t.stats.UnknownParent++
			return dst
		}
		parent = p.seq
	}

	seqs := t.hasher.Sequence(make([]uint64, 0, len(ev.Hashes)), ev.Tokens, bs, ev.LoraName, parent, ev.HasParent)
	var gone []uint64
	prev, hasPrev := parent, ev.HasParent
	for i, h := range ev.Hashes {
		key := blockKey{ev.Medium, h}
		old, had := t.blocks[key]
		if !had || old.seq != seqs[i] {
			// A new block, or an engine hash reused for other tokens.
			if had && t.release(seqKey{ev.Medium, old.seq}) {
				gone = append(gone, old.seq)
			}
			t.held[seqKey{ev.Medium, seqs[i]}]++
		}
		t.blocks[key] = block{seq: seqs[i], parent: prev, hasParent: hasPrev, blockSize: uint32(bs), lora: ev.LoraName}
		prev, hasPrev = seqs[i], true
	}
	t.stats.Stored += uint64(len(seqs))
	if len(gone) > 0 {
		dst = append(dst, removedEvent(gone, ev.Medium))
	}
	return append(dst, &stratav1.KVEvent{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{
		SeqHashes:     seqs,
		ParentSeqHash: parent,
		HasParent:     ev.HasParent,
		Medium:        ev.Medium,
		BlockSize:     uint32(bs),
		LoraName:      ev.LoraName,
	}}})
}

// lookup finds an engine block, on the given medium first: the Strata hash
// of a parent does not depend on where the parent lives, so a block stored
// on CPU can chain to a parent only the GPU holds.
func (t *Translator) lookup(h EngineHash, medium stratav1.Medium) (block, bool) {
	if b, ok := t.blocks[blockKey{medium, h}]; ok {
		return b, true
	}
	for _, m := range media() {
		if b, ok := t.blocks[blockKey{m, h}]; ok {
			return b, true
		}
	}
	return block{}, false
}

// release drops one reference to a Strata block and reports whether it was
// the last.
func (t *Translator) release(k seqKey) bool {
	t.held[k]--
	if t.held[k] > 0 {
		return false
	}
	delete(t.held, k)
	return true
}

func (t *Translator) removed(dst []*stratav1.KVEvent, ev EngineEvent) []*stratav1.KVEvent {
	// TRT-LLM does not say which pool a removed block left; it is gone
	// from all of them.
	all := media()
	targets := all[:]
	if ev.Medium != stratav1.Medium_MEDIUM_UNSPECIFIED {
		targets = []stratav1.Medium{ev.Medium}
	}
	var gone [numMedia][]uint64
	for _, h := range ev.Hashes {
		found := false
		for i, m := range targets {
			key := blockKey{m, h}
			b, ok := t.blocks[key]
			if !ok {
				continue
			}
			found = true
			delete(t.blocks, key)
			t.stats.Removed++
			if t.release(seqKey{m, b.seq}) {
				gone[i] = append(gone[i], b.seq)
			}
		}
		if !found {
			t.stats.UnknownRemoved++
		}
	}
	for i, m := range targets {
		if len(gone[i]) > 0 {
			dst = append(dst, removedEvent(gone[i], m))
		}
	}
	return dst
}

func removedEvent(seqs []uint64, m stratav1.Medium) *stratav1.KVEvent {
	return &stratav1.KVEvent{Event: &stratav1.KVEvent_Removed{Removed: &stratav1.BlockRemoved{SeqHashes: seqs, Medium: m}}}
}

// Snapshot returns the worker's blocks as BlockStored events, medium by
// medium (GPU, CPU, disk, remote), for a brain that must rebuild the
// worker's entries. Each medium's blocks form a forest (a block's parent is
// the block before it in its prompt); the snapshot walks it depth first and
// emits maximal runs: a run follows a block to its first child and every
// other child starts a new run whose parent is the block it branches from.
// So every event's parent is either announced by an earlier event or not
// held on that medium (the event then names it, as the live stream did),
// and a prompt cached as one chain costs one event however long it is.
// The order is deterministic.
func (t *Translator) Snapshot() []*stratav1.KVEvent {
	var out []*stratav1.KVEvent
	for _, m := range media() {
		nodes := make(map[uint64]block)
		for k, b := range t.blocks {
			if k.medium == m {
				nodes[b.seq] = b
			}
		}
		out = appendForest(out, m, nodes)
	}
	return out
}

// appendForest emits one medium's blocks as runs, depth first.
func appendForest(out []*stratav1.KVEvent, m stratav1.Medium, nodes map[uint64]block) []*stratav1.KVEvent {
	if len(nodes) == 0 {
		return out
	}
	children := make(map[uint64][]uint64)
	var roots, all []uint64
	for seq, b := range nodes {
		all = append(all, seq)
		if _, ok := nodes[b.parent]; b.hasParent && ok {
			children[b.parent] = append(children[b.parent], seq)
		} else {
			roots = append(roots, seq)
		}
	}
	slices.Sort(roots)
	slices.Sort(all)
	for _, c := range children {
		slices.Sort(c)
	}
	// Roots first, then every block: a block on a parent cycle (only a
	// 64-bit hash collision could make one) has no root but must not be
	// left out.
	starts := append(roots, all...)
	visited := make(map[uint64]bool, len(nodes))
	var stack []uint64
	for i := len(starts) - 1; i >= 0; i-- {
		stack = append(stack, starts[i])
	}
	for len(stack) > 0 {
		start := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[start] {
			continue
		}
		first := nodes[start]
		run := []uint64{start}
		visited[start] = true
		for cur := start; ; {
			// Follow the smallest child that can share the run's
			// event; the others start runs of their own, after this
			// one (their parent is in it).
			next, found := uint64(0), false
			var rest []uint64
			for _, k := range children[cur] {
				switch kb := nodes[k]; {
				case visited[k]:
				case !found && kb.blockSize == first.blockSize && kb.lora == first.lora:
					next, found = k, true
				default:
					rest = append(rest, k)
				}
			}
			for i := len(rest) - 1; i >= 0; i-- {
				stack = append(stack, rest[i])
			}
			if !found {
				break
			}
			visited[next] = true
			run = append(run, next)
			cur = next
		}
		out = append(out, &stratav1.KVEvent{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{
			SeqHashes:     run,
			ParentSeqHash: first.parent,
			HasParent:     first.hasParent,
			Medium:        m,
			BlockSize:     first.blockSize,
			LoraName:      first.lora,
		}}})
	}
	return out
}
