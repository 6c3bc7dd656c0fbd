// Package objstore is what the S3 and Azure stores share around their
// clients: the batch methods of tiers.Store over per-object calls, run
// Parallel at a time, with the closed and context checks and the block
// size limit.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/internal/batch"
)

// Batches runs one object store's batch calls.
type Batches struct {
	// Name prefixes errors ("s3", "azure").
	Name     string
	Parallel int
	closed   atomic.Bool
}

// Close makes later calls fail with ErrClosed; it reports whether this
// call closed it.
func (b *Batches) Close() bool { return !b.closed.Swap(true) }

// Usable fails when the store is closed or ctx has ended: the check every
// batch call makes first (for a store that runs one its own way).
func (b *Batches) Usable(ctx context.Context, op string) error {
	if b.closed.Load() {
		return fmt.Errorf("%s %s: %w", b.Name, op, tiers.ErrClosed)
	}
	return ctx.Err()
}

// Put calls put for each block.
func (b *Batches) Put(ctx context.Context, blocks []tiers.Block, put func(context.Context, tiers.Block) error) error {
	if err := b.Usable(ctx, "put"); err != nil {
		return err
	}
	errs := make([]error, len(blocks))
	batch.Each(len(blocks), b.Parallel, func(i int) {
		blk := blocks[i]
		if len(blk.Data) > tiers.MaxBlockSize {
			errs[i] = fmt.Errorf("%s put %s: %d bytes exceed the %d-byte block limit: %w", b.Name, blk.Key, len(blk.Data), tiers.MaxBlockSize, tiers.ErrOverCapacity)
			return
		}
		errs[i] = put(ctx, blk)
	})
	return tiers.Batch(errs)
}

// Get calls get for each key.
func (b *Batches) Get(ctx context.Context, keys []tiers.Key, get func(context.Context, tiers.Key) ([]byte, error)) []tiers.Result {
	out := make([]tiers.Result, len(keys))
	batch.Each(len(keys), b.Parallel, func(i int) {
		if err := b.Usable(ctx, "get"); err != nil {
			out[i].Err = err
			return
		}
		out[i].Data, out[i].Err = get(ctx, keys[i])
	})
	return out
}

// Has calls exists for each key: nil means held, an error wrapping
// ErrNotFound not held, any other error fails the call.
func (b *Batches) Has(ctx context.Context, keys []tiers.Key, exists func(context.Context, tiers.Key) error) ([]bool, error) {
	if err := b.Usable(ctx, "has"); err != nil {
		return nil, err
	}
	out := make([]bool, len(keys))
	errs := make([]error, len(keys))
	batch.Each(len(keys), b.Parallel, func(i int) {
		switch err := exists(ctx, keys[i]); {
		case err == nil:
			out[i] = true
		case !errors.Is(err, tiers.ErrNotFound):
			errs[i] = err
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Delete calls del for each key; a key that was not held is no error.
func (b *Batches) Delete(ctx context.Context, keys []tiers.Key, del func(context.Context, tiers.Key) error) error {
	if err := b.Usable(ctx, "delete"); err != nil {
		return err
	}
	errs := make([]error, len(keys))
	batch.Each(len(keys), b.Parallel, func(i int) {
		if err := del(ctx, keys[i]); !errors.Is(err, tiers.ErrNotFound) {
			errs[i] = err
		}
	})
	return tiers.Batch(errs)
}
