package kvevents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/strata-llm/strata/kvhash"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

// These tests run a Subscriber against real ZeroMQ sockets: a fake engine
// whose PUB and replay ROUTER the test drives message by message (to force
// gaps, restarts and garbage), and the simulator's vLLM publisher.

const waitTimeout = 10 * time.Second

// brain stands in for a brain replica: it checks the batch protocol (worker
// id, seq numbering, snapshots) and keeps the worker's index.
type brain struct {
	tb      testing.TB
	mu      sync.Mutex
	idx     index
	last    uint64
	batches int
	clears  int
	snaps   int
}

func newBrain(tb testing.TB) *brain { return &brain{tb: tb, idx: index{}} }

func (b *brain) sink(batch *stratav1.KVEventBatch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if batch.WorkerId != "w1" {
		b.tb.Errorf("batch for worker %q", batch.WorkerId)
	}
	if batch.Snapshot {
		if batch.Seq != 1 {
			b.tb.Errorf("snapshot batch has seq %d, want 1", batch.Seq)
		}
		b.snaps++
		clear(b.idx)
	} else if batch.Seq != b.last+1 {
		b.tb.Errorf("batch seq %d after %d", batch.Seq, b.last)
	}
	if batch.UnixNanos == 0 {
		b.tb.Error("batch without a time")
	}
	b.last = batch.Seq
	b.batches++
	for _, ev := range batch.Events {
		if ev.GetCleared() != nil {
			b.clears++
		}
	}
	b.idx.apply(b.tb, batch.Events)
}

// state returns a copy of the index and the number of AllBlocksCleared seen.
func (b *brain) state() (index, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cp := index{}
	for m, s := range b.idx {
		cp[m] = maps.Clone(s)
	}
	return cp, b.clears
}

// wantIndex waits until the worker's GPU blocks are exactly want.
func (b *brain) wantIndex(t *testing.T, want []uint64) {
	t.Helper()
	testutil.WaitForResult(t, waitTimeout, func() error {
		got, _ := b.state()
		exp := index{}
		if len(want) > 0 {
			exp = set(gpu, want)
		}
		if !reflect.DeepEqual(got, exp) {
			return fmt.Errorf("index has %d GPU blocks (%d other media), want %d", len(got[gpu]), len(got)-min(len(got), 1), len(want))
		}
		return nil
	})
}

// raw is the engine's integer hash of block i (prompt.hash's value).
func (p prompt) raw(i int) uint64 { return uint64(p.id)<<32 | uint64(i) }

// payload is a vLLM batch (positional events) storing blocks [from, to).
func (p prompt) payload(tb testing.TB, from, to int) []byte {
	var hashes []any
	for i := from; i < to; i++ {
		hashes = append(hashes, p.raw(i))
	}
	var parent any
	if from > 0 {
		parent = p.raw(from - 1)
	}
	ev := []any{"BlockStored", hashes, parent, anyToks(p.tokens[from*p.bs : to*p.bs]), p.bs, nil, nil, nil}
	return pack(tb, []any{1.0, []any{ev}, 0})
}

// seqs is what the brain should hold for blocks [0, to) of p.
func (p prompt) seqs(to int) []uint64 { return kvhash.Prompt(p.tokens[:to*p.bs], p.bs, "") }

// fakeEngine is a vLLM-style PUB plus replay ROUTER driven by the test.
type fakeEngine struct {
	pub, router              zmq4.Socket
	endpoint, replayEndpoint string
	topic                    string

	mu          sync.Mutex
	ring        map[uint64][]byte
	floor       uint64 // replay has forgotten batches below
	hang        bool   // replay never answers
	withTopic   bool   // replies [topic, seq, payload] (vLLM >= 0.26)
	garbage     bool   // one malformed reply before the real ones
	requests    int
	badRequests int // not [identity, "", seq8]
}

func startFake(t *testing.T, mod func(*fakeEngine)) *fakeEngine {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeEngine{
		pub:    zmq4.NewPub(ctx),
		router: zmq4.NewRouter(ctx),
		topic:  "kv",
		ring:   map[uint64][]byte{},
	}
	if mod != nil {
		mod(f)
	}
	for _, s := range []zmq4.Socket{f.pub, f.router} {
		if err := s.Listen("tcp://127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	f.endpoint = "tcp://" + f.pub.Addr().String()
	f.replayEndpoint = "tcp://" + f.router.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.serveReplay()
	}()
	t.Cleanup(func() {
		cancel()
		f.pub.Close()
		f.router.Close()
		<-done
	})
	return f
}

func seq8(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func (f *fakeEngine) serveReplay() {
	for {
		msg, err := f.router.Recv()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.requests++
		fr := msg.Frames
		if len(fr) != 3 || len(fr[1]) != 0 || len(fr[2]) != 8 {
			f.badRequests++
			f.mu.Unlock()
			continue
		}
		if f.hang {
			f.mu.Unlock()
			continue
		}
		start := max(binary.BigEndian.Uint64(fr[2]), f.floor)
		var replies [][][]byte
		if f.garbage {
			replies = append(replies, [][]byte{[]byte("garbage")})
		}
		for _, seq := range slices.Sorted(maps.Keys(f.ring)) {
			if seq < start {
				continue
			}
			if f.withTopic {
				replies = append(replies, [][]byte{[]byte(f.topic), seq8(seq), f.ring[seq]})
			} else {
				replies = append(replies, [][]byte{seq8(seq), f.ring[seq]})
			}
		}
		if f.withTopic {
			replies = append(replies, [][]byte{{}, seq8(endSeq), {}})
		} else {
			replies = append(replies, [][]byte{seq8(endSeq), {}})
		}
		f.mu.Unlock()
		for _, r := range replies {
			if err := f.router.Send(zmq4.NewMsgFrom(append([][]byte{fr[0], {}}, r...)...)); err != nil {
				return
			}
		}
	}
}

// publish buffers a batch for replay and, if live, sends it.
func (f *fakeEngine) publish(t *testing.T, seq uint64, payload []byte, live bool) {
	t.Helper()
	f.mu.Lock()
	f.ring[seq] = payload
	f.mu.Unlock()
	if live {
		f.send(t, []byte(f.topic), seq8(seq), payload)
	}
}

func (f *fakeEngine) send(t *testing.T, frames ...[]byte) {
	t.Helper()
	if err := f.pub.SendMulti(zmq4.NewMsgFrom(frames...)); err != nil {
		t.Fatal(err)
	}
}

// waitSubscribed waits until the subscription reached the PUB, so nothing
// sent afterwards is lost to the slow-joiner race.
func (f *fakeEngine) waitSubscribed(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, waitTimeout, func() bool {
		return slices.Contains(f.pub.(zmq4.Topics).Topics(), f.topic)
	})
}

func (f *fakeEngine) stats() (requests, bad int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests, f.badRequests
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startSubscriber runs a Subscriber for worker w1 until the test ends.
func startSubscriber(t *testing.T, b *brain, endpoint, replayEndpoint, topic string, mod func(*SubscriberConfig)) *Subscriber {
	t.Helper()
	cfg := SubscriberConfig{
		WorkerID:       "w1",
		Endpoint:       endpoint,
		ReplayEndpoint: replayEndpoint,
		Topic:          topic,
		BlockSize:      16,
		Sink:           b.sink,
		Logger:         testLogger(t),
		ReplayTimeout:  2 * time.Second,
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     50 * time.Millisecond,
		FlushInterval:  time.Millisecond,
		// Tests that count replay requests must not see catch-ups; the
		// catch-up test sets its own interval.
		CatchUpInterval: time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return after Close")
		}
	})
	return s
}

func TestSubscriberLiveAndSnapshot(t *testing.T) {
	b := newBrain(t)
	f := startFake(t, nil)
	s := startSubscriber(t, b, f.endpoint, f.replayEndpoint, f.topic, nil)
	f.waitSubscribed(t)

	p := newPrompt(1, 6, 16)
	f.publish(t, 0, p.payload(t, 0, 2), true)
	f.publish(t, 1, p.payload(t, 2, 3), true)
	f.publish(t, 2, p.payload(t, 3, 6), true)
	b.wantIndex(t, p.seqs(6))

	s.EmitSnapshot()
	testutil.WaitFor(t, waitTimeout, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.snaps == 1
	})
	b.wantIndex(t, p.seqs(6))
	// The stream goes on after the snapshot, numbered from it.
	q := newPrompt(2, 1, 16)
	f.publish(t, 3, q.payload(t, 0, 1), true)
	b.wantIndex(t, append(p.seqs(6), q.seqs(1)...))

	st := s.Stats()
	if st.Messages != 4 || st.Gaps != 0 || st.Garbage != 0 || st.Translator.Blocks != 7 {
		t.Fatalf("stats %+v", st)
	}
	if _, clears := b.state(); clears != 1 {
		t.Fatalf("%d AllBlocksCleared, want only the one on connecting", clears)
	}
}

func TestSubscriberGapReplayed(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*fakeEngine)
	}{
		{"replies without topic", nil},
		{"replies with topic (vLLM >= 0.26)", func(f *fakeEngine) { f.withTopic = true }},
		{"a malformed reply first", func(f *fakeEngine) { f.garbage = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrain(t)
			f := startFake(t, tt.mod)
			s := startSubscriber(t, b, f.endpoint, f.replayEndpoint, f.topic, nil)
			f.waitSubscribed(t)

			p := newPrompt(1, 5, 16)
			f.publish(t, 0, p.payload(t, 0, 1), true)
			f.publish(t, 1, p.payload(t, 1, 2), false) // lost on the way
			f.publish(t, 2, p.payload(t, 2, 3), false)
			f.publish(t, 3, p.payload(t, 3, 5), true)
			b.wantIndex(t, p.seqs(5))

			st := s.Stats()
			if st.Gaps != 1 || st.Replayed != 2 || st.ReplayFailures != 0 || st.Translator.UnknownParent != 0 {
				t.Fatalf("stats %+v", st)
			}
			if _, clears := b.state(); clears != 1 {
				t.Fatalf("%d AllBlocksCleared, want only the one on connecting", clears)
			}
			if req, bad := f.stats(); req != 1 || bad != 0 {
				t.Fatalf("%d replay requests, %d without the empty delimiter frame", req, bad)
			}
		})
	}
}

// TestSubscriberCatchesUpWhenQuiet: batches the live stream never delivered
// (published before the subscription took, ZeroMQ's slow joiner) and not
// followed by any other are fetched from the replay socket once the stream
// has been quiet for CatchUpInterval.
func TestSubscriberCatchesUpWhenQuiet(t *testing.T) {
	b := newBrain(t)
	f := startFake(t, nil)
	startSubscriber(t, b, f.endpoint, f.replayEndpoint, f.topic, func(c *SubscriberConfig) { c.CatchUpInterval = 20 * time.Millisecond })
	f.waitSubscribed(t)
	p := newPrompt(1, 4, 16)
	f.publish(t, 0, p.payload(t, 0, 2), false) // lost, and nothing follows
	f.publish(t, 1, p.payload(t, 2, 4), false)
	b.wantIndex(t, p.seqs(4))
}

func TestSubscriberGapNotReplayable(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*fakeEngine)
		noRepl bool
	}{
		{"replay buffer no longer holds it", func(f *fakeEngine) { f.floor = 2 }, false},
		{"no replay endpoint", nil, true},
		{"replay does not answer", func(f *fakeEngine) { f.hang = true }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrain(t)
			f := startFake(t, tt.mod)
			replay := f.replayEndpoint
			if tt.noRepl {
				replay = ""
			}
			s := startSubscriber(t, b, f.endpoint, replay, f.topic, func(c *SubscriberConfig) {
				c.ReplayTimeout = 200 * time.Millisecond
			})
			f.waitSubscribed(t)

			p, q := newPrompt(1, 4, 16), newPrompt(2, 4, 16)
			f.publish(t, 0, p.payload(t, 0, 2), true)
			b.wantIndex(t, p.seqs(2))
			f.publish(t, 1, p.payload(t, 2, 4), false) // lost for good
			// Batch 2 is lost live but still in the buffer (when there is
			// one): after the resync it is applied, so batch 3, which
			// continues it, can be chained.
			f.publish(t, 2, q.payload(t, 0, 2), false)
			f.publish(t, 3, q.payload(t, 2, 4), true)
			want := q.seqs(4)
			if tt.mod == nil || f.hang {
				want = nil // batch 2 is lost too; batch 3 has no parent
			}
			b.wantIndex(t, want)

			st := s.Stats()
			if st.Gaps != 1 || st.ReplayFailures != 1 {
				t.Fatalf("stats %+v", st)
			}
			if _, clears := b.state(); clears != 2 {
				t.Fatalf("%d AllBlocksCleared, want 2 (connect, resync)", clears)
			}
		})
	}
}

func TestSubscriberSequenceBackwards(t *testing.T) {
	b := newBrain(t)
	f := startFake(t, nil)
	s := startSubscriber(t, b, f.endpoint, f.replayEndpoint, f.topic, nil)
	f.waitSubscribed(t)

	p, q := newPrompt(1, 3, 16), newPrompt(2, 2, 16)
	f.publish(t, 0, p.payload(t, 0, 1), true)
	f.publish(t, 1, p.payload(t, 1, 3), true)
	b.wantIndex(t, p.seqs(3))
	// A new engine process on the same connection: numbering restarts.
	f.publish(t, 0, q.payload(t, 0, 2), true)
	b.wantIndex(t, q.seqs(2))
	if st := s.Stats(); st.Restarts != 1 || st.Gaps != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, clears := b.state(); clears != 2 {
		t.Fatalf("%d AllBlocksCleared, want 2 (connect, restart)", clears)
	}
}

func TestSubscriberGarbage(t *testing.T) {
	b := newBrain(t)
	f := startFake(t, nil)
	s := startSubscriber(t, b, f.endpoint, f.replayEndpoint, f.topic, nil)
	f.waitSubscribed(t)

	topic := []byte(f.topic)
	f.send(t, topic, seq8(0))                                // two frames
	f.send(t, topic, []byte{0, 1, 2}, []byte{0x90})          // short sequence
	f.send(t, topic, seq8(0), []byte("not msgpack at all"))  // bad payload
	f.send(t, topic, seq8(1), pack(t, []any{1.0, "events"})) // bad batch
	p := newPrompt(1, 2, 16)
	f.publish(t, 2, p.payload(t, 0, 2), true)
	b.wantIndex(t, p.seqs(2))
	if st := s.Stats(); st.Garbage != 4 || st.Gaps != 0 || st.Messages != 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSubscriberConfig(t *testing.T) {
	ok := SubscriberConfig{WorkerID: "w", Endpoint: "tcp://127.0.0.1:1", Sink: func(*stratav1.KVEventBatch) {}}
	tests := []struct {
		name string
		mod  func(*SubscriberConfig)
	}{
		{"no worker", func(c *SubscriberConfig) { c.WorkerID = "" }},
		{"no sink", func(c *SubscriberConfig) { c.Sink = nil }},
		{"bind address", func(c *SubscriberConfig) { c.Endpoint = "tcp://*:5557" }},
		{"no transport", func(c *SubscriberConfig) { c.Endpoint = "127.0.0.1:5557" }},
		{"bad replay", func(c *SubscriberConfig) { c.ReplayEndpoint = "tcp://*:5558" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			if _, err := NewSubscriber(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	s, err := NewSubscriber(ok)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}

// TestSubscriberReconnects: a subscriber started before its engine keeps
// trying, and an engine that goes away is a resync.
func TestSubscriberReconnects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ep := "tcp://127.0.0.1:" + strconv.Itoa(port)

	b := newBrain(t)
	s := startSubscriber(t, b, ep, "", "", nil)
	testutil.WaitFor(t, waitTimeout, func() bool { return s.Stats().Reconnects >= 2 })

	ctx, cancel := context.WithCancel(context.Background())
	pub := zmq4.NewPub(ctx)
	if err := pub.Listen(ep); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, waitTimeout, func() bool { return slices.Contains(pub.(zmq4.Topics).Topics(), "") })
	p := newPrompt(1, 2, 16)
	if err := pub.SendMulti(zmq4.NewMsgFrom(nil, seq8(0), p.payload(t, 0, 2))); err != nil {
		t.Fatal(err)
	}
	b.wantIndex(t, p.seqs(2))
	_, clears := b.state()
	before := s.Stats().Reconnects

	cancel()
	pub.Close()
	testutil.WaitFor(t, waitTimeout, func() bool { return s.Stats().Reconnects > before })
	b.wantIndex(t, nil)
	if _, c := b.state(); c != clears+1 {
		t.Fatalf("%d AllBlocksCleared after the engine left, want %d", c, clears+1)
	}
}

// TestSubscriberNoticesQuietRestart: an engine that restarts and then stays
// quiet is noticed by the catch-up replay (the last applied batch is gone),
// and the worker's blocks are cleared.
func TestSubscriberNoticesQuietRestart(t *testing.T) {
	b := newBrain(t)
	f := startFake(t, nil)
	startSubscriber(t, b, f.endpoint, f.replayEndpoint, f.topic, func(c *SubscriberConfig) { c.CatchUpInterval = 20 * time.Millisecond })
	f.waitSubscribed(t)
	p := newPrompt(1, 2, 16)
	f.publish(t, 0, p.payload(t, 0, 2), true)
	b.wantIndex(t, p.seqs(2))
	// The "restart": the replay buffer loses everything; nothing is published.
	f.mu.Lock()
	clear(f.ring)
	f.mu.Unlock()
	b.wantIndex(t, nil)
}
