package kvevents

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"

	simkv "github.com/strata-llm/strata/sim/kvevents"
	"github.com/strata-llm/strata/test/testutil"
)

// These tests read the simulator's vLLM publisher (sim/kvevents), which
// writes vLLM's bytes on real ZeroMQ sockets, end to end into a brain's
// index.

// simEvents are p's blocks [from, to) as the simulator's BlockStored, with
// sha256 engine hashes as vLLM would have.
func (p prompt) simEvents(from, to int) []simkv.Event {
	h := func(i int) simkv.BlockHash { return sha256.Sum256(binary.BigEndian.AppendUint64(nil, p.raw(i))) }
	ev := simkv.BlockStored{TokenIDs: p.tokens[from*p.bs : to*p.bs], BlockSize: p.bs}
	for i := from; i < to; i++ {
		ev.BlockHashes = append(ev.BlockHashes, h(i))
	}
	if from > 0 {
		parent := h(from - 1)
		ev.ParentBlockHash = &parent
	}
	return []simkv.Event{ev}
}

func startSimPublisher(t *testing.T, endpoint, replay string, opts simkv.Options) *simkv.Publisher {
	t.Helper()
	cfg := simkv.DefaultConfig()
	cfg.EnableKVCacheEvents = true
	cfg.Endpoint, cfg.ReplayEndpoint, cfg.Topic = endpoint, replay, "kv"
	p, err := simkv.NewPublisher(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dialable turns the publisher's bound endpoint (tcp://*:port) into one to
// connect to.
func dialable(ep string) string { return strings.Replace(ep, "*", "127.0.0.1", 1) }

// prober publishes fresh one-run prompts, one per call, and knows what the
// brain should then hold: a SUB misses what is published before its
// subscription reaches the PUB, so tests publish until events arrive, and
// every probe lost that way must be recovered by replay.
type prober struct {
	pub  *simkv.Publisher
	next int
	want []uint64
}

func (pr *prober) probe() {
	pr.next++
	p := newPrompt(1000+pr.next, 2, 16)
	pr.pub.Publish(p.simEvents(0, 2))
	pr.want = append(pr.want, p.seqs(2)...)
}

// until publishes probes until the brain holds base and every probe.
func (pr *prober) until(t *testing.T, b *brain, base []uint64) {
	t.Helper()
	testutil.WaitForResult(t, waitTimeout, func() error {
		got, _ := b.state()
		want := set(gpu, base, pr.want)
		if len(got[gpu]) == len(want[gpu]) && len(got) == 1 {
			for h := range want[gpu] {
				if !got[gpu][h] {
					return fmt.Errorf("block %x missing", h)
				}
			}
			return nil
		}
		pr.probe()
		return fmt.Errorf("brain has %d blocks, want %d", len(got[gpu]), len(want[gpu]))
	})
}

// observer is a plain SUB socket on a publisher, which lets a test know
// that the publisher has sent a batch: what it sends before the
// Subscriber under test connects is lost to that Subscriber.
type observer struct {
	sub  zmq4.Socket
	msgs chan zmq4.Msg
}

func observe(t *testing.T, pub *simkv.Publisher) *observer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := &observer{sub: zmq4.NewSub(ctx), msgs: make(chan zmq4.Msg, 1024)}
	if err := o.sub.SetOption(zmq4.OptionSubscribe, "kv"); err != nil {
		t.Fatal(err)
	}
	if err := o.sub.Dial(dialable(pub.Endpoint())); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := o.sub.Recv()
			if err != nil {
				return
			}
			o.msgs <- m
		}
	}()
	t.Cleanup(func() {
		cancel()
		o.sub.Close()
		<-done
	})
	return o
}

// any reports whether a message has arrived, without waiting.
func (o *observer) any() bool {
	select {
	case <-o.msgs:
		return true
	default:
		return false
	}
}

// waitFor reads messages until the one with sequence number seq.
func (o *observer) waitFor(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		select {
		case m := <-o.msgs:
			if binary.BigEndian.Uint64(m.Frames[1]) == seq {
				return
			}
		case <-deadline.C:
			t.Fatalf("batch %d not published", seq)
		}
	}
}

// TestSubscriberSimPublisher: batches the publisher sent before the
// subscriber connected are recovered from its replay buffer, in every
// encoding vLLM uses.
func TestSubscriberSimPublisher(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts simkv.Options
	}{
		{"map events, uint64 hashes", simkv.Options{}},
		{"array events, bin hashes, replies with topic", simkv.Options{Encoding: simkv.EncodingArray, Hashes: simkv.HashBytes, ReplayWithTopic: true}},
		{"map events, bin hashes, replies with topic", simkv.Options{Hashes: simkv.HashBytes, ReplayWithTopic: true}},
		{"array events, uint64 hashes", simkv.Options{Encoding: simkv.EncodingArray}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := startSimPublisher(t, "tcp://*:0", "tcp://*:0", tc.opts)
			// Publish until an early subscriber sees the stream, then
			// the prompt: all of it is sent before the Subscriber
			// under test exists.
			early := observe(t, pub)
			warm := &prober{pub: pub}
			testutil.WaitFor(t, waitTimeout, func() bool {
				warm.probe()
				return early.any()
			})
			p := newPrompt(1, 8, 16)
			pub.Publish(p.simEvents(0, 3))
			pub.Publish(p.simEvents(3, 4))
			pub.Publish(p.simEvents(4, 8))
			early.waitFor(t, uint64(warm.next)+2) // seqs 0..warm.next-1 are the probes

			b := newBrain(t)
			s := startSubscriber(t, b, dialable(pub.Endpoint()), dialable(pub.ReplayEndpoint()), "kv", nil)
			pr := &prober{pub: pub, next: warm.next, want: warm.want}
			pr.until(t, b, p.seqs(8))

			st := s.Stats()
			if st.Gaps < 1 || st.Replayed < uint64(warm.next)+3 || st.ReplayFailures != 0 || st.Garbage != 0 || st.Translator.UnknownParent != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestSubscriberSimPublisherRestart: an engine that restarts on the same
// ports (its numbering starts again at 0) costs the worker its blocks, and
// the new process's are learned.
func TestSubscriberSimPublisherRestart(t *testing.T) {
	pub := startSimPublisher(t, "tcp://*:0", "tcp://*:0", simkv.Options{})
	endpoint, replay := pub.Endpoint(), pub.ReplayEndpoint()
	b := newBrain(t)
	s := startSubscriber(t, b, dialable(endpoint), dialable(replay), "kv", nil)
	first := &prober{pub: pub}
	first.until(t, b, nil)
	_, clears := b.state()

	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	b.wantIndex(t, nil)
	if _, c := b.state(); c != clears+1 {
		t.Fatalf("%d AllBlocksCleared after the engine stopped, want %d", c, clears+1)
	}

	pub2 := startSimPublisher(t, endpoint, replay, simkv.Options{})
	second := &prober{pub: pub2}
	second.next = first.next // other prompts than the first process's
	second.until(t, b, nil)
	if st := s.Stats(); st.Reconnects < 1 || st.ReplayFailures != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSubscriberTierBlocks: the KVBM's tier blocks travel in the worker's
// numbered stream: injected events in order with the engine's, every
// snapshot carries the tier blocks, and a resync (the engine restarted:
// AllBlocksCleared drops every medium in the brain) re-announces them.
func TestSubscriberTierBlocks(t *testing.T) {
	pub := startSimPublisher(t, "tcp://*:0", "tcp://*:0", simkv.Options{})
	endpoint, replay := pub.Endpoint(), pub.ReplayEndpoint()
	b := newBrain(t)
	var mu sync.Mutex
	tierHashes := []uint64{11, 12, 13}
	tiers := func() []*stratav1.KVEvent {
		mu.Lock()
		defer mu.Unlock()
		return []*stratav1.KVEvent{{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{
			SeqHashes: slices.Clone(tierHashes), Medium: cpu, BlockSize: 16,
		}}}}
	}
	s := startSubscriber(t, b, dialable(endpoint), dialable(replay), "kv", func(c *SubscriberConfig) { c.Tiers = tiers })
	wantCPU := func(want ...uint64) {
		t.Helper()
		testutil.WaitForResult(t, waitTimeout, func() error {
			got, _ := b.state()
			if !reflect.DeepEqual(got[cpu], set(cpu, want)[cpu]) {
				return fmt.Errorf("brain has CPU blocks %v, want %v", got[cpu], want)
			}
			return nil
		})
	}
	// Connecting resyncs, which announces the tier blocks.
	wantCPU(11, 12, 13)
	pr := &prober{pub: pub}
	testutil.WaitForResult(t, waitTimeout, func() error {
		got, _ := b.state()
		if len(got[gpu]) == 0 {
			pr.probe()
			return errors.New("no GPU block yet")
		}
		return nil
	})

	// A tier change injected: numbered with the engine's batches (the
	// brain checks the sequence).
	mu.Lock()
	tierHashes = []uint64{12, 13, 14}
	mu.Unlock()
	s.Inject([]*stratav1.KVEvent{
		{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{SeqHashes: []uint64{14}, Medium: cpu, BlockSize: 16}}},
		{Event: &stratav1.KVEvent_Removed{Removed: &stratav1.BlockRemoved{SeqHashes: []uint64{11}, Medium: cpu}}},
	})
	wantCPU(12, 13, 14)

	// A snapshot carries them.
	s.EmitSnapshot()
	testutil.WaitFor(t, waitTimeout, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.snaps > 0 })
	wantCPU(12, 13, 14)

	// The engine goes away: its GPU blocks are cleared, the tiers' stay.
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForResult(t, waitTimeout, func() error {
		got, _ := b.state()
		if len(got[gpu]) > 0 {
			return fmt.Errorf("%d GPU blocks left", len(got[gpu]))
		}
		return nil
	})
	wantCPU(12, 13, 14)
}
