package gateway

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/strata-llm/strata/backoff"
	"github.com/strata-llm/strata/gateway/routing"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// defaultBlockSize is vLLM's, for deployments that do not set one.
const defaultBlockSize = 16

// cluster is the gateway's view of what it can route to, from the brain's
// WatchCluster stream. When the brain is unreachable the last view stays in
// use: workers keep serving without it.
type cluster struct {
	log *slog.Logger

	mu      sync.RWMutex
	models  map[string]*model  // by served name
	workers map[string]*worker // by id: kept across views for their counters
	synced  bool               // a view has arrived
	changed chan struct{}      // closed when the view or any load changes

	connected atomic.Bool
}

// model is one served model name.
type model struct {
	info      *stratav1.ClusterModel
	blockSize int
	// workers are the routable ones, sorted by id: by role for a
	// disaggregated deployment (prefill, decode), all BOTH otherwise.
	workers []*worker

	kept *modelState // across views of the cluster
}

// modelState is what a model keeps across views of the cluster: averages
// of this gateway's requests to it (EWMA), to size what engines report
// beyond this gateway's own requests, and its selection lock.
type modelState struct {
	promptBlocks, totalBlocks atomicFloat
	// selecting serializes reading workers' load, picking one and
	// counting the request on it (Gateway.selectWorker).
	selecting sync.Mutex
}

// worker is one routable engine and this gateway's requests in flight to it.
type worker struct {
	id, endpoint string
	role         stratav1.WorkerRole
	load         atomic.Pointer[stratav1.WorkerLoad] // as the engine last reported
	// gone is closed when the worker leaves the routable view (stopped,
	// unhealthy, its node down): requests in flight on it move elsewhere.
	gone chan struct{}

	mu         sync.Mutex
	inflight   int     // requests in flight
	prefilling int     // of which before their first token
	prefill    float64 // their uncached prompt blocks
	decode     float64 // KV blocks of those decoding
}

func newCluster(log *slog.Logger) *cluster {
	return &cluster{log: log, models: map[string]*model{}, workers: map[string]*worker{}, changed: make(chan struct{})}
}

// watch keeps the view current until ctx ends, reconnecting with backoff.
func (c *cluster) watch(ctx context.Context, gw stratav1.GatewayServiceClient) {
	b := backoff.New()
	for ctx.Err() == nil {
		stream, err := gw.WatchCluster(ctx, &stratav1.WatchClusterRequest{})
		if err == nil {
			for {
				var v *stratav1.WatchClusterResponse
				if v, err = stream.Recv(); err != nil {
					break
				}
				c.connected.Store(true)
				b.Reset()
				c.apply(v)
			}
		}
		c.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("cluster watch lost; routing on the last view", "error", err)
		if !b.Wait(ctx) {
			return
		}
	}
}

// apply installs a view from the brain.
func (c *cluster) apply(v *stratav1.WatchClusterResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	models := make(map[string]*model, len(v.GetModels()))
	for _, info := range v.GetModels() {
		m := &model{info: info, blockSize: int(info.GetBlockSize()), kept: &modelState{}}
		if old := c.models[info.GetName()]; old != nil {
			m.kept = old.kept
		}
		if m.blockSize <= 0 {
			m.blockSize = defaultBlockSize
		}
		models[info.GetName()] = m
	}
	workers := make(map[string]*worker, len(v.GetWorkers()))
	for _, rw := range v.GetWorkers() {
		m := models[rw.GetModel()]
		if m == nil {
			continue
		}
		id := rw.GetWorker().GetId()
		w := c.workers[id]
		if w == nil || w.endpoint != rw.GetEndpoint() {
			w = &worker{id: id, endpoint: rw.GetEndpoint(), role: rw.GetWorker().GetRole(), gone: make(chan struct{})}
		}
		w.load.Store(rw.GetWorker().GetLoad())
		workers[id] = w
		m.workers = append(m.workers, w)
	}
	for _, m := range models {
		slices.SortFunc(m.workers, func(a, b *worker) int { return strings.Compare(a.id, b.id) })
	}
	for id, w := range c.workers {
		if workers[id] != w {
			close(w.gone)
		}
	}
	c.models, c.workers, c.synced = models, workers, true
	c.notifyLocked()
}

// notifyLocked wakes what waits for capacity. Caller holds c.mu.
func (c *cluster) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// notify wakes what waits for capacity: a request finished or advanced.
func (c *cluster) notify() {
	c.mu.Lock()
	c.notifyLocked()
	c.mu.Unlock()
}

// model returns the served model and a channel closed at the next change.
func (c *cluster) model(name string) (*model, <-chan struct{}) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.models[name], c.changed
}

// modelInfos lists the served models, sorted by name.
func (c *cluster) modelInfos() []*stratav1.ClusterModel {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*stratav1.ClusterModel, 0, len(c.models))
	for _, m := range c.models {
		out = append(out, m.info)
	}
	slices.SortFunc(out, func(a, b *stratav1.ClusterModel) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

func (c *cluster) isSynced() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.synced
}

// view is a worker as the routing policies see it, now.
func (w *worker) view(m *model) *routing.Worker {
	rw := &routing.Worker{ID: w.id, Endpoint: w.endpoint}
	if l := w.load.Load(); l != nil {
		rw.Running, rw.Waiting, rw.KVUsage = int(l.GetRunningRequests()), int(l.GetWaitingRequests()), l.GetKvUsage()
	}
	w.mu.Lock()
	rw.Inflight, rw.PrefillBlocks, rw.DecodeBlocks = w.inflight, w.prefill, w.decode
	prefilling := w.prefilling
	w.mu.Unlock()
	// What the engine reports beyond this gateway's requests (which it
	// counts too), sized by this gateway's average request: queued ones
	// still to prefill, and all of them attending their KV.
	rw.OthersPrefillBlocks = float64(max(rw.Waiting-prefilling, 0)) * m.kept.promptBlocks.load()
	rw.OthersDecodeBlocks = float64(max(rw.Running+rw.Waiting-rw.Inflight, 0)) * m.kept.totalBlocks.load()
	return rw
}

// atomicFloat is a float64 updated as an exponentially weighted average.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) load() float64 { return math.Float64frombits(f.bits.Load()) }

// observe folds x into the average (weight 1/32; the first sample sets it).
func (f *atomicFloat) observe(x float64) {
	for {
		old := f.bits.Load()
		v := x
		if old != 0 {
			v = math.Float64frombits(old) + (x-math.Float64frombits(old))/32
		}
		if f.bits.CompareAndSwap(old, math.Float64bits(v)) {
			return
		}
	}
}

// ticket is one request's share of its worker's load, from dispatch to end.
type ticket struct {
	w          *worker
	prefill    float64 // in w.prefill until the first token
	decode     float64 // in w.decode
	prefilling bool
	ended      bool
}

// dispatch counts a request on the worker: prefill blocks of prompt it
// must compute, and kv blocks its sequence will attend at every decode
// step from the moment it is scheduled — even blocks shared with other
// sequences cost each of them attention, which is what makes a burst on a
// hot prefix spill to other workers.
func (w *worker) dispatch(prefill, kv float64) *ticket {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight++
	w.prefilling++
	w.prefill += prefill
	w.decode += kv
	return &ticket{w: w, prefill: prefill, decode: kv, prefilling: true}
}

// decoding marks the request past its prefill, its sequence now kv blocks.
func (t *ticket) decoding(kv float64) {
	w := t.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if t.ended {
		return
	}
	if t.prefilling {
		t.prefilling = false
		w.prefilling--
		w.prefill -= t.prefill
		t.prefill = 0
	}
	w.decode += kv - t.decode
	t.decode = kv
}

// end removes the request from the worker's load.
func (t *ticket) end() {
	w := t.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if t.ended {
		return
	}
	t.ended = true
	w.inflight--
	if t.prefilling {
		w.prefilling--
	}
	w.prefill -= t.prefill
	w.decode -= t.decode
}
