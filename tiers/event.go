package tiers

import (
	"fmt"
	"slices"
	"sync"
)

// Medium is where a tier keeps its blocks. The values equal those of the
// KV event protocol's Medium (proto/strata/v1/kvevent.proto), so the agent
// converts with stratav1.Medium(m); GPU is the engine's and never a tier.
type Medium uint8

// The media of the tiers. Remote is shared by every node of the cluster.
const (
	MediumNone Medium = 0
	CPU        Medium = 2
	Disk       Medium = 3
	Remote     Medium = 4
)

func (m Medium) String() string {
	switch m {
	case MediumNone:
		return "none"
	case CPU:
		return "cpu"
	case Disk:
		return "disk"
	case Remote:
		return "remote"
	}
	return fmt.Sprintf("medium(%d)", uint8(m))
}

// EventType says what happened to the blocks of an Event.
type EventType uint8

const (
	// Stored: the tier now holds the blocks.
	Stored EventType = iota + 1
	// Removed: the tier no longer holds them (evicted, deleted, dropped as
	// corrupt, or, for the remote tier, found missing by a read).
	Removed
	// Overflow: the consumer fell so far behind that events were dropped;
	// it must resync from Hierarchy.Blocks. Medium and Keys are empty.
	Overflow
)

func (t EventType) String() string {
	switch t {
	case Stored:
		return "stored"
	case Removed:
		return "removed"
	case Overflow:
		return "overflow"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Event is a change of one tier's block set, in the order the Hierarchy
// made the changes. A block that moves down is Stored on the lower tier
// before it is Removed from the upper one, so it never looks absent.
type Event struct {
	Type   EventType
	Medium Medium
	Keys   []Key
}

// eventQueue hands events to the consumer in order, from one goroutine,
// without ever making the hierarchy wait for it: push only appends (under
// the hierarchy's lock, so the queue's order is the order of the changes)
// and merges an event into the previous one of the same type and medium.
// Past maxKeys waiting keys the queue is replaced by one Overflow event.
type eventQueue struct {
	fn      func(Event)
	maxKeys int
	dropped func(n int)

	mu      sync.Mutex
	pending []Event
	keys    int
	wake    chan struct{}
}

func newEventQueue(fn func(Event), maxKeys int, dropped func(int)) *eventQueue {
	return &eventQueue{fn: fn, maxKeys: maxKeys, dropped: dropped, wake: make(chan struct{}, 1)}
}

func (q *eventQueue) push(typ EventType, medium Medium, keys []Key) {
	if q.fn == nil || len(keys) == 0 {
		return
	}
	q.mu.Lock()
	if q.keys+len(keys) > q.maxKeys {
		q.dropped(q.keys + len(keys))
		q.pending, q.keys = append(q.pending[:0], Event{Type: Overflow}), 0
		q.mu.Unlock()
		q.signal()
		return
	}
	q.keys += len(keys)
	if n := len(q.pending); n > 0 && q.pending[n-1].Type == typ && q.pending[n-1].Medium == medium {
		q.pending[n-1].Keys = append(q.pending[n-1].Keys, keys...)
	} else {
		q.pending = append(q.pending, Event{Type: typ, Medium: medium, Keys: slices.Clone(keys)})
	}
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run delivers events until stop is closed, then delivers what is left.
func (q *eventQueue) run(stop <-chan struct{}) {
	for {
		select {
		case <-q.wake:
			q.deliver()
		case <-stop:
			q.deliver()
			return
		}
	}
}

func (q *eventQueue) deliver() {
	for {
		q.mu.Lock()
		batch := q.pending
		q.pending, q.keys = nil, 0
		q.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for _, ev := range batch {
			q.fn(ev)
		}
	}
}
