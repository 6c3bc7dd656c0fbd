// Package backoff is the one retry delay every Strata loop that reconnects
// or re-registers uses: exponential, capped, and interruptible by its
// context, so no loop hammers a brain that is restarting and none outlives
// its caller.
package backoff

import (
	"context"
	"time"
)

// Backoff doubles its delay after every Wait, from Initial up to Max.
type Backoff struct {
	Initial, Max time.Duration
	next         time.Duration
}

// New is a backoff from 100ms up to 5s: reconnecting to a brain replica
// that restarts or loses leadership, which takes about a second.
func New() *Backoff { return &Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second} }

// Wait sleeps the current delay and doubles it; it returns false when ctx
// ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	if b.next == 0 {
		b.next = b.Initial
	}
	t := time.NewTimer(b.next)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	b.next = min(2*b.next, b.Max)
	return true
}

// Reset starts the delays over, after a success.
func (b *Backoff) Reset() { b.next = 0 }
