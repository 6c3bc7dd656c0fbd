package agent

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/kvevents"
	"github.com/strata-llm/strata/backoff"
	"github.com/strata-llm/strata/brain/client"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// kvQueue is how many batches wait for one slow brain replica before the
// agent gives up on the backlog and resynchronises that replica instead.
const kvQueue = 4096

// kvSource is a worker's KV event source: a ZMQ subscriber or an HTTP
// poller, both able to re-emit the worker's full block set.
type kvSource interface {
	Run(ctx context.Context) error
	EmitSnapshot()
	// Inject adds the KVBM's tier events of the worker to its stream.
	Inject(events []*stratav1.KVEvent)
}

// newKVSource builds the worker's event source, or nil when its engine
// publishes none (llama.cpp: the gateway routes it with approx-kv).
func (a *Agent) newKVSource(w *worker) (kvSource, error) {
	src := w.adapter.KVEvents(w.spec)
	sink := a.kv.publish
	switch src.Format {
	case engine.KVFormatVLLM, engine.KVFormatSGLang:
		decode := kvevents.DecodeVLLM
		if src.Format == engine.KVFormatSGLang {
			decode = kvevents.DecodeSGLang
		}
		return kvevents.NewSubscriber(kvevents.SubscriberConfig{
			WorkerID: w.id, Endpoint: src.Endpoint, ReplayEndpoint: src.ReplayEndpoint, Topic: src.Topic,
			Decode: decode, BlockSize: w.spec.BlockSize, Sink: sink, Tiers: a.kvbmTierBlocks(w.id), Logger: a.log, // the subscriber names the worker itself
		})
	case engine.KVFormatTRTLLM:
		return kvevents.NewPoller(kvevents.PollerConfig{
			WorkerID: w.id, PollURL: src.PollURL, BlockSize: w.spec.BlockSize, Sink: sink, Tiers: a.kvbmTierBlocks(w.id), Logger: a.log,
		})
	}
	return nil, nil
}

// kvStreamer sends every worker's KV event batches to every brain replica:
// the index is soft state each replica builds for itself, so each must see
// every batch. A replica that (re)connects, or asks, gets fresh snapshots.
type kvStreamer struct {
	a *Agent

	mu       sync.Mutex
	replicas map[string]*replicaStream
}

type replicaStream struct {
	addr  string
	queue chan *stratav1.KVEventBatch
	kick  chan struct{} // the queue overflowed: reconnect and resync
	stop  context.CancelFunc
}

func newKVStreamer(a *Agent) *kvStreamer {
	return &kvStreamer{a: a, replicas: map[string]*replicaStream{}}
}

// publish is the workers' sink: it never blocks a subscriber. A replica
// whose queue is full is reconnected, which resynchronises it.
func (k *kvStreamer) publish(b *stratav1.KVEventBatch) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.replicas {
		select {
		case r.queue <- b:
		default:
			select {
			case r.kick <- struct{}{}:
				k.a.log.Warn("brain replica too slow for KV events; resynchronising it", "brain", r.addr)
			default:
			}
		}
	}
}

// setReplicas starts streams to new replicas and stops removed ones.
func (k *kvStreamer) setReplicas(ctx context.Context, addrs []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for addr, r := range k.replicas {
		if !slices.Contains(addrs, addr) {
			r.stop()
			delete(k.replicas, addr)
		}
	}
	for _, addr := range addrs {
		if k.replicas[addr] != nil {
			continue
		}
		rctx, stop := context.WithCancel(ctx)
		r := &replicaStream{addr: addr, queue: make(chan *stratav1.KVEventBatch, kvQueue), kick: make(chan struct{}, 1), stop: stop}
		k.replicas[addr] = r
		go k.run(rctx, r)
	}
}

// run keeps one replica's stream up until ctx ends (the replica left, or
// the agent stops).
func (k *kvStreamer) run(ctx context.Context, r *replicaStream) {
	retry := backoff.New()
	for ctx.Err() == nil {
		err := k.session(ctx, r)
		if ctx.Err() != nil {
			return
		}
		// The snapshots sent on reconnect replace whatever was queued.
		drain(r.queue)
		if errors.Is(err, errOverflow) {
			continue
		}
		k.a.log.Debug("KV event stream ended", "brain", r.addr, "error", err)
		retry.Wait(ctx)
	}
}

var errOverflow = errors.New("KV event queue overflowed")

func drain(q chan *stratav1.KVEventBatch) {
	for {
		select {
		case <-q:
		default:
			return
		}
	}
}

func (k *kvStreamer) session(ctx context.Context, r *replicaStream) error {
	bc, err := client.New([]string{r.addr}, k.a.cfg.ClusterToken, k.a.cfg.TLS)
	if err != nil {
		return err
	}
	defer func() { _ = bc.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := bc.Agent().PublishKVEvents(ctx)
	if err != nil {
		return err
	}
	// Everything this replica knew of our workers may be stale.
	k.a.log.Debug("KV event stream to a brain open", "brain", r.addr)
	k.a.snapshotWorkers(nil)
	errc := make(chan error, 1)
	go func() {
		for {
			res, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			k.a.log.Debug("brain asks for KV snapshots", "brain", r.addr, "workers", res.GetResyncWorkerIds())
			k.a.snapshotWorkers(res.GetResyncWorkerIds())
		}
	}()
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-r.kick:
			return errOverflow
		case b := <-r.queue:
			if err := stream.Send(&stratav1.PublishKVEventsRequest{NodeId: k.a.cfg.NodeID, Batch: b}); err != nil {
				return err
			}
		}
	}
}

// snapshotWorkers makes the named workers (all when ids is nil) re-emit
// their full block sets.
func (a *Agent) snapshotWorkers(ids []string) {
	for _, w := range a.sortedWorkers() {
		if ids == nil || slices.Contains(ids, w.id) {
			if w.kv != nil {
				w.kv.EmitSnapshot()
			}
		}
	}
}

// brainAddrs are the replicas to stream KV events to: the members the
// brain reported, or the configured addresses until it did.
func (a *Agent) brainAddrs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, b := range a.brains {
		if b.GetGrpcAddress() != "" {
			out = append(out, b.GetGrpcAddress())
		}
	}
	if len(out) == 0 {
		out = slices.Clone(a.cfg.Brains)
	}
	slices.Sort(out)
	return out
}
