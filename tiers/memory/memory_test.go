package memory

import (
	"context"
	"testing"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/storetest"
)

func open(t *testing.T, capacity int64) *Store {
	t.Helper()
	s, err := New(capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, storetest.Options{BlockSize: 64 << 10}, func(t *testing.T) tiers.Store { return open(t, 64<<20) })
}

func TestCapacity(t *testing.T) {
	storetest.Capacity(t, open(t, 3*4096), tiers.CPU, 4096)
}

// Get hands out the stored slice itself: two reads share one array.
func TestGetDoesNotCopy(t *testing.T) {
	s := open(t, 1<<20)
	b := storetest.Block(1, 4096)
	if err := s.Put(context.Background(), []tiers.Block{b}); err != nil {
		t.Fatal(err)
	}
	r1 := s.Get(context.Background(), []tiers.Key{b.Key})
	r2 := s.Get(context.Background(), []tiers.Key{b.Key})
	if &r1[0].Data[0] != &r2[0].Data[0] {
		t.Fatal("two reads returned different copies")
	}
}

func TestNewRejectsNoCapacity(t *testing.T) {
	if _, err := New(0); err == nil {
		t.Fatal("New(0) succeeded")
	}
}
