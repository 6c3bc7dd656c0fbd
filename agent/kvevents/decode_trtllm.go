package kvevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// trtEvent is one element of the list trtllm-serve's POST /kv_cache_events
// returns (tensorrt_llm/_utils.py KVCacheEventSerializer). Data is decoded
// once its type is known, because the types reuse keys with different
// shapes ("updated" has an object cache_level).
type trtEvent struct {
	Data json.RawMessage `json:"data"`
}

type trtData struct {
	Type string `json:"type"`
	// stored
	ParentHash *json.Number `json:"parent_hash"`
	Blocks     []trtBlock   `json:"blocks"`
	// removed
	BlockHashes []json.Number `json:"block_hashes"`
}

type trtBlock struct {
	BlockHash json.Number `json:"block_hash"`
	Tokens    []struct {
		TokenID json.Number `json:"token_id"`
	} `json:"tokens"`
	// CacheLevel is 0 for the primary pool (GPU), 1 for the secondary
	// (host memory); absent means primary.
	CacheLevel *int `json:"cache_level"`
	// LoraID is not serialized by current TRT-LLM (a TODO in its
	// serializer); when it appears, the blocks cannot be hashed without
	// the adapter's name.
	LoraID *json.Number `json:"lora_id"`
}

// DecodeTRTLLM decodes the JSON list TensorRT-LLM's POST /kv_cache_events
// drains. "stored" events become Stored events, one per run of blocks with
// the same cache level and token count (TRT-LLM reports a block size per
// block, Strata per run); "removed" events become Removed events with no
// medium (TRT-LLM does not say which pool). "created", "updated" and unknown
// types are skipped: they do not change which blocks are cached. Unknown
// keys are ignored. It never panics.
func DecodeTRTLLM(body []byte) ([]EngineEvent, error) {
	var list []trtEvent
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("%w: want a JSON list of events: %w", ErrMalformed, err)
	}
	var out []EngineEvent
	for i, e := range list {
		var err error
		if out, err = appendTRTEvent(out, e.Data); err != nil {
			return nil, fmt.Errorf("%w: event %d: %w", ErrMalformed, i, err)
		}
	}
	return out, nil
}

func appendTRTEvent(out []EngineEvent, raw json.RawMessage) ([]EngineEvent, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, errors.New(`no "data"`)
	}
	var d trtData
	if err := json.Unmarshal(raw, &typeOnly{&d.Type}); err != nil {
		return nil, err
	}
	switch d.Type {
	case "stored", "removed":
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", d.Type, err)
		}
	default:
		return out, nil
	}
	if d.Type == "removed" {
		hs := make([]EngineHash, len(d.BlockHashes))
		for i, n := range d.BlockHashes {
			h, err := trtHash(n)
			if err != nil {
				return nil, fmt.Errorf("removed block hash %d: %w", i, err)
			}
			hs[i] = h
		}
		return append(out, EngineEvent{Kind: Removed, Hashes: hs}), nil
	}
	return appendTRTStored(out, &d)
}

// typeOnly decodes just the "type" key.
type typeOnly struct {
	Type *string `json:"type"`
}

func appendTRTStored(out []EngineEvent, d *trtData) ([]EngineEvent, error) {
	var parent EngineHash
	hasParent := d.ParentHash != nil
	if hasParent {
		var err error
		if parent, err = trtHash(*d.ParentHash); err != nil {
			return nil, fmt.Errorf("parent_hash: %w", err)
		}
	}
	var run *EngineEvent
	for i, b := range d.Blocks {
		h, err := trtHash(b.BlockHash)
		if err != nil {
			return nil, fmt.Errorf("block %d hash: %w", i, err)
		}
		medium := stratav1.Medium_MEDIUM_GPU
		if b.CacheLevel != nil {
			medium = trtMedium(*b.CacheLevel)
		}
		var loraID int64
		if b.LoraID != nil {
			if loraID, err = b.LoraID.Int64(); err != nil {
				return nil, fmt.Errorf("block %d lora_id: %w", i, err)
			}
		}
		if run == nil || run.Medium != medium || run.BlockSize != len(b.Tokens) ||
			run.HasLoraID != (b.LoraID != nil) || run.LoraID != loraID {
			out = append(out, EngineEvent{
				Kind: Stored, Parent: parent, HasParent: hasParent,
				BlockSize: len(b.Tokens), Medium: medium,
				LoraID: loraID, HasLoraID: b.LoraID != nil,
			})
			run = &out[len(out)-1]
		}
		run.Hashes = append(run.Hashes, h)
		for j, t := range b.Tokens {
			id, err := strconv.ParseUint(t.TokenID.String(), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("block %d token %d: %w", i, j, err)
			}
			run.Tokens = append(run.Tokens, uint32(id))
		}
		parent, hasParent = h, true
	}
	return out, nil
}

// trtHash parses a TRT-LLM block hash, a JSON integer (a C++ size_t, so
// possibly above MaxInt64; negative values are taken as two's complement).
func trtHash(n json.Number) (EngineHash, error) {
	if u, err := strconv.ParseUint(n.String(), 10, 64); err == nil {
		return IntHash(u), nil
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return EngineHash{}, fmt.Errorf("not a 64-bit integer: %q", n.String())
	}
	return IntHash(uint64(v)), nil
}

// trtMedium maps a TRT-LLM cache level: 0 is the primary (GPU) pool, 1 the
// secondary pool in host memory.
func trtMedium(level int) stratav1.Medium {
	switch level {
	case 0:
		return stratav1.Medium_MEDIUM_GPU
	case 1:
		return stratav1.Medium_MEDIUM_CPU
	default:
		return stratav1.Medium_MEDIUM_UNSPECIFIED
	}
}
