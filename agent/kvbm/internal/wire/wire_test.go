package wire

import (
	"bytes"
	"math"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

func samplePut() *stratav1.PutKVBlocksRequest {
	return &stratav1.PutKVBlocksRequest{Scope: math.MaxUint64, SeqHash: 1, Size: 1 << 40, Offset: 3, Data: []byte("block bytes")}
}

func sampleGet() *stratav1.GetKVBlocksResponse {
	return &stratav1.GetKVBlocksResponse{
		Index: 8191, SeqHash: 0x9e3779b97f4a7c15, Status: stratav1.KVBlockStatus_KV_BLOCK_STATUS_OK,
		Medium: stratav1.Medium_MEDIUM_REMOTE, Size: 2 << 20, Offset: 1 << 20, Data: []byte{0, 1, 2},
	}
}

func equalPut(p *Put, m *stratav1.PutKVBlocksRequest) bool {
	return p.Scope == m.GetScope() && p.SeqHash == m.GetSeqHash() && p.Size == m.GetSize() && p.Offset == m.GetOffset() && bytes.Equal(p.Data, m.GetData())
}

func equalGet(g *Get, m *stratav1.GetKVBlocksResponse) bool {
	return g.Index == m.GetIndex() && g.SeqHash == m.GetSeqHash() && g.Status == int32(m.GetStatus()) && g.Medium == int32(m.GetMedium()) &&
		g.Size == m.GetSize() && g.Offset == m.GetOffset() && bytes.Equal(g.Data, m.GetData())
}

// TestCodecMatchesGenerated: what Codec writes the generated code reads,
// and what the generated code writes Codec reads, field for field; other
// messages go through the standard codec.
func TestCodecMatchesGenerated(t *testing.T) {
	c := Codec{}
	for _, m := range []*stratav1.PutKVBlocksRequest{samplePut(), {}, {Data: []byte{1}}} {
		p := &Put{Scope: m.Scope, SeqHash: m.SeqHash, Size: m.Size, Offset: m.Offset, Data: m.Data}
		out, err := c.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back stratav1.PutKVBlocksRequest
		if err := proto.Unmarshal(out.Materialize(), &back); err != nil || !proto.Equal(&back, m) {
			t.Fatalf("put %v: generated code reads %v (%v)", m, &back, err)
		}
		b, _ := proto.Marshal(m)
		var got Put
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b[:len(b)/2]), mem.SliceBuffer(b[len(b)/2:])}, &got); err != nil || !equalPut(&got, m) {
			t.Fatalf("put %v: decoded %+v (%v)", m, got, err)
		}
		got.Release()
	}
	for _, m := range []*stratav1.GetKVBlocksResponse{sampleGet(), {}, {Status: stratav1.KVBlockStatus_KV_BLOCK_STATUS_NOT_FOUND}} {
		g := &Get{Index: m.Index, SeqHash: m.SeqHash, Status: int32(m.Status), Medium: int32(m.Medium), Size: m.Size, Offset: m.Offset, Data: m.Data}
		out, err := c.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		var back stratav1.GetKVBlocksResponse
		if err := proto.Unmarshal(out.Materialize(), &back); err != nil || !proto.Equal(&back, m) {
			t.Fatalf("get %v: generated code reads %v (%v)", m, &back, err)
		}
		b, _ := proto.Marshal(m)
		var got Get
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil || !equalGet(&got, m) {
			t.Fatalf("get %v: decoded %+v (%v)", m, got, err)
		}
	}
	other := &stratav1.LookupKVBlocksRequest{Scope: 1, SeqHashes: []uint64{2, 3}, Prefix: true}
	out, err := c.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	var back stratav1.LookupKVBlocksRequest
	if err := c.Unmarshal(out, &back); err != nil || !proto.Equal(&back, other) {
		t.Fatalf("lookup round trip: %v %v", &back, err)
	}
	if _, err := c.Marshal(42); err == nil {
		t.Fatal("marshalled an int")
	}
}

// FuzzDecode: DecodePut and DecodeGet accept exactly what proto.Unmarshal
// accepts into the generated types, with the same values, and never panic.
func FuzzDecode(f *testing.F) {
	for _, m := range []proto.Message{samplePut(), sampleGet()} {
		b, _ := proto.Marshal(m)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add(protowire.AppendTag(nil, 99, protowire.StartGroupType))
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5)) // scope with the wrong wire type
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Put
		var mp stratav1.PutKVBlocksRequest
		perr, merr := DecodePut(b, &p), proto.Unmarshal(b, &mp)
		if (perr == nil) != (merr == nil) || (perr == nil && !equalPut(&p, &mp)) {
			t.Fatalf("put: wire %+v (%v), generated %v (%v)", p, perr, &mp, merr)
		}
		var g Get
		var mg stratav1.GetKVBlocksResponse
		gerr, merr := DecodeGet(b, &g), proto.Unmarshal(b, &mg)
		if (gerr == nil) != (merr == nil) || (gerr == nil && !equalGet(&g, &mg)) {
			t.Fatalf("get: wire %+v (%v), generated %v (%v)", g, gerr, &mg, merr)
		}
	})
}
