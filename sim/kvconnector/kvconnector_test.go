package kvconnector_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/strata-llm/strata/agent/kvbm"
	"github.com/strata-llm/strata/kvhash"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/sim/engine"
	"github.com/strata-llm/strata/sim/kvconnector"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

// oneWorker is an agent running one worker of model "m", that drops the
// tier events (this test reads the tiers themselves).
type oneWorker struct{}

func (oneWorker) ServedModel(id string) (string, bool) { return "m", id == "w" }
func (oneWorker) Publish(string, []*stratav1.KVEvent)  {}
func (oneWorker) Resync()                              {}

func TestPayload(t *testing.T) {
	for _, size := range []int{1, 8, 13, 4096} {
		p := kvconnector.Payload(7, 9, size)
		if !kvconnector.Verify(p, 7, 9, size) {
			t.Fatalf("size %d: payload does not verify", size)
		}
		if kvconnector.Verify(p, 7, 10, size) || kvconnector.Verify(p[:size-1], 7, 9, size) {
			t.Fatalf("size %d: another key's or a short payload verifies", size)
		}
		p[size-1] ^= 1
		if kvconnector.Verify(p, 7, 9, size) {
			t.Fatalf("size %d: a flipped byte verifies", size)
		}
	}
	if slices.Equal(kvconnector.Payload(1, 2, 64), kvconnector.Payload(2, 1, 64)) {
		t.Fatal("payloads of different keys are equal")
	}
}

const (
	blockSize  = 16
	bytesPerTk = 512
	blockBytes = blockSize * bytesPerTk
)

// TestEngineOffloadsAndOnboards drives a simulated engine with a small GPU
// pool against a real KVBM: a prompt pushed out of the GPU pool is
// offloaded, under its Strata hashes, with real bytes; asked again, the
// blocks the GPU lost come back from the tiers and count as cached.
func TestEngineOffloadsAndOnboards(t *testing.T) {
	srv, err := kvbm.New(context.Background(), kvbm.Config{Dir: filepath.Join(t.TempDir(), "kvbm"), Tiers: kvbm.TierConfig{CPUBytes: 1 << 20}, Workers: oneWorker{}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() { _ = srv.Close() })
	conn, err := kvconnector.New(kvconnector.Config{
		Socket: srv.SocketPath(), WorkerID: "w", Model: "m", BlockSize: blockSize, BlockBytes: blockBytes, Layout: kvconnector.Layout(bytesPerTk),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultConfig()
	cfg.BlockSize, cfg.NumGPUBlocks, cfg.MaxModelLen, cfg.MeanOutputTokens, cfg.Speedup = blockSize, 24, 1024, 0, 1000
	cfg.Timing.KVBytesPerToken = bytesPerTk
	cfg.EOS, cfg.TextTokens = bytelevel.Tokenizer{}.EOS(), bytelevel.Tokenizer{}.TextTokens()
	cfg.Connector = conn
	eng, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = eng.Run(ctx); done <- struct{}{} }()
	go func() { _ = conn.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; _ = conn.Close() })
	<-conn.Ready()

	run := func(id string, p []uint32) engine.Result {
		t.Helper()
		s, err := eng.Add(engine.Request{ID: id, Prompt: p, MaxTokens: 1, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		for {
			d, err := s.Next(cctx)
			if err != nil {
				t.Fatal(err)
			}
			if d.Done {
				return s.Result()
			}
		}
	}
	prompt := func(base uint32) []uint32 {
		p := make([]uint32, 10*blockSize+1)
		for i := range p {
			p[i] = base + uint32(i)
		}
		return p
	}
	first := prompt(1000)
	if r := run("a", first); r.CachedTokens != 0 {
		t.Fatalf("first run cached %d tokens", r.CachedTokens)
	}
	run("b", prompt(5000)) // 11 blocks more than the pool has free: pushes out the first prompt's tail
	run("c", prompt(9000))

	// The first prompt's blocks are in the tiers under their Strata hashes.
	want := kvhash.Prompt(first, blockSize, "")
	scope := tiers.ScopeOf("m|bs16|" + kvconnector.Layout(bytesPerTk) + "|tp0/1")
	keys := make([]tiers.Key, len(want))
	for i, h := range want {
		keys[i] = tiers.Key{Scope: scope, Hash: h}
	}
	testutil.WaitForResult(t, 10*time.Second, func() error {
		// Offloads are asynchronous: wait until every evicted block is in.
		if cs, st := conn.Stats(), eng.Stats(); cs.Offloaded+cs.OffloadDropped+cs.OffloadFailed != int64(st.Offloaded) || st.Offloaded == 0 {
			return fmt.Errorf("%d of %d evicted blocks offloaded", cs.Offloaded, st.Offloaded)
		}
		return nil
	})
	hits, err := srv.Hierarchy().Get(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if cs := conn.Stats(); cs.OffloadDropped+cs.OffloadFailed > 0 {
		t.Fatalf("offloads lost: %+v", cs)
	}
	offloaded := 0
	for i, h := range hits {
		if h.Data != nil {
			offloaded++
			if !kvconnector.Verify(h.Data, uint64(scope), want[i], blockBytes) {
				t.Fatalf("block %d offloaded with wrong bytes", i)
			}
		}
	}

	r := run("a-again", first)
	if r.CachedTokens != len(want)*blockSize {
		t.Fatalf("repeat cached %d tokens, want all %d full blocks (%d offloaded)", r.CachedTokens, len(want)*blockSize, offloaded)
	}
	// The engine publishes its stats at the end of a step, which may come
	// after the answer.
	var st engine.Stats
	var cs kvconnector.Stats
	testutil.WaitForResult(t, 10*time.Second, func() error {
		st, cs = eng.Stats(), conn.Stats()
		if st.Offloaded == 0 || st.Onboarded == 0 || st.ExternalHits == 0 || cs.Onboarded == 0 || cs.OnboardBytes != cs.Onboarded*blockBytes || cs.Corrupt != 0 {
			return fmt.Errorf("engine %+v, connector %+v", st, cs)
		}
		return nil
	})
	t.Logf("offloaded %d of the first prompt's blocks; engine %+v; connector %+v", offloaded, st, cs)
}
