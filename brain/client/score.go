package client

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Scorer sends Score queries over one GatewayService.ScoreStream, which a
// gateway keeps open for its lifetime: a query is one message each way,
// with none of a unary call's per-call stream setup, headers and
// authentication. Concurrent queries share the stream; each waits for the
// answer carrying its id. When the stream breaks (the replica died or
// restarted), the queries waiting on it fail with UNAVAILABLE and the next
// query opens a new stream, on whichever replica the connection then uses.
// A Scorer is safe for concurrent use.
type Scorer struct {
	gw     stratav1.GatewayServiceClient
	ctx    context.Context // ends every stream on Close
	cancel context.CancelFunc

	// sendMu serialises Send, which gRPC requires; it is separate from mu
	// so that a Send waiting for flow control never holds up the receiver
	// handing out the answers that would free it.
	sendMu sync.Mutex

	mu      sync.Mutex // guards the fields below
	stream  stratav1.GatewayService_ScoreStreamClient
	pending map[uint64]chan<- scoreAnswer
	nextID  uint64
	closed  bool
}

// WorkerScore is one worker's answer to a Score: the number of leading
// blocks of the query it holds on each tier.
type WorkerScore struct {
	WorkerID               string
	GPU, CPU, Disk, Remote uint32
}

type scoreAnswer struct {
	scores []WorkerScore
	err    error
}

// ErrScorerClosed is returned by Score after Close.
var ErrScorerClosed = errors.New("brain scorer closed")

// Scorer returns a new streaming Score client on c's connection. Close it
// when done; closing c ends it too.
func (c *Client) Scorer() *Scorer {
	ctx, cancel := context.WithCancel(context.Background())
	return &Scorer{gw: c.gateway, ctx: ctx, cancel: cancel, pending: map[uint64]chan<- scoreAnswer{}}
}

// Score asks for the leading blocks of req's hashes each worker holds. It
// returns when the answer arrives, the stream breaks (UNAVAILABLE), or ctx
// ends (ctx's error).
func (s *Scorer) Score(ctx context.Context, req *stratav1.ScoreRequest) ([]WorkerScore, error) {
	ch := make(chan scoreAnswer, 1)
	id, err := s.send(req, ch)
	if err != nil {
		return nil, err
	}
	select {
	case a := <-ch:
		return a.scores, a.err
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

// send registers ch for the answer and sends the query, opening a stream
// first when there is none.
func (s *Scorer) send(req *stratav1.ScoreRequest, ch chan<- scoreAnswer) (uint64, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrScorerClosed
	}
	if s.stream == nil {
		st, err := s.gw.ScoreStream(s.ctx)
		if err != nil {
			s.mu.Unlock()
			return 0, status.Errorf(codes.Unavailable, "open score stream: %v", err)
		}
		s.stream = st
		go s.receive(st)
	}
	s.nextID++
	id, st := s.nextID, s.stream
	s.pending[id] = ch
	s.mu.Unlock()

	s.sendMu.Lock()
	err := st.Send(&stratav1.ScoreStreamRequest{Id: id, Query: req})
	s.sendMu.Unlock()
	if err != nil {
		// The receiver sees the broken stream too and fails the others.
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
		return 0, status.Errorf(codes.Unavailable, "send score query: %v", err)
	}
	return id, nil
}

// receive hands each answer of st to its waiting query until st breaks,
// then fails every query still waiting on it.
func (s *Scorer) receive(st stratav1.GatewayService_ScoreStreamClient) {
	var dec ScoreDecoder
	for {
		res, err := st.Recv()
		s.mu.Lock()
		if err != nil {
			if s.stream == st {
				s.stream = nil
			}
			if status.Code(err) != codes.Canceled {
				err = status.Errorf(codes.Unavailable, "score stream broke: %v", err)
			}
			for id, ch := range s.pending {
				ch <- scoreAnswer{err: err}
				delete(s.pending, id)
			}
			s.mu.Unlock()
			return
		}
		ch, ok := s.pending[res.GetId()]
		delete(s.pending, res.GetId())
		s.mu.Unlock()
		// Every answer is decoded, waited for or not: each may number
		// workers the later ones use.
		scores, err := dec.Decode(res)
		if ok {
			ch <- scoreAnswer{scores: scores, err: err}
		}
	}
}

// ScoreDecoder turns one ScoreStream's answers, in the order they arrive,
// into scores per worker: it keeps the stream's worker numbering.
type ScoreDecoder struct {
	workers []string
}

// Decode expands one answer. An answer for an invalid query is an
// InvalidArgument error.
func (d *ScoreDecoder) Decode(res *stratav1.ScoreStreamResponse) ([]WorkerScore, error) {
	if res.GetResetWorkers() {
		d.workers = d.workers[:0]
	}
	d.workers = append(d.workers, res.GetNewWorkers()...)
	if msg := res.GetError(); msg != "" {
		return nil, status.Error(codes.InvalidArgument, msg)
	}
	n := 0
	for _, g := range res.GetGroups() {
		n += len(g.GetWorkers())
	}
	out := make([]WorkerScore, 0, n)
	for _, g := range res.GetGroups() {
		for _, num := range g.GetWorkers() {
			if int(num) >= len(d.workers) {
				return nil, status.Errorf(codes.Internal, "score answer names worker %d of %d known on the stream", num, len(d.workers))
			}
			out = append(out, WorkerScore{WorkerID: d.workers[num], GPU: g.GetGpu(), CPU: g.GetCpu(), Disk: g.GetDisk(), Remote: g.GetRemote()})
		}
	}
	return out, nil
}

// Close ends the stream; queries waiting fail with Canceled.
func (s *Scorer) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
}
