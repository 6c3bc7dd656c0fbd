package kvevents

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	simkv "github.com/strata-llm/strata/sim/kvevents"
)

// Fixtures are built with vmihailenco/msgpack from generic values, so they
// do not share code with the decoder. omap keeps map entries in the order
// given, as msgspec writes struct fields in declaration order; a decoder
// must not depend on it, which some fixtures check by putting "type" last.

type kv struct {
	k string
	v any
}

type omap []kv

func (m omap) EncodeMsgpack(e *msgpack.Encoder) error {
	if err := e.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, f := range m {
		if err := e.EncodeString(f.k); err != nil {
			return err
		}
		if err := e.Encode(f.v); err != nil {
			return err
		}
	}
	return nil
}

func pack(tb testing.TB, v any) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true) // msgspec writes the smallest integer form
	if err := enc.Encode(v); err != nil {
		tb.Fatalf("msgpack: %v", err)
	}
	return buf.Bytes()
}

// toks returns n token ids starting at start; as []any for fixtures.
func toks(start, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(start + i)
	}
	return out
}

func anyToks(ts []uint32) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

const (
	bigHash    = uint64(1)<<63 + 12345 // above MaxInt64: msgpack uint64
	smallHash  = uint64(7)             // a positive fixint on the wire
	parentHash = ^uint64(0)
)

var digest = sha256.Sum256([]byte("block"))

func TestDecodeVLLM(t *testing.T) {
	t32 := toks(100, 32)
	tests := []struct {
		name    string
		payload any
		want    EngineBatch
	}{
		{
			name: "array events, uint64 hashes above 2^63",
			payload: []any{1.5, []any{
				[]any{"BlockStored", []any{bigHash, smallHash}, nil, anyToks(t32), 16, nil, nil, nil},
				[]any{"BlockRemoved", []any{smallHash}, nil},
				[]any{"AllBlocksCleared"},
			}, 0},
			want: EngineBatch{TS: 1.5, Events: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{IntHash(bigHash), IntHash(smallHash)}, Tokens: t32, BlockSize: 16, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Removed, Hashes: []EngineHash{IntHash(smallHash)}, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Cleared},
			}},
		},
		{
			name: "map events, type key last, parent and medium",
			payload: []any{2.0, []any{
				omap{{"block_hashes", []any{smallHash}}, {"parent_block_hash", parentHash}, {"token_ids", anyToks(t32[:16])},
					{"block_size", 16}, {"lora_id", nil}, {"medium", "CPU"}, {"lora_name", nil}, {"type", "BlockStored"}},
				omap{{"type", "BlockRemoved"}, {"block_hashes", []any{bigHash}}, {"medium", "GPU"}},
				omap{{"type", "AllBlocksCleared"}},
			}, 3},
			want: EngineBatch{TS: 2, DPRank: 3, Events: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{IntHash(smallHash)}, Parent: IntHash(parentHash), HasParent: true,
					Tokens: t32[:16], BlockSize: 16, Medium: stratav1.Medium_MEDIUM_CPU},
				{Kind: Removed, Hashes: []EngineHash{IntHash(bigHash)}, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Cleared},
			}},
		},
		{
			name: "bin hashes",
			payload: []any{1.0, []any{
				[]any{"BlockStored", []any{digest[:]}, digest[:16], anyToks(t32[:16]), 16, nil, "GPU", nil},
				omap{{"type", "BlockRemoved"}, {"block_hashes", []any{digest[:]}}, {"medium", nil}},
			}, 0},
			want: EngineBatch{TS: 1, Events: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{BytesHash(digest[:])}, Parent: BytesHash(digest[:16]), HasParent: true,
					Tokens: t32[:16], BlockSize: 16, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Removed, Hashes: []EngineHash{BytesHash(digest[:])}, Medium: stratav1.Medium_MEDIUM_GPU},
			}},
		},
		{
			name: "lora id and name",
			payload: []any{1.0, []any{
				[]any{"BlockStored", []any{smallHash}, nil, anyToks(t32[:16]), 16, 3, nil, "sql-adapter"},
			}, 0},
			want: EngineBatch{TS: 1, Events: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{IntHash(smallHash)}, Tokens: t32[:16], BlockSize: 16,
					LoraID: 3, HasLoraID: true, LoraName: "sql-adapter", Medium: stratav1.Medium_MEDIUM_GPU},
			}},
		},
		{
			name: "trailing unknown fields and envelope elements",
			payload: []any{1.0, []any{
				[]any{"BlockStored", []any{smallHash}, nil, anyToks(t32[:16]), 16, nil, nil, nil,
					[]any{[]any{"mm", 1}}, 0, "full_attention", nil, omap{{"future", []any{1, 2}}}},
				[]any{"BlockRemoved", []any{smallHash}, nil, 0, "future"},
				[]any{"AllBlocksCleared", "future"},
				omap{{"type", "BlockStored"}, {"group_idx", 1}, {"block_hashes", []any{bigHash}}, {"parent_block_hash", nil},
					{"token_ids", anyToks(t32[:16])}, {"block_size", 16}, {"future", omap{{"x", []any{nil, true}}}},
					{"lora_id", nil}, {"medium", nil}, {"lora_name", nil}, {"kv_cache_spec_kind", "full_attention"}},
			}, 0, "future envelope field"},
			want: EngineBatch{TS: 1, Events: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{IntHash(smallHash)}, Tokens: t32[:16], BlockSize: 16, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Removed, Hashes: []EngineHash{IntHash(smallHash)}, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Cleared},
				{Kind: Stored, Hashes: []EngineHash{IntHash(bigHash)}, Tokens: t32[:16], BlockSize: 16, Medium: stratav1.Medium_MEDIUM_GPU},
			}},
		},
		{
			name: "positional event without its trailing fields (old vLLM)",
			payload: []any{1.0, []any{
				[]any{"BlockStored", []any{smallHash}, nil, anyToks(t32[:16]), 16},
				[]any{"BlockRemoved", []any{smallHash}},
			}, 0},
			want: EngineBatch{TS: 1, Events: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{IntHash(smallHash)}, Tokens: t32[:16], BlockSize: 16, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Removed, Hashes: []EngineHash{IntHash(smallHash)}, Medium: stratav1.Medium_MEDIUM_GPU},
			}},
		},
		{
			name:    "two-element batch, integer ts",
			payload: []any{7, []any{[]any{"AllBlocksCleared"}}},
			want:    EngineBatch{TS: 7, Events: []EngineEvent{{Kind: Cleared}}},
		},
		{
			name: "map batch",
			payload: omap{{"events", []any{[]any{"AllBlocksCleared"}}}, {"data_parallel_rank", 2}, {"ts", 3.25},
				{"attn_dp_rank", 9}, {"future", []any{}}},
			want: EngineBatch{TS: 3.25, DPRank: 2, Events: []EngineEvent{{Kind: Cleared}}},
		},
		{
			name: "unknown event types skipped and counted",
			payload: []any{1.0, []any{
				[]any{"BlockUpdated", []any{smallHash}, 3},
				omap{{"type", "SomethingNew"}, {"block_hashes", "not even hashes"}},
				[]any{"AllBlocksCleared"},
			}, nil},
			want: EngineBatch{TS: 1, Skipped: 2, Events: []EngineEvent{{Kind: Cleared}}},
		},
		{
			name: "unknown and storage media",
			payload: []any{1.0, []any{
				[]any{"BlockRemoved", []any{smallHash}, "STORAGE"},
				[]any{"BlockRemoved", []any{smallHash}, "tape"},
			}, 0},
			want: EngineBatch{TS: 1, Events: []EngineEvent{
				{Kind: Removed, Hashes: []EngineHash{IntHash(smallHash)}, Medium: stratav1.Medium_MEDIUM_DISK},
				{Kind: Removed, Hashes: []EngineHash{IntHash(smallHash)}, Medium: stratav1.Medium_MEDIUM_UNSPECIFIED},
			}},
		},
		{
			name:    "empty events",
			payload: []any{1.0, []any{}, 0},
			want:    EngineBatch{TS: 1, Events: []EngineEvent{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeVLLM(pack(t, tt.payload))
			if err != nil {
				t.Fatalf("DecodeVLLM: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestDecodeSGLang: SGLang's hashes are signed int64 and its rank is
// attn_dp_rank; DecodeVLLM ignores that key.
func TestDecodeSGLang(t *testing.T) {
	t16 := toks(5, 16)
	payload := pack(t, omap{{"ts", 1.0}, {"attn_dp_rank", 4}, {"events", []any{
		[]any{"BlockStored", []any{int64(-5), int64(1) << 62}, int64(-1), anyToks(t16[:8]), 4, nil},
	}}})
	want := EngineBatch{TS: 1, DPRank: 4, Events: []EngineEvent{
		{Kind: Stored, Hashes: []EngineHash{IntHash(uint64(1<<64 - 5)), IntHash(1 << 62)},
			Parent: IntHash(^uint64(0)), HasParent: true, Tokens: t16[:8], BlockSize: 4, Medium: stratav1.Medium_MEDIUM_GPU},
	}}
	got, err := DecodeSGLang(payload)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	vllm, err := DecodeVLLM(payload)
	if err != nil {
		t.Fatal(err)
	}
	if vllm.DPRank != 0 {
		t.Fatalf("DecodeVLLM read attn_dp_rank as the rank: %d", vllm.DPRank)
	}
}

func TestDecodeVLLMErrors(t *testing.T) {
	t16 := anyToks(toks(0, 16))
	stored := func(fields ...any) []byte {
		return pack(t, []any{1.0, []any{append([]any{"BlockStored"}, fields...)}, 0})
	}
	tests := []struct {
		name    string
		payload []byte
		want    string
	}{
		{"empty", nil, "truncated"},
		{"not an array", pack(t, "hello"), "want an array"},
		{"one-element batch", pack(t, []any{1.0}), "got 1 elements"},
		{"ts not a number", pack(t, []any{"now", []any{}}), "batch ts"},
		{"events not an array", pack(t, []any{1.0, omap{}}), "events"},
		{"map batch without events", pack(t, omap{{"ts", 1.0}}), `no "events"`},
		{"event tag not a string", pack(t, []any{1.0, []any{[]any{1, 2}}}), "event tag"},
		{"empty event", pack(t, []any{1.0, []any{[]any{}}}), "empty event"},
		{"map event without type", pack(t, []any{1.0, []any{omap{{"block_hashes", []any{}}}}}), `without "type"`},
		{"stored without hashes", pack(t, []any{1.0, []any{[]any{"BlockStored"}}}), "without block_hashes"},
		{"hash is a string", stored([]any{"abc"}, nil, t16, 16), "want an integer or bin"},
		{"hash is a float", stored([]any{1.5}, nil, t16, 16), "want an integer or bin"},
		{"empty bin hash", stored([]any{[]byte{}}, nil, t16, 16), "empty block hash"},
		{"parent is a map", stored([]any{1}, omap{}, t16, 16), "parent_block_hash"},
		{"negative token", stored([]any{1}, nil, []any{-1}, 16), "out of range"},
		{"token above uint32", stored([]any{1}, nil, []any{uint64(1) << 32}, 16), "out of range"},
		{"token is nil", stored([]any{1}, nil, []any{nil}, 16), "want an integer"},
		{"negative block size", stored([]any{1}, nil, t16, -16), "block_size"},
		{"medium is an integer", stored([]any{1}, nil, t16, 16, nil, 1), "medium"},
		{"lora id above int64", stored([]any{1}, nil, t16, 16, uint64(1)<<63), "out of range"},
		{"rank is a string", pack(t, []any{1.0, []any{}, "0"}), "batch rank"},
		{"negative rank", pack(t, []any{1.0, []any{}, -1}), "out of range"},
		{"trailing bytes", append(pack(t, []any{1.0, []any{}}), 0xc0), "after the batch"},
		{"truncated array", pack(t, []any{1.0, []any{[]any{"BlockStored", []any{1, 2, 3}}}})[:12], "elements in"},
		{"truncated float", pack(t, []any{1.0, []any{}})[:5], "EOF"},
		{"array longer than the payload", []byte{0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff}, "elements in"},
		{"map longer than the payload", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, "entries in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeVLLM(tt.payload)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestDecodeDeepUnknownField: a deeply nested value in an unknown field is
// skipped without recursion.
func TestDecodeDeepUnknownField(t *testing.T) {
	const depth = 1 << 20
	var b bytes.Buffer
	b.Write([]byte{0x94, 0x01, 0x90, 0x00}) // [1, [], 0, [[[...nil...]]]]
	b.Write(bytes.Repeat([]byte{0x91}, depth))
	b.WriteByte(0xc0)
	if _, err := DecodeVLLM(b.Bytes()); err != nil {
		t.Fatalf("deep trailing element: %v", err)
	}
}

// TestDecodeSimPublisherPayloads decodes what the simulator's vLLM encoder
// writes, in both event encodings and both hash encodings.
func TestDecodeSimPublisherPayloads(t *testing.T) {
	h := [3]simkv.BlockHash{sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b")), sha256.Sum256([]byte("c"))}
	lora := "adapter"
	events := []simkv.Event{
		simkv.BlockStored{BlockHashes: h[:2], TokenIDs: toks(0, 32), BlockSize: 16},
		simkv.BlockStored{BlockHashes: h[2:], ParentBlockHash: &h[1], TokenIDs: toks(32, 16), BlockSize: 16, Medium: "CPU",
			LoraID: new(2), LoraName: &lora},
		simkv.BlockRemoved{BlockHashes: h[:1], Medium: "GPU"},
		simkv.AllBlocksCleared{},
	}
	for _, enc := range []simkv.Encoding{simkv.EncodingMap, simkv.EncodingArray} {
		for _, hashes := range []simkv.HashEncoding{simkv.HashUint64, simkv.HashBytes} {
			eh := func(b simkv.BlockHash) EngineHash {
				if hashes == simkv.HashBytes {
					return BytesHash(b[:])
				}
				return IntHash(binary.BigEndian.Uint64(b[24:]))
			}
			want := EngineBatch{TS: 42.5, DPRank: 1, Events: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{eh(h[0]), eh(h[1])}, Tokens: toks(0, 32), BlockSize: 16, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Stored, Hashes: []EngineHash{eh(h[2])}, Parent: eh(h[1]), HasParent: true, Tokens: toks(32, 16), BlockSize: 16,
					LoraID: 2, HasLoraID: true, LoraName: lora, Medium: stratav1.Medium_MEDIUM_CPU},
				{Kind: Removed, Hashes: []EngineHash{eh(h[0])}, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Cleared},
			}}
			payload, err := simkv.EncodeBatch(42.5, events, 1, simkv.Options{Encoding: enc, Hashes: hashes})
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeVLLM(payload)
			if err != nil {
				t.Fatalf("encoding %d/%d: %v", enc, hashes, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("encoding %d/%d:\ngot  %+v\nwant %+v", enc, hashes, got, want)
			}
		}
	}
}

func TestEngineHashKinds(t *testing.T) {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, 42)
	if IntHash(42) == BytesHash(b) {
		t.Fatal("an integer hash equals a digest with the same bytes")
	}
	if IntHash(42) != IntHash(binary.BigEndian.Uint64(b)) || BytesHash(b) != BytesHash(slices.Clone(b)) {
		t.Fatal("equal hashes differ")
	}
	for h, want := range map[EngineHash]string{IntHash(bigHash): "9223372036854788153", BytesHash([]byte{0xab, 1}): "0xab01", {}: "none"} {
		if h.String() != want {
			t.Errorf("String() = %q, want %q", h.String(), want)
		}
	}
}

func FuzzDecodeVLLM(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzDecodeVLLM.
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, decode := range []func([]byte) (EngineBatch, error){DecodeVLLM, DecodeSGLang} {
			b, err := decode(payload)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error %v does not wrap ErrMalformed", err)
				}
				continue
			}
			for _, ev := range b.Events {
				if ev.Kind < Stored || ev.Kind > Cleared {
					t.Fatalf("event kind %v", ev.Kind)
				}
			}
			// A decoded batch must translate without panicking.
			tr := NewTranslator(16)
			for _, ev := range b.Events {
				tr.Apply(nil, ev)
			}
			tr.Snapshot()
		}
	})
}
