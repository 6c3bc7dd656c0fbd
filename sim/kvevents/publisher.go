// Package kvevents re-implements vLLM's KV cache event publisher
// (vllm/distributed/kv_events.py ZmqEventPublisher) so that the engine
// simulator emits the same ZeroMQ messages a real vLLM does, and a Strata
// agent written against the simulator works unchanged against vLLM.
//
// Live messages are three frames on a PUB socket: topic, an 8-byte big-endian
// sequence number counting from 0 per process, and the msgpack batch
// [ts, [events...], dp_rank]. A ROUTER socket replays recently published
// batches on request so a subscriber that saw a gap can catch up.
package kvevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Options are the parts of vLLM's behaviour that depend on its version or
// environment rather than on --kv-events-config. The zero value is vLLM
// 0.24-0.25 with default environment: map-encoded events, uint64 hashes,
// replay replies without a topic frame.
type Options struct {
	Encoding Encoding
	Hashes   HashEncoding
	// DPRank is the data-parallel rank: it is written into every batch and
	// offsets the endpoints (tcp port + rank, inproc name + "_dp<rank>").
	DPRank int
	// ReplayWithTopic makes replay replies [topic, seq, payload] as in vLLM
	// >= 0.26; otherwise they are [seq, payload].
	ReplayWithTopic bool
	Logger          *slog.Logger // nil discards logs
}

// Publisher publishes KV cache event batches on ZeroMQ. Its methods are safe
// for concurrent use.
type Publisher struct {
	log            *slog.Logger
	opts           Options
	topic          []byte
	endpoint       string
	replayEndpoint string
	pub            zmq4.Socket
	router         zmq4.Socket
	ring           ring
	cancel         context.CancelFunc
	disabled       bool // vLLM's NullEventPublisher

	// mu guards the hand-off from Publish to the sender goroutine.
	mu       sync.Mutex
	nextSeq  uint64
	queue    []entry
	maxQueue int
	closed   bool
	dropped  uint64
	wake     chan struct{} // buffered(1): "the queue changed"

	senderDone chan struct{}
	wg         sync.WaitGroup // replay and dial goroutines
	closeOnce  sync.Once
	closeErr   error
}

// NewPublisher starts publishing per cfg. As in vLLM's EventPublisherFactory,
// a config with events disabled or publisher "null" yields a Publisher that
// discards everything, so callers need not special-case it. Cancelling ctx
// stops the publisher as Close would, without flushing.
func NewPublisher(ctx context.Context, cfg Config, opts Options) (*Publisher, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := opts.validateEncoding(); err != nil {
		return nil, err
	}
	if opts.DPRank < 0 {
		return nil, fmt.Errorf("kvevents: negative data parallel rank %d", opts.DPRank)
	}
	p := &Publisher{
		log:        opts.Logger,
		opts:       opts,
		topic:      []byte(cfg.Topic),
		maxQueue:   cfg.MaxQueueSize,
		wake:       make(chan struct{}, 1),
		senderDone: make(chan struct{}),
	}
	p.ring.max = cfg.BufferSteps
	if !cfg.enabled() {
		p.disabled, p.closed = true, true
		close(p.senderDone)
		return p, nil
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("kvevents: %w", err)
	}

	var err error
	if p.endpoint, err = offsetEndpoint(cfg.Endpoint, opts.DPRank); err != nil {
		return nil, fmt.Errorf("kvevents: endpoint: %w", err)
	}
	if p.replayEndpoint, err = offsetEndpoint(cfg.ReplayEndpoint, opts.DPRank); err != nil {
		return nil, fmt.Errorf("kvevents: replay endpoint: %w", err)
	}

	ctx, p.cancel = context.WithCancel(ctx)
	if err := p.openSockets(ctx, cfg.HWM); err != nil {
		p.cancel()
		_ = p.closeSockets()
		p.wg.Wait()
		return nil, err
	}
	p.log.Info("kv events publisher started",
		"endpoint", p.endpoint, "replay_endpoint", p.replayEndpoint,
		"topic", cfg.Topic, "dp_rank", opts.DPRank)

	go p.send(ctx)
	if p.router != nil {
		p.wg.Add(1)
		go p.serveReplay(ctx)
	}
	return p, nil
}

func (p *Publisher) openSockets(ctx context.Context, hwm int) error {
	bind := isBindEndpoint(p.endpoint)
	if bind {
		p.pub = zmq4.NewPub(ctx)
	} else {
		// libzmq's connect never fails for an absent peer; it keeps
		// retrying in the background. zmq4 dials synchronously, so do the
		// same from a goroutine.
		p.pub = zmq4.NewPub(ctx, zmq4.WithDialerMaxRetries(-1), zmq4.WithAutomaticReconnect(true))
	}
	if err := p.pub.SetOption(zmq4.OptionHWM, hwm); err != nil {
		return fmt.Errorf("kvevents: set hwm: %w", err)
	}
	if bind {
		if err := p.pub.Listen(p.endpoint); err != nil {
			return fmt.Errorf("kvevents: bind %s: %w", p.endpoint, err)
		}
		p.endpoint = boundEndpoint(p.endpoint, p.pub.Addr())
	} else {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.pub.Dial(p.endpoint); err != nil && ctx.Err() == nil {
				p.log.Error("kv events publisher cannot connect", "endpoint", p.endpoint, "err", err)
			}
		}()
	}

	if p.replayEndpoint != "" {
		p.router = zmq4.NewRouter(ctx)
		if err := p.router.Listen(p.replayEndpoint); err != nil {
			return fmt.Errorf("kvevents: bind replay %s: %w", p.replayEndpoint, err)
		}
		p.replayEndpoint = boundEndpoint(p.replayEndpoint, p.router.Addr())
	}
	return nil
}

// boundEndpoint puts the port actually bound into a tcp endpoint so that an
// ephemeral port (0 or *) can be told to subscribers.
func boundEndpoint(ep string, addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	i := strings.LastIndexByte(ep, ':')
	if !ok || !strings.HasPrefix(ep, "tcp://") || i < 0 {
		return ep
	}
	return ep[:i+1] + strconv.Itoa(tcp.Port)
}

// Endpoint is the PUB endpoint in use, after the data-parallel offset and
// with the real port if it was bound ephemerally ("tcp://*:0" becomes e.g.
// "tcp://*:40123"). Empty when the publisher is disabled.
func (p *Publisher) Endpoint() string { return p.endpoint }

// ReplayEndpoint is the bound replay address, or "" without replay.
func (p *Publisher) ReplayEndpoint() string { return p.replayEndpoint }

// Publish hands a batch of events to the sender goroutine and returns at
// once: it runs in the engine's step loop, which must never wait on
// subscribers. The batch is encoded here, so the caller may reuse events
// afterwards.
//
// vLLM's own publish blocks when its queue is full. Here a full queue drops
// the batch and counts it (see Dropped), but the batch still consumes its
// sequence number, so subscribers see a gap and can resync instead of
// silently missing events. An empty slice publishes nothing, as vLLM's
// scheduler only publishes non-empty batches.
func (p *Publisher) Publish(events []Event) {
	if len(events) == 0 || p.disabled {
		return
	}
	payload, err := appendBatch(make([]byte, 0, batchSizeHint(events)),
		float64(time.Now().UnixNano())/1e9, events, p.opts.DPRank, p.opts)
	if err != nil {
		p.log.Error("kv events batch not published", "err", err)
		p.mu.Lock()
		p.dropped++
		p.mu.Unlock()
		return
	}

	p.mu.Lock()
	if p.closed {
		p.dropped++
		p.mu.Unlock()
		return
	}
	seq := p.nextSeq
	p.nextSeq++
	if p.maxQueue > 0 && len(p.queue) >= p.maxQueue {
		p.dropped++
		n := p.dropped
		p.mu.Unlock()
		if n&(n-1) == 0 { // log the 1st, 2nd, 4th, ... drop
			p.log.Warn("kv events queue full, batch dropped", "seq", seq, "dropped_total", n)
		}
		return
	}
	p.queue = append(p.queue, entry{seq: seq, payload: payload})
	p.mu.Unlock()

	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Dropped is the number of batches Publish discarded: queue full, publisher
// closed, or not encodable.
func (p *Publisher) Dropped() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// send moves queued batches onto the PUB socket and into the replay ring
// until Close has been called and the queue is empty.
func (p *Publisher) send(ctx context.Context) {
	defer close(p.senderDone)
	var batch []entry
	for {
		p.mu.Lock()
		batch, p.queue = p.queue, batch[:0]
		closed := p.closed
		p.mu.Unlock()

		for i, e := range batch {
			// Buffered before it is sent, and even if the send fails:
			// replay runs on its own goroutine, and a subscriber that
			// saw a batch live must find it in a replay asked for right
			// after (vLLM buffers after sending, but serves replays on
			// the same thread, between batches).
			p.ring.add(e)
			// zmq4's PUB queues the message and applies the HWM itself,
			// so this does not wait for subscribers.
			msg := zmq4.NewMsgFrom(p.topic, seqBytes(e.seq), e.payload)
			if err := p.pub.SendMulti(msg); err != nil {
				p.log.Error("kv events batch not sent", "seq", e.seq, "err", err)
			}
			batch[i] = entry{}
		}
		if len(batch) > 0 {
			continue
		}
		if closed {
			return
		}
		select {
		case <-p.wake:
		case <-ctx.Done():
			p.mu.Lock()
			p.closed = true
			p.mu.Unlock()
			return
		}
	}
}

// serveReplay answers replay requests. It runs apart from send so a slow
// replay client never delays live events (vLLM interleaves both in one
// thread).
func (p *Publisher) serveReplay(ctx context.Context) {
	defer p.wg.Done()
	for {
		msg, err := p.router.Recv()
		if err != nil {
			if ctx.Err() == nil {
				p.log.Error("kv events replay socket failed", "err", err)
			}
			return
		}
		req, err := parseReplayRequest(msg.Frames)
		if err != nil {
			p.log.Warn("invalid kv events replay request ignored", "err", err, "frames", len(msg.Frames))
			continue
		}
		if err := p.replay(req); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("kv events replay aborted", "start_seq", req.start, "err", err)
		}
	}
}

func (p *Publisher) replay(req replayRequest) error {
	entries := p.ring.since(req.start)
	p.log.Debug("kv events replay", "start_seq", req.start, "batches", len(entries))
	for _, e := range entries {
		frames := req.reply(replyFrames(p.opts.ReplayWithTopic, p.topic, e)...)
		if err := p.router.Send(zmq4.NewMsgFrom(frames...)); err != nil {
			return err
		}
	}
	return p.router.Send(zmq4.NewMsgFrom(req.reply(endFrames(p.opts.ReplayWithTopic)...)...))
}

// Close publishes what is still queued, then stops the goroutines and closes
// the sockets. Like vLLM (linger=0), messages the socket has not yet written
// to a subscriber may be lost. Close is idempotent.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
		<-p.senderDone
		p.closeErr = p.closeSockets()
		if p.cancel != nil {
			p.cancel()
		}
		p.wg.Wait()
	})
	return p.closeErr
}

// closeSockets closes both sockets. Connections a peer already closed are
// not an error worth reporting.
func (p *Publisher) closeSockets() error {
	var errs []error
	for _, s := range []zmq4.Socket{p.pub, p.router} {
		if s == nil {
			continue
		}
		if err := s.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
