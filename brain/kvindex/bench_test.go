package kvindex

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

const (
	benchWorkers  = 1000
	benchChainLen = 128
	benchChains   = 8000 // × 128 = 1,024,000 blocks
)

// benchCluster indexes 8,000 distinct 128-block prompt chains over 1,000
// workers, each chain cached by 1 to 3 workers: about 1M blocks and 2M
// (block, worker) entries. It returns the index, the chains, and a builder
// of the naive baseline over the same data (built only when measured, so
// its garbage does not load the collector while the index is measured).
func benchCluster(b *testing.B) (*Index, [][]uint64, func() map[uint64]map[string]struct{}) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := New(Options{MaxBlocksPerModel: 1 << 30}, nil)
	workers := map[string]string{}
	for i := range benchWorkers {
		workers[fmt.Sprintf("w%04d", i)] = "m"
	}
	x.SyncWorkers(workers)
	chains := make([][]uint64, benchChains)
	seq := map[string]uint64{}
	perWorker := map[string][]uint64{}
	for c := range chains {
		chain := make([]uint64, benchChainLen)
		for i := range chain {
			chain[i] = rng.Uint64()
		}
		chains[c] = chain
		for range 1 + rng.IntN(3) {
			w := fmt.Sprintf("w%04d", rng.IntN(benchWorkers))
			perWorker[w] = append(perWorker[w], chain...)
		}
	}
	for w, hs := range perWorker {
		seq[w]++
		if _, err := x.Apply(&stratav1.KVEventBatch{WorkerId: w, Seq: seq[w], Snapshot: true, Events: []*stratav1.KVEvent{stored(gpu, hs...)}}); err != nil {
			b.Fatal(err)
		}
	}
	buildNaive := func() map[uint64]map[string]struct{} {
		naive := map[uint64]map[string]struct{}{}
		for w, hs := range perWorker {
			for _, h := range hs {
				if naive[h] == nil {
					naive[h] = map[string]struct{}{}
				}
				naive[h][w] = struct{}{}
			}
		}
		return naive
	}
	return x, chains, buildNaive
}

// naiveScore is the baseline: map[hash]set[worker], intersecting sets
// of worker ids block by block.
func naiveScore(naive map[uint64]map[string]struct{}, hashes []uint64) map[string]int {
	out := map[string]int{}
	alive := map[string]int{}
	for i, h := range hashes {
		set := naive[h]
		if i == 0 {
			for w := range set {
				alive[w] = 1
			}
			continue
		}
		for w, n := range alive {
			if _, ok := set[w]; ok {
				alive[w] = n + 1
			} else {
				out[w] = n
				delete(alive, w)
			}
		}
		if len(alive) == 0 {
			break
		}
	}
	for w, n := range alive {
		out[w] = n
	}
	return out
}

// BenchmarkScore: a 128-hash query fully cached on its chain's workers,
// against ~1M indexed blocks over 1,000 workers, next to the naive
// baseline on the same data. Reports p50/p99 and the speed-up.
func BenchmarkScore(b *testing.B) {
	x, chains, buildNaive := benchCluster(b)
	rng := rand.New(rand.NewPCG(3, 4))
	measure := func(b *testing.B, f func([]uint64)) []time.Duration {
		lat := make([]time.Duration, 0, 1<<21) // no growth inside the timed loop
		for b.Loop() {
			q := chains[rng.IntN(len(chains))]
			start := time.Now()
			f(q)
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*90/100].Nanoseconds())/1e3, "p90-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
		return lat
	}
	var fast, slow []time.Duration
	b.Run("index", func(b *testing.B) {
		var buf []Match // reused, as the gRPC handler's would be
		fast = measure(b, func(q []uint64) {
			if buf = x.ScoreInto(buf[:0], "m", q); len(buf) == 0 {
				b.Fatal("no match")
			}
		})
	})
	b.Run("naive-baseline", func(b *testing.B) {
		naive := buildNaive()
		b.ResetTimer()
		slow = measure(b, func(q []uint64) {
			if len(naiveScore(naive, q)) == 0 {
				b.Fatal("no match")
			}
		})
	})
	if len(fast) > 0 && len(slow) > 0 {
		b.Logf("p50 speed-up over the naive baseline: %.1fx", float64(slow[len(slow)/2])/float64(fast[len(fast)/2]))
	}
}

// BenchmarkIngest: block events applied per second, one core, in batches
// as agents send them (16 events of 16 blocks, a quarter of them removals,
// over 4M hashes): with the index far under its cap, and at a
// 256k-block cap it stays pinned to, where most stores evict (the churn
// of an index that has filled up), in the same run.
func BenchmarkIngest(b *testing.B) {
	for _, bc := range []struct {
		name string
		cap  int
	}{{"under-cap", 1 << 30}, {"at-cap", 1 << 18}} {
		b.Run(bc.name, func(b *testing.B) {
			x := New(Options{MaxBlocksPerModel: bc.cap}, nil)
			workers := map[string]string{}
			for i := range 64 {
				workers[fmt.Sprint("w", i)] = "m"
			}
			x.SyncWorkers(workers)
			seq := map[string]uint64{}
			for w := range workers {
				seq[w]++
				if _, err := x.Apply(&stratav1.KVEventBatch{WorkerId: w, Seq: seq[w], Snapshot: true}); err != nil {
					b.Fatal(err)
				}
			}
			const perBatch = 256
			rng := rand.New(rand.NewPCG(5, 6))
			// 4,096 batches store ~786k distinct blocks, three times the
			// cap: cycling through them keeps storing blocks evicted since.
			batches := make([]*stratav1.KVEventBatch, 4096)
			for i := range batches {
				var evs []*stratav1.KVEvent
				for range 16 {
					hs := make([]uint64, 16)
					for k := range hs {
						hs[k] = rng.Uint64() % (1 << 22)
					}
					if rng.IntN(4) == 0 {
						evs = append(evs, removed(gpu, hs...))
					} else {
						evs = append(evs, stored(gpu, hs...))
					}
				}
				batches[i] = &stratav1.KVEventBatch{WorkerId: fmt.Sprint("w", i%64), Events: evs}
			}
			apply := func(n int) {
				bt := batches[n%len(batches)]
				seq[bt.WorkerId]++
				bt.Seq = seq[bt.WorkerId]
				if _, err := x.Apply(bt); err != nil {
					b.Fatal(err)
				}
			}
			// Fill to the cap first: the stores measured then evict.
			for n := 0; bc.cap < 1<<30; n++ {
				if testutil.ToFloat64(x.metrics.evictions) > 0 {
					break
				}
				if n == len(batches) {
					b.Fatalf("the batches never fill the %d-block cap", bc.cap)
				}
				apply(n)
			}
			evictions := testutil.ToFloat64(x.metrics.evictions)
			start := time.Now()
			n := 0
			for b.Loop() {
				apply(n)
				n++
			}
			b.ReportMetric(float64(n*perBatch)/time.Since(start).Seconds(), "block-events/s")
			b.ReportMetric((testutil.ToFloat64(x.metrics.evictions)-evictions)/float64(n*perBatch), "evictions/event")
			if _, blocks := x.Size(); blocks > bc.cap {
				b.Fatalf("%d blocks over the %d cap", blocks, bc.cap)
			}
		})
	}
}

// BenchmarkMemory reports heap bytes per (block, worker) entry of the
// benchmark cluster.
func BenchmarkMemory(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		x, _, _ := benchCluster(b)
		runtime.GC()
		runtime.ReadMemStats(&after)
		entries, _ := x.Size()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(entries), "B/entry")
		runtime.KeepAlive(x)
	}
}
