package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	requests     *prometheus.CounterVec   // model, endpoint, status
	ttft         *prometheus.HistogramVec // model
	itl          *prometheus.HistogramVec // model
	duration     *prometheus.HistogramVec // model, endpoint
	promptTokens *prometheus.HistogramVec // model
	outputTokens *prometheus.HistogramVec // model
	decisions    *prometheus.CounterVec   // policy, reason
	stages       *prometheus.HistogramVec // stage
	cachedTokens *prometheus.CounterVec   // model, source (predicted, reported)
	migrations   *prometheus.CounterVec   // model, phase (before-first-token, mid-stream)
	tokenizerErr *prometheus.CounterVec   // model
	pdFallbacks  *prometheus.CounterVec   // model
	queueWait    prometheus.Histogram
}

// Buckets for latencies of a streamed answer: a millisecond to minutes.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 18)

func newMetrics(reg *prometheus.Registry, g *Gateway) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gateway_requests_total",
			Help: "Requests answered, by model, endpoint and HTTP status."}, []string{"model", "endpoint", "status"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strata_gateway_time_to_first_token_seconds",
			Help: "Time from a request's arrival to its first output token.", Buckets: latencyBuckets}, []string{"model"}),
		itl: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strata_gateway_inter_token_latency_seconds",
			Help: "Time between streamed output chunks.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"model"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strata_gateway_request_duration_seconds",
			Help: "Time from a request's arrival to its last byte.", Buckets: latencyBuckets}, []string{"model", "endpoint"}),
		promptTokens: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strata_gateway_prompt_tokens",
			Help: "Prompt length of requests, in tokens.", Buckets: prometheus.ExponentialBuckets(16, 2, 14)}, []string{"model"}),
		outputTokens: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strata_gateway_output_tokens",
			Help: "Output length of requests, in tokens.", Buckets: prometheus.ExponentialBuckets(1, 2, 16)}, []string{"model"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gateway_routing_decisions_total",
			Help: "Routing decisions by the policy that made them and why (brain-unavailable: the brain did not answer in time)."}, []string{"policy", "reason"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strata_gateway_routing_overhead_seconds",
			Help:    "The gateway's own work per request, by stage: template, tokenize, hash, score (the brain's answer, kv policy), select (load, policy, counting the request).",
			Buckets: prometheus.ExponentialBuckets(0.000005, 2, 16)}, []string{"stage"}),
		cachedTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gateway_cached_tokens_total",
			Help: "Prompt tokens expected cached by routing (predicted) and reported cached by engines (reported)."}, []string{"model", "source"}),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gateway_migrations_total",
			Help: "Requests moved to another worker after theirs failed, before the first token or mid-stream."}, []string{"model", "phase"}),
		tokenizerErr: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gateway_tokenizer_unavailable_total",
			Help: "Requests routed without a prompt hash because the model's tokenizer is missing or failed to load."}, []string{"model"}),
		pdFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gateway_pd_fallbacks_total",
			Help: "Disaggregated requests the decode worker served alone because the prefill step failed."}, []string{"model"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "strata_gateway_queue_wait_seconds",
			Help: "Time requests waited for a worker that was not busy.", Buckets: latencyBuckets}),
	}
	reg.MustRegister(m.requests, m.ttft, m.itl, m.duration, m.promptTokens, m.outputTokens, m.decisions, m.stages,
		m.cachedTokens, m.migrations, m.tokenizerErr, m.pdFallbacks, m.queueWait,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strata_gateway_queue_depth", Help: "Requests waiting for capacity."},
			func() float64 { return float64(g.queue.depth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strata_gateway_brain_connected", Help: "1 while the cluster watch stream to the brain is up."},
			func() float64 {
				if g.cluster.connected.Load() {
					return 1
				}
				return 0
			}),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) stage(name string, start time.Time) {
	m.stages.WithLabelValues(name).Observe(time.Since(start).Seconds())
}
