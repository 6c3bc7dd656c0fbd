// Package memory is the host-memory (CPU) tier: blocks in a map, bounded
// by payload bytes.
//
// Ownership: Put copies each block, so the caller may reuse its buffer at
// once. Get does not copy: it returns the stored slice itself. That is safe
// because a stored slice is never written again and never reused: a
// replacement or an eviction drops the store's reference and the garbage
// collector frees the bytes once the last reader lets go. The rule for
// readers is the one for any shared slice: never modify it. A reader may keep
// it as long as it likes.
package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/strata-llm/strata/tiers"
)

// Store is the memory tier.
type Store struct {
	capacity int64

	mu     sync.RWMutex
	blocks map[tiers.Key]entry
	bytes  int64
	closed bool
}

type entry struct {
	data     []byte
	modified time.Time
}

var (
	_ tiers.Store  = (*Store)(nil)
	_ tiers.Lister = (*Store)(nil)
)

// New is an empty store holding at most capacity payload bytes.
func New(capacity int64) (*Store, error) {
	if capacity <= 0 {
		return nil, fmt.Errorf("memory tier: capacity %d bytes: want > 0", capacity)
	}
	return &Store{capacity: capacity, blocks: map[tiers.Key]entry{}}, nil
}

// Put copies the blocks in. A block that does not fit in what is left of
// the capacity fails with ErrOverCapacity: the store never evicts on its own
// (the Hierarchy decides what leaves, and where it goes).
func (s *Store) Put(ctx context.Context, blocks []tiers.Block) error {
	errs := make([]error, len(blocks))
	copies := make([][]byte, len(blocks))
	for i, b := range blocks {
		if len(b.Data) > tiers.MaxBlockSize {
			errs[i] = fmt.Errorf("memory put %s: %d bytes exceed the %d-byte block limit: %w", b.Key, len(b.Data), tiers.MaxBlockSize, tiers.ErrOverCapacity)
			continue
		}
		copies[i] = append(make([]byte, 0, len(b.Data)), b.Data...) // copied outside the lock
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memory put: %w", tiers.ErrClosed)
	}
	for i, b := range blocks {
		if errs[i] != nil {
			continue
		}
		old := int64(len(s.blocks[b.Key].data))
		if s.bytes-old+int64(len(copies[i])) > s.capacity {
			errs[i] = fmt.Errorf("memory put %s: %d bytes do not fit (%d of %d used): %w", b.Key, len(b.Data), s.bytes, s.capacity, tiers.ErrOverCapacity)
			continue
		}
		s.bytes += int64(len(copies[i])) - old
		s.blocks[b.Key] = entry{data: copies[i], modified: now}
	}
	return tiers.Batch(errs)
}

// Get returns the stored slices themselves (see the package comment).
func (s *Store) Get(ctx context.Context, keys []tiers.Key) []tiers.Result {
	out := make([]tiers.Result, len(keys))
	if err := ctx.Err(); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, k := range keys {
		switch e, ok := s.blocks[k]; {
		case s.closed:
			out[i].Err = fmt.Errorf("memory get %s: %w", k, tiers.ErrClosed)
		case !ok:
			out[i].Err = fmt.Errorf("memory get %s: %w", k, tiers.ErrNotFound)
		default:
			out[i].Data = e.data
		}
	}
	return out
}

// Has reports which keys the store holds.
func (s *Store) Has(ctx context.Context, keys []tiers.Key) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("memory has: %w", tiers.ErrClosed)
	}
	out := make([]bool, len(keys))
	for i, k := range keys {
		_, out[i] = s.blocks[k]
	}
	return out, nil
}

// Delete drops the keys.
func (s *Store) Delete(ctx context.Context, keys []tiers.Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memory delete: %w", tiers.ErrClosed)
	}
	for _, k := range keys {
		if e, ok := s.blocks[k]; ok {
			s.bytes -= int64(len(e.data))
			delete(s.blocks, k)
		}
	}
	return nil
}

// List enumerates the blocks.
func (s *Store) List(ctx context.Context, fn func(tiers.BlockInfo) bool) error {
	s.mu.RLock()
	infos := make([]tiers.BlockInfo, 0, len(s.blocks))
	for k, e := range s.blocks {
		infos = append(infos, tiers.BlockInfo{Key: k, Size: int64(len(e.data)), Modified: e.modified})
	}
	s.mu.RUnlock()
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !fn(info) {
			return nil
		}
	}
	return nil
}

// Stats is the store's size accounting.
func (s *Store) Stats() tiers.Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return tiers.Stats{Blocks: int64(len(s.blocks)), Bytes: s.bytes, Capacity: s.capacity}
}

// Close drops every block.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.blocks, s.bytes = true, nil, 0
	return nil
}
