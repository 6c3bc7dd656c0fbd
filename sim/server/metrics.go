package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-llm/strata/sim/engine"
)

// vLLM's histogram buckets (vllm/v1/metrics/loggers.py), so dashboards and
// the agent read the simulator like the real engine.
var (
	ttftBuckets    = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	itlBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	requestBuckets = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
)

type metrics struct {
	promptTokens     prometheus.Counter
	generationTokens prometheus.Counter
	success          *prometheus.CounterVec
	ttft, itl, e2e   prometheus.Observer
	queue, prefill   prometheus.Observer
	decode           prometheus.Observer
}

func newMetrics(reg *prometheus.Registry, model string, eng *engine.Engine) *metrics {
	labels := prometheus.Labels{"model_name": model, "engine": "0"}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
		reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) prometheus.Observer {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets, ConstLabels: labels})
		reg.MustRegister(h)
		return h
	}
	m := &metrics{
		promptTokens:     counter("vllm:prompt_tokens_total", "Number of prefill tokens processed."),
		generationTokens: counter("vllm:generation_tokens_total", "Number of generation tokens processed."),
		success: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vllm:request_success_total", Help: "Count of successfully processed requests.", ConstLabels: labels,
		}, []string{"finished_reason"}),
		ttft:    histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttftBuckets),
		itl:     histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itlBuckets),
		e2e:     histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", requestBuckets),
		queue:   histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", requestBuckets),
		prefill: histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", requestBuckets),
		decode:  histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", requestBuckets),
	}
	reg.MustRegister(m.success)
	for _, reason := range []string{"stop", "length", "abort"} {
		m.success.WithLabelValues(reason)
	}
	cfg := eng.Config()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vllm:cache_config_info", Help: "Information of the LLMEngine CacheConfig",
		ConstLabels: prometheus.Labels{
			"block_size":            strconv.Itoa(cfg.BlockSize),
			"num_gpu_blocks":        strconv.Itoa(cfg.NumGPUBlocks),
			"enable_prefix_caching": strconv.FormatBool(cfg.EnablePrefixCaching),
			"engine":                "0",
		},
	})
	info.Set(1)
	reg.MustRegister(info, newEngineCollector(eng, labels))
	return m
}

// observe records a finished request the way vLLM's loggers do.
func (m *metrics) observe(o outcome) {
	m.success.WithLabelValues(o.reason).Inc()
	r := o.result
	if r.Arrival.IsZero() {
		return
	}
	if len(o.tokenTimes) > 0 {
		m.ttft.Observe(o.tokenTimes[0].Sub(r.Arrival).Seconds())
		for i := 1; i < len(o.tokenTimes); i++ {
			m.itl.Observe(o.tokenTimes[i].Sub(o.tokenTimes[i-1]).Seconds())
		}
	}
	if !r.Finished.IsZero() {
		m.e2e.Observe(r.Finished.Sub(r.Arrival).Seconds())
	}
	if !r.Scheduled.IsZero() {
		m.queue.Observe(r.Scheduled.Sub(r.Arrival).Seconds())
		if !r.FirstToken.IsZero() {
			m.prefill.Observe(r.FirstToken.Sub(r.Scheduled).Seconds())
			if !r.Finished.IsZero() {
				m.decode.Observe(r.Finished.Sub(r.FirstToken).Seconds())
			}
		}
	}
}

// engineCollector reads the engine's gauges and cumulative counters at
// scrape time, from the snapshot the engine takes after each step.
type engineCollector struct {
	eng   *engine.Engine
	descs []engineMetric
}

type engineMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(engine.Stats) float64
}

func newEngineCollector(eng *engine.Engine, labels prometheus.Labels) *engineCollector {
	c := &engineCollector{eng: eng}
	add := func(name, help string, kind prometheus.ValueType, value func(engine.Stats) float64) {
		c.descs = append(c.descs, engineMetric{prometheus.NewDesc(name, help, nil, labels), kind, value})
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	add("vllm:num_requests_running", "Number of requests in model execution batches.", gauge,
		func(s engine.Stats) float64 { return float64(s.Running) })
	add("vllm:num_requests_waiting", "Number of requests waiting to be processed.", gauge,
		func(s engine.Stats) float64 { return float64(s.Waiting) })
	add("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", gauge,
		func(s engine.Stats) float64 { return s.KVUsage })
	add("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", counter,
		func(s engine.Stats) float64 { return float64(s.Preemptions) })
	add("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", counter,
		func(s engine.Stats) float64 { return float64(s.PrefixQueries) })
	add("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", counter,
		func(s engine.Stats) float64 { return float64(s.PrefixHits) })
	add("vllm:external_prefix_cache_queries_total", "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.", counter,
		func(s engine.Stats) float64 { return float64(s.ExternalQueries) })
	add("vllm:external_prefix_cache_hits_total", "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.", counter,
		func(s engine.Stats) float64 { return float64(s.ExternalHits) })
	return c
}

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.descs {
		ch <- m.desc
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.eng.Stats()
	for _, m := range c.descs {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
	}
}
