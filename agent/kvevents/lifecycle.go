package kvevents

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("kvevents: closed")

// ErrRunning is returned by a second concurrent Run.
var ErrRunning = errors.New("kvevents: already running")

// lifecycle is the Run/Close protocol Subscriber and Poller share: one Run
// at a time, Close cancels it and waits until it has returned.
type lifecycle struct {
	mu      sync.Mutex
	running bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// run runs loop until ctx ends or close is called, with em's flusher beside
// it, and flushes em before returning.
func (l *lifecycle) run(ctx context.Context, em *emitter, loop func(context.Context)) error {
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrClosed
	case l.running:
		l.mu.Unlock()
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	l.running, l.cancel = true, cancel
	l.wg.Add(1)
	l.mu.Unlock()

	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		em.run(ctx)
	}()
	defer func() {
		cancel()
		<-flushed
		l.mu.Lock()
		l.running = false
		l.mu.Unlock()
		l.wg.Done()
	}()
	loop(ctx)
	return nil
}

// close stops a running loop and waits for it; later runs fail.
func (l *lifecycle) close() {
	l.mu.Lock()
	l.closed = true
	if l.cancel != nil {
		l.cancel()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
