package kvbm

import (
	"fmt"

	"github.com/strata-llm/strata/agent/kvbm/internal/wire"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tiers"
)

// Batching of a put stream: the blocks received are handed to the
// hierarchy in batches of at most this many blocks or bytes, so that a long
// stream holds little memory and one store call carries many blocks.
const (
	putBatchBlocks = 64
	putBatchBytes  = 32 << 20
)

// framingError is a put stream that breaks the protocol (docs/kvbm.md):
// the stream is answered INVALID_ARGUMENT and nothing after it is read.
type framingError struct{ msg string }

func (e *framingError) Error() string { return e.msg }

func framing(format string, args ...any) error {
	return &framingError{msg: fmt.Sprintf(format, args...)}
}

// assembler turns a put stream's chunks back into blocks and checks the
// framing: one scope, every block's chunks consecutive and in offset order,
// adding up to its size, within the limits. A block of one chunk is kept
// as the message's own bytes (no copy: the message is the server's); a
// larger one is assembled into a buffer of its size.
type assembler struct {
	scope    uint64
	si       *scopeInfo
	maxChunk uint64
	maxBlock uint64

	cur      *partial
	batch    []tiers.Block
	bytes    int
	rejected []*stratav1.KVBlockError
	blocks   int // complete blocks seen, stored or not
}

type partial struct {
	hash uint64
	size uint64
	got  uint64
	buf  []byte // nil when the block is rejected and its chunks skipped
}

func newAssembler(si *scopeInfo, l Limits) *assembler {
	return &assembler{scope: uint64(si.scope), si: si, maxChunk: l.MaxChunkBytes, maxBlock: l.MaxBlockBytes}
}

// add takes one message. It returns a *framingError when the stream is
// broken; a block that is well framed but not acceptable (its size is not
// the scope's) is rejected on its own, in rejected. kept says the batch
// holds m.Data itself (a block of one chunk): m must not be released
// before the batch is stored.
func (a *assembler) add(m *wire.Put) (kept bool, err error) {
	data := m.Data
	switch {
	case m.Scope != a.scope:
		return false, framing("scope %016x in a stream of scope %016x: one scope per stream", m.Scope, a.scope)
	case uint64(len(data)) > a.maxChunk:
		return false, framing("block %016x: a chunk of %d bytes exceeds max_chunk_bytes %d", m.SeqHash, len(data), a.maxChunk)
	case len(data) == 0:
		return false, framing("block %016x: an empty chunk", m.SeqHash)
	}
	if p := a.cur; p != nil {
		if m.SeqHash != p.hash || m.Size != p.size || m.Offset != p.got {
			return false, framing("block %016x: want its chunk at offset %d (size %d), got block %016x offset %d size %d",
				p.hash, p.got, p.size, m.SeqHash, m.Offset, m.Size)
		}
		if uint64(len(data)) > p.size-p.got {
			return false, framing("block %016x: chunks exceed its size %d", p.hash, p.size)
		}
		if p.buf != nil {
			copy(p.buf[p.got:], data)
		}
		p.got += uint64(len(data))
		if p.got == p.size {
			a.cur = nil
			a.complete(p.hash, p.buf)
		}
		return false, nil
	}
	size := m.Size
	switch {
	case m.Offset != 0:
		return false, framing("block %016x: its first chunk is at offset %d, want 0", m.SeqHash, m.Offset)
	case size > a.maxBlock:
		return false, framing("block %016x: %d bytes exceed max_block_bytes %d", m.SeqHash, size, a.maxBlock)
	case uint64(len(data)) > size:
		return false, framing("block %016x: a %d-byte chunk in a block of %d bytes", m.SeqHash, len(data), size)
	}
	accept := a.si.blockBytes == 0 || a.si.blockBytes == size
	if !accept {
		a.rejected = append(a.rejected, &stratav1.KVBlockError{
			SeqHash: m.SeqHash, Status: stratav1.KVBlockStatus_KV_BLOCK_STATUS_INVALID,
			Message: fmt.Sprintf("%d bytes: the scope's blocks have %d", size, a.si.blockBytes),
		})
	}
	if uint64(len(data)) == size {
		if accept {
			a.complete(m.SeqHash, data)
		} else {
			a.blocks++
		}
		return accept, nil
	}
	p := &partial{hash: m.SeqHash, size: size, got: uint64(len(data))}
	if accept {
		p.buf = make([]byte, size)
		copy(p.buf, data)
	}
	a.cur = p
	return false, nil
}

func (a *assembler) complete(hash uint64, data []byte) {
	a.blocks++
	if data == nil {
		return // rejected
	}
	a.batch = append(a.batch, tiers.Block{Key: tiers.Key{Scope: tiers.Scope(a.scope), Hash: hash}, Data: data})
	a.bytes += len(data)
}

// full says the batch should be stored now.
func (a *assembler) full() bool { return len(a.batch) >= putBatchBlocks || a.bytes >= putBatchBytes }

// take hands over the batch.
func (a *assembler) take() []tiers.Block {
	b := a.batch
	a.batch, a.bytes = nil, 0
	return b
}

// finish checks the stream ended between blocks.
func (a *assembler) finish() error {
	if p := a.cur; p != nil {
		return framing("block %016x: the stream ended after %d of its %d bytes", p.hash, p.got, p.size)
	}
	return nil
}
