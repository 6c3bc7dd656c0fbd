package kvevents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Subscriber defaults.
const (
	DefaultReplayTimeout = 2 * time.Second
	// DefaultCatchUpInterval: how long a quiet stream waits before asking
	// the replay socket whether it missed the last batches.
	DefaultCatchUpInterval = time.Second
	DefaultMinBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff      = 5 * time.Second
)

// endSeq is the sequence frame of the message that ends a replay: vLLM's
// (-1).to_bytes(8, "big", signed=True).
const endSeq = ^uint64(0)

// SubscriberConfig configures a Subscriber for one engine's ZMQ stream.
type SubscriberConfig struct {
	// WorkerID names the worker in every batch.
	WorkerID string
	// Endpoint is the engine's PUB socket to connect to, e.g.
	// tcp://127.0.0.1:5557.
	Endpoint string
	// ReplayEndpoint is the engine's replay ROUTER, "" if it has none
	// (every gap is then a resync).
	ReplayEndpoint string
	// Topic is the subscription prefix ("" for all).
	Topic string
	// Decode decodes a batch payload: DecodeVLLM (the default) or
	// DecodeSGLang.
	Decode func([]byte) (EngineBatch, error)
	// BlockSize is the deployment's block size, for events without one.
	BlockSize int
	// Sink receives the batches. Required.
	Sink Sink
	// Tiers lists the worker's blocks on the node's KV tiers, for
	// snapshots and after a clear (nil: none; see TierBlocks).
	Tiers TierBlocks
	// Logger; nil discards.
	Logger *slog.Logger
	// ReplayTimeout bounds one replay request, connection included.
	ReplayTimeout time.Duration
	// CatchUpInterval: after this long without a live message, the
	// subscriber replays from the next expected sequence. A gap is otherwise
	// seen only when a later message arrives, and the batches published while
	// a new SUB's subscription was still propagating (ZeroMQ's slow joiner)
	// are lost for good if the engine then goes quiet.
	CatchUpInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnections; the
	// wait doubles after each failure and is reset once messages flow.
	MinBackoff, MaxBackoff time.Duration
	// FlushInterval and MaxBatchEvents bound batching (see Default*).
	FlushInterval  time.Duration
	MaxBatchEvents int
}

// SubscriberStats counts what a Subscriber saw.
type SubscriberStats struct {
	// Messages is the number of live messages received.
	Messages uint64
	// Garbage is the number of messages, replay replies and payloads that
	// could not be decoded and were skipped.
	Garbage uint64
	// SkippedEvents counts events of unknown types in decoded batches.
	SkippedEvents uint64
	// Gaps counts sequence gaps; Replayed the batches replay recovered.
	Gaps, Replayed uint64
	// ReplayFailures counts gaps replay could not fill.
	ReplayFailures uint64
	// Restarts counts sequences that went backwards (engine restarts).
	Restarts uint64
	// Reconnects counts lost or failed connections.
	Reconnects uint64
	// Batches is the number of Strata batches emitted.
	Batches    uint64
	Translator TranslatorStats
}

// Subscriber reads one vLLM or SGLang KV event stream — a ZeroMQ SUB socket
// on the engine's PUB endpoint — and emits the worker's Strata batches.
//
// Every live message carries an 8-byte big-endian sequence number that
// counts from 0 in each engine process. The Subscriber applies batches in
// sequence order and treats a break in it as follows:
//
//   - a gap (seq above the next expected): ask the engine's replay ROUTER
//     for the missing batches and apply them first; if replay is absent,
//     fails, times out or starts later than asked (the engine's buffer no
//     longer holds them), the worker's state is unknown: resync.
//   - seq below the next expected: the engine restarted (its cache is
//     empty and its numbering began again): resync, then read the new
//     process's stream from seq 0, replaying what was missed.
//   - a new connection: the Subscriber cannot know what happened while it
//     was not connected (the engine may have restarted, and the first
//     messages after a SUB connects are lost to ZeroMQ's slow-joiner
//     race), so it resyncs and rebuilds from seq 0 by replay, as far as the
//     engine's buffer reaches.
//
// A resync forgets the worker's blocks and emits AllBlocksCleared: the brain
// drops the worker's entries and re-learns them as blocks are stored, which
// costs cache hits for a while rather than routing on blocks that may be
// gone.
type Subscriber struct {
	cfg  SubscriberConfig
	log  *slog.Logger
	zlog *log.Logger // zmq4's own logging, into log at debug level
	em   *emitter

	// next is the sequence number expected next; only Run's goroutine
	// uses it.
	next uint64

	lc lifecycle

	messages, garbage, skipped, gaps, replayed, replayFailures, restarts, reconnects atomic.Uint64
}

// NewSubscriber checks cfg and returns a Subscriber; Run starts it.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if cfg.WorkerID == "" {
		return nil, errors.New("kvevents: subscriber needs a worker id")
	}
	if cfg.Sink == nil {
		return nil, errors.New("kvevents: subscriber needs a sink")
	}
	if err := checkDialEndpoint(cfg.Endpoint); err != nil {
		return nil, err
	}
	if cfg.ReplayEndpoint != "" {
		if err := checkDialEndpoint(cfg.ReplayEndpoint); err != nil {
			return nil, err
		}
	}
	if cfg.Decode == nil {
		cfg.Decode = DecodeVLLM
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CatchUpInterval <= 0 {
		cfg.CatchUpInterval = DefaultCatchUpInterval
	}
	if cfg.ReplayTimeout <= 0 {
		cfg.ReplayTimeout = DefaultReplayTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	lg := cfg.Logger.With("worker", cfg.WorkerID, "endpoint", cfg.Endpoint)
	return &Subscriber{
		cfg:  cfg,
		log:  lg,
		zlog: slog.NewLogLogger(lg.Handler(), slog.LevelDebug),
		em:   newEmitter(cfg.WorkerID, cfg.BlockSize, cfg.Sink, cfg.Tiers, cfg.FlushInterval, cfg.MaxBatchEvents),
	}, nil
}

// checkDialEndpoint rejects what cannot be connected to, such as the
// engine's own bind address (tcp://*:5557).
func checkDialEndpoint(ep string) error {
	if !strings.Contains(ep, "://") || strings.Contains(ep, "*") {
		return fmt.Errorf("kvevents: endpoint %q: want transport://host:port to connect to", ep)
	}
	return nil
}

// Run reads the stream until ctx ends or Close is called, reconnecting with
// backoff whenever the connection cannot be made or is lost. It returns nil
// then, ErrClosed if the Subscriber was already closed.
func (s *Subscriber) Run(ctx context.Context) error {
	return s.lc.run(ctx, s.em, s.loop)
}

func (s *Subscriber) loop(ctx context.Context) {
	backoff := s.cfg.MinBackoff
	for {
		received, err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		// Whatever the engine did while the connection was down is
		// unknown; say so now rather than at the next connection.
		s.em.resync()
		s.reconnects.Add(1)
		if received {
			backoff = s.cfg.MinBackoff
		}
		s.log.Warn("kv event stream interrupted, reconnecting", "err", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// Close stops Run and waits for its goroutines; queued events are flushed.
// It is idempotent.
func (s *Subscriber) Close() error {
	s.lc.close()
	return nil
}

// EmitSnapshot sends the worker's whole block set as a snapshot (see
// emitter.snapshot): when a brain connects or reports a gap in the batches.
// It is safe to call at any time, concurrently with Run.
func (s *Subscriber) EmitSnapshot() { s.em.snapshot() }

// Inject adds events that did not come from the engine (the KVBM's tier
// changes for this worker) to the worker's stream, in order with the
// engine's. It is safe to call at any time, concurrently with Run.
func (s *Subscriber) Inject(events []*stratav1.KVEvent) { s.em.inject(events) }

// Stats returns the counters.
func (s *Subscriber) Stats() SubscriberStats {
	tr, batches := s.em.stats()
	return SubscriberStats{
		Messages:       s.messages.Load(),
		Garbage:        s.garbage.Load(),
		SkippedEvents:  s.skipped.Load(),
		Gaps:           s.gaps.Load(),
		Replayed:       s.replayed.Load(),
		ReplayFailures: s.replayFailures.Load(),
		Restarts:       s.restarts.Load(),
		Reconnects:     s.reconnects.Load(),
		Batches:        batches,
		Translator:     tr,
	}
}

// session connects a SUB socket and handles messages until the connection
// fails. received reports whether any message arrived.
func (s *Subscriber) session(ctx context.Context) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// No dial retries: zmq4 would retry inside Dial, sleeping between
	// attempts without watching ctx; Run's loop retries with backoff.
	sub := zmq4.NewSub(ctx, zmq4.WithDialerMaxRetries(0), zmq4.WithLogger(s.zlog))
	defer sub.Close()
	if err := sub.SetOption(zmq4.OptionSubscribe, s.cfg.Topic); err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	if err := sub.Dial(s.cfg.Endpoint); err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	s.log.Info("kv event stream connected")
	s.em.resync()
	s.next = 0
	msgs := make(chan zmq4.Msg)
	errs := make(chan error, 1)
	go func() {
		for {
			msg, err := sub.Recv()
			if err != nil {
				errs <- err
				return
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(s.cfg.CatchUpInterval)
	defer tick.Stop()
	quiet := false
	for {
		select {
		case msg := <-msgs:
			received, quiet = true, false
			s.messages.Add(1)
			s.handle(ctx, msg.Frames)
		case err := <-errs:
			return received, fmt.Errorf("receive: %w", err)
		case <-tick.C:
			if quiet {
				s.catchUp(ctx)
			}
			quiet = true
		}
	}
}

// catchUp applies the batches the engine published from the next expected
// sequence on that the live stream did not deliver. It asks for the last
// batch applied too: if the engine no longer has it, the engine restarted
// (its sequence starts over) without the connection showing it, and the
// worker's blocks are gone — resync, and the next quiet tick replays the
// new engine from 0. A replay that fails is not an error: the next live
// message still reveals any gap.
func (s *Subscriber) catchUp(ctx context.Context) {
	if s.cfg.ReplayEndpoint == "" {
		return
	}
	from := s.next
	if from > 0 {
		from--
	}
	got, err := s.replay(ctx, from, math.MaxUint64)
	if err != nil {
		return
	}
	if s.next > 0 && (len(got) == 0 || got[0].seq != from) {
		s.restarts.Add(1)
		s.log.Warn("kv event replay lacks the last batch applied: engine restarted", "seq", from)
		s.em.resync()
		s.next = 0
		return
	}
	for _, e := range got {
		if e.seq < s.next {
			continue
		}
		if e.seq > s.next {
			// Batches between fell out of the engine's replay buffer.
			s.replayFailures.Add(1)
			s.log.Warn("kv events lost and not replayable: resync", "from", s.next, "to", e.seq)
			s.em.resync()
		}
		s.applyPayload(e.payload)
		s.replayed.Add(1)
		s.next = e.seq + 1
	}
}

// handle applies one live message [topic, seq, payload], after any batches
// that are missing before it.
func (s *Subscriber) handle(ctx context.Context, frames [][]byte) {
	switch {
	case len(frames) != 3:
		s.countGarbage("live message", fmt.Errorf("want 3 frames [topic, seq, payload], got %d", len(frames)))
		return
	case len(frames[1]) != 8:
		s.countGarbage("live message", fmt.Errorf("sequence frame of %d bytes, want 8", len(frames[1])))
		return
	}
	seq := binary.BigEndian.Uint64(frames[1])
	if seq < s.next {
		s.restarts.Add(1)
		s.log.Warn("kv event sequence went backwards: engine restarted", "seq", seq, "expected", s.next)
		s.em.resync()
		s.next = 0
	}
	if seq > s.next {
		s.fill(ctx, seq)
	}
	s.applyPayload(frames[2])
	s.next = seq + 1
}

// fill brings the worker up to just before seq from the replay socket, or
// resyncs if that cannot be done.
func (s *Subscriber) fill(ctx context.Context, seq uint64) {
	s.gaps.Add(1)
	from := s.next
	got, err := s.replay(ctx, from, seq)
	if err == nil && len(got) == int(seq-from) {
		// replay returns strictly increasing sequence numbers in
		// [from, seq): the right count is the whole range.
		for _, e := range got {
			s.applyPayload(e.payload)
		}
		s.replayed.Add(uint64(len(got)))
		return
	}
	s.replayFailures.Add(1)
	s.log.Warn("kv events lost and not replayable: resync",
		"from", from, "to", seq, "replayed", len(got), "err", err)
	s.em.resync()
	// What replay did return is still true of the worker if nothing is
	// missing between it and the live stream: keep that tail.
	tail := len(got)
	for tail > 0 && got[tail-1].seq == seq-uint64(len(got)-tail+1) {
		tail--
	}
	for _, e := range got[tail:] {
		s.applyPayload(e.payload)
	}
	s.replayed.Add(uint64(len(got) - tail))
}

type replayed struct {
	seq     uint64
	payload []byte
}

// replay asks the engine's ROUTER for the batches from start on and returns,
// in order, those below end. vLLM's ROUTER wants [identity, "", start]: the
// DEALER sends the empty delimiter itself. Replies are one message per
// buffered batch, [seq, payload] or (vLLM >= 0.26) [topic, seq, payload],
// each behind the echoed delimiter, and a final message whose last frame is
// empty (seq all ones). Reading stops at the end marker or once end is
// reached: the live stream carries the rest.
func (s *Subscriber) replay(ctx context.Context, start, end uint64) ([]replayed, error) {
	if s.cfg.ReplayEndpoint == "" {
		return nil, errors.New("no replay endpoint")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReplayTimeout)
	defer cancel()
	d := zmq4.NewDealer(ctx, zmq4.WithDialerMaxRetries(0), zmq4.WithLogger(s.zlog))
	defer d.Close()
	if err := d.Dial(s.cfg.ReplayEndpoint); err != nil {
		return nil, fmt.Errorf("replay connect: %w", err)
	}
	if err := d.Send(zmq4.NewMsgFrom([]byte{}, binary.BigEndian.AppendUint64(nil, start))); err != nil {
		return nil, fmt.Errorf("replay request: %w", err)
	}
	var out []replayed
	for {
		msg, err := d.Recv()
		if err != nil {
			return out, fmt.Errorf("replay: %w", err)
		}
		seq, payload, ok := parseReplayReply(msg.Frames)
		switch {
		case !ok:
			s.countGarbage("replay reply", fmt.Errorf("%d frames", len(msg.Frames)))
		case seq == endSeq || len(payload) == 0:
			return out, nil
		case seq < start || (len(out) > 0 && seq <= out[len(out)-1].seq):
			s.countGarbage("replay reply", fmt.Errorf("seq %d out of order", seq))
		case seq >= end:
			return out, nil
		default:
			out = append(out, replayed{seq, payload})
			if seq == end-1 {
				return out, nil
			}
		}
	}
}

// parseReplayReply takes a reply apart: an optional empty delimiter (real
// vLLM echoes the one the request carried), an optional topic, the 8-byte
// sequence and the payload.
func parseReplayReply(frames [][]byte) (seq uint64, payload []byte, ok bool) {
	if len(frames) >= 3 && len(frames[0]) == 0 {
		frames = frames[1:]
	}
	if len(frames) == 3 {
		frames = frames[1:] // topic
	}
	if len(frames) != 2 || len(frames[0]) != 8 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(frames[0]), frames[1], true
}

func (s *Subscriber) applyPayload(payload []byte) {
	b, err := s.cfg.Decode(payload)
	if err != nil {
		s.countGarbage("payload", err)
		return
	}
	if b.Skipped > 0 {
		s.skipped.Add(uint64(b.Skipped))
	}
	s.em.apply(b.Events)
}

// countGarbage counts an undecodable message and logs the 1st, 2nd, 4th,
// 8th, ... so that a misbehaving engine cannot flood the log.
func (s *Subscriber) countGarbage(what string, err error) {
	n := s.garbage.Add(1)
	if n&(n-1) == 0 {
		s.log.Warn("undecodable kv event "+what+" skipped", "err", err, "garbage_total", n)
	}
}
