package tiers_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-llm/strata/backoff"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/memory"
	"github.com/strata-llm/strata/tiers/s3"
	"github.com/strata-llm/strata/tiers/storetest"
)

var buckets atomic.Int64

// bucket opens an S3 store on a fresh bucket of srv, or on bucket when
// given (another node sharing it).
func bucket(t *testing.T, srv *testutil.MinIO, name string) (*s3.Store, string) {
	t.Helper()
	if name == "" {
		name = fmt.Sprintf("strata-tiers-%d", buckets.Add(1))
	}
	s, err := s3.New(s3.Config{
		Endpoint: srv.Endpoint, Bucket: name, Prefix: "kv", CreateBucket: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, name
}

// counted is a real store that counts the calls made to it, and its gets.
type counted struct {
	tiers.Store
	calls, gets atomic.Int64
}

func (c *counted) Put(ctx context.Context, b []tiers.Block) error {
	c.calls.Add(1)
	return c.Store.Put(ctx, b)
}

func (c *counted) Get(ctx context.Context, k []tiers.Key) []tiers.Result {
	c.calls.Add(1)
	c.gets.Add(1)
	return c.Store.Get(ctx, k)
}

func (c *counted) Has(ctx context.Context, k []tiers.Key) ([]bool, error) {
	c.calls.Add(1)
	return c.Store.Has(ctx, k)
}

// node is one agent's hierarchy: a CPU tier of cpuBlocks over a remote one.
func node(t *testing.T, remote tiers.Store, cpuBlocks int, writeThrough bool, spillMin int, rec *recorder) (*tiers.Hierarchy, *memory.Store) {
	t.Helper()
	cpu, err := memory.New(int64(cpuBlocks * blockSize))
	if err != nil {
		t.Fatal(err)
	}
	h := newHierarchy(t, tiers.Config{
		Local: []tiers.Tier{{Medium: tiers.CPU, Store: cpu}}, Remote: remote,
		WriteThrough: writeThrough, SpillMinCount: spillMin, OnEvent: rec.on,
		RemoteTimeout: time.Second, RemoteRetry: backoff.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	return h, cpu
}

// waitEvent waits until rec has seen typ on medium for k.
func waitEvent(t *testing.T, rec *recorder, typ tiers.EventType, medium tiers.Medium, k tiers.Key) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		for _, ev := range rec.all() {
			if ev.Type == typ && ev.Medium == medium && slices.Contains(ev.Keys, k) {
				return true
			}
		}
		return false
	})
}

func TestRemoteTier(t *testing.T) {
	srv := testutil.StartMinIO(t)
	ctx := context.Background()

	// A block node A offloads is onboarded by node B from the shared bucket.
	t.Run("SharedByTwoNodes", func(t *testing.T) {
		storeA, name := bucket(t, srv, "")
		storeB, _ := bucket(t, srv, name)
		var recA, recB recorder
		a, _ := node(t, storeA, 4, true, 2, &recA)
		b, _ := node(t, storeB, 4, true, 2, &recB)
		blk := storetest.Block(1, blockSize)
		if err := a.Put(ctx, []tiers.Block{blk}); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, &recA, tiers.Stored, tiers.Remote, blk.Key)

		media, err := b.Lookup(ctx, []tiers.Key{blk.Key, storetest.Key(2)})
		if err != nil || mediaString(media) != "remote none" {
			t.Fatalf("lookup on B: %v %v", media, err)
		}
		hits, err := b.Get(ctx, []tiers.Key{blk.Key})
		if err != nil || hits[0].Medium != tiers.Remote || !slices.Equal(hits[0].Data, blk.Data) {
			t.Fatalf("get on B: %v from %v", err, hits[0].Medium)
		}
		if media, _ := b.Lookup(ctx, []tiers.Key{blk.Key}); media[0] != tiers.CPU {
			t.Fatalf("after onboarding, B has the block on %v, want it promoted to cpu", media[0])
		}
		// B does not upload what it read from the remote tier.
		if err := b.Put(ctx, []tiers.Block{blk}); err != nil {
			t.Fatal(err)
		}
		if st := b.Stats().Tiers[1]; st.Offloads != 0 || st.Hits != 1 {
			t.Fatalf("B's remote stats %+v, want one hit and no upload", st)
		}
		// A read of a block the bucket lacks reports it Removed there: the
		// brain's index learns that whoever said so was out of date.
		if hits, _ := b.Get(ctx, []tiers.Key{storetest.Key(3)}); hits[0].Medium != tiers.MediumNone {
			t.Fatalf("a block nobody wrote was served from %v", hits[0].Medium)
		}
		waitEvent(t, &recB, tiers.Removed, tiers.Remote, storetest.Key(3))
	})

	// Without write-through the bucket gets what leaves the last local
	// tier, through the frequency filter.
	t.Run("WriteBack", func(t *testing.T) {
		store, _ := bucket(t, srv, "")
		var rec recorder
		h, _ := node(t, store, 2, false, 2, &rec)
		if _, err := h.Get(ctx, []tiers.Key{storetest.Key(1)}); err != nil { // asked for once: block 1 is wanted
			t.Fatal(err)
		}
		for i := 1; i <= 4; i++ { // 1 then 2 are evicted
			if err := h.Put(ctx, []tiers.Block{storetest.Block(i, blockSize)}); err != nil {
				t.Fatal(err)
			}
		}
		waitEvent(t, &rec, tiers.Stored, tiers.Remote, storetest.Key(1))
		has, err := store.Has(ctx, []tiers.Key{storetest.Key(1), storetest.Key(2), storetest.Key(3)})
		if err != nil || fmt.Sprint(has) != "[true false false]" {
			t.Fatalf("bucket holds %v (%v), want only block 1 (block 2 was seen once)", has, err)
		}
		hits, err := h.Get(ctx, []tiers.Key{storetest.Key(1)})
		if err != nil || hits[0].Medium != tiers.Remote {
			t.Fatalf("get of the written-back block: %v from %v", err, hits[0].Medium)
		}
	})
}

// TestRemoteOutage stops MinIO under a node: the local tiers keep serving,
// nothing blocks, the remote tier is marked unavailable and probed with
// backoff, and comes back when MinIO restarts on the same port and data.
func TestRemoteOutage(t *testing.T) {
	srv := testutil.StartMinIO(t)
	ctx := context.Background()
	s3store, _ := bucket(t, srv, "")
	store := &counted{Store: s3store}
	l := newLocal(t, 2, 4)
	var rec recorder
	h := newHierarchy(t, tiers.Config{
		Local: l.tiers(), Remote: store, WriteThrough: true, SpillMinCount: 1, OnEvent: rec.on,
		RemoteTimeout: time.Second, RemoteRetry: backoff.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	put := func(i int) {
		t.Helper()
		if err := h.Put(ctx, []tiers.Block{storetest.Block(i, blockSize)}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	put(1)
	waitEvent(t, &rec, tiers.Stored, tiers.Remote, storetest.Key(1))

	srv.Stop()
	for i := 2; i <= 5; i++ {
		put(i) // 1 and 2 spill to disk meanwhile
	}
	hits, err := h.Get(ctx, keys(1, 2, 3, 4, 5, 99))
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, hit := range hits {
		served = append(served, hit.Medium.String())
	}
	if fmt.Sprint(served) != "[disk disk cpu cpu cpu none]" && fmt.Sprint(served) != "[disk disk disk cpu cpu none]" {
		t.Fatalf("served from %v during the outage", served)
	}
	// The miss on 99 asked the remote tier, which refused: it is down now.
	testutil.WaitFor(t, 5*time.Second, func() bool { return !h.Stats().Remote.Available })
	rs := h.Stats().Remote
	if rs.LastError == "" || rs.Outages != 1 {
		t.Fatalf("remote stats during the outage: %+v", rs)
	}
	callsBefore := store.calls.Load()
	start := time.Now()
	put(6)
	if _, err := h.Get(ctx, keys(98)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Lookup(ctx, keys(97)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("put, get and lookup took %v with the remote tier marked down: they must not wait for it", d)
	}
	// Only the prober calls the store while it is down (Has, with backoff).
	if calls, dropped := store.calls.Load()-callsBefore, h.Stats().Remote.DroppedWrites; calls > 3 || dropped == 0 {
		t.Fatalf("while down: %d calls to the remote store, %d writes dropped; want only probes, and the write dropped", calls, dropped)
	}

	srv.Start(t)
	testutil.WaitFor(t, 10*time.Second, func() bool { return h.Stats().Remote.Available })
	// What was written before the outage is still there: drop the local
	// copies and onboard it from the bucket.
	if err := h.Delete(ctx, keys(1)); err != nil {
		t.Fatal(err)
	}
	hits, err = h.Get(ctx, keys(1))
	if err != nil || hits[0].Medium != tiers.Remote || !slices.Equal(hits[0].Data, storetest.Data(storetest.Key(1), blockSize)) {
		t.Fatalf("after recovery: %v from %v", err, hits[0].Medium)
	}
	put(7)
	waitEvent(t, &rec, tiers.Stored, tiers.Remote, storetest.Key(7))
}

// TestRemoteHang freezes MinIO: calls that reach the remote tier end at the
// remote timeout, which marks it down; later calls do not ask it at all.
func TestRemoteHang(t *testing.T) {
	srv := testutil.StartMinIO(t)
	ctx := context.Background()
	s3store, _ := bucket(t, srv, "")
	store := &counted{Store: s3store}
	var rec recorder
	cpu, err := memory.New(4 * blockSize)
	if err != nil {
		t.Fatal(err)
	}
	h := newHierarchy(t, tiers.Config{
		Local: []tiers.Tier{{Medium: tiers.CPU, Store: cpu}}, Remote: store, WriteThrough: true, OnEvent: rec.on,
		RemoteTimeout: 300 * time.Millisecond, RemoteRetry: backoff.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond},
	})
	if err := h.Put(ctx, []tiers.Block{storetest.Block(1, blockSize)}); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	start := time.Now()
	hits, err := h.Get(ctx, keys(1, 2))
	if err != nil || hits[0].Medium != tiers.CPU || hits[1].Medium != tiers.MediumNone {
		t.Fatalf("get with a hung remote: %v %v", hits, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("get waited %v for a hung remote tier; its deadline is 300ms", d)
	}
	if h.Stats().Remote.Available {
		t.Fatal("a remote tier that timed out is still marked available")
	}
	gets := store.gets.Load()
	if hits, err := h.Get(ctx, keys(3)); err != nil || hits[0].Medium != tiers.MediumNone {
		t.Fatalf("get with the remote tier marked down: %v %v", hits, err)
	}
	if n := store.gets.Load() - gets; n != 0 {
		t.Fatalf("a get after the remote tier was marked down asked it %d times", n)
	}
	srv.Resume()
	testutil.WaitFor(t, 10*time.Second, func() bool { return h.Stats().Remote.Available })
}
