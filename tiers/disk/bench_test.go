package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/storetest"
)

// benchKeys is how many distinct blocks the benchmarks cycle through
// (256 MiB at 2 MiB a block: written over and over, never over capacity).
const benchKeys = 128

func benchSetup(b *testing.B, sync bool) (*Store, string, []tiers.Block) {
	b.Helper()
	dir := b.TempDir()
	s, err := Open(context.Background(), Options{Dir: filepath.Join(dir, "tier"), Capacity: 2 * benchKeys * storetest.BenchBlock, Sync: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	plain := filepath.Join(dir, "plain")
	if err := os.Mkdir(plain, 0o700); err != nil {
		b.Fatal(err)
	}
	blocks := make([]tiers.Block, benchKeys)
	for i := range blocks {
		blocks[i] = storetest.Block(i, storetest.BenchBlock)
	}
	return s, plain, blocks
}

// writeFile is the baseline: the same bytes written to a new file with
// plain os.File calls (create, write, close; fsync when sync), as dd would.
func writeFile(b *testing.B, path string, data []byte, sync bool) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		b.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWrite puts 2 MiB blocks into the disk tier and, in turns, writes
// the same bytes with os.File to the same disk, without and with fsync.
func BenchmarkWrite(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", sync), func(b *testing.B) {
			s, plain, blocks := benchSetup(b, sync)
			tier, file := storetest.NewTimer("tier"), storetest.NewTimer("osfile")
			ctx := context.Background()
			i := 0
			for b.Loop() {
				// Both write a new file each round (rewriting one in place
				// costs ext4 a flush) and, untimed, drop the one written
				// benchKeys rounds ago.
				blk := tiers.Block{Key: storetest.Key(i), Data: blocks[i%benchKeys].Data}
				if i >= benchKeys {
					if err := os.Remove(filepath.Join(plain, strconv.Itoa(i-benchKeys))); err != nil {
						b.Fatal(err)
					}
					if err := s.Delete(ctx, []tiers.Key{storetest.Key(i - benchKeys)}); err != nil {
						b.Fatal(err)
					}
				}
				storetest.InTurns(i, func() {
					file.Time(len(blk.Data), func() { writeFile(b, filepath.Join(plain, strconv.Itoa(i)), blk.Data, sync) })
				}, func() {
					tier.Time(len(blk.Data), func() {
						if err := s.Put(ctx, []tiers.Block{blk}); err != nil {
							b.Fatal(err)
						}
					})
				})
				i++
			}
			storetest.Compare(b, tier, file)
		})
	}
}

// BenchmarkRead gets 2 MiB blocks (verifying each checksum) and, in turns,
// reads the same bytes with os.ReadFile; both from the page cache, where
// the tier's own work weighs most.
func BenchmarkRead(b *testing.B) {
	s, plain, blocks := benchSetup(b, false)
	ctx := context.Background()
	for _, blk := range blocks {
		writeFile(b, filepath.Join(plain, blk.Key.String()), blk.Data, false)
	}
	if err := s.Put(ctx, blocks); err != nil {
		b.Fatal(err)
	}
	tier, file := storetest.NewTimer("tier"), storetest.NewTimer("osfile")
	i := 0
	for b.Loop() {
		k := blocks[i%benchKeys].Key
		storetest.InTurns(i, func() {
			file.Time(storetest.BenchBlock, func() {
				if _, err := os.ReadFile(filepath.Join(plain, k.String())); err != nil {
					b.Fatal(err)
				}
			})
		}, func() {
			tier.Time(storetest.BenchBlock, func() {
				if r := s.Get(ctx, []tiers.Key{k}); r[0].Err != nil {
					b.Fatal(r[0].Err)
				}
			})
		})
		i++
	}
	storetest.Compare(b, tier, file)
}
