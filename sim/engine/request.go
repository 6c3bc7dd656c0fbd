package engine

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/strata-llm/strata/kvhash"
	"github.com/strata-llm/strata/sim/kvevents"
)

// Request is what a caller submits to the engine.
type Request struct {
	ID        string
	Prompt    []uint32
	MaxTokens int
	// IgnoreEOS keeps generating until MaxTokens, as benchmarks ask.
	IgnoreEOS bool
	// Seed makes the sampled output reproducible.
	Seed uint64
	// HoldKV keeps the request's blocks after it finishes, for a remote
	// decode worker to pull (prefill role, vLLM's do_remote_decode).
	HoldKV bool
	// RemoteTokens is the prompt prefix whose KV arrives from a prefill
	// worker (decode role, vLLM's do_remote_prefill): it is charged transfer
	// time instead of prefill compute.
	RemoteTokens int
}

// FinishReason says why a request stopped, in OpenAI's words.
type FinishReason string

// Finish reasons reported on a Stream.
const (
	FinishStop   FinishReason = "stop"
	FinishLength FinishReason = "length"
	FinishAbort  FinishReason = "abort"
)

// Result is what the engine knows about a finished request.
type Result struct {
	Reason           FinishReason
	PromptTokens     int
	CompletionTokens int
	// CachedTokens were not computed: local prefix-cache hits plus KV
	// received from a remote prefill.
	CachedTokens int
	// HeldBlocks are the block ids kept for a remote decode (HoldKV).
	HeldBlocks []int
	Arrival    time.Time
	Scheduled  time.Time
	FirstToken time.Time
	Finished   time.Time
}

// Stream delivers a request's tokens as the engine produces them. The engine
// never waits on a reader: it appends under a lock and signals.
type Stream struct {
	mu       sync.Mutex
	pending  []uint32
	done     bool
	result   Result
	notify   chan struct{}
	tokenAts []time.Time
}

func newStream() *Stream { return &Stream{notify: make(chan struct{}, 1)} }

// Delta is what Next returns: the tokens produced since the previous call
// with the time each was produced, and whether the request is done.
type Delta struct {
	Tokens []uint32
	Times  []time.Time
	Done   bool
}

// Next waits for new tokens or the end of the request. When ctx ends first it
// returns ctx's error; the caller should Abort the request.
func (s *Stream) Next(ctx context.Context) (Delta, error) {
	for {
		s.mu.Lock()
		if len(s.pending) > 0 || s.done {
			d := Delta{Tokens: s.pending, Times: s.tokenAts, Done: s.done}
			s.pending, s.tokenAts = nil, nil
			s.mu.Unlock()
			return d, nil
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Delta{}, ctx.Err()
		}
	}
}

// Result is valid once Next has reported Done.
func (s *Stream) Result() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.result
}

func (s *Stream) push(tok uint32, at time.Time) {
	s.mu.Lock()
	s.pending = append(s.pending, tok)
	s.tokenAts = append(s.tokenAts, at)
	s.mu.Unlock()
	s.signal()
}

func (s *Stream) finish(r Result) {
	s.mu.Lock()
	s.done, s.result = true, r
	s.mu.Unlock()
	s.signal()
}

func (s *Stream) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// request is the engine's state for one sequence.
type request struct {
	Request
	tokens     []uint32 // prompt then output
	numPrompt  int
	numOutput  int
	computed   int // tokens whose KV is in blocks
	blocks     []*block
	hashes     []kvevents.BlockHash // of the full blocks of tokens
	seqs       []uint64             // their Strata sequence hashes, with a KV connector
	hasher     kvhash.Hasher
	numCached  int // leading blocks already in the prefix cache
	eosAt      int // output length at which the model emits EOS; 0 = never
	rng        *rand.Rand
	readyAt    time.Time // remote KV arrival (decode role)
	cachedToks int
	started    bool
	// The KV connector's part: loadTried once a load was started, ext
	// what it onboarded.
	loadTried bool
	ext       external
	stream    *Stream
	result    Result
}

// external is a run of blocks a KV connector onboarded: blocks
// [from, from+blocks) of the prompt, bytes in all.
type external struct {
	from, blocks int
	bytes        int64
}

// extendHashes hashes every newly full block of r.tokens; with strata set,
// also its Strata sequence hash (package kvhash), the name a KV connector
// stores it under.
func (r *request) extendHashes(blockSize int, root kvevents.BlockHash, strata bool) {
	for n := len(r.hashes); (n+1)*blockSize <= len(r.tokens); n++ {
		parent := root
		if n > 0 {
			parent = r.hashes[n-1]
		}
		tokens := r.tokens[n*blockSize : (n+1)*blockSize]
		r.hashes = append(r.hashes, hashBlock(parent, tokens))
		if strata {
			local := r.hasher.Local(tokens, kvhash.Seed)
			if n > 0 {
				local = kvhash.Chain(r.seqs[n-1], local)
			}
			r.seqs = append(r.seqs, local)
		}
	}
}
