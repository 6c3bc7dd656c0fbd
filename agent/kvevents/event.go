// Package kvevents turns one engine's KV cache event stream into the Strata
// KV event batches the agent streams to every brain replica.
//
// Engines name their cached blocks with their own hashes — vLLM's sha256
// chain seeded per process, SGLang's truncated sha256, TensorRT-LLM's u64 —
// which mean nothing outside the process that made them, and nothing after a
// restart. The brain and the gateway name blocks by Strata sequence hashes
// (package kvhash), computed from token ids alone, so that a gateway can
// hash a prompt and ask which workers hold its prefix. The agent is the only
// place where both names are known: the engine's events carry the token ids
// of the blocks they store and the engine hash of the parent block. This
// package keeps, per worker, the map from engine hashes to Strata hashes for
// every block the worker holds, rewrites every event, and numbers and
// batches the result.
//
// The pieces, from the wire inward:
//
//   - DecodeVLLM, DecodeSGLang and DecodeTRTLLM parse the engines' payloads
//     into engine-level events (EngineEvent), keeping engine hashes opaque.
//   - Translator rewrites engine events into Strata events and can produce a
//     snapshot of the worker's blocks for a brain that lost track.
//   - Subscriber (vLLM, SGLang: ZeroMQ PUB plus a replay ROUTER) and Poller
//     (TensorRT-LLM: HTTP) run a source, detect lost and replayed events,
//     and hand numbered stratav1.KVEventBatch values to a callback.
//
// The KV index fed by these batches is soft state: when the agent cannot
// know what an engine holds (lost events that replay cannot fill, a
// reconnect, an engine restart) it says so with AllBlocksCleared rather than
// guessing, and the brain re-learns the worker's blocks as they are stored.
package kvevents

import (
	"encoding/hex"
	"strconv"
	"strings"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// hashKind tags an EngineHash so that an integer hash and a digest with the
// same bytes never compare equal.
type hashKind uint8

const (
	hashNone hashKind = iota
	hashInt
	hashBytes
)

// EngineHash is an engine's block hash, kept exactly as the engine sent it:
// an integer (vLLM's default, SGLang, TensorRT-LLM) or a raw digest (vLLM
// with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0). It is comparable, so it can
// key a map, and the kind is part of it, so an integer never equals a
// digest. The zero value is no hash.
type EngineHash struct {
	kind   hashKind
	n      uint64 // an integer hash
	digest string // a digest
}

// IntHash is an integer block hash. Signed engine hashes (SGLang's int64)
// are passed as their two's complement: one engine only ever sends one
// signedness, so the mapping stays one-to-one.
func IntHash(v uint64) EngineHash { return EngineHash{kind: hashInt, n: v} }

// BytesHash is a block hash sent as a raw digest.
func BytesHash(digest []byte) EngineHash {
	return EngineHash{kind: hashBytes, digest: string(digest)}
}

// String renders the hash for logs: the unsigned decimal of an integer hash,
// "0x" and hex for a digest.
func (h EngineHash) String() string {
	switch h.kind {
	case hashInt:
		return strconv.FormatUint(h.n, 10)
	case hashBytes:
		return "0x" + hex.EncodeToString([]byte(h.digest))
	default:
		return "none"
	}
}

// EventKind is what an EngineEvent reports.
type EventKind uint8

// Event kinds, one per event type vLLM, SGLang and TensorRT-LLM publish.
const (
	// Stored: full blocks entered the cache (vLLM BlockStored, TRT-LLM
	// "stored").
	Stored EventKind = iota + 1
	// Removed: blocks left the cache (BlockRemoved, "removed").
	Removed
	// Cleared: the whole cache was dropped (AllBlocksCleared).
	Cleared
)

func (k EventKind) String() string {
	switch k {
	case Stored:
		return "stored"
	case Removed:
		return "removed"
	case Cleared:
		return "cleared"
	default:
		return "EventKind(" + strconv.Itoa(int(k)) + ")"
	}
}

// EngineEvent is one engine KV event, decoded but not yet translated.
type EngineEvent struct {
	Kind EventKind
	// Hashes are the engine hashes of the blocks, for Stored in chain order
	// (each block's parent is the one before it).
	Hashes []EngineHash
	// Parent is the engine hash of the block before Hashes[0], valid when
	// HasParent is set (Stored only).
	Parent    EngineHash
	HasParent bool
	// Tokens are the token ids of the stored blocks, concatenated
	// (len(Hashes)·BlockSize of them). Empty when the engine did not say,
	// as vLLM's offloading connectors do.
	Tokens []uint32
	// BlockSize is the tokens per block the engine reported, 0 if none.
	BlockSize int
	// LoraID is the engine's adapter id, valid when HasLoraID is set. The
	// hashes depend on the adapter's name, not its id: an adapter without
	// a name cannot be hashed.
	LoraID    int64
	HasLoraID bool
	// LoraName is the adapter the blocks were computed with, "" for the
	// base model.
	LoraName string
	// Medium is where the blocks live; MEDIUM_UNSPECIFIED when the engine
	// named a medium Strata does not know, or (TRT-LLM removals) none.
	Medium stratav1.Medium
}

// EngineBatch is one decoded vLLM or SGLang batch.
type EngineBatch struct {
	// TS is the engine's timestamp, Unix seconds.
	TS     float64
	Events []EngineEvent
	// DPRank is the data-parallel rank that published the batch.
	DPRank int
	// Skipped counts events of a type this decoder does not know (a newer
	// engine's), left out of Events.
	Skipped int
}

// parseMedium maps an engine's medium name to Strata's. vLLM names "GPU" and
// "CPU" (offloading connectors) and connectors may add a storage tier; a
// name not listed here is MEDIUM_UNSPECIFIED, which the Translator counts
// and skips rather than guess a tier.
func parseMedium(s string) stratav1.Medium {
	switch strings.ToUpper(s) {
	case "GPU":
		return stratav1.Medium_MEDIUM_GPU
	case "CPU":
		return stratav1.Medium_MEDIUM_CPU
	case "DISK", "STORAGE":
		return stratav1.Medium_MEDIUM_DISK
	default:
		return stratav1.Medium_MEDIUM_UNSPECIFIED
	}
}
