package kvevents

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
)

// These tests talk to the publisher through real zmq4 SUB, DEALER and REQ
// sockets, the way a router or the Strata agent would.

const waitTimeout = 5 * time.Second

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(mod func(*Config)) Config {
	cfg := DefaultConfig()
	cfg.EnableKVCacheEvents = true
	cfg.Endpoint = "tcp://*:0"
	cfg.ReplayEndpoint = "tcp://*:0"
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

func startPublisher(t *testing.T, cfg Config, opts Options) *Publisher {
	t.Helper()
	p, err := NewPublisher(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// localAddr turns a bound endpoint such as tcp://[::]:40123 into one a client
// can dial.
func localAddr(t *testing.T, ep string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(ep, "tcp://"))
	if err != nil {
		t.Fatalf("endpoint %q: %v", ep, err)
	}
	return "tcp://127.0.0.1:" + port
}

// waitTopics waits until the PUB socket has seen every subscription, so
// nothing published afterwards can be lost to ZeroMQ's slow-joiner race.
func waitTopics(t *testing.T, p *Publisher, prefixes ...string) {
	t.Helper()
	topics := p.pub.(zmq4.Topics)
	waitFor(t, fmt.Sprintf("subscriptions %q", prefixes), func() bool {
		have := topics.Topics()
		for _, want := range prefixes {
			if !slices.Contains(have, want) {
				return false
			}
		}
		return true
	})
}

// peer is a client socket whose messages are read into a channel.
type peer struct {
	sock zmq4.Socket
	msgs chan zmq4.Msg
}

func newPeer(t *testing.T, newSock func(context.Context, ...zmq4.Option) zmq4.Socket, ep string) *peer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{sock: newSock(ctx), msgs: make(chan zmq4.Msg, 1024)}
	if err := p.sock.Dial(ep); err != nil {
		cancel()
		t.Fatalf("dial %s: %v", ep, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = p.sock.Close()
	})
	return p
}

// read starts delivering messages to p.msgs. A REQ socket may only start
// once it has sent its request.
func (p *peer) read() {
	go func() {
		for {
			m, err := p.sock.Recv()
			if err != nil {
				return
			}
			p.msgs <- m
		}
	}()
}

func newSub(t *testing.T, ep, prefix string) *peer {
	t.Helper()
	p := newPeer(t, zmq4.NewSub, ep)
	if err := p.sock.SetOption(zmq4.OptionSubscribe, prefix); err != nil {
		t.Fatal(err)
	}
	p.read()
	return p
}

func (p *peer) next(t *testing.T) [][]byte {
	t.Helper()
	select {
	case m := <-p.msgs:
		return m.Frames
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a message")
		return nil
	}
}

// replayUntilEnd collects replies up to and including the end marker (the
// message whose last frame is empty).
func (p *peer) replayUntilEnd(t *testing.T) [][][]byte {
	t.Helper()
	var out [][][]byte
	for {
		f := p.next(t)
		out = append(out, f)
		if len(f) == 0 || len(f[len(f)-1]) == 0 {
			return out
		}
	}
}

func TestLiveStream(t *testing.T) {
	events := sampleEvents()
	batches := [][]Event{events[:2], events[2:4], events[4:]}
	for _, tc := range encodings {
		t.Run(tc.name, func(t *testing.T) {
			p := startPublisher(t, testConfig(func(c *Config) { c.Topic = "kv-events" }), tc.opts)
			sub := newSub(t, localAddr(t, p.Endpoint()), "")
			waitTopics(t, p, "")

			before := float64(time.Now().UnixNano()) / 1e9
			for _, b := range batches {
				p.Publish(b)
			}
			p.Publish(nil) // no-op: must not take a sequence number
			after := float64(time.Now().UnixNano()) / 1e9

			want := wantSampleEvents(tc.opts.Encoding, tc.opts.Hashes)
			wantPerBatch := [][]any{want[:2], want[2:4], want[4:]}
			for i := range batches {
				f := sub.next(t)
				if len(f) != 3 {
					t.Fatalf("got %d frames, want 3: %q", len(f), f)
				}
				if string(f[0]) != "kv-events" {
					t.Errorf("topic frame %q", f[0])
				}
				if !bytes.Equal(f[1], be64(uint64(i))) {
					t.Errorf("seq frame %x, want %d as 8 bytes big-endian", f[1], i)
				}
				batch, ok := decodeOrdered(t, f[2]).([]any)
				if !ok || len(batch) != 3 {
					t.Fatalf("batch %d: want [ts, events, dp_rank], got %#v", i, batch)
				}
				if ts, ok := batch[0].(float64); !ok || ts < before || ts > after {
					t.Errorf("ts %#v not a float64 in [%f, %f]", batch[0], before, after)
				}
				if !reflect.DeepEqual(batch[1], wantPerBatch[i]) {
					t.Errorf("events of batch %d:\n got %#v\nwant %#v", i, batch[1], wantPerBatch[i])
				}
				if batch[2] != int8(0) {
					t.Errorf("dp_rank %#v, want 0", batch[2])
				}
			}
			select {
			case m := <-sub.msgs:
				t.Errorf("unexpected extra message %q", m.Frames)
			default:
			}
		})
	}
}

func TestTopicPrefixFiltering(t *testing.T) {
	p := startPublisher(t, testConfig(func(c *Config) {
		c.Topic = "kv-events"
		c.ReplayEndpoint = ""
	}), Options{})
	ep := localAddr(t, p.Endpoint())
	// Non-matching subscribers connect first so the PUB socket serves them
	// before the matching ones.
	longer := newSub(t, ep, "kv-events-x")
	other := newSub(t, ep, "other")
	waitTopics(t, p, "kv-events-x", "other")
	prefix := newSub(t, ep, "kv")
	exact := newSub(t, ep, "kv-events")
	waitTopics(t, p, "kv", "kv-events")

	for range 3 {
		p.Publish([]Event{AllBlocksCleared{}})
	}
	for _, s := range []*peer{prefix, exact} {
		for i := range 3 {
			f := s.next(t)
			if string(f[0]) != "kv-events" || !bytes.Equal(f[1], be64(uint64(i))) {
				t.Errorf("got topic %q seq %x, want kv-events seq %d", f[0], f[1], i)
			}
		}
	}
	for name, s := range map[string]*peer{"kv-events-x": longer, "other": other} {
		if n := len(s.msgs); n != 0 {
			t.Errorf("subscriber %q got %d messages, want none", name, n)
		}
	}
}

// publishAndBuffer publishes n single-event batches and waits until all are
// in the replay ring, returning the live payloads by sequence number.
func publishAndBuffer(t *testing.T, p *Publisher, sub *peer, n int) map[uint64][]byte {
	t.Helper()
	for i := range n {
		p.Publish([]Event{BlockRemoved{BlockHashes: []BlockHash{mkHash(byte(i), uint64(i))}}})
	}
	live := map[uint64][]byte{}
	for i := range n {
		f := sub.next(t)
		live[uint64(i)] = f[2]
	}
	last := uint64(n - 1)
	waitFor(t, "the replay ring", func() bool { return len(p.ring.since(last)) == 1 })
	return live
}

func TestReplay(t *testing.T) {
	const topic = "kv"
	p := startPublisher(t, testConfig(func(c *Config) {
		c.Topic = topic
		c.BufferSteps = 4
	}), Options{})
	sub := newSub(t, localAddr(t, p.Endpoint()), topic)
	waitTopics(t, p, topic)
	live := publishAndBuffer(t, p, sub, 7) // the ring keeps seqs 3..6
	replayEP := localAddr(t, p.ReplayEndpoint())

	// check compares replies, after stripping the leading frames prefix,
	// with the batches wantSeqs and the end marker.
	check := func(t *testing.T, got [][][]byte, prefix [][]byte, wantSeqs ...uint64) {
		t.Helper()
		var want [][][]byte
		for _, s := range wantSeqs {
			want = append(want, append(slices.Clone(prefix), be64(s), live[s]))
		}
		want = append(want, append(slices.Clone(prefix), endSeq, []byte{}))
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Errorf("replies:\n got %q\nwant %q", got, want)
		}
	}

	t.Run("vLLM DEALER with delimiter", func(t *testing.T) {
		d := newPeer(t, zmq4.NewDealer, replayEP)
		d.read()
		send(t, d, []byte{}, be64(4))
		check(t, d.replayUntilEnd(t), [][]byte{{}}, 4, 5, 6)
	})
	t.Run("start older than the ring", func(t *testing.T) {
		d := newPeer(t, zmq4.NewDealer, replayEP)
		d.read()
		send(t, d, []byte{}, be64(1))
		got := d.replayUntilEnd(t)
		check(t, got, [][]byte{{}}, 3, 4, 5, 6)
		// What a subscriber checks to detect lost events:
		if first := got[0][1]; bytes.Compare(first, be64(1)) <= 0 {
			t.Errorf("first replayed seq %x should be above the requested 1", first)
		}
	})
	t.Run("start past the newest", func(t *testing.T) {
		d := newPeer(t, zmq4.NewDealer, replayEP)
		d.read()
		send(t, d, []byte{}, be64(100))
		check(t, d.replayUntilEnd(t), [][]byte{{}})
	})
	t.Run("REQ socket as in vLLM's example subscriber", func(t *testing.T) {
		r := newPeer(t, zmq4.NewReq, replayEP)
		send(t, r, be64(5))
		r.read()
		check(t, r.replayUntilEnd(t), nil, 5, 6)
	})
	t.Run("bare DEALER as in ENGINES.md", func(t *testing.T) {
		d := newPeer(t, zmq4.NewDealer, replayEP)
		d.read()
		send(t, d, be64(5))
		check(t, d.replayUntilEnd(t), nil, 5, 6)
	})
	t.Run("repeated requests on one socket", func(t *testing.T) {
		d := newPeer(t, zmq4.NewDealer, replayEP)
		d.read()
		for range 2 {
			send(t, d, []byte{}, be64(6))
			check(t, d.replayUntilEnd(t), [][]byte{{}}, 6)
		}
	})
}

func TestReplayWithTopic(t *testing.T) {
	p := startPublisher(t, testConfig(func(c *Config) { c.Topic = "kv-events" }), Options{ReplayWithTopic: true})
	sub := newSub(t, localAddr(t, p.Endpoint()), "")
	waitTopics(t, p, "")
	live := publishAndBuffer(t, p, sub, 2)

	d := newPeer(t, zmq4.NewDealer, localAddr(t, p.ReplayEndpoint()))
	d.read()
	send(t, d, []byte{}, be64(0))
	got := d.replayUntilEnd(t)
	want := [][][]byte{
		{{}, []byte("kv-events"), be64(0), live[0]},
		{{}, []byte("kv-events"), be64(1), live[1]},
		{{}, {}, endSeq, {}}, // vLLM sends an empty topic in the end marker
	}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("replies:\n got %q\nwant %q", got, want)
	}
}

func TestReplayIgnoresMalformedRequests(t *testing.T) {
	logs := &syncBuffer{}
	opts := Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}
	p := startPublisher(t, testConfig(nil), opts)
	sub := newSub(t, localAddr(t, p.Endpoint()), "")
	waitTopics(t, p, "")
	live := publishAndBuffer(t, p, sub, 1)

	d := newPeer(t, zmq4.NewDealer, localAddr(t, p.ReplayEndpoint()))
	d.read()
	send(t, d, []byte{1, 2, 3})                        // short sequence
	send(t, d, []byte{}, be64(0), []byte("extra"))     // too many frames
	send(t, d, []byte("not-empty"), be64(0))           // bad delimiter
	send(t, d, []byte{}, bytes.Repeat([]byte{7}, 100)) // long sequence
	send(t, d, []byte{}, be64(0))                      // finally a good one
	got := d.replayUntilEnd(t)
	want := [][][]byte{{{}, be64(0), live[0]}, {{}, endSeq, {}}}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("replies:\n got %q\nwant %q", got, want)
	}
	if n := strings.Count(logs.String(), "invalid kv events replay request ignored"); n != 4 {
		t.Errorf("logged %d invalid requests, want 4; log:\n%s", n, logs)
	}
}

func TestRestartStartsAtZero(t *testing.T) {
	cfg := testConfig(func(c *Config) { c.ReplayEndpoint = "" })
	first, err := NewPublisher(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ep := localAddr(t, first.Endpoint())
	sub := newSub(t, ep, "")
	waitTopics(t, first, "")
	first.Publish([]Event{AllBlocksCleared{}})
	first.Publish([]Event{AllBlocksCleared{}})
	for i := range 2 {
		if f := sub.next(t); !bytes.Equal(f[1], be64(uint64(i))) {
			t.Fatalf("seq %x, want %d", f[1], i)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	// The restarted engine binds the same port and counts from 0 again.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ep, "tcp://"))
	cfg.Endpoint = "tcp://*:" + port
	second := startPublisher(t, cfg, Options{})
	sub2 := newSub(t, ep, "")
	waitTopics(t, second, "")
	second.Publish([]Event{AllBlocksCleared{}})
	if f := sub2.next(t); !bytes.Equal(f[1], be64(0)) {
		t.Errorf("restarted publisher sent seq %x, want 0", f[1])
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestDataParallelRankOffsetsPorts(t *testing.T) {
	const rank = 2
	pubPort, replayPort := freePort(t), freePort(t)
	p := startPublisher(t, testConfig(func(c *Config) {
		c.Endpoint = fmt.Sprintf("tcp://*:%d", pubPort-rank)
		c.ReplayEndpoint = fmt.Sprintf("tcp://*:%d", replayPort-rank)
	}), Options{DPRank: rank})
	for name, got := range map[string]string{"endpoint": p.Endpoint(), "replay": p.ReplayEndpoint()} {
		want := pubPort
		if name == "replay" {
			want = replayPort
		}
		if got != "tcp://*:"+strconv.Itoa(want) {
			t.Errorf("%s %q, want tcp://*:%d (base + rank %d)", name, got, want, rank)
		}
	}
	sub := newSub(t, localAddr(t, p.Endpoint()), "")
	waitTopics(t, p, "")
	p.Publish([]Event{AllBlocksCleared{}})
	batch := decodeOrdered(t, sub.next(t)[2]).([]any)
	if batch[2] != int8(rank) {
		t.Errorf("dp_rank %#v, want %d", batch[2], rank)
	}
}

// TestConnectMode checks vLLM's rule that an endpoint without "*" or "::" is
// connected to rather than bound: here the subscriber is the one listening.
func TestConnectMode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := zmq4.NewSub(ctx)
	defer s.Close()
	if err := s.Listen("tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOption(zmq4.OptionSubscribe, ""); err != nil {
		t.Fatal(err)
	}
	ep := "tcp://" + s.Addr().String()

	p := startPublisher(t, testConfig(func(c *Config) {
		c.Endpoint = ep
		c.ReplayEndpoint = ""
	}), Options{})
	if p.Endpoint() != ep {
		t.Errorf("Endpoint() = %q, want %q", p.Endpoint(), ep)
	}
	waitTopics(t, p, "")
	p.Publish([]Event{AllBlocksCleared{}})
	got := make(chan zmq4.Msg, 1)
	go func() {
		if m, err := s.Recv(); err == nil {
			got <- m
		}
	}()
	select {
	case m := <-got:
		if !bytes.Equal(m.Frames[1], be64(0)) {
			t.Errorf("seq %x, want 0", m.Frames[1])
		}
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for the connected publisher")
	}
}

func TestPublishDropsWhenQueueFull(t *testing.T) {
	// No sender goroutine: the queue only fills.
	p := &Publisher{log: slog.New(slog.DiscardHandler), maxQueue: 2, wake: make(chan struct{}, 1)}
	for range 5 {
		p.Publish([]Event{AllBlocksCleared{}})
	}
	if got := p.Dropped(); got != 3 {
		t.Errorf("Dropped() = %d, want 3", got)
	}
	var seqs []uint64
	for _, e := range p.queue {
		seqs = append(seqs, e.seq)
	}
	if !reflect.DeepEqual(seqs, []uint64{0, 1}) {
		t.Errorf("queued seqs %v, want [0 1]", seqs)
	}
	// Dropped batches still used their numbers, leaving a visible gap.
	if p.nextSeq != 5 {
		t.Errorf("next seq %d, want 5", p.nextSeq)
	}
	p.Publish([]Event{nil})
	if got := p.Dropped(); got != 4 {
		t.Errorf("unencodable batch: Dropped() = %d, want 4", got)
	}
}

func TestCloseFlushesQueue(t *testing.T) {
	p, err := NewPublisher(context.Background(), testConfig(func(c *Config) { c.BufferSteps = 1000 }), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for range n {
		p.Publish([]Event{AllBlocksCleared{}})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(p.ring.since(0)); got != n {
		t.Errorf("%d batches went out before Close returned, want %d", got, n)
	}
	p.Publish([]Event{AllBlocksCleared{}})
	if got := p.Dropped(); got != 1 {
		t.Errorf("Publish after Close: Dropped() = %d, want 1", got)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestContextCancelStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := NewPublisher(ctx, testConfig(nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitFor(t, "the sender to stop", func() bool {
		select {
		case <-p.senderDone:
			return true
		default:
			return false
		}
	})
	p.Publish([]Event{AllBlocksCleared{}}) // must not block or panic
	_ = p.Close()
}

func TestDisabledPublisher(t *testing.T) {
	for name, cfg := range map[string]Config{
		"defaults":       DefaultConfig(),
		"null publisher": testConfig(func(c *Config) { c.Publisher = "null" }),
	} {
		t.Run(name, func(t *testing.T) {
			p, err := NewPublisher(context.Background(), cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Endpoint() != "" || p.ReplayEndpoint() != "" {
				t.Errorf("disabled publisher has endpoints %q %q", p.Endpoint(), p.ReplayEndpoint())
			}
			p.Publish([]Event{AllBlocksCleared{}})
			if n := p.Dropped(); n != 0 {
				t.Errorf("a null publisher discards silently, yet Dropped() = %d", n)
			}
			if err := p.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewPublisherErrors(t *testing.T) {
	taken := startPublisher(t, testConfig(func(c *Config) { c.ReplayEndpoint = "" }), Options{})
	_, takenPort, _ := net.SplitHostPort(strings.TrimPrefix(taken.Endpoint(), "tcp://"))
	for _, tc := range []struct {
		name string
		cfg  Config
		opts Options
	}{
		{"bad encoding", testConfig(nil), Options{Encoding: 9}},
		{"bad hashes", testConfig(nil), Options{Hashes: 9}},
		{"negative rank", testConfig(nil), Options{DPRank: -1}},
		{"invalid endpoint", testConfig(func(c *Config) { c.Endpoint = "tcp://*:x" }), Options{}},
		{"invalid replay endpoint", testConfig(func(c *Config) { c.ReplayEndpoint = "bogus" }), Options{}},
		{"ipc with rank", testConfig(func(c *Config) { c.Endpoint = "ipc:///tmp/kvevents-test" }), Options{DPRank: 1}},
		{"port in use", testConfig(func(c *Config) { c.Endpoint = "tcp://*:" + takenPort }), Options{}},
		{"replay port in use", testConfig(func(c *Config) { c.ReplayEndpoint = "tcp://*:" + takenPort }), Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPublisher(context.Background(), tc.cfg, tc.opts)
			if err == nil {
				_ = p.Close()
				t.Fatal("no error")
			}
		})
	}
}

func send(t *testing.T, p *peer, frames ...[]byte) {
	t.Helper()
	if err := p.sock.Send(zmq4.NewMsgFrom(frames...)); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// normalize maps nil frames to empty ones: ZeroMQ does not tell them apart.
func normalize(msgs [][][]byte) [][][]byte {
	out := make([][][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = make([][]byte, len(m))
		for j, f := range m {
			out[i][j] = append([]byte{}, f...)
		}
	}
	return out
}
