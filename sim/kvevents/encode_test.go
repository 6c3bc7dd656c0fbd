package kvevents

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The tests decode payloads with vmihailenco/msgpack into generic values, not
// with this package's encoder logic, so they check the wire format itself.
// vmihailenco reports each integer in the Go type of its wire form (positive
// fixint -> int8, uint8 -> uint8, ..., uint64 -> uint64), which lets the
// expectations below pin msgspec's smallest-form integers.

// kv is one map entry; omap keeps map entries in wire order, since msgspec
// writes struct fields in declaration order and consumers of the array form
// depend on the same order.
type kv struct {
	Key any
	Val any
}
type omap []kv

func decodeOrdered(tb testing.TB, b []byte) any {
	tb.Helper()
	r := bytes.NewReader(b)
	d := msgpack.NewDecoder(r)
	v, err := decodeValue(d)
	if err != nil {
		tb.Fatalf("decode %x: %v", b, err)
	}
	if r.Len() != 0 {
		tb.Fatalf("decode %x: %d trailing bytes", b, r.Len())
	}
	return v
}

func decodeValue(d *msgpack.Decoder) (any, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := d.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		m := make(omap, 0, n)
		for range n {
			k, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			v, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			m = append(m, kv{k, v})
		}
		return m, nil
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := d.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = decodeValue(d); err != nil {
				return nil, err
			}
		}
		return a, nil
	default:
		return d.DecodeInterface()
	}
}

// Sample events: hashes whose low 64 bits need uint64 (>= 2^63), uint64
// (< 2^63 but > 2^32) and a positive fixint, and tokens covering every
// unsigned width.
var (
	hashHigh   = mkHash(0x11, 0x8000000000000001)
	hashSmall  = mkHash(0x22, 5)
	hashParent = mkHash(0x33, 0x0102030405060708)
	loraID     = 300
	loraName   = "adapter-a"
)

func mkHash(fill byte, low uint64) BlockHash {
	var h BlockHash
	for i := range 24 {
		h[i] = fill + byte(i)
	}
	binary.BigEndian.PutUint64(h[24:], low)
	return h
}

func sampleEvents() []Event {
	return []Event{
		BlockStored{
			BlockHashes: []BlockHash{hashHigh, hashSmall},
			TokenIDs:    []uint32{1, 200, 40000, 151644},
			BlockSize:   2,
			Medium:      "GPU",
		},
		&BlockStored{
			BlockHashes:     []BlockHash{hashSmall},
			ParentBlockHash: &hashParent,
			TokenIDs:        []uint32{7, 8},
			BlockSize:       2,
			LoraID:          &loraID,
			LoraName:        &loraName,
		},
		BlockRemoved{BlockHashes: []BlockHash{hashHigh}, Medium: "CPU"},
		&BlockRemoved{BlockHashes: []BlockHash{hashSmall}},
		AllBlocksCleared{},
	}
}

// wantHash is how vLLM puts a hash on the wire in each hash encoding.
func wantHash(h BlockHash, he HashEncoding) any {
	if he == HashBytes {
		return append([]byte(nil), h[:]...)
	}
	switch low := binary.BigEndian.Uint64(h[24:]); {
	case low < 128:
		return int8(low)
	default: // the samples only use fixint and 8-byte values
		return low
	}
}

// event builds the expected decoded event: ["Tag", v1, ...] in the array
// form, {"type": "Tag", k1: v1, ...} in the map form.
func event(enc Encoding, tag string, fields ...kv) any {
	if enc == EncodingArray {
		a := []any{tag}
		for _, f := range fields {
			a = append(a, f.Val)
		}
		return a
	}
	return append(omap{{"type", tag}}, fields...)
}

func wantSampleEvents(enc Encoding, he HashEncoding) []any {
	return []any{
		event(enc, "BlockStored",
			kv{"block_hashes", []any{wantHash(hashHigh, he), wantHash(hashSmall, he)}},
			kv{"parent_block_hash", nil},
			kv{"token_ids", []any{int8(1), uint8(200), uint16(40000), uint32(151644)}},
			kv{"block_size", int8(2)},
			kv{"lora_id", nil},
			kv{"medium", "GPU"},
			kv{"lora_name", nil},
		),
		event(enc, "BlockStored",
			kv{"block_hashes", []any{wantHash(hashSmall, he)}},
			kv{"parent_block_hash", wantHash(hashParent, he)},
			kv{"token_ids", []any{int8(7), int8(8)}},
			kv{"block_size", int8(2)},
			kv{"lora_id", uint16(300)},
			kv{"medium", nil},
			kv{"lora_name", "adapter-a"},
		),
		event(enc, "BlockRemoved",
			kv{"block_hashes", []any{wantHash(hashHigh, he)}},
			kv{"medium", "CPU"},
		),
		event(enc, "BlockRemoved",
			kv{"block_hashes", []any{wantHash(hashSmall, he)}},
			kv{"medium", nil},
		),
		event(enc, "AllBlocksCleared"),
	}
}

var encodings = []struct {
	name string
	opts Options
}{
	{"map/uint64", Options{Encoding: EncodingMap, Hashes: HashUint64}},
	{"map/bytes", Options{Encoding: EncodingMap, Hashes: HashBytes}},
	{"array/uint64", Options{Encoding: EncodingArray, Hashes: HashUint64}},
	{"array/bytes", Options{Encoding: EncodingArray, Hashes: HashBytes}},
}

func TestEncodeBatchShapes(t *testing.T) {
	for _, tc := range encodings {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeBatch(1712345678.25, sampleEvents(), 3, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeOrdered(t, b)
			want := []any{1712345678.25, wantSampleEvents(tc.opts.Encoding, tc.opts.Hashes), int8(3)}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded batch:\n got %#v\nwant %#v", got, want)
			}
		})
	}
}

// TestEncodeBatchGolden pins exact bytes for small batches, worked out by
// hand from msgspec's rules (float64 timestamps, smallest ints, tag first).
func TestEncodeBatchGolden(t *testing.T) {
	const ts = "cb3ff8000000000000" // 1.5 as float64
	str := func(s string) string { return fmt.Sprintf("%02x%x", 0xa0|len(s), s) }
	var big BlockHash
	big[24] = 0xff // low 64 bits 0xff00000000000000 >= 2^63
	tests := []struct {
		name   string
		events []Event
		dp     int
		opts   Options
		want   string
	}{
		{"array cleared", []Event{AllBlocksCleared{}}, 0, Options{Encoding: EncodingArray},
			"93" + ts + "91" + "91" + str("AllBlocksCleared") + "00"},
		{"map cleared", []Event{AllBlocksCleared{}}, 0, Options{},
			"93" + ts + "91" + "81" + str("type") + str("AllBlocksCleared") + "00"},
		{"array removed uint64", []Event{BlockRemoved{BlockHashes: []BlockHash{big}, Medium: "GPU"}}, 1,
			Options{Encoding: EncodingArray},
			"93" + ts + "91" + "93" + str("BlockRemoved") + "91" + "cfff00000000000000" + str("GPU") + "01"},
		{"map removed bytes", []Event{BlockRemoved{BlockHashes: []BlockHash{big}}}, 200,
			Options{Hashes: HashBytes},
			"93" + ts + "91" + "83" + str("type") + str("BlockRemoved") + str("block_hashes") +
				"91" + "c420" + hex.EncodeToString(big[:]) + str("medium") + "c0" + "ccc8"},
		{"array stored", []Event{BlockStored{BlockHashes: []BlockHash{{31: 9}}, TokenIDs: []uint32{65535, 65536}, BlockSize: -1}}, 0,
			Options{Encoding: EncodingArray},
			"93" + ts + "91" + "98" + str("BlockStored") + "9109" + "c0" + "92cdffffce00010000" + "ff" + "c0c0c0" + "00"},
		{"empty batch", nil, 0, Options{}, "93" + ts + "90" + "00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeBatch(1.5, tc.events, tc.dp, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestEncodeIntegerWidths(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "00"}, {127, "7f"}, {128, "cc80"}, {255, "ccff"}, {256, "cd0100"},
		{65535, "cdffff"}, {65536, "ce00010000"}, {math.MaxUint32, "ceffffffff"},
		{math.MaxUint32 + 1, "cf0000000100000000"}, {math.MaxInt64, "cf7fffffffffffffff"},
		{-1, "ff"}, {-32, "e0"}, {-33, "d0df"}, {-128, "d080"}, {-129, "d1ff7f"},
		{math.MinInt16, "d18000"}, {math.MinInt16 - 1, "d2ffff7fff"},
		{math.MinInt32, "d280000000"}, {math.MinInt32 - 1, "d3ffffffff7fffffff"},
	} {
		enc := encodeWith(t, func(w *writer) { w.int(tc.n) })
		if got := hex.EncodeToString(enc); got != tc.want {
			t.Errorf("int(%d) = %s, want %s", tc.n, got, tc.want)
		}
		var v int64
		if err := msgpack.Unmarshal(enc, &v); err != nil || v != tc.n {
			t.Errorf("decode int(%d) = %d, %v", tc.n, v, err)
		}
	}
	if got := hex.EncodeToString(encodeWith(t, func(w *writer) { w.uint(math.MaxUint64) })); got != "cfffffffffffffffff" {
		t.Errorf("uint(max) = %s", got)
	}
}

func TestEncodeBatchErrors(t *testing.T) {
	var nilStored *BlockStored
	for _, tc := range []struct {
		name   string
		events []Event
		opts   Options
	}{
		{"nil event", []Event{nil}, Options{}},
		{"nil pointer", []Event{nilStored}, Options{}},
		{"bad encoding", []Event{AllBlocksCleared{}}, Options{Encoding: 7}},
		{"bad hash encoding", []Event{AllBlocksCleared{}}, Options{Hashes: -1}},
	} {
		if _, err := EncodeBatch(0, tc.events, 0, tc.opts); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// BenchmarkEncodeBatch is one engine step storing one request's 4 new
// blocks of 16 tokens.
func BenchmarkEncodeBatch(b *testing.B) {
	ev := BlockStored{BlockSize: 16, Medium: "GPU", ParentBlockHash: &hashParent}
	for i := range 4 {
		ev.BlockHashes = append(ev.BlockHashes, mkHash(byte(i), uint64(i)<<60|12345))
		for j := range 16 {
			ev.TokenIDs = append(ev.TokenIDs, uint32(1000*i+j*7919))
		}
	}
	events := []Event{ev}
	for _, tc := range encodings {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncodeBatch(1712345678.25, events, 0, tc.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// encodeWith runs fn on a fresh writer and returns the bytes it wrote.
func encodeWith(t *testing.T, fn func(*writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := &writer{enc: msgpack.NewEncoder(&buf)}
	fn(w)
	if w.err != nil {
		t.Fatal(w.err)
	}
	return buf.Bytes()
}
