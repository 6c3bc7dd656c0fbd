package kvindex

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the index's Prometheus metrics.
type Metrics struct {
	events    prometheus.Counter
	gaps      prometheus.Counter
	snapshots prometheus.Counter
	evictions prometheus.Counter
	workers   prometheus.Gauge
	score     prometheus.Histogram
}

// NewMetrics creates the metrics and registers them on reg when not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_kvindex_events_applied_total", Help: "KV events applied to the index (rate: events/s).",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_kvindex_sequence_gaps_total", Help: "Worker event batches missed, each answered by a snapshot request.",
		}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_kvindex_snapshots_total", Help: "Worker snapshots applied.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_kvindex_evictions_total", Help: "Blocks evicted to stay under the per-model cap.",
		}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_kvindex_workers", Help: "Workers the index tracks.",
		}),
		score: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strata_kvindex_score_seconds", Help: "In-process time of one Score.",
			Buckets: prometheus.ExponentialBuckets(1e-7, 2, 18),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.gaps, m.snapshots, m.evictions, m.workers, m.score)
	}
	return m
}

func (m *Metrics) scoreStart() func() {
	start := time.Now()
	return func() { m.score.Observe(time.Since(start).Seconds()) }
}

// Stats is the admin view of one worker: blocks per local tier.
type Stats struct {
	WorkerID       string
	Model          string
	GPU, CPU, Disk int
	Seq            uint64
	AwaitingResync bool
}

// WorkerStats lists every worker's block counts (for `strata ctl status`
// and debugging), and the remote tier's size per model.
func (x *Index) WorkerStats() (workers []Stats, remote map[string]int) {
	x.mu.RLock()
	models := make(map[string]*model, len(x.models))
	for k, v := range x.models {
		models[k] = v
	}
	x.mu.RUnlock()
	remote = map[string]int{}
	for name, m := range models {
		m.mu.RLock()
		for _, w := range m.workers {
			workers = append(workers, Stats{WorkerID: w.id, Model: w.model, GPU: w.entries[0], CPU: w.entries[1], Disk: w.entries[2], Seq: w.seq, AwaitingResync: w.resync || !w.synced})
		}
		remote[name] = len(m.remote)
		m.mu.RUnlock()
	}
	return workers, remote
}

// Size is the number of (block, worker, tier) entries and distinct blocks
// per model, for the index size metric.
func (x *Index) Size() (entries, blocks int) {
	x.mu.RLock()
	models := make([]*model, 0, len(x.models))
	for _, v := range x.models {
		models = append(models, v)
	}
	x.mu.RUnlock()
	for _, m := range models {
		m.mu.RLock()
		blocks += len(m.index) + len(m.remote)
		for _, w := range m.workers {
			entries += w.entries[0] + w.entries[1] + w.entries[2]
		}
		entries += len(m.remote)
		m.mu.RUnlock()
	}
	return entries, blocks
}
