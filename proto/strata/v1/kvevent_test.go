package stratav1_test

import (
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// sampleBatch has one event of each kind, with values at the edges of their
// types (hash 0 and 2^64-1, negative time) that a careless encoding would lose.
func sampleBatch() *stratav1.KVEventBatch {
	return &stratav1.KVEventBatch{
		WorkerId:  "node-a/gpu0-1/vllm-8000",
		Seq:       42,
		UnixNanos: -1,
		Snapshot:  true,
		Events: []*stratav1.KVEvent{
			{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{
				SeqHashes:     []uint64{0, 1, math.MaxUint64, 0x9e3779b97f4a7c15},
				ParentSeqHash: 0,
				HasParent:     true,
				Medium:        stratav1.Medium_MEDIUM_GPU,
				BlockSize:     16,
				LoraName:      "sql-adapter",
			}}},
			{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{
				SeqHashes: []uint64{7},
				Medium:    stratav1.Medium_MEDIUM_REMOTE,
				BlockSize: 16,
			}}},
			{Event: &stratav1.KVEvent_Removed{Removed: &stratav1.BlockRemoved{
				SeqHashes: []uint64{math.MaxUint64, 1},
				Medium:    stratav1.Medium_MEDIUM_CPU,
			}}},
			{Event: &stratav1.KVEvent_Cleared{Cleared: &stratav1.AllBlocksCleared{}}},
		},
	}
}

func TestKVEventBatchRoundTrip(t *testing.T) {
	in := sampleBatch()
	wire, err := proto.Marshal(in)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	out := &stratav1.KVEventBatch{}
	if err := proto.Unmarshal(wire, out); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip changed the batch:\n in: %v\nout: %v", in, out)
	}

	// Each event kind arrives as the oneof case it was sent as.
	ev := out.GetEvents()
	if len(ev) != 4 {
		t.Fatalf("got %d events, want 4", len(ev))
	}
	st := ev[0].GetStored()
	if st == nil || !st.GetHasParent() || st.GetParentSeqHash() != 0 || st.GetSeqHashes()[2] != math.MaxUint64 ||
		st.GetMedium() != stratav1.Medium_MEDIUM_GPU || st.GetLoraName() != "sql-adapter" || st.GetBlockSize() != 16 {
		t.Errorf("stored event: %v", st)
	}
	if ev[1].GetStored().GetHasParent() {
		t.Errorf("second stored event: has_parent set, want unset (a run starting at block 0)")
	}
	if rm := ev[2].GetRemoved(); rm == nil || rm.GetMedium() != stratav1.Medium_MEDIUM_CPU || len(rm.GetSeqHashes()) != 2 {
		t.Errorf("removed event: %v", rm)
	}
	if ev[3].GetCleared() == nil {
		t.Errorf("cleared event: got %T, want AllBlocksCleared", ev[3].GetEvent())
	}
}

// TestFixedWidthHashes pins the wire cost of a hash to 8 bytes: the reason
// seq_hashes is fixed64 rather than uint64 (whose varint takes up to 10 bytes
// for a uniformly random 64-bit value).
func TestFixedWidthHashes(t *testing.T) {
	size := func(n int) int {
		hs := make([]uint64, n)
		for i := range hs {
			hs[i] = math.MaxUint64 - uint64(i)
		}
		return proto.Size(&stratav1.BlockRemoved{SeqHashes: hs})
	}
	if d := size(101) - size(100); d != 8 {
		t.Fatalf("one more hash costs %d bytes, want 8", d)
	}
}

func TestUnmarshalGarbage(t *testing.T) {
	for name, wire := range map[string][]byte{
		"truncated varint":       {0x10, 0xff},
		"bad wire type":          {0x0f},
		"field number zero":      {0x00, 0x01},
		"length past end":        {0x22, 0x05, 0x01},
		"truncated fixed64":      {0x22, 0x06, 0x0a, 0x04, 0x11, 0x01, 0x02, 0x03}, // events[0].stored.parent_seq_hash
		"group never ends":       {0x0b},
		"invalid utf8 worker_id": {0x0a, 0x02, 0xff, 0xfe},
	} {
		t.Run(name, func(t *testing.T) {
			if err := proto.Unmarshal(wire, &stratav1.KVEventBatch{}); err == nil {
				t.Errorf("Unmarshal(%x) succeeded, want an error", wire)
			}
		})
	}
}

// FuzzUnmarshalKVEventBatch feeds arbitrary bytes to the decoder the brain
// runs on every batch an agent sends: it must never panic, and whatever it
// accepts must survive a re-encode unchanged.
func FuzzUnmarshalKVEventBatch(f *testing.F) {
	seed, err := proto.Marshal(sampleBatch())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, wire []byte) {
		var b stratav1.KVEventBatch
		if err := proto.Unmarshal(wire, &b); err != nil {
			return
		}
		again, err := proto.Marshal(&b)
		if err != nil {
			t.Fatalf("re-Marshal of an accepted batch: %v", err)
		}
		var b2 stratav1.KVEventBatch
		if err := proto.Unmarshal(again, &b2); err != nil {
			t.Fatalf("Unmarshal of re-Marshaled batch: %v", err)
		}
		if !proto.Equal(&b, &b2) {
			t.Fatalf("re-encode changed the batch:\n%v\n%v", &b, &b2)
		}
	})
}

// BenchmarkKVEventBatchRoundTrip prices a typical agent→brain batch: 32
// stored runs of 8 blocks, encoded and decoded once.
func BenchmarkKVEventBatchRoundTrip(b *testing.B) {
	batch := &stratav1.KVEventBatch{WorkerId: "node-a/gpu0/vllm-8000", Seq: 1, UnixNanos: 1}
	for i := range 32 {
		hs := make([]uint64, 8)
		for j := range hs {
			hs[j] = uint64(i*8+j) * 0x9e3779b97f4a7c15
		}
		batch.Events = append(batch.Events, &stratav1.KVEvent{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{
			SeqHashes: hs, ParentSeqHash: hs[0] - 1, HasParent: i > 0, Medium: stratav1.Medium_MEDIUM_GPU, BlockSize: 16,
		}}})
	}
	wire, err := proto.Marshal(batch)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		wire, err := proto.Marshal(batch)
		if err != nil {
			b.Fatal(err)
		}
		var out stratav1.KVEventBatch
		if err := proto.Unmarshal(wire, &out); err != nil {
			b.Fatal(err)
		}
	}
}
