// Package kvhash is Strata's KV block identity, computed the same way by the
// gateway (from a prompt it is about to route), the agent (from the token ids
// in an engine's KV events), the simulator and the brain. Engines hash their
// blocks differently — vLLM's sha256 chains seeded per process, SGLang's
// truncated sha256, TensorRT-LLM's u64 — so no engine hash can be compared
// across engines or even across restarts; a hash of the token ids can.
//
//	local[i] = XXH3_64(little-endian u32 token ids of full block i, seed)
//	           seed = 1337, or 1337 + XXH3_64(lora_name) with a LoRA adapter
//	seq[0]   = local[0]
//	seq[i]   = XXH3_64(LE64(seq[i-1]) ‖ LE64(local[i]), 1337)
//
// A sequence hash names a block and its whole prefix. A partial trailing
// block is never hashed: engines cache full blocks only.
package kvhash

import (
	"encoding/binary"

	"github.com/zeebo/xxh3"
)

// Seed is the seed of every hash without a LoRA adapter, and of the chain.
const Seed uint64 = 1337

// LoRASeed is the seed of local block hashes computed with an adapter: the
// same tokens under different adapters have different KV.
func LoRASeed(loraName string) uint64 {
	if loraName == "" {
		return Seed
	}
	return Seed + xxh3.HashString(loraName)
}

// Hasher computes hashes without allocating once its buffer has grown to a
// block; it is not safe for concurrent use.
type Hasher struct {
	buf []byte
}

// Local is the hash of one full block's token ids.
func (h *Hasher) Local(tokens []uint32, seed uint64) uint64 {
	if cap(h.buf) < 4*len(tokens) {
		h.buf = make([]byte, 4*len(tokens))
	}
	b := h.buf[:4*len(tokens)]
	for i, t := range tokens {
		binary.LittleEndian.PutUint32(b[4*i:], t)
	}
	return xxh3.HashSeed(b, seed)
}

// Chain is the sequence hash of a block whose prefix ends in parent.
func Chain(parent, local uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], parent)
	binary.LittleEndian.PutUint64(b[8:], local)
	return xxh3.HashSeed(b[:], Seed)
}

// Sequence appends to dst the sequence hashes of the full blocks of tokens,
// continuing the chain after parent when hasParent is set (a run of blocks
// that does not start at the beginning of a prompt).
func (h *Hasher) Sequence(dst []uint64, tokens []uint32, blockSize int, loraName string, parent uint64, hasParent bool) []uint64 {
	if blockSize <= 0 {
		return dst
	}
	seed := LoRASeed(loraName)
	for i := 0; (i+1)*blockSize <= len(tokens); i++ {
		local := h.Local(tokens[i*blockSize:(i+1)*blockSize], seed)
		if hasParent {
			parent = Chain(parent, local)
		} else {
			parent, hasParent = local, true
		}
		dst = append(dst, parent)
	}
	return dst
}

// Prompt returns the sequence hashes of a prompt's full blocks.
func Prompt(tokens []uint32, blockSize int, loraName string) []uint64 {
	var h Hasher
	return h.Sequence(make([]uint64, 0, len(tokens)/max(blockSize, 1)), tokens, blockSize, loraName, 0, false)
}
