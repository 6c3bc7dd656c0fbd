package kvbm_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/strata-llm/strata/agent/kvbm"
	"github.com/strata-llm/strata/agent/kvbm/client"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/storetest"
)

// BenchmarkKVBM moves batches of 2 MiB blocks through the block API (gRPC
// on the Unix socket, one stream per batch) and, in turns in the same loop
// (storetest.Versus), through the baseline named after the slash:
//
//	put/inproc   PutKVBlocks of 8 new blocks vs Hierarchy.Put of 8 new
//	             blocks in process (a full CPU tier: each put evicts)
//	get/inproc   GetKVBlocks of 8 CPU-tier blocks vs Hierarchy.Get in
//	             process plus one copy of each block (the least an onboard
//	             does: the engine's buffer is not the tier's)
//	socket/raw   the put's bytes written through a plain Unix socket and
//	             read into a buffer: the transport's own ceiling
func BenchmarkKVBM(b *testing.B) {
	const batch, size = 8, storetest.BenchBlock
	const cpuBlocks = 64
	dir := b.TempDir()
	ws := newWorkers(map[string]string{"w1": model})
	srv, err := kvbm.New(context.Background(), kvbm.Config{Dir: filepath.Join(dir, "kvbm"), Tiers: kvbm.TierConfig{CPUBytes: cpuBlocks * size}, Workers: ws})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	b.Cleanup(func() { _ = srv.Close() })
	c, err := client.Dial(srv.SocketPath())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	s, err := c.Open(ctx, &stratav1.OpenKVScopeRequest{WorkerId: "w1", Model: model, BlockSize: 16, BlockBytes: size})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Hierarchy()
	data := storetest.Data(tiers.Key{}, size)
	key := func(i int) tiers.Key { return tiers.Key{Scope: tiers.Scope(s.ID()), Hash: uint64(i)} }

	b.Run("put", func(b *testing.B) {
		next := 0
		newBlocks := func() ([]client.Block, []tiers.Block) {
			cb, tb := make([]client.Block, batch), make([]tiers.Block, batch)
			for j := range batch {
				next++
				cb[j] = client.Block{Hash: key(next).Hash, Data: data}
				tb[j] = tiers.Block{Key: key(next), Data: data}
			}
			return cb, tb
		}
		storetest.Versus(b, batch*size, "inproc", func(int) {
			cb, _ := newBlocks()
			if res, err := s.Put(ctx, cb); err != nil || res.Stored != batch {
				b.Fatal(err, res)
			}
		}, func(int) {
			_, tb := newBlocks()
			if err := h.Put(ctx, tb); err != nil {
				b.Fatal(err)
			}
		})
	})

	b.Run("get", func(b *testing.B) {
		hashes := make([]uint64, batch)
		keys := make([]tiers.Key, batch)
		put := make([]tiers.Block, batch)
		for j := range batch {
			keys[j] = tiers.Key{Scope: tiers.Scope(s.ID()), Hash: uint64(1<<40 + j)}
			hashes[j], put[j] = keys[j].Hash, tiers.Block{Key: keys[j], Data: data}
		}
		if err := h.Put(ctx, put); err != nil {
			b.Fatal(err)
		}
		dst := make([][]byte, batch)
		for j := range dst {
			dst[j] = make([]byte, size)
		}
		storetest.Versus(b, batch*size, "inproc", func(int) {
			n := 0
			err := s.Get(ctx, hashes, true, func(g client.Got) error {
				if len(g.Data) == size {
					n++
				}
				return nil
			})
			if err != nil || n != batch {
				b.Fatal(err, n)
			}
		}, func(int) {
			hits, err := h.Get(ctx, keys)
			if err != nil {
				b.Fatal(err)
			}
			for j, hit := range hits {
				if copy(dst[j], hit.Data) != size {
					b.Fatal("miss")
				}
			}
		})
	})

	b.Run("socket", func(b *testing.B) {
		ln, err := net.Listen("unix", filepath.Join(dir, "raw.sock"))
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = ln.Close() }()
		accepted := make(chan net.Conn, 1)
		go func() {
			conn, err := ln.Accept()
			if err == nil {
				accepted <- conn
			}
		}()
		w, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = w.Close() }()
		r := <-accepted
		defer func() { _ = r.Close() }()
		buf := make([]byte, batch*size)
		// The gRPC API against the plain socket: each round a put of the
		// batch, and the same bytes written and read back whole.
		next := 1 << 30
		storetest.Versus(b, batch*size, "raw", func(int) {
			cb := make([]client.Block, batch)
			for j := range cb {
				next++
				cb[j] = client.Block{Hash: uint64(next), Data: data}
			}
			if res, err := s.Put(ctx, cb); err != nil || res.Stored != batch {
				b.Fatal(err, res)
			}
		}, func(int) {
			done := make(chan error, 1)
			go func() { _, err := io.ReadFull(r, buf); done <- err }()
			for range batch {
				if _, err := w.Write(data); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	})
}
