package memory

import (
	"context"
	"testing"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/storetest"
)

// BenchmarkMemory puts 2 MiB blocks (one copy each) and, in turns, copies
// the same bytes into a fresh buffer, the least a put can do; and gets them
// (no copy: the read is a map lookup).
func BenchmarkMemory(b *testing.B) {
	const keys = 64
	s, err := New(2 * keys * storetest.BenchBlock)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close() //nolint:errcheck // bench
	ctx := context.Background()
	blocks := make([]tiers.Block, keys)
	for i := range blocks {
		blocks[i] = storetest.Block(i, storetest.BenchBlock)
	}
	b.Run("put", func(b *testing.B) {
		var sink []byte
		storetest.Versus(b, storetest.BenchBlock, "copy", func(i int) {
			if err := s.Put(ctx, []tiers.Block{blocks[i%keys]}); err != nil {
				b.Fatal(err)
			}
		}, func(i int) {
			sink = append(make([]byte, 0, storetest.BenchBlock), blocks[i%keys].Data...)
		})
		_ = sink
	})
	b.Run("get", func(b *testing.B) {
		if err := s.Put(ctx, blocks); err != nil {
			b.Fatal(err)
		}
		i := 0 // no bytes per op: nothing is copied
		for b.Loop() {
			if r := s.Get(ctx, []tiers.Key{blocks[i%keys].Key}); r[0].Err != nil {
				b.Fatal(r[0].Err)
			}
			i++
		}
	})
}
