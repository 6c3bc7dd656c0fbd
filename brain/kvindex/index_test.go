package kvindex

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

func stored(medium stratav1.Medium, hashes ...uint64) *stratav1.KVEvent {
	return &stratav1.KVEvent{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{SeqHashes: hashes, Medium: medium, BlockSize: 16}}}
}

func removed(medium stratav1.Medium, hashes ...uint64) *stratav1.KVEvent {
	return &stratav1.KVEvent{Event: &stratav1.KVEvent_Removed{Removed: &stratav1.BlockRemoved{SeqHashes: hashes, Medium: medium}}}
}

func cleared() *stratav1.KVEvent {
	return &stratav1.KVEvent{Event: &stratav1.KVEvent_Cleared{Cleared: &stratav1.AllBlocksCleared{}}}
}

const (
	gpu    = stratav1.Medium_MEDIUM_GPU
	cpu    = stratav1.Medium_MEDIUM_CPU
	disk   = stratav1.Medium_MEDIUM_DISK
	remote = stratav1.Medium_MEDIUM_REMOTE
)

// feeder sends batches with correct sequence numbers.
type feeder struct {
	t   testing.TB
	x   *Index
	seq map[string]uint64
}

func newFeeder(t testing.TB, x *Index) *feeder { return &feeder{t: t, x: x, seq: map[string]uint64{}} }

func (f *feeder) snapshot(worker string, events ...*stratav1.KVEvent) {
	f.t.Helper()
	f.seq[worker]++
	if _, err := f.x.Apply(&stratav1.KVEventBatch{WorkerId: worker, Seq: f.seq[worker], Snapshot: true, Events: events}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *feeder) send(worker string, events ...*stratav1.KVEvent) bool {
	f.t.Helper()
	f.seq[worker]++
	need, err := f.x.Apply(&stratav1.KVEventBatch{WorkerId: worker, Seq: f.seq[worker], Events: events})
	if err != nil {
		f.t.Fatal(err)
	}
	return need
}

func scores(x *Index, model string, hashes ...uint64) map[string][4]uint32 {
	out := map[string][4]uint32{}
	for _, s := range x.Score(model, hashes) {
		out[s.WorkerId] = [4]uint32{s.Gpu, s.Cpu, s.Disk, s.Remote}
	}
	return out
}

func TestScoreTiersAndPrefix(t *testing.T) {
	x := New(Options{}, nil)
	x.SyncWorkers(map[string]string{"a": "m", "b": "m", "c": "m", "other": "m2"})
	f := newFeeder(t, x)
	f.snapshot("a", stored(gpu, 1, 2, 3), stored(cpu, 4))
	f.snapshot("b", stored(gpu, 1), stored(disk, 2), stored(cpu, 1)) // block 1 on GPU and CPU: counts as GPU
	f.snapshot("c")
	f.snapshot("other", stored(gpu, 1, 2, 3, 4, 5))

	tests := []struct {
		name   string
		hashes []uint64
		want   map[string][4]uint32
	}{
		{"full prefix on a", []uint64{1, 2, 3, 4, 9}, map[string][4]uint32{"a": {3, 1, 0, 0}, "b": {1, 0, 1, 0}}},
		{"first block unknown", []uint64{9, 1, 2}, map[string][4]uint32{}},
		{"prefix stops at a gap", []uint64{1, 3}, map[string][4]uint32{"a": {2, 0, 0, 0}, "b": {1, 0, 0, 0}}},
		{"other model not mixed in", []uint64{5}, map[string][4]uint32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scores(x, "m", tt.hashes...); !equalScores(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}

	// The remote tier continues every worker's prefix, even one with no
	// blocks at all.
	f.send("c", stored(remote, 3, 4, 5))
	got := scores(x, "m", 1, 2, 3, 4, 5, 6)
	want := map[string][4]uint32{"a": {3, 1, 0, 1}, "b": {1, 0, 1, 3}}
	if !equalScores(got, want) {
		t.Fatalf("with remote: got %v, want %v", got, want)
	}
	got = scores(x, "m", 3, 4)
	want = map[string][4]uint32{"a": {1, 1, 0, 0}, "b": {0, 0, 0, 2}, "c": {0, 0, 0, 2}}
	if !equalScores(got, want) {
		t.Fatalf("remote first block: got %v, want %v", got, want)
	}
}

func equalScores(a, b map[string][4]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestSequenceGapsAndSnapshots(t *testing.T) {
	x := New(Options{}, nil)
	x.SyncWorkers(map[string]string{"a": "m"})
	f := newFeeder(t, x)
	// Events before the first snapshot are refused with one request.
	if !f.send("a", stored(gpu, 1)) {
		t.Fatal("first batch without a snapshot: snapshot not requested")
	}
	if f.send("a", stored(gpu, 2)) {
		t.Fatal("snapshot requested twice for one gap")
	}
	f.snapshot("a", stored(gpu, 1))
	f.send("a", stored(gpu, 2))
	if got := scores(x, "m", 1, 2); got["a"] != [4]uint32{2, 0, 0, 0} {
		t.Fatalf("after snapshot: %v", got)
	}
	f.seq["a"]++ // a lost batch
	if !f.send("a", stored(gpu, 3)) {
		t.Fatal("gap not detected")
	}
	if got := scores(x, "m", 1, 2, 3); got["a"] != [4]uint32{2, 0, 0, 0} {
		t.Fatalf("events after a gap applied: %v", got)
	}
	// The snapshot replaces everything the worker had.
	f.snapshot("a", stored(cpu, 7))
	if got := scores(x, "m", 1); len(got) != 0 {
		t.Fatalf("old blocks survived the snapshot: %v", got)
	}
	if _, err := x.Apply(&stratav1.KVEventBatch{WorkerId: "ghost", Seq: 1}); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("unknown worker: %v", err)
	}
	stats, _ := x.WorkerStats()
	if len(stats) != 1 || stats[0].CPU != 1 || stats[0].GPU != 0 || stats[0].AwaitingResync {
		t.Fatalf("stats = %+v", stats)
	}
}

// model is the brute-force reference: per worker, hash → tier bits.
type refModel struct {
	workers map[string]string // id → model
	blocks  map[string]map[uint64]uint8
	remote  map[string]map[uint64]bool // model → hashes
}

func (r *refModel) score(model string, hashes []uint64) map[string][4]uint32 {
	out := map[string][4]uint32{}
	for w, m := range r.workers {
		if m != model {
			continue
		}
		var c [4]uint32
		for _, h := range hashes {
			if mask := r.blocks[w][h]; mask != 0 {
				c[bits.TrailingZeros8(mask)]++
			} else if r.remote[model][h] {
				c[3]++
			} else {
				break
			}
		}
		if c != [4]uint32{} {
			out[w] = c
		}
	}
	return out
}

// TestPropertyAgainstBruteForce applies random interleavings of stores,
// removes, clears, worker removals and snapshots to the index and to a
// brute-force model, and compares every Score.
func TestPropertyAgainstBruteForce(t *testing.T) {
	media := []stratav1.Medium{gpu, cpu, disk, remote}
	bit := map[stratav1.Medium]uint8{gpu: tierGPU, cpu: tierCPU, disk: tierDisk}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		x := New(Options{}, nil)
		f := newFeeder(t, x)
		ref := &refModel{workers: map[string]string{}, blocks: map[string]map[uint64]uint8{}, remote: map[string]map[uint64]bool{}}
		sync := func() {
			x.SyncWorkers(ref.workers)
			for w := range ref.blocks {
				if _, ok := ref.workers[w]; !ok {
					delete(ref.blocks, w)
				}
			}
		}
		for i := range 6 {
			ref.workers[fmt.Sprint("w", i)] = fmt.Sprint("m", i%2)
		}
		sync()
		for w := range ref.workers {
			f.snapshot(w)
			ref.blocks[w] = map[uint64]uint8{}
		}
		randHashes := func() []uint64 {
			n := 1 + rng.IntN(6)
			out := make([]uint64, n)
			for i := range out {
				out[i] = uint64(rng.IntN(24))
			}
			return out
		}
		var trace []string
		workerIDs := func() []string { return slices.Sorted(mapsKeys(ref.workers)) }
		for range 200 {
			ids := workerIDs()
			if len(ids) == 0 {
				break
			}
			w := ids[rng.IntN(len(ids))]
			model := ref.workers[w]
			med := media[rng.IntN(len(media))]
			hs := randHashes()
			op := rng.IntN(20)
			trace = append(trace, fmt.Sprintf("op%d %s %v %v", op, w, med, hs))
			switch {
			case op < 9:
				ev := stored(med, hs...)
				if rng.IntN(2) == 0 { // a run continuing a chain: links, never semantics
					ev.GetStored().HasParent, ev.GetStored().ParentSeqHash = true, uint64(rng.IntN(24))
				}
				f.send(w, ev)
				for _, h := range hs {
					if med == remote {
						if ref.remote[model] == nil {
							ref.remote[model] = map[uint64]bool{}
						}
						ref.remote[model][h] = true
					} else {
						ref.blocks[w][h] |= bit[med]
					}
				}
			case op < 15:
				f.send(w, removed(med, hs...))
				for _, h := range hs {
					if med == remote {
						delete(ref.remote[model], h)
					} else if ref.blocks[w][h] &^= bit[med]; ref.blocks[w][h] == 0 {
						delete(ref.blocks[w], h)
					}
				}
			case op < 16:
				f.send(w, cleared())
				ref.blocks[w] = map[uint64]uint8{}
			case op < 17:
				delete(ref.workers, w)
				sync()
			case op < 18:
				id := fmt.Sprint("n", rng.IntN(1000))
				if _, ok := ref.workers[id]; !ok {
					ref.workers[id] = fmt.Sprint("m", rng.IntN(2))
					sync()
					f.snapshot(id)
					ref.blocks[id] = map[uint64]uint8{}
				}
			default:
				evs := []*stratav1.KVEvent{stored(gpu, hs...)}
				f.snapshot(w, evs...)
				ref.blocks[w] = map[uint64]uint8{}
				for _, h := range hs {
					ref.blocks[w][h] |= tierGPU
				}
			}
			if err := sameState(x, ref); err != nil {
				t.Fatalf("seed %d: after %s: %v", seed, trace[len(trace)-1], err)
			}
			for _, m := range []string{"m0", "m1"} {
				q := randHashes()
				if got, want := scores(x, m, q...), ref.score(m, q); !equalScores(got, want) {
					t.Fatalf("seed %d: Score(%s, %v) = %v, brute force %v\nops:\n%s", seed, m, q, got, want, strings.Join(trace[max(0, len(trace)-15):], "\n"))
				}
			}
		}
	}
}

// sameState compares every (worker, block) mask of the index with the model.
func sameState(x *Index, ref *refModel) error {
	for w, blocks := range ref.blocks {
		x.mu.RLock()
		ws := x.byID[w]
		x.mu.RUnlock()
		m := x.model(ws.model)
		for h, mask := range blocks {
			var hs holders
			if i := m.index[h]; i != 0 {
				hs = m.holdersAt(i - 1)
			}
			if got := hs.maskOf(ws.num); got != mask {
				return fmt.Errorf("worker %s block %d: mask %b, want %b (holders %+v)", w, h, got, mask, hs)
			}
		}
	}
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestEvictionBoundsMemory(t *testing.T) {
	x := New(Options{MaxBlocksPerModel: 100}, nil)
	x.SyncWorkers(map[string]string{"a": "m"})
	f := newFeeder(t, x)
	f.snapshot("a")
	for i := range uint64(1000) {
		f.send("a", stored(gpu, i), stored(remote, 1e6+i))
	}
	entries, blocks := x.Size()
	if blocks > 200 || entries > 200 {
		t.Fatalf("size %d entries, %d blocks over the cap", entries, blocks)
	}
	// The most recent blocks survive.
	if got := scores(x, "m", 999); got["a"] != [4]uint32{1, 0, 0, 0} {
		t.Fatalf("newest block evicted: %v", got)
	}
	stats, _ := x.WorkerStats()
	if stats[0].GPU != len(x.model("m").index) {
		t.Fatalf("per-worker count %d != blocks %d after eviction", stats[0].GPU, len(x.model("m").index))
	}
}

// TestEvictionKeepsWhatScoresMatch: under churn at the cap, a block that
// queries keep matching (a shared system prompt, stored once, long ago)
// stays indexed; the same block unqueried is evicted like any old one.
func TestEvictionKeepsWhatScoresMatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		queried bool
	}{{"queried", true}, {"never queried", false}} {
		t.Run(tc.name, func(t *testing.T) {
			x := New(Options{MaxBlocksPerModel: 100}, nil)
			x.SyncWorkers(map[string]string{"a": "m"})
			f := newFeeder(t, x)
			f.snapshot("a", stored(gpu, 1, 2))
			for i := range uint64(2000) {
				f.send("a", stored(gpu, 1000+i))
				if tc.queried {
					if got := scores(x, "m", 1, 2); got["a"] != [4]uint32{2, 0, 0, 0} {
						t.Fatalf("after %d stores the prompt scores %v", i, got)
					}
				}
			}
			_, present := x.model("m").index[1]
			if present != tc.queried {
				t.Fatalf("prompt indexed after churn: %v, want %v", present, tc.queried)
			}
		})
	}
}

// TestConcurrentScoreAndApply runs under -race: Scores while batches apply
// and workers come and go.
func TestConcurrentScoreAndApply(t *testing.T) {
	x := New(Options{}, nil)
	workers := map[string]string{}
	for i := range 8 {
		workers[fmt.Sprint("w", i)] = "m"
	}
	x.SyncWorkers(workers)
	var writers, readers sync.WaitGroup
	stop := make(chan struct{})
	for i := range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			f := newFeeder(t, x)
			w := fmt.Sprint("w", i)
			f.snapshot(w)
			for j := uint64(0); ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				f.send(w, stored(gpu, j%64, (j+1)%64), removed(gpu, (j+7)%64))
			}
		}()
	}
	writers.Add(1)
	go func() {
		defer writers.Done()
		for {
			select {
			case <-stop:
				return
			default:
				x.SyncWorkers(workers) // no change: must not disturb
			}
		}
	}()
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			q := []uint64{0, 1, 2, 3, 4, 5, 6, 7}
			for range 20000 {
				for _, s := range x.Score("m", q) {
					if s.Gpu > uint32(len(q)) {
						t.Errorf("impossible score %v", s)
						return
					}
				}
			}
		}()
	}
	readers.Wait()
	close(stop)
	writers.Wait()
}

func TestRejectsBadEvents(t *testing.T) {
	x := New(Options{}, nil)
	x.SyncWorkers(map[string]string{"a": "m"})
	f := newFeeder(t, x)
	f.snapshot("a")
	f.seq["a"]++
	_, err := x.Apply(&stratav1.KVEventBatch{WorkerId: "a", Seq: f.seq["a"], Events: []*stratav1.KVEvent{
		{}, stored(stratav1.Medium_MEDIUM_UNSPECIFIED, 1), stored(gpu, 2),
	}})
	if !errors.Is(err, ErrBadEvent) {
		t.Fatalf("err = %v, want ErrBadEvent", err)
	}
	// The good event of the batch still applies; the bad ones change nothing.
	if got := scores(x, "m", 2); got["a"] != [4]uint32{1, 0, 0, 0} {
		t.Fatalf("good event lost: %v", got)
	}
}
