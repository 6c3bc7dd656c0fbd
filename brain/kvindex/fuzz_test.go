package kvindex

import (
	"testing"

	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// FuzzApply feeds arbitrary bytes, decoded as an agent's batch, to an index
// that already holds blocks: decoding and applying never panic, and Score
// stays answerable and bounded by the query.
func FuzzApply(f *testing.F) {
	for _, b := range []*stratav1.KVEventBatch{
		{WorkerId: "a", Seq: 2, Events: []*stratav1.KVEvent{stored(gpu, 1, 2), removed(cpu, 1), cleared()}},
		{WorkerId: "a", Seq: 9, Snapshot: true, Events: []*stratav1.KVEvent{stored(remote, 5), stored(disk, 1)}},
		{WorkerId: "b", Seq: 1},
	} {
		data, err := proto.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b stratav1.KVEventBatch
		if err := proto.Unmarshal(data, &b); err != nil {
			return
		}
		x := New(Options{MaxBlocksPerModel: 64}, nil)
		x.SyncWorkers(map[string]string{"a": "m", "b": "m"})
		fd := newFeeder(t, x)
		fd.snapshot("a", stored(gpu, 1, 2, 3))
		_, _ = x.Apply(&b)
		q := []uint64{1, 2, 3, 4, 5}
		for _, s := range x.Score("m", q) {
			if s.Gpu+s.Cpu+s.Disk+s.Remote > uint32(len(q)) {
				t.Fatalf("score %v longer than the query", s)
			}
		}
	})
}
