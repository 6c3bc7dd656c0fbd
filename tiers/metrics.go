package tiers

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the hierarchy's Prometheus metrics, labelled by tier
// (cpu, disk, remote).
type Metrics struct {
	bytes, blocks, capacity                     *prometheus.GaugeVec
	hits, misses, offloads, onboards, evictions *prometheus.CounterVec
	offloadBytes, onboardBytes, errors, corrupt *prometheus.CounterVec
	latency                                     *prometheus.HistogramVec
	remoteAvailable                             prometheus.Gauge
	remoteDropped, remoteOutages                prometheus.Counter
	remoteQueued                                prometheus.Gauge
	eventsDropped                               prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg when not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	tier := []string{"tier"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strata_kv_tier_" + name, Help: help}, tier)
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_kv_tier_" + name + "_total", Help: help}, tier)
	}
	m := &Metrics{
		bytes:        gauge("bytes", "Payload bytes a local tier holds."),
		blocks:       gauge("blocks", "Blocks a local tier holds."),
		capacity:     gauge("capacity_bytes", "Payload bytes a local tier may hold."),
		hits:         counter("hits", "Blocks asked for that the tier held (counted at the first tier that did)."),
		misses:       counter("misses", "Blocks asked for that the tier did not hold."),
		offloads:     counter("offloads", "Blocks written into the tier (from the engine, spilled from above, or uploaded)."),
		onboards:     counter("onboards", "Blocks read from the tier for the caller (and promoted when below the first tier)."),
		evictions:    counter("evictions", "Blocks the tier dropped to make room."),
		offloadBytes: counter("offload_bytes", "Payload bytes written into the tier."),
		onboardBytes: counter("onboard_bytes", "Payload bytes read from the tier for the caller."),
		errors:       counter("errors", "Failed store operations (I/O errors, remote failures, timeouts)."),
		corrupt:      counter("corrupt", "Blocks that failed their checksum, dropped instead of served."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strata_kv_tier_op_seconds", Help: "Duration of one store call (a batch), by tier and operation.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 20), // 10 µs .. 5 s
		}, []string{"tier", "op"}),
		remoteAvailable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_kv_remote_available", Help: "1 while the remote tier answers, 0 while it is marked unavailable.",
		}),
		remoteOutages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_kv_remote_outages_total", Help: "Times the remote tier was marked unavailable.",
		}),
		remoteDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_kv_remote_dropped_writes_total", Help: "Remote writes not made: the tier was unavailable or the queue full.",
		}),
		remoteQueued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_kv_remote_queued_bytes", Help: "Payload bytes waiting to be written to the remote tier.",
		}),
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_kv_tier_events_dropped_total", Help: "Tier events dropped because the consumer fell behind (each time followed by an overflow event).",
		}),
	}
	if reg != nil {
		reg.MustRegister(
			m.bytes, m.blocks, m.capacity, m.hits, m.misses, m.offloads, m.onboards, m.evictions,
			m.offloadBytes, m.onboardBytes, m.errors, m.corrupt, m.latency,
			m.remoteAvailable, m.remoteOutages, m.remoteDropped, m.remoteQueued, m.eventsDropped,
		)
	}
	return m
}

// counter is one count of one tier, kept for Stats and mirrored to
// Prometheus.
type counter struct {
	n   atomic.Int64
	vec prometheus.Counter
}

func (c *counter) add(n int) {
	if n == 0 {
		return
	}
	c.n.Add(int64(n))
	if c.vec != nil {
		c.vec.Add(float64(n))
	}
}

// tierCounters are a tier's counters and its Prometheus children.
type tierCounters struct {
	hits, misses, offloads, onboards, evictions counter
	offloadBytes, onboardBytes, errors, corrupt counter
	bytes, blocks, capacity                     prometheus.Gauge
	latency                                     map[string]prometheus.Observer
}

var storeOps = []string{"get", "put", "has", "delete"}

func (m *Metrics) forTier(medium Medium) *tierCounters {
	c := &tierCounters{}
	if m == nil {
		return c
	}
	name := medium.String()
	c.hits.vec, c.misses.vec = m.hits.WithLabelValues(name), m.misses.WithLabelValues(name)
	c.offloads.vec, c.onboards.vec = m.offloads.WithLabelValues(name), m.onboards.WithLabelValues(name)
	c.evictions.vec, c.errors.vec = m.evictions.WithLabelValues(name), m.errors.WithLabelValues(name)
	c.offloadBytes.vec, c.onboardBytes.vec = m.offloadBytes.WithLabelValues(name), m.onboardBytes.WithLabelValues(name)
	c.corrupt.vec = m.corrupt.WithLabelValues(name)
	if medium != Remote {
		c.bytes, c.blocks, c.capacity = m.bytes.WithLabelValues(name), m.blocks.WithLabelValues(name), m.capacity.WithLabelValues(name)
	}
	c.latency = map[string]prometheus.Observer{}
	for _, op := range storeOps {
		c.latency[op] = m.latency.WithLabelValues(name, op)
	}
	return c
}

// observe records one store call's duration.
func (c *tierCounters) observe(op string, start time.Time) {
	if o := c.latency[op]; o != nil {
		o.Observe(time.Since(start).Seconds())
	}
}

// setSize mirrors a local tier's accounting to its gauges.
func (c *tierCounters) setSize(blocks, bytes int64) {
	if c.bytes != nil {
		c.bytes.Set(float64(bytes))
		c.blocks.Set(float64(blocks))
	}
}
