package kvevents

import (
	"context"
	"sync"
	"time"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// TierBlocks lists the blocks a worker can onboard from the node's KV tiers
// (the agent's KVBM), as BlockStored events with media CPU, DISK and
// REMOTE. An emitter puts them in every snapshot and re-announces them
// after every AllBlocksCleared, which in the brain's index drops every
// local medium of the worker, the tiers' included. It is called with the
// emitter's lock held and must not call back into the emitter.
type TierBlocks func() []*stratav1.KVEvent

// Sink receives a worker's Strata KV event batches. It is called with one
// batch at a time, in seq order, from the source's goroutines; it must not
// block for long (that stalls the engine stream) and must not call back into
// the Subscriber or Poller that called it. The batch is the sink's to keep.
type Sink func(*stratav1.KVEventBatch)

// Batching defaults: a batch leaves at most this long after its first event,
// or as soon as it holds this many events.
const (
	DefaultFlushInterval  = 5 * time.Millisecond
	DefaultMaxBatchEvents = 256
)

// emitter owns one worker's Translator and turns translated events into
// numbered batches. Everything that changes the translator or the numbering
// happens under mu, so the live stream, resyncs and snapshots are ordered.
type emitter struct {
	workerID   string
	sink       Sink
	flushEvery time.Duration
	maxEvents  int
	tiers      TierBlocks // nil: the node has no KVBM

	mu      sync.Mutex
	tr      *Translator
	seq     uint64 // of the last batch emitted
	pending []*stratav1.KVEvent
	// clean is set while the worker's announced engine state is "nothing":
	// after an AllBlocksCleared and until the engine stores a block (tier
	// blocks do not count: a resync does not make them stale). A resync
	// then has nothing to say.
	clean   bool
	batches uint64
	kick    chan struct{} // buffered(1): pending became non-empty
}

func newEmitter(workerID string, blockSize int, sink Sink, tiers TierBlocks, flushEvery time.Duration, maxEvents int) *emitter {
	if flushEvery <= 0 {
		flushEvery = DefaultFlushInterval
	}
	if maxEvents <= 0 {
		maxEvents = DefaultMaxBatchEvents
	}
	return &emitter{
		workerID:   workerID,
		sink:       sink,
		flushEvery: flushEvery,
		maxEvents:  maxEvents,
		tiers:      tiers,
		tr:         NewTranslator(blockSize),
		kick:       make(chan struct{}, 1),
	}
}

// apply translates engine events and queues the result.
func (e *emitter) apply(events []EngineEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range events {
		n := len(e.pending)
		e.pending = e.tr.Apply(e.pending, ev)
		if len(e.pending) > n {
			e.clean = ev.Kind == Cleared
		}
		if ev.Kind == Cleared {
			e.pending = e.appendTiersLocked(e.pending)
		}
	}
	e.queuedLocked()
}

// appendTiersLocked appends the worker's tier blocks.
func (e *emitter) appendTiersLocked(dst []*stratav1.KVEvent) []*stratav1.KVEvent {
	if e.tiers == nil {
		return dst
	}
	return append(dst, e.tiers()...)
}

// inject queues events that did not come from the engine (the KVBM's tier
// changes), numbered and batched with the engine's.
func (e *emitter) inject(events []*stratav1.KVEvent) {
	if len(events) == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pending = append(e.pending, events...)
	e.queuedLocked()
}

// resync forgets the worker's blocks and tells the brain so, unless that is
// what it was last told. The batch leaves at once: until it does, the
// brain routes on blocks that may be gone.
func (e *emitter) resync() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clean {
		return
	}
	e.tr.Reset()
	e.pending = append(e.pending, &stratav1.KVEvent{Event: &stratav1.KVEvent_Cleared{Cleared: &stratav1.AllBlocksCleared{}}})
	e.pending = e.appendTiersLocked(e.pending)
	e.clean = true
	e.flushLocked()
}

// queuedLocked flushes a full batch, or wakes the flusher for a new one.
func (e *emitter) queuedLocked() {
	switch {
	case len(e.pending) >= e.maxEvents:
		e.flushLocked()
	case len(e.pending) > 0:
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

func (e *emitter) flush() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.flushLocked()
}

func (e *emitter) flushLocked() {
	for len(e.pending) > 0 {
		n := min(len(e.pending), e.maxEvents)
		e.emitLocked(e.pending[:n:n], false)
		e.pending = e.pending[n:]
	}
	e.pending = nil
}

func (e *emitter) emitLocked(events []*stratav1.KVEvent, snapshot bool) {
	e.seq++
	e.batches++
	e.sink(&stratav1.KVEventBatch{
		WorkerId:  e.workerID,
		Seq:       e.seq,
		UnixNanos: time.Now().UnixNano(),
		Events:    events,
		Snapshot:  snapshot,
	})
}

// snapshot emits the worker's whole block set. Per KVEventBatch's contract
// a snapshot restarts the numbering: its first batch has seq 1 and the
// snapshot flag, which makes the receiver drop what it knew of the worker;
// a snapshot too large for one batch continues in ordinary batches 2, 3, …
// (flagging them too would make each one erase the previous). The tier
// blocks follow the engine's. Queued events are dropped: the translator
// and the tiers already reflect them.
func (e *emitter) snapshot() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pending = nil
	events := e.appendTiersLocked(e.tr.Snapshot())
	e.seq = 0
	for first := true; first || len(events) > 0; first = false {
		n := min(len(events), e.maxEvents)
		e.emitLocked(events[:n:n], first)
		events = events[n:]
	}
}

// run flushes queued events flushEvery after the first of them arrives,
// until ctx ends, then flushes what is left.
func (e *emitter) run(ctx context.Context) {
	t := time.NewTimer(e.flushEvery)
	t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.flush()
			return
		case <-e.kick:
		}
		t.Reset(e.flushEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			e.flush()
			return
		case <-t.C:
		}
		e.flush()
	}
}

// stats returns the translator's counters and the number of batches sent.
func (e *emitter) stats() (TranslatorStats, uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tr.Stats(), e.batches
}
