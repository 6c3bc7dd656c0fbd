// Package workload builds the requests of a benchmark run: synthetic random
// lengths, shared-prefix repetition, multi-turn chat sessions, and replays of
// Mooncake (JSONL) and Azure (CSV) traces.
//
// A workload is a list of Items that describe prompts instead of holding
// them: a prompt is a sequence of Segments, each a run of tokens drawn from a
// pseudo-random generator seeded by the segment. Equal segments give equal
// tokens, and a shorter segment with the same seed gives a prefix of a longer
// one, so shared prefixes (prefix repetition, Mooncake hash ids, a chat
// history) are identical on the wire while a 4,000-request trace of 15k-token
// prompts costs kilobytes until each prompt is rendered, just before it is
// sent. Everything random derives from the run's seed, except Mooncake
// hash-id blocks, which depend on the id alone.
package workload

import (
	"errors"
	"fmt"
	"time"
)

// Kinds of workload.
const (
	KindSynthetic = "synthetic"
	KindPrefix    = "prefix"
	KindChat      = "chat"
	KindTrace     = "trace"
)

// Segment is a run of Len prompt tokens drawn from a generator seeded with
// Seed.
type Segment struct {
	Seed uint64
	Len  int
}

// Item is one request of a workload, before it is rendered and sent.
type Item struct {
	Index int
	// At is when the request is due, from the start of the run. Traces
	// carry it; generated workloads get it from an arrival process.
	At time.Duration
	// Prompt is the completion prompt, or the user turn of a chat round.
	Prompt       []Segment
	OutputTokens int
	// Session numbers a chat conversation from 1 (0: not a chat); Round
	// counts its turns from 0. Round r is sent only after round r−1 ended,
	// with the answers so far in its history.
	Session int
	Round   int
}

// PromptLen is the number of tokens the item's own segments render to.
func (it *Item) PromptLen() int {
	n := 0
	for _, s := range it.Prompt {
		n += s.Len
	}
	return n
}

// Workload is a finite list of requests in schedule order.
type Workload struct {
	Kind  string
	Items []Item
	// System is the system prompt every chat session starts with.
	System []Segment
	// Timed reports that Items carry their own arrival times (a trace).
	Timed bool
	// TraceSpan is the span of a trace's timestamps, and TraceRequests its
	// rows, before a request count cuts it.
	TraceSpan     time.Duration
	TraceRequests int
}

// Spec chooses and sizes a workload.
type Spec struct {
	Kind      string
	Synthetic Synthetic
	Prefix    Prefix
	Chat      Chat
	Trace     Trace
}

// ErrSpec is wrapped by every error about an invalid Spec.
var ErrSpec = errors.New("invalid workload")

// Build makes the workload of spec with n requests (0: a generated
// workload's default of 1000, a chat's users × rounds, a trace's every row);
// seed drives every random choice.
func Build(spec Spec, n int, seed uint64) (*Workload, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: %d requests", ErrSpec, n)
	}
	switch spec.Kind {
	case KindSynthetic:
		return spec.Synthetic.build(orDefault(n), seed)
	case KindPrefix:
		return spec.Prefix.build(orDefault(n), seed)
	case KindChat:
		return spec.Chat.build(n, seed)
	case KindTrace:
		w, err := spec.Trace.Load(seed)
		if err != nil {
			return nil, err
		}
		w.TraceRequests = len(w.Items)
		if n > 0 && n < len(w.Items) {
			w.Items = w.Items[:n]
		}
		return w, nil
	}
	return nil, fmt.Errorf("%w: kind %q (want %s, %s, %s or %s)", ErrSpec, spec.Kind, KindSynthetic, KindPrefix, KindChat, KindTrace)
}

// DefaultRequests is the size of a generated workload when none is given,
// as in `vllm bench serve`.
const DefaultRequests = 1000

func orDefault(n int) int {
	if n == 0 {
		return DefaultRequests
	}
	return n
}
