package kvbm_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/strata-llm/strata/agent/kvbm"
	"github.com/strata-llm/strata/agent/kvbm/client"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/azure"
	"github.com/strata-llm/strata/tiers/s3"
	"github.com/strata-llm/strata/tiers/storetest"
)

// workers is the agent's side as a KVBM sees it: the workers it runs, and
// the tier events it is given for each, kept in order for the tests.
type workers struct {
	mu      sync.Mutex
	models  map[string]string
	events  map[string][]*stratav1.KVEvent
	resyncs int
}

func newWorkers(models map[string]string) *workers {
	return &workers{models: models, events: map[string][]*stratav1.KVEvent{}}
}

func (w *workers) ServedModel(id string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.models[id]
	return m, ok
}

func (w *workers) Publish(id string, events []*stratav1.KVEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events[id] = append(w.events[id], events...)
}

func (w *workers) Resync() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resyncs++
}

// held folds a worker's events into its blocks per medium, as the brain's
// index would.
func (w *workers) held(id string) map[stratav1.Medium]map[uint64]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fold(w.events[id])
}

func fold(events []*stratav1.KVEvent) map[stratav1.Medium]map[uint64]bool {
	out := map[stratav1.Medium]map[uint64]bool{}
	for _, e := range events {
		switch ev := e.GetEvent().(type) {
		case *stratav1.KVEvent_Stored:
			m := ev.Stored.GetMedium()
			if out[m] == nil {
				out[m] = map[uint64]bool{}
			}
			for _, h := range ev.Stored.GetSeqHashes() {
				out[m][h] = true
			}
		case *stratav1.KVEvent_Removed:
			for _, h := range ev.Removed.GetSeqHashes() {
				delete(out[ev.Removed.GetMedium()], h)
			}
		}
	}
	return out
}

const model = "tiny"

type fixture struct {
	srv     *kvbm.Server
	workers *workers
	client  *client.Client
}

// start runs a KVBM with a CPU tier of cpuBlocks blocks of size bytes
// (and whatever cb adds) and a client connected to it.
func start(t *testing.T, dir string, cpuBytes int64, cb func(*kvbm.Config)) *fixture {
	t.Helper()
	ws := newWorkers(map[string]string{"w1": model, "w2": model, "w3": "other"})
	cfg := kvbm.Config{Dir: filepath.Join(dir, "kvbm"), Tiers: kvbm.TierConfig{CPUBytes: cpuBytes}, Workers: ws}
	if cb != nil {
		cb(&cfg)
	}
	srv, err := kvbm.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	c, err := client.Dial(srv.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &fixture{srv: srv, workers: ws, client: c}
}

func (f *fixture) open(t *testing.T, worker string, blockBytes uint64) *client.Scope {
	t.Helper()
	s, err := f.client.Open(context.Background(), &stratav1.OpenKVScopeRequest{
		WorkerId: worker, Model: model, BlockSize: 16, Layout: "test", BlockBytes: blockBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func key(s *client.Scope, i int) tiers.Key {
	return tiers.Key{Scope: tiers.Scope(s.ID()), Hash: uint64(i)*0x9e3779b97f4a7c15 + 7}
}

func blocks(s *client.Scope, from, to, size int) []client.Block {
	var out []client.Block
	for i := from; i < to; i++ {
		k := key(s, i)
		out = append(out, client.Block{Hash: k.Hash, Data: storetest.Data(k, size)})
	}
	return out
}

func hashes(bs []client.Block) []uint64 {
	out := make([]uint64, len(bs))
	for i, b := range bs {
		out[i] = b.Hash
	}
	return out
}

func put(t *testing.T, s *client.Scope, bs []client.Block) {
	t.Helper()
	res, err := s.Put(context.Background(), bs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != uint32(len(bs)) || len(res.Errors) > 0 {
		t.Fatalf("put %d blocks: stored %d, errors %v", len(bs), res.Stored, res.Errors)
	}
}

// get reads hashes and returns what came back by index.
func get(t *testing.T, s *client.Scope, hs []uint64, prefix bool) []client.Got {
	t.Helper()
	var out []client.Got
	err := s.Get(context.Background(), hs, prefix, func(g client.Got) error {
		if len(out) > 0 && g.Index <= out[len(out)-1].Index {
			return fmt.Errorf("block %d after block %d", g.Index, out[len(out)-1].Index)
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const kib = 1 << 10

// TestRoundTrip: blocks put come back byte for byte, a block larger than a
// chunk travels in several, lookups and gets answer per block in order,
// and a prefix get stops at the first miss.
func TestRoundTrip(t *testing.T) {
	f := start(t, t.TempDir(), 4<<20, func(c *kvbm.Config) { c.Limits.MaxChunkBytes = 64 * kib })
	s := f.open(t, "w1", 0)
	small := blocks(s, 0, 6, 48*kib)
	large := blocks(s, 6, 7, 200*kib) // four chunks
	put(t, s, append(small, large...))
	all := append(slices.Clone(small), large...)

	missing := key(s, 99).Hash
	ask := []uint64{all[0].Hash, all[1].Hash, missing, all[6].Hash, all[2].Hash}
	res, err := s.Lookup(context.Background(), ask, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	cpu, none := stratav1.Medium_MEDIUM_CPU, stratav1.Medium_MEDIUM_UNSPECIFIED
	if want := []stratav1.Medium{cpu, cpu, none, cpu, cpu}; !slices.Equal(res.Media, want) || res.PrefixBlocks != 2 {
		t.Fatalf("lookup = %v prefix %d, want %v prefix 2", res.Media, res.PrefixBlocks, want)
	}
	res, err = s.Lookup(context.Background(), ask, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Media) != 2 || res.PrefixBlocks != 2 {
		t.Fatalf("prefix lookup = %v prefix %d, want the leading 2", res.Media, res.PrefixBlocks)
	}

	got := get(t, s, ask, false)
	if len(got) != len(ask) {
		t.Fatalf("get answered %d blocks of %d", len(got), len(ask))
	}
	byHash := map[uint64][]byte{}
	for _, b := range all {
		byHash[b.Hash] = b.Data
	}
	for i, g := range got {
		if g.Index != i || g.Hash != ask[i] {
			t.Fatalf("answer %d is block %d (%016x)", i, g.Index, g.Hash)
		}
		if ask[i] == missing {
			if g.Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_NOT_FOUND || g.Data != nil {
				t.Fatalf("missing block: %v with %d bytes", g.Status, len(g.Data))
			}
			continue
		}
		if g.Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_OK || g.Medium != cpu || !bytes.Equal(g.Data, byHash[g.Hash]) {
			t.Fatalf("block %d: %v on %v, %d bytes, equal %v", i, g.Status, g.Medium, len(g.Data), bytes.Equal(g.Data, byHash[g.Hash]))
		}
	}
	if got := get(t, s, ask, true); len(got) != 3 || got[2].Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_NOT_FOUND {
		t.Fatalf("prefix get answered %d blocks, want 2 and the miss", len(got))
	}
	// Putting a block again is harmless: the tiers hold one copy.
	put(t, s, small[:2])
	if st := f.srv.Hierarchy().Stats().Tiers[0]; st.Blocks != 7 {
		t.Fatalf("CPU tier holds %d blocks, want 7", st.Blocks)
	}
}

// TestBatch: a batch of many blocks in one put stream, and a get of all of
// them, spanning several of the server's internal batches.
func TestBatch(t *testing.T) {
	const n, size = 300, 16 * kib
	f := start(t, t.TempDir(), n*size, nil)
	s := f.open(t, "w1", size)
	bs := blocks(s, 0, n, size)
	put(t, s, bs)
	got := get(t, s, hashes(bs), true)
	if len(got) != n {
		t.Fatalf("got %d blocks of %d", len(got), n)
	}
	for i, g := range got {
		if !bytes.Equal(g.Data, bs[i].Data) {
			t.Fatalf("block %d differs", i)
		}
	}
	res, err := s.Lookup(context.Background(), hashes(bs), true, 0)
	if err != nil || res.PrefixBlocks != n {
		t.Fatalf("lookup: %v prefix %d", err, res.GetPrefixBlocks())
	}
}

// TestMissingAndErrors: every call checks its input and says what is
// wrong, and a per-block problem fails that block only.
func TestMissingAndErrors(t *testing.T) {
	f := start(t, t.TempDir(), 4<<20, func(c *kvbm.Config) { c.Limits.MaxBatchBlocks = 8 })
	s := f.open(t, "w1", 32*kib)
	ctx := context.Background()
	conn, err := grpc.NewClient("unix://"+f.srv.SocketPath(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	api := stratav1.NewKVBlockServiceClient(conn)

	open := func(mut func(r *stratav1.OpenKVScopeRequest)) error {
		r := &stratav1.OpenKVScopeRequest{WorkerId: "w1", Model: model, BlockSize: 16}
		mut(r)
		_, err := api.OpenKVScope(ctx, r)
		return err
	}
	putRaw := func(msgs ...*stratav1.PutKVBlocksRequest) (*stratav1.PutKVBlocksResponse, error) {
		stream, err := api.PutKVBlocks(ctx)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if err := stream.Send(m); err != nil {
				break // the server's answer says why
			}
		}
		return stream.CloseAndRecv()
	}
	id := s.ID()
	chunk := func(hash, size, offset uint64, n int) *stratav1.PutKVBlocksRequest {
		return &stratav1.PutKVBlocksRequest{Scope: id, SeqHash: hash, Size: size, Offset: offset, Data: make([]byte, n)}
	}
	tooMany := make([]uint64, 9)
	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"open without model", func() error { return open(func(r *stratav1.OpenKVScopeRequest) { r.Model = "" }) }, codes.InvalidArgument, "model is required"},
		{"open another model", func() error { return open(func(r *stratav1.OpenKVScopeRequest) { r.Model = "other" }) }, codes.InvalidArgument, `serves "tiny"`},
		{"open unknown worker", func() error { return open(func(r *stratav1.OpenKVScopeRequest) { r.WorkerId = "nope" }) }, codes.Unavailable, "not run by this agent"},
		{"open bad rank", func() error { return open(func(r *stratav1.OpenKVScopeRequest) { r.TpRank, r.TpSize = 2, 2 }) }, codes.InvalidArgument, "tp_rank 2 of tp_size 2"},
		{"open no block size", func() error { return open(func(r *stratav1.OpenKVScopeRequest) { r.BlockSize = 0 }) }, codes.InvalidArgument, "block_size 0"},
		{"open control characters", func() error { return open(func(r *stratav1.OpenKVScopeRequest) { r.Layout = "a\nb" }) }, codes.InvalidArgument, "printable"},
		{"open with other block bytes", func() error {
			return open(func(r *stratav1.OpenKVScopeRequest) { r.Layout, r.BlockBytes = "test", 64*kib })
		}, codes.InvalidArgument, "opened with 32768"},
		{"unknown scope", func() error {
			_, err := api.LookupKVBlocks(ctx, &stratav1.LookupKVBlocksRequest{Scope: 12345, SeqHashes: []uint64{1}})
			return err
		}, codes.FailedPrecondition, "call OpenKVScope again"},
		{"empty batch", func() error {
			_, err := api.LookupKVBlocks(ctx, &stratav1.LookupKVBlocksRequest{Scope: id})
			return err
		}, codes.InvalidArgument, "0 hashes"},
		{"batch too large", func() error {
			_, err := api.PinKVBlocks(ctx, &stratav1.PinKVBlocksRequest{Scope: id, SeqHashes: tooMany, TtlMs: 10})
			return err
		}, codes.InvalidArgument, "max_batch_blocks 8"},
		{"get batch too large", func() error { return s.Get(ctx, tooMany, false, func(client.Got) error { return nil }) }, codes.InvalidArgument, "max_batch_blocks"},
		{"pin too long", func() error {
			_, err := api.PinKVBlocks(ctx, &stratav1.PinKVBlocksRequest{Scope: id, SeqHashes: []uint64{1}, TtlMs: 3600_000})
			return err
		}, codes.InvalidArgument, "exceeds max_pin_ttl_ms"},
		{"put of an unknown scope", func() error {
			_, err := putRaw(&stratav1.PutKVBlocksRequest{Scope: 1, SeqHash: 1, Size: 1, Data: []byte{1}})
			return err
		}, codes.FailedPrecondition, "not open"},
		{"put mixing scopes", func() error {
			_, err := putRaw(chunk(1, 32*kib, 0, 32*kib), &stratav1.PutKVBlocksRequest{Scope: id + 1, SeqHash: 2, Size: 1, Data: []byte{1}})
			return err
		}, codes.InvalidArgument, "one scope per stream"},
		{"put chunk out of order", func() error {
			_, err := putRaw(chunk(1, 32*kib, 0, 16*kib), chunk(1, 32*kib, 20*kib, 12*kib))
			return err
		}, codes.InvalidArgument, "want its chunk at offset 16384"},
		{"put interleaving blocks", func() error {
			_, err := putRaw(chunk(1, 32*kib, 0, 16*kib), chunk(2, 32*kib, 0, 32*kib))
			return err
		}, codes.InvalidArgument, "want its chunk at offset"},
		{"put ends in a block", func() error {
			_, err := putRaw(chunk(1, 32*kib, 0, 16*kib))
			return err
		}, codes.InvalidArgument, "ended after 16384 of its 32768 bytes"},
		{"put chunk beyond size", func() error {
			_, err := putRaw(chunk(1, 10, 0, 11))
			return err
		}, codes.InvalidArgument, "11-byte chunk in a block of 10"},
		{"put empty chunk", func() error {
			_, err := putRaw(chunk(1, 10, 0, 0))
			return err
		}, codes.InvalidArgument, "empty chunk"},
		{"put first chunk not at 0", func() error {
			_, err := putRaw(chunk(1, 32*kib, 8, 8))
			return err
		}, codes.InvalidArgument, "at offset 8, want 0"},
		{"put block too large", func() error {
			_, err := putRaw(chunk(1, tiers.MaxBlockSize+1, 0, 1))
			return err
		}, codes.InvalidArgument, "exceed max_block_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.code, tt.msg)
			}
		})
	}

	// Per block: a block of the wrong size for the scope is refused, the
	// one after it stored.
	res, err := putRaw(chunk(5, 16*kib, 0, 16*kib), chunk(6, 32*kib, 0, 32*kib))
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 1 || len(res.Errors) != 1 || res.Errors[0].SeqHash != 5 || res.Errors[0].Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_INVALID {
		t.Fatalf("put = %v", res)
	}
	// A scope of any size: the same key with other bytes conflicts.
	any, err := f.client.Open(ctx, &stratav1.OpenKVScopeRequest{WorkerId: "w1", Model: model, BlockSize: 16, Layout: "any size"})
	if err != nil {
		t.Fatal(err)
	}
	put(t, any, []client.Block{{Hash: 7, Data: make([]byte, 100)}})
	pr, err := any.Put(ctx, []client.Block{{Hash: 7, Data: make([]byte, 200)}, {Hash: 8, Data: make([]byte, 200)}})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Stored != 1 || len(pr.Errors) != 1 || pr.Errors[0].Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_CONFLICT {
		t.Fatalf("conflicting put = %+v", pr)
	}
	// A block larger than every tier does not fit anywhere.
	pr, err = any.Put(ctx, []client.Block{{Hash: 9, Data: make([]byte, 5<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Stored != 0 || len(pr.Errors) != 1 || pr.Errors[0].Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_OVER_CAPACITY {
		t.Fatalf("oversized put = %+v", pr)
	}
	// Nothing held: a miss, not an error.
	got := get(t, s, []uint64{42, 43}, false)
	if len(got) != 2 || got[0].Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_NOT_FOUND || got[1].Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_NOT_FOUND {
		t.Fatalf("get of missing blocks = %+v", got)
	}
}

// TestStreamIdleTimeout: a put stream that stops sending is cut off.
func TestStreamIdleTimeout(t *testing.T) {
	f := start(t, t.TempDir(), 1<<20, func(c *kvbm.Config) { c.Limits.StreamIdleTimeout = 100 * time.Millisecond })
	s := f.open(t, "w1", 0)
	conn, err := grpc.NewClient("unix://"+f.srv.SocketPath(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	stream, err := stratav1.NewKVBlockServiceClient(conn).PutKVBlocks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&stratav1.PutKVBlocksRequest{Scope: s.ID(), SeqHash: 1, Size: 10, Data: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	// Receiving without closing the send side waits for the server.
	var res stratav1.PutKVBlocksResponse
	err = stream.RecvMsg(&res)
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("err = %v, want the idle timeout", err)
	}
}

// TestPin: pinned blocks survive the eviction that takes the others, for
// their TTL; a lookup can pin too; ttl 0 unpins.
func TestPin(t *testing.T) {
	const size = 64 * kib
	f := start(t, t.TempDir(), 4*size, nil)
	s := f.open(t, "w1", size)
	ctx := context.Background()
	first := blocks(s, 0, 4, size)
	put(t, s, first)
	media, err := s.Pin(ctx, []uint64{first[0].Hash, 12345}, 60_000)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(media, []stratav1.Medium{stratav1.Medium_MEDIUM_CPU, stratav1.Medium_MEDIUM_UNSPECIFIED}) {
		t.Fatalf("pin media = %v", media)
	}
	if _, err := s.Lookup(ctx, []uint64{first[1].Hash}, true, 60_000); err != nil {
		t.Fatal(err)
	}
	put(t, s, blocks(s, 4, 6, size)) // evicts two blocks: not the pinned ones
	res, err := s.Lookup(ctx, hashes(first), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	cpu, none := stratav1.Medium_MEDIUM_CPU, stratav1.Medium_MEDIUM_UNSPECIFIED
	if want := []stratav1.Medium{cpu, cpu, none, none}; !slices.Equal(res.Media, want) {
		t.Fatalf("after eviction: %v, want %v (pinned blocks kept)", res.Media, want)
	}
	if _, err := s.Pin(ctx, []uint64{first[0].Hash, first[1].Hash}, 0); err != nil {
		t.Fatal(err)
	}
	put(t, s, blocks(s, 6, 8, size))
	if res, err = s.Lookup(ctx, hashes(first[:2]), false, 0); err != nil || !slices.Equal(res.Media, []stratav1.Medium{none, none}) {
		t.Fatalf("after unpinning: %v %v, want both evicted", res.GetMedia(), err)
	}
}

// TestConcurrency: many connectors putting, getting and looking up at once,
// on shared and private blocks (run with -race).
func TestConcurrency(t *testing.T) {
	const size = 8 * kib
	f := start(t, t.TempDir(), 64*size, nil)
	s := f.open(t, "w1", size)
	shared := blocks(s, 0, 8, size)
	put(t, s, shared)
	storetest.Concurrently(t, 8, func(g int) error {
		ctx := context.Background()
		mine := blocks(s, 100+10*g, 110+10*g, size)
		for round := range 5 {
			if _, err := s.Put(ctx, mine); err != nil {
				return err
			}
			want := map[uint64][]byte{}
			for _, b := range append(slices.Clone(shared), mine...) {
				want[b.Hash] = b.Data
			}
			err := s.Get(ctx, hashes(append(slices.Clone(shared), mine...)), false, func(got client.Got) error {
				if got.Status == stratav1.KVBlockStatus_KV_BLOCK_STATUS_OK && !bytes.Equal(got.Data, want[got.Hash]) {
					return fmt.Errorf("goroutine %d round %d: block %016x has wrong bytes", g, round, got.Hash)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if _, err := s.Lookup(ctx, hashes(mine), true, 100); err != nil {
				return err
			}
		}
		return nil
	})
	// Whatever was evicted, what the tier says it holds reads back intact.
	got := get(t, s, hashes(shared), false)
	for i, g := range got {
		if g.Status == stratav1.KVBlockStatus_KV_BLOCK_STATUS_OK && !bytes.Equal(g.Data, shared[i].Data) {
			t.Fatalf("shared block %d corrupted", i)
		}
	}
}

// TestTierEvents: tier changes become KV events of every worker that
// opened the block's scope; a worker opening a scope later learns the
// blocks already there; a tensor-parallel rank other than 0 is not
// reported; a forgotten worker hears nothing more.
func TestTierEvents(t *testing.T) {
	const size = 16 * kib
	dir := t.TempDir()
	f := start(t, dir, 4*size, func(c *kvbm.Config) {
		c.Tiers.DiskDir, c.Tiers.DiskBytes, c.Tiers.SpillMinCount = filepath.Join(dir, "disk"), 8*size, 1
	})
	s1 := f.open(t, "w1", size)
	bs := blocks(s1, 0, 6, size) // two spill to disk
	put(t, s1, bs)
	wantHeld := func(worker string, cpu, disk int) {
		t.Helper()
		testutil.WaitForResult(t, 10*time.Second, func() error {
			h := f.workers.held(worker)
			if len(h[stratav1.Medium_MEDIUM_CPU]) != cpu || len(h[stratav1.Medium_MEDIUM_DISK]) != disk {
				return fmt.Errorf("%s holds %d CPU and %d disk blocks, want %d and %d", worker, len(h[stratav1.Medium_MEDIUM_CPU]), len(h[stratav1.Medium_MEDIUM_DISK]), cpu, disk)
			}
			return nil
		})
	}
	wantHeld("w1", 4, 2)
	for _, e := range f.srv.TierBlocks("w1") {
		st := e.GetStored()
		if st == nil || st.GetBlockSize() != 16 || st.GetHasParent() {
			t.Fatalf("tier block event %v", e)
		}
	}
	if got := fold(f.srv.TierBlocks("w1")); len(got[stratav1.Medium_MEDIUM_CPU]) != 4 || len(got[stratav1.Medium_MEDIUM_DISK]) != 2 {
		t.Fatalf("TierBlocks = %v", got)
	}

	// A second worker of the model: told at once what is there.
	f.open(t, "w2", size)
	wantHeld("w2", 4, 2)
	// Rank 1 of a tensor-parallel layout: its own scope, not reported.
	r1, err := f.client.Open(context.Background(), &stratav1.OpenKVScopeRequest{WorkerId: "w1", Model: model, BlockSize: 16, Layout: "test", TpRank: 1, TpSize: 2, BlockBytes: size})
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID() == s1.ID() {
		t.Fatal("rank 1 shares rank 0's scope")
	}
	put(t, r1, blocks(r1, 0, 1, size))

	f.srv.ForgetWorker("w2")
	put(t, s1, blocks(s1, 6, 7, size))
	wantHeld("w1", 3, 4) // rank 1's block took a CPU slot too
	if h := f.workers.held("w2"); len(h[stratav1.Medium_MEDIUM_CPU])+len(h[stratav1.Medium_MEDIUM_DISK]) != 6 {
		t.Fatalf("forgotten worker still hears: %v", h)
	}
	for _, e := range f.srv.TierBlocks("w1") {
		for _, h := range e.GetStored().GetSeqHashes() {
			if h == key(r1, 0).Hash && e.GetStored().GetMedium() == stratav1.Medium_MEDIUM_CPU {
				t.Fatal("rank 1's block is reported")
			}
		}
	}
}

// TestSocket: the socket is the agent user's only, a live KVBM's socket is
// not taken over, a stale one is, and a path too long for a socket is a
// clear error.
func TestSocket(t *testing.T) {
	dir := t.TempDir()
	f := start(t, dir, 1<<20, nil)
	for path, want := range map[string]os.FileMode{filepath.Dir(f.srv.SocketPath()): 0o700, f.srv.SocketPath(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Fatalf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	_, err := kvbm.New(context.Background(), kvbm.Config{Dir: filepath.Dir(f.srv.SocketPath()), Tiers: kvbm.TierConfig{CPUBytes: 1 << 20}, Workers: newWorkers(nil)})
	if err == nil || !strings.Contains(err.Error(), "another process serves it") {
		t.Fatalf("second KVBM on a live socket: %v", err)
	}

	stale := filepath.Join(t.TempDir(), "kvbm")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(stale, kvbm.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close() // a socket file nobody answers on: a dead agent's
	g := start(t, filepath.Dir(stale), 1<<20, nil)
	if fi, err := os.Stat(stale); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("stale dir: %v %v, want tightened to 0700", fi.Mode(), err)
	}
	g.open(t, "w1", 0)

	long := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	_, err = kvbm.New(context.Background(), kvbm.Config{Dir: long, Tiers: kvbm.TierConfig{CPUBytes: 1 << 20}, Workers: newWorkers(nil)})
	if err == nil || !strings.Contains(err.Error(), "use a shorter data dir") {
		t.Fatalf("long socket path: %v", err)
	}
	_, err = kvbm.New(context.Background(), kvbm.Config{Dir: t.TempDir(), Tiers: kvbm.TierConfig{CPUBytes: 1 << 20, DiskDir: "x"}, Workers: newWorkers(nil)})
	if err == nil || !strings.Contains(err.Error(), "both a directory and a capacity") {
		t.Fatalf("disk tier without a capacity: %v", err)
	}
}

// TestAgentRestart: a KVBM restarted on the same directories keeps its
// disk blocks, and a connector's next call opens its scope again by itself.
func TestAgentRestart(t *testing.T) {
	const size = 16 * kib
	dir := t.TempDir()
	disk := func(c *kvbm.Config) {
		c.Tiers.DiskDir, c.Tiers.DiskBytes, c.Tiers.SpillMinCount = filepath.Join(dir, "disk"), 16*size, 1
	}
	ws := newWorkers(map[string]string{"w1": model})
	cfg := kvbm.Config{Dir: filepath.Join(dir, "kvbm"), Tiers: kvbm.TierConfig{CPUBytes: 2 * size}, Workers: ws}
	disk(&cfg)
	serve := func() (*kvbm.Server, chan error) {
		srv, err := kvbm.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve() }()
		return srv, done
	}
	srv, done := serve()
	c, err := client.Dial(srv.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	s, err := c.Open(context.Background(), &stratav1.OpenKVScopeRequest{WorkerId: "w1", Model: model, BlockSize: 16, BlockBytes: size})
	if err != nil {
		t.Fatal(err)
	}
	bs := blocks(s, 0, 4, size)
	put(t, s, bs[:2])
	put(t, s, bs[2:]) // the first two are evicted to disk
	_ = srv.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ws.mu.Lock()
	clear(ws.events) // what the brain knew went with the restart
	ws.mu.Unlock()

	srv, done = serve()
	defer func() {
		_ = srv.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var res *stratav1.LookupKVBlocksResponse
	testutil.WaitForResult(t, 10*time.Second, func() error {
		res, err = s.Lookup(context.Background(), hashes(bs), false, 0)
		return err
	})
	if res.Media[0] != stratav1.Medium_MEDIUM_DISK || res.Media[1] != stratav1.Medium_MEDIUM_DISK {
		t.Fatalf("after restart: %v, want the first two on disk", res.Media)
	}
	got := get(t, s, hashes(bs[:2]), true)
	if len(got) != 2 || !bytes.Equal(got[0].Data, bs[0].Data) || got[0].Medium != stratav1.Medium_MEDIUM_DISK {
		t.Fatalf("disk blocks after restart: %+v", got)
	}
	// Reopening reported the disk blocks to the worker again.
	if h := ws.held("w1"); len(h[stratav1.Medium_MEDIUM_DISK]) != 2 {
		t.Fatalf("worker holds %v after the reopen", h)
	}
}

// TestTierConfigLogsNoSecret: the tiers' config as the agent logs it
// names the remote tier but none of its secrets.
func TestTierConfigLogsNoSecret(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("tiers", "s3", kvbm.TierConfig{CPUBytes: 1, S3: &s3.Config{Endpoint: "minio:9000", Bucket: "kv", AccessKeyID: "AKIDSECRET", SecretAccessKey: "s3cr3t-key", SessionToken: "sess-token"}})
	log.Info("tiers", "azure", kvbm.TierConfig{CPUBytes: 1, Azure: &azure.Config{Container: "kv", AccountName: "acct", AccountKey: "azure-key", SASToken: "sig=abc", ConnectionString: "AccountKey=conn-key"}})
	out := buf.String()
	for _, secret := range []string{"s3cr3t-key", "sess-token", "azure-key", "sig=abc", "conn-key"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log carries %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "minio:9000") || !strings.Contains(out, "acct") {
		t.Fatalf("log does not describe the remote tiers: %s", out)
	}
}
