// Package tiers is the node's KV block store below the GPU: a Store
// interface with one implementation per medium (memory, disk, S3, Azure
// Blob, each in its own package) and a Hierarchy that composes them with
// capacities, LRU eviction, a frequency filter before spilling to disk,
// promotion on hit and write-through to a remote tier shared by the cluster.
// Every block a tier gains or loses is reported as an Event, which the
// agent turns into KV events for the brain's index. docs/tiers.md has the
// design.
package tiers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors a Store or the Hierarchy returns, wrapped with the operation and
// key; compare with errors.Is.
var (
	// ErrNotFound: the store does not hold the block.
	ErrNotFound = errors.New("block not found")
	// ErrCorrupt: the stored bytes failed their checksum or framing. The
	// store dropped the block; it is never served.
	ErrCorrupt = errors.New("block corrupt")
	// ErrUnavailable: the store could not be reached or did not answer in
	// time (network, timeout, server error, access denied). The Hierarchy
	// marks a remote tier that returns it unavailable and retries later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrAccessDenied: the store refused the credentials. It always comes
	// with ErrUnavailable.
	ErrAccessDenied = errors.New("access denied: check the store's credentials")
	// ErrOverCapacity: the block does not fit in the store's capacity
	// (or exceeds MaxBlockSize).
	ErrOverCapacity = errors.New("over capacity")
	// ErrClosed: the store or hierarchy was closed.
	ErrClosed = errors.New("closed")
)

// MaxBlockSize bounds one block: far above any KV block (a 16-token block
// of a 405B model is 126 MiB with bf16), low enough that a garbage length
// read from a file or object can never make a reader allocate gigabytes.
const MaxBlockSize = 256 << 20

// Block is one KV block's bytes under its key.
type Block struct {
	Key  Key
	Data []byte
}

// Result is the outcome of reading one key.
type Result struct {
	// Data is the block, nil unless Err is nil. Who may keep or modify it
	// is the store's ownership rule (memory: shared and read-only; the
	// others: the caller's).
	Data []byte
	// Err is nil, or wraps ErrNotFound, ErrCorrupt (the block was dropped),
	// ErrUnavailable or the context's error.
	Err error
}

// Stats is a store's size accounting, in payload bytes.
type Stats struct {
	// Blocks and Bytes held; -1 when the store cannot know (a remote
	// bucket that every node of the cluster writes).
	Blocks, Bytes int64
	// Capacity is the most payload bytes the store accepts; 0 means
	// unbounded (a remote bucket).
	Capacity int64
}

// Store is one medium's block store. Every method takes a batch and is safe
// for concurrent use. Blocks are content-addressed: a put of a key the
// store holds replaces it with what must be the same bytes.
type Store interface {
	// Put stores the blocks. It does not keep blocks[i].Data after it
	// returns (the caller may reuse its buffers). It fails per block: the
	// error is nil or a *BatchError whose Errs say which blocks were not
	// stored (ErrOverCapacity, ErrUnavailable, ...); the others were.
	Put(ctx context.Context, blocks []Block) error
	// Get reads the blocks of keys: results[i] is keys[i]'s.
	Get(ctx context.Context, keys []Key) []Result
	// Has reports which keys the store holds, without reading them.
	Has(ctx context.Context, keys []Key) ([]bool, error)
	// Delete removes the keys; a key the store does not hold is not an
	// error. Failures are per key, as for Put.
	Delete(ctx context.Context, keys []Key) error
	// Stats is the store's size accounting; it does no I/O.
	Stats() Stats
	// Close releases the store; later calls fail with ErrClosed.
	Close() error
}

// BlockInfo describes one stored block without its bytes.
type BlockInfo struct {
	Key      Key
	Size     int64
	Modified time.Time
}

// Lister is a Store that can enumerate what it holds cheaply (a local
// store's index). The Hierarchy lists its local tiers when it starts, so a
// node that restarts keeps, and reports, the blocks its disk still holds.
type Lister interface {
	// List calls fn for every block, in no particular order, until fn
	// returns false.
	List(ctx context.Context, fn func(BlockInfo) bool) error
}

// BatchError reports which items of a batch failed; the others succeeded.
type BatchError struct {
	// Errs[i] is item i's error, nil when it succeeded.
	Errs []error
}

// Batch returns nil when every err is nil, and a *BatchError otherwise.
func Batch(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return &BatchError{Errs: errs}
		}
	}
	return nil
}

func (e *BatchError) Error() string {
	failed, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed == 1 {
		return first.Error()
	}
	return fmt.Sprintf("%d of %d failed, the first: %v", failed, len(e.Errs), first)
}

// Unwrap makes errors.Is and errors.As look at every item's error.
func (e *BatchError) Unwrap() []error {
	out := make([]error, 0, len(e.Errs))
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// ItemErrors is err spread over a batch of n items: a *BatchError's Errs,
// or err itself for every item when it is not a BatchError (a failure of
// the whole call), or all nil for a nil err.
func ItemErrors(err error, n int) []error {
	var be *BatchError
	if errors.As(err, &be) && len(be.Errs) == n {
		return be.Errs
	}
	errs := make([]error, n)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}
