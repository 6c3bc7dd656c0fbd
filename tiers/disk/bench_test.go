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
			ctx := context.Background()
			// Each round, both write a new file (rewriting one in place costs
			// ext4 a flush) and drop the one written benchKeys rounds ago.
			storetest.Versus(b, storetest.BenchBlock, "osfile", func(i int) {
				blk := tiers.Block{Key: storetest.Key(i), Data: blocks[i%benchKeys].Data}
				if err := s.Put(ctx, []tiers.Block{blk}); err != nil {
					b.Fatal(err)
				}
				if i >= benchKeys {
					if err := s.Delete(ctx, []tiers.Key{storetest.Key(i - benchKeys)}); err != nil {
						b.Fatal(err)
					}
				}
			}, func(i int) {
				writeFile(b, filepath.Join(plain, strconv.Itoa(i)), blocks[i%benchKeys].Data, sync)
				if i >= benchKeys {
					if err := os.Remove(filepath.Join(plain, strconv.Itoa(i-benchKeys))); err != nil {
						b.Fatal(err)
					}
				}
			})
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
	storetest.Versus(b, storetest.BenchBlock, "osfile", func(i int) {
		if r := s.Get(ctx, []tiers.Key{blocks[i%benchKeys].Key}); r[0].Err != nil {
			b.Fatal(r[0].Err)
		}
	}, func(i int) {
		if _, err := os.ReadFile(filepath.Join(plain, blocks[i%benchKeys].Key.String())); err != nil {
			b.Fatal(err)
		}
	})
}
