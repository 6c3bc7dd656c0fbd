package kvevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// BlockHash is an engine block hash digest (sha256, 32 bytes). How it goes on
// the wire depends on HashEncoding.
type BlockHash [32]byte

// Event is one KV cache event. The set is closed: it mirrors vLLM's
// KVEventBatch union, which routers decode by tag.
type Event interface{ isEvent() }

// BlockStored reports full blocks that entered the cache, in chain order.
type BlockStored struct {
	BlockHashes     []BlockHash
	ParentBlockHash *BlockHash // nil for the first block of a prefix
	TokenIDs        []uint32   // the new blocks' tokens, concatenated
	BlockSize       int
	LoraID          *int
	Medium          string // "" is sent as nil
	LoraName        *string
}

// BlockRemoved reports blocks evicted from the cache.
type BlockRemoved struct {
	BlockHashes []BlockHash
	Medium      string // "" is sent as nil
}

// AllBlocksCleared reports that the whole prefix cache was reset.
type AllBlocksCleared struct{}

func (BlockStored) isEvent()      {}
func (BlockRemoved) isEvent()     {}
func (AllBlocksCleared) isEvent() {}

// Encoding selects the msgpack shape of events; the batch envelope is a
// positional array in both.
type Encoding int

const (
	// EncodingMap is vLLM >= 0.24: each event is a map whose first key
	// "type" holds the tag, and fields that default to None are left out.
	EncodingMap Encoding = iota
	// EncodingArray is vLLM <= 0.23 (msgspec array_like): each event is
	// ["Tag", field1, field2, ...] with trailing default fields left out.
	EncodingArray
)

// HashEncoding selects how block hashes go on the wire.
type HashEncoding int

const (
	// HashUint64 is vLLM's default (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1):
	// int.from_bytes(digest, "big") & (2^64-1), i.e. the digest's last 8
	// bytes, as a msgpack unsigned integer.
	HashUint64 HashEncoding = iota
	// HashBytes is VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0: the raw digest as
	// msgpack bin.
	HashBytes
)

// EncodeBatch encodes one published batch, [ts, [events...], dp_rank], byte
// for byte as vLLM's msgspec encoder would.
func EncodeBatch(ts float64, events []Event, dpRank int, opts Options) ([]byte, error) {
	if err := opts.validateEncoding(); err != nil {
		return nil, err
	}
	return appendBatch(make([]byte, 0, batchSizeHint(events)), ts, events, dpRank, opts)
}

func (o Options) validateEncoding() error {
	if o.Encoding != EncodingMap && o.Encoding != EncodingArray {
		return fmt.Errorf("kvevents: unknown event encoding %d", o.Encoding)
	}
	if o.Hashes != HashUint64 && o.Hashes != HashBytes {
		return fmt.Errorf("kvevents: unknown hash encoding %d", o.Hashes)
	}
	return nil
}

// batchSizeHint over-estimates the payload so encoding grows the buffer at
// most rarely.
func batchSizeHint(events []Event) int {
	n := 16
	for _, ev := range events {
		n += 128
		switch e := ev.(type) {
		case BlockStored:
			n += 34*len(e.BlockHashes) + 5*len(e.TokenIDs)
		case *BlockStored:
			if e != nil {
				n += 34*len(e.BlockHashes) + 5*len(e.TokenIDs)
			}
		case BlockRemoved:
			n += 34 * len(e.BlockHashes)
		case *BlockRemoved:
			if e != nil {
				n += 34 * len(e.BlockHashes)
			}
		}
	}
	return n
}

// writer encodes with vmihailenco/msgpack, whose EncodeUint/EncodeInt write
// the smallest form of an integer, as msgspec does. It keeps the first error
// so the encoders below read as straight-line field lists.
type writer struct {
	enc  *msgpack.Encoder
	opts Options
	err  error
}

func (w *writer) do(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *writer) arrayLen(n int)    { w.do(w.enc.EncodeArrayLen(n)) }
func (w *writer) str(s string)      { w.do(w.enc.EncodeString(s)) }
func (w *writer) uint(n uint64)     { w.do(w.enc.EncodeUint(n)) }
func (w *writer) int(n int64)       { w.do(w.enc.EncodeInt(n)) }
func (w *writer) float64(f float64) { w.do(w.enc.EncodeFloat64(f)) }
func (w *writer) null()             { w.do(w.enc.EncodeNil()) }

func appendBatch(b []byte, ts float64, events []Event, dpRank int, opts Options) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	w := &writer{enc: msgpack.NewEncoder(buf), opts: opts}
	// data_parallel_rank defaults to None, but the publisher always fills
	// it in, so the envelope always has three elements.
	w.arrayLen(3)
	w.float64(ts)
	w.arrayLen(len(events))
	for i, ev := range events {
		if err := w.event(ev); err != nil {
			return nil, fmt.Errorf("kvevents: event %d: %w", i, err)
		}
	}
	w.int(int64(dpRank))
	if w.err != nil {
		return nil, fmt.Errorf("kvevents: encode batch: %w", w.err)
	}
	return buf.Bytes(), nil
}

var errNilEvent = errors.New("nil event")

func (w *writer) event(ev Event) error {
	switch e := ev.(type) {
	case BlockStored:
		w.blockStored(&e)
	case *BlockStored:
		if e == nil {
			return errNilEvent
		}
		w.blockStored(e)
	case BlockRemoved:
		w.blockRemoved(&e)
	case *BlockRemoved:
		if e == nil {
			return errNilEvent
		}
		w.blockRemoved(e)
	case AllBlocksCleared, *AllBlocksCleared:
		w.header("AllBlocksCleared", 0)
	case nil:
		return errNilEvent
	default:
		return fmt.Errorf("unsupported event type %T", ev)
	}
	return nil
}

// header starts an event with n fields after its tag. msgspec writes the
// tag first in both shapes: as element 0, or as the "type" key.
func (w *writer) header(tag string, n int) {
	if w.opts.Encoding == EncodingArray {
		w.arrayLen(n + 1)
	} else {
		w.do(w.enc.EncodeMapLen(n + 1))
		w.str("type")
	}
	w.str(tag)
}

// key names the next field in the map shape; the array shape is
// positional, so it writes nothing there.
func (w *writer) key(k string) {
	if w.opts.Encoding == EncodingMap {
		w.str(k)
	}
}

// blockStored writes the seven fields vLLM declares without a default (so
// msgspec's omit_defaults never drops them, None or not) in declaration
// order. The defaulted trailing fields (extra_keys, group_idx, ...) are not
// modelled and so are always omitted, as vLLM does when they are None.
func (w *writer) blockStored(e *BlockStored) {
	w.header("BlockStored", 7)
	w.key("block_hashes")
	w.hashes(e.BlockHashes)
	w.key("parent_block_hash")
	if e.ParentBlockHash == nil {
		w.null()
	} else {
		w.hash(e.ParentBlockHash)
	}
	w.key("token_ids")
	w.arrayLen(len(e.TokenIDs))
	for _, t := range e.TokenIDs {
		w.uint(uint64(t))
	}
	w.key("block_size")
	w.int(int64(e.BlockSize))
	w.key("lora_id")
	if e.LoraID == nil {
		w.null()
	} else {
		w.int(int64(*e.LoraID))
	}
	w.key("medium")
	w.optString(e.Medium)
	w.key("lora_name")
	if e.LoraName == nil {
		w.null()
	} else {
		w.str(*e.LoraName)
	}
}

// blockRemoved writes block_hashes and medium; group_idx defaults to None
// and is omitted.
func (w *writer) blockRemoved(e *BlockRemoved) {
	w.header("BlockRemoved", 2)
	w.key("block_hashes")
	w.hashes(e.BlockHashes)
	w.key("medium")
	w.optString(e.Medium)
}

func (w *writer) hashes(hs []BlockHash) {
	w.arrayLen(len(hs))
	for i := range hs {
		w.hash(&hs[i])
	}
}

func (w *writer) hash(h *BlockHash) {
	if w.opts.Hashes == HashBytes {
		w.do(w.enc.EncodeBytes(h[:]))
		return
	}
	w.uint(binary.BigEndian.Uint64(h[24:]))
}

func (w *writer) optString(s string) {
	if s == "" {
		w.null()
		return
	}
	w.str(s)
}
