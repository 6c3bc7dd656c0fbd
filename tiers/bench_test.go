package tiers_test

import (
	"context"
	"testing"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/disk"
	"github.com/strata-llm/strata/tiers/memory"
	"github.com/strata-llm/strata/tiers/storetest"
)

// BenchmarkHierarchy runs the KVBM's paths with 2 MiB blocks over a CPU
// tier of 16 blocks and a disk tier of 64:
//
//	offload      Put into a full CPU tier: evict the LRU block, drop it
//	             (seen once) — the steady state of a busy engine
//	offload-spill the same with the filter off: each victim is written to disk
//	onboard-cpu  Get served by the CPU tier (no copy: ns/op only)
//	onboard-disk Get served by the disk tier, promoted to the CPU tier
//	             (which spills its LRU block to disk to make room)
func BenchmarkHierarchy(b *testing.B) {
	const cpuBlocks, diskBlocks = 16, 64
	setup := func(b *testing.B, spillMin int) *tiers.Hierarchy {
		cpu, err := memory.New(cpuBlocks * storetest.BenchBlock)
		if err != nil {
			b.Fatal(err)
		}
		d, err := disk.Open(context.Background(), disk.Options{Dir: b.TempDir(), Capacity: diskBlocks * storetest.BenchBlock})
		if err != nil {
			b.Fatal(err)
		}
		h, err := tiers.NewHierarchy(context.Background(), tiers.Config{
			Local:         []tiers.Tier{{Medium: tiers.CPU, Store: cpu}, {Medium: tiers.Disk, Store: d}},
			SpillMinCount: spillMin, OnEvent: func(tiers.Event) {},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = h.Close(); _ = d.Close(); _ = cpu.Close() })
		return h
	}
	data := storetest.Data(storetest.Key(0), storetest.BenchBlock)
	ctx := context.Background()
	put := func(b *testing.B, h *tiers.Hierarchy, i int) {
		if err := h.Put(ctx, []tiers.Block{{Key: storetest.Key(i), Data: data}}); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name     string
		spillMin int
	}{{"offload", 2}, {"offload-spill", 1}} {
		b.Run(c.name, func(b *testing.B) {
			h := setup(b, c.spillMin)
			for i := range cpuBlocks {
				put(b, h, i)
			}
			b.SetBytes(storetest.BenchBlock)
			i := cpuBlocks
			for b.Loop() {
				put(b, h, i)
				i++
			}
		})
	}
	b.Run("onboard-cpu", func(b *testing.B) {
		h := setup(b, 2)
		for i := range cpuBlocks {
			put(b, h, i)
		}
		i := 0 // no bytes per op: nothing is copied
		for b.Loop() {
			if hits, _ := h.Get(ctx, []tiers.Key{storetest.Key(i % cpuBlocks)}); hits[0].Medium != tiers.CPU {
				b.Fatalf("served by %v", hits[0].Medium)
			}
			i++
		}
	})
	b.Run("onboard-disk", func(b *testing.B) {
		h := setup(b, 1)
		const n = diskBlocks / 2 // all on disk, the last 16 also on CPU
		for i := range n {
			put(b, h, i)
		}
		b.SetBytes(storetest.BenchBlock)
		i := 0
		for b.Loop() {
			// Blocks in order: each was promoted n reads ago and has been
			// evicted from the CPU tier since.
			if hits, _ := h.Get(ctx, []tiers.Key{storetest.Key(i % n)}); hits[0].Medium != tiers.Disk {
				b.Fatalf("block %d served by %v", i%n, hits[0].Medium)
			}
			i++
		}
	})
}
