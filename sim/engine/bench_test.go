package engine

import (
	"fmt"
	"testing"

	"github.com/strata-llm/strata/sim/kvevents"
)

// BenchmarkSchedulerStep times one full engine step (schedule + complete)
// of a busy engine: 256 sequences decoding, and every finished one replaced
// at once by a new 256-token prompt, so steps mix decodes with prefills as
// under steady load. One op is one step.
func BenchmarkSchedulerStep(b *testing.B) {
	e := testEngine(b, func(c *Config) {
		c.NumGPUBlocks, c.BlockSize = 16384, 16
		c.MaxNumSeqs, c.MaxNumBatchedTokens, c.MaxModelLen = 256, 8192, 4096
	})
	next := 0
	refill := func() {
		e.runCommands()
		for range 256 - len(e.byID) {
			add(b, e, fmt.Sprint(next), prompt(256, uint32(next)), 64+next%128)
			next++
		}
	}
	refill()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		refill()
		e.step()
	}
	b.ReportMetric(float64(next)/float64(b.N), "admitted/step")
}

// BenchmarkBlockPoolCycle is the block manager's hot path for one request:
// look up a 32-block prefix, take the hits, allocate 8 more blocks (evicting
// cached ones), cache them, and release everything.
func BenchmarkBlockPoolCycle(b *testing.B) {
	const bs = 16
	p := newBlockPool(4096, bs)
	tokens := prompt(40*bs, 7)
	var hashes []kvevents.BlockHash
	var root kvevents.BlockHash
	for i := 0; (i+1)*bs <= len(tokens); i++ {
		parent := root
		if i > 0 {
			parent = hashes[i-1]
		}
		hashes = append(hashes, hashBlock(parent, tokens[i*bs:(i+1)*bs]))
	}
	warm := p.allocate(32)
	p.cacheFull(warm, hashes, nil, tokens, 0, 32)
	p.release(warm)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		hits := p.lookup(hashes[:32])
		p.touch(hits)
		blocks := append(hits, p.allocate(8)...)
		p.cacheFull(blocks, hashes, nil, tokens, 32, 40)
		p.release(blocks)
		p.takeEvents()
	}
}

// BenchmarkHashBlock prices hashing one 16-token block.
func BenchmarkHashBlock(b *testing.B) {
	tokens := prompt(16, 1)
	var parent kvevents.BlockHash
	for b.Loop() {
		parent = hashBlock(parent, tokens)
	}
}
