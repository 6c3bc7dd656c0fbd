// Package storetest holds the checks every tiers.Store implementation
// passes against its real backend, so that memory, disk, S3 and Azure
// are held to one contract.
package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/strata-llm/strata/tiers"
)

// Data is the deterministic payload of a block: size bytes derived from
// its key, so any read can be checked against the key alone.
func Data(k tiers.Key, size int) []byte {
	b := make([]byte, size)
	x := k.Hash ^ uint64(k.Scope)*0x9e3779b97f4a7c15 ^ uint64(size)
	for i := 0; i < size; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], x)
		copy(b[i:], w[:])
	}
	return b
}

// Key is a test key in scope "storetest".
func Key(i int) tiers.Key {
	return tiers.Key{Scope: tiers.ScopeOf("storetest"), Hash: uint64(i)*0x9e3779b97f4a7c15 + 1}
}

// Block is Key(i) with size bytes of Data.
func Block(i, size int) tiers.Block {
	k := Key(i)
	return tiers.Block{Key: k, Data: Data(k, size)}
}

// Options tune Run to a backend.
type Options struct {
	// BlockSize is the size of most blocks the checks write (a remote
	// store's tests keep it small to stay fast).
	BlockSize int
	// Concurrency is how many goroutines the concurrent check runs.
	Concurrency int
}

// Run runs every check, each against a fresh empty store from open (which
// registers its own cleanup).
func Run(t *testing.T, opts Options, open func(t *testing.T) tiers.Store) {
	if opts.BlockSize == 0 {
		opts.BlockSize = 4096
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 8
	}
	checks := []struct {
		name string
		fn   func(t *testing.T, s tiers.Store, opts Options)
	}{
		{"RoundTrip", roundTrip},
		{"Batch", batchCheck},
		{"MissingKeys", missingKeys},
		{"Replace", replace},
		{"Delete", deleteCheck},
		{"ScopesAreSeparate", scopes},
		{"PutDoesNotKeepCallerBuffer", ownership},
		{"CanceledContext", canceled},
		{"Concurrent", concurrent},
		{"Closed", closed},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, open(t), opts) })
	}
}

func put(t *testing.T, s tiers.Store, blocks ...tiers.Block) {
	t.Helper()
	if err := s.Put(context.Background(), blocks); err != nil {
		t.Fatalf("put: %v", err)
	}
}

// MustGet reads keys and fails unless each holds its Data of size sizes[i].
func MustGet(t testing.TB, s tiers.Store, keys []tiers.Key, sizes []int) {
	t.Helper()
	res := s.Get(context.Background(), keys)
	if len(res) != len(keys) {
		t.Fatalf("get %d keys: %d results", len(keys), len(res))
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("get %s: %v", keys[i], r.Err)
		}
		if !bytes.Equal(r.Data, Data(keys[i], sizes[i])) {
			t.Fatalf("get %s: %d bytes that are not what was put (%d bytes)", keys[i], len(r.Data), sizes[i])
		}
	}
}

func wantStats(t *testing.T, s tiers.Store, blocks, bytes int64) {
	t.Helper()
	if st := s.Stats(); st.Blocks >= 0 && (st.Blocks != blocks || st.Bytes != bytes) {
		t.Fatalf("stats %+v, want %d blocks, %d bytes", st, blocks, bytes)
	}
}

func roundTrip(t *testing.T, s tiers.Store, o Options) {
	b := Block(1, o.BlockSize)
	put(t, s, b)
	MustGet(t, s, []tiers.Key{b.Key}, []int{o.BlockSize})
	has, err := s.Has(context.Background(), []tiers.Key{b.Key})
	if err != nil || !has[0] {
		t.Fatalf("has after put: %v %v", has, err)
	}
	wantStats(t, s, 1, int64(o.BlockSize))
}

func batchCheck(t *testing.T, s tiers.Store, o Options) {
	// Sizes around the edges: empty, one byte, odd, the usual size.
	sizes := []int{0, 1, 7, 4097, o.BlockSize, o.BlockSize, o.BlockSize / 2, o.BlockSize + 3}
	var blocks []tiers.Block
	var keys []tiers.Key
	var total int64
	for i, n := range sizes {
		blocks = append(blocks, Block(100+i, n))
		keys = append(keys, Key(100+i))
		total += int64(n)
	}
	put(t, s, blocks...)
	MustGet(t, s, keys, sizes)
	wantStats(t, s, int64(len(sizes)), total)

	// Hits and misses in one batch, in order.
	mixed := []tiers.Key{keys[0], Key(999), keys[4], Key(998), keys[7]}
	res := s.Get(context.Background(), mixed)
	for i, want := range []bool{true, false, true, false, true} {
		if got := res[i].Err == nil; got != want {
			t.Fatalf("mixed get [%d] %s: err %v, want found=%v", i, mixed[i], res[i].Err, want)
		}
	}
	has, err := s.Has(context.Background(), mixed)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(has) != "[true false true false true]" {
		t.Fatalf("has %v", has)
	}
}

func missingKeys(t *testing.T, s tiers.Store, _ Options) {
	keys := []tiers.Key{Key(7), Key(8)}
	for i, r := range s.Get(context.Background(), keys) {
		if !errors.Is(r.Err, tiers.ErrNotFound) || r.Data != nil {
			t.Fatalf("get missing %s: %v, %d bytes; want ErrNotFound", keys[i], r.Err, len(r.Data))
		}
	}
	has, err := s.Has(context.Background(), keys)
	if err != nil || has[0] || has[1] {
		t.Fatalf("has missing: %v %v", has, err)
	}
	if err := s.Delete(context.Background(), keys); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
	if err := s.Get(context.Background(), nil); len(err) != 0 {
		t.Fatalf("empty get: %v", err)
	}
	wantStats(t, s, 0, 0)
}

func replace(t *testing.T, s tiers.Store, o Options) {
	put(t, s, Block(3, o.BlockSize))
	put(t, s, Block(3, o.BlockSize))
	wantStats(t, s, 1, int64(o.BlockSize))
	MustGet(t, s, []tiers.Key{Key(3)}, []int{o.BlockSize})
}

func deleteCheck(t *testing.T, s tiers.Store, o Options) {
	put(t, s, Block(1, o.BlockSize), Block(2, o.BlockSize), Block(3, o.BlockSize))
	if err := s.Delete(context.Background(), []tiers.Key{Key(1), Key(3), Key(4)}); err != nil {
		t.Fatal(err)
	}
	res := s.Get(context.Background(), []tiers.Key{Key(1), Key(2), Key(3)})
	if !errors.Is(res[0].Err, tiers.ErrNotFound) || res[1].Err != nil || !errors.Is(res[2].Err, tiers.ErrNotFound) {
		t.Fatalf("after delete: %v / %v / %v", res[0].Err, res[1].Err, res[2].Err)
	}
	wantStats(t, s, 1, int64(o.BlockSize))
}

func scopes(t *testing.T, s tiers.Store, o Options) {
	a := tiers.Key{Scope: tiers.ScopeOf("model-a"), Hash: 42}
	b := tiers.Key{Scope: tiers.ScopeOf("model-b"), Hash: 42}
	put(t, s, tiers.Block{Key: a, Data: Data(a, o.BlockSize)})
	MustGet(t, s, []tiers.Key{a}, []int{o.BlockSize})
	if res := s.Get(context.Background(), []tiers.Key{b}); !errors.Is(res[0].Err, tiers.ErrNotFound) {
		t.Fatalf("the same hash in another scope: %v, want ErrNotFound", res[0].Err)
	}
}

func ownership(t *testing.T, s tiers.Store, o Options) {
	b := Block(5, o.BlockSize)
	put(t, s, b)
	for i := range b.Data {
		b.Data[i] ^= 0xff
	}
	MustGet(t, s, []tiers.Key{b.Key}, []int{o.BlockSize})
}

func canceled(t *testing.T, s tiers.Store, o Options) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, []tiers.Block{Block(1, o.BlockSize)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("put with a canceled context: %v", err)
	}
	if res := s.Get(ctx, []tiers.Key{Key(1)}); res[0].Err == nil {
		t.Fatal("get with a canceled context succeeded")
	}
	if has, err := s.Has(context.Background(), []tiers.Key{Key(1)}); err != nil || has[0] {
		t.Fatalf("a put with a canceled context stored the block: %v %v", has, err)
	}
}

// concurrent runs writers, readers and deleters over overlapping keys: a
// read may miss, but whatever it returns must be the block's bytes.
func concurrent(t *testing.T, s tiers.Store, o Options) {
	const keys, rounds = 16, 12
	ctx := context.Background()
	Concurrently(t, o.Concurrency, func(g int) error {
		for r := range rounds {
			i := (g*7 + r) % keys
			k := Key(i)
			var err error
			switch (g + r) % 4 {
			case 0, 1:
				err = s.Put(ctx, []tiers.Block{Block(i, o.BlockSize), Block((i+1)%keys, o.BlockSize)})
			case 2:
				for _, res := range s.Get(ctx, []tiers.Key{k, Key((i + 3) % keys)}) {
					if res.Err == nil && len(res.Data) != o.BlockSize {
						err = fmt.Errorf("read %d bytes, want %d", len(res.Data), o.BlockSize)
					} else if res.Err != nil && !errors.Is(res.Err, tiers.ErrNotFound) {
						err = res.Err
					}
				}
			case 3:
				err = s.Delete(ctx, []tiers.Key{k})
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	// Every surviving block reads back intact.
	all := make([]tiers.Key, keys)
	for i := range all {
		all[i] = Key(i)
	}
	for i, r := range s.Get(ctx, all) {
		if r.Err == nil && !bytes.Equal(r.Data, Data(all[i], o.BlockSize)) {
			t.Fatalf("%s reads back wrong bytes after concurrent use", all[i])
		}
	}
}

// Concurrently runs fn(g) in n goroutines and fails t with their errors.
func Concurrently(t *testing.T, n int, fn func(g int) error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() { errs[g] = fn(g) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// WantCorruptDropped checks, after bad's stored bytes were tampered with
// behind the store's back, that good still reads, bad reads as ErrCorrupt
// with no data, and the store no longer holds bad.
func WantCorruptDropped(t *testing.T, s tiers.Store, good, bad tiers.Key) {
	t.Helper()
	ctx := context.Background()
	res := s.Get(ctx, []tiers.Key{good, bad})
	if res[0].Err != nil || !errors.Is(res[1].Err, tiers.ErrCorrupt) || res[1].Data != nil {
		t.Fatalf("intact block: %v; tampered block: %v with %d bytes, want ErrCorrupt and none", res[0].Err, res[1].Err, len(res[1].Data))
	}
	if has, err := s.Has(ctx, []tiers.Key{bad}); err != nil || has[0] {
		t.Fatalf("the corrupt block is still held: %v %v", has, err)
	}
}

// WantAccessDenied checks the errors of calls made with wrong credentials
// (by operation): ErrAccessDenied and ErrUnavailable, a message that names
// the credentials, and never the secret.
func WantAccessDenied(t *testing.T, errs map[string]error, secret string) {
	t.Helper()
	for op, err := range errs {
		if !errors.Is(err, tiers.ErrAccessDenied) || !errors.Is(err, tiers.ErrUnavailable) {
			t.Fatalf("%s with wrong credentials: %v; want ErrAccessDenied and ErrUnavailable", op, err)
		}
		if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "credentials") {
			t.Fatalf("%s: error %q should name the credentials, not the secret", op, err)
		}
	}
}

func closed(t *testing.T, s tiers.Store, o Options) {
	put(t, s, Block(1, o.BlockSize))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), []tiers.Block{Block(2, 1)}); !errors.Is(err, tiers.ErrClosed) {
		t.Fatalf("put after close: %v, want ErrClosed", err)
	}
	if res := s.Get(context.Background(), []tiers.Key{Key(1)}); !errors.Is(res[0].Err, tiers.ErrClosed) {
		t.Fatalf("get after close: %v, want ErrClosed", res[0].Err)
	}
	if _, err := s.Has(context.Background(), []tiers.Key{Key(1)}); !errors.Is(err, tiers.ErrClosed) {
		t.Fatalf("has after close: %v, want ErrClosed", err)
	}
}

// Capacity checks a bounded store that holds exactly three blocks of size
// bytes: the fourth is refused with ErrOverCapacity and nothing held is
// lost; a delete makes room; then, composed into a Hierarchy as its only
// tier, the store keeps its bound by evicting its least recently used
// block (the Hierarchy owns eviction, so that it can spill the victims).
func Capacity(t *testing.T, s tiers.Store, medium tiers.Medium, size int) {
	ctx := context.Background()
	if c := s.Stats().Capacity; c != 3*int64(size) {
		t.Fatalf("capacity %d, want 3 blocks of %d", c, size)
	}
	put(t, s, Block(1, size), Block(2, size), Block(3, size))
	err := s.Put(ctx, []tiers.Block{Block(4, size)})
	if !errors.Is(err, tiers.ErrOverCapacity) {
		t.Fatalf("put past capacity: %v, want ErrOverCapacity", err)
	}
	MustGet(t, s, []tiers.Key{Key(1), Key(2), Key(3)}, []int{size, size, size})
	if err := s.Delete(ctx, []tiers.Key{Key(2)}); err != nil {
		t.Fatal(err)
	}
	put(t, s, Block(4, size))
	wantStats(t, s, 3, 3*int64(size))

	var mu sync.Mutex
	var removed []tiers.Key
	h, err := tiers.NewHierarchy(ctx, tiers.Config{
		Local: []tiers.Tier{{Medium: medium, Store: s}},
		OnEvent: func(ev tiers.Event) {
			if ev.Type == tiers.Removed {
				mu.Lock()
				removed = append(removed, ev.Keys...)
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 1, 3, 4 are held; reading 4, then 1, leaves 3 the least recently
	// used, whatever order the hierarchy listed them in.
	for _, i := range []int{4, 1} {
		if _, err := h.Get(ctx, []tiers.Key{Key(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Put(ctx, []tiers.Block{Block(5, size)}); err != nil {
		t.Fatal(err)
	}
	has, err := s.Has(ctx, []tiers.Key{Key(1), Key(3), Key(4), Key(5)})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(has) != "[true false true true]" {
		t.Fatalf("after the put that needed room, 1 3 4 5 held: %v; want the least recently used (3) evicted", has)
	}
	wantStats(t, s, 3, 3*int64(size))
	if err := h.Close(); err != nil { // delivers the events made
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(removed) != fmt.Sprint([]tiers.Key{Key(3)}) {
		t.Fatalf("removed events %v, want [%s]", removed, Key(3))
	}
}
