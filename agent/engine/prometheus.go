package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is a parsed Prometheus text exposition, by metric family name.
type Metrics map[string]*dto.MetricFamily

// ParsePrometheus parses the Prometheus text format (version 0.0.4) that
// vLLM, SGLang and llama.cpp serve. Engines put colons in their names
// ("vllm:num_requests_running"), which both validation schemes accept; the
// UTF-8 scheme is used so that a future engine's exotic label names do not
// fail the whole scrape.
func ParsePrometheus(body []byte) (Metrics, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("empty metrics body")
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse prometheus text: %w", err)
	}
	return Metrics(fams), nil
}

// Has reports whether the family exists with at least one sample.
func (m Metrics) Has(name string) bool {
	f, ok := m[name]
	return ok && len(f.GetMetric()) > 0
}

// values are the finite sample values of a gauge, counter or untyped family
// (one per label set).
func (m Metrics) values(name string) []float64 {
	f, ok := m[name]
	if !ok {
		return nil
	}
	out := make([]float64, 0, len(f.GetMetric()))
	for _, s := range f.GetMetric() {
		var v float64
		switch {
		case s.GetGauge() != nil:
			v = s.GetGauge().GetValue()
		case s.GetCounter() != nil:
			v = s.GetCounter().GetValue()
		case s.GetUntyped() != nil:
			v = s.GetUntyped().GetValue()
		default:
			continue // histogram, summary: not a single value
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		out = append(out, v)
	}
	return out
}

// Sum adds the family's samples across label sets (several engine cores or
// data-parallel ranks behind one server). ok is false without samples.
func (m Metrics) Sum(name string) (sum float64, ok bool) {
	vs := m.values(name)
	for _, v := range vs {
		sum += v
	}
	return sum, len(vs) > 0
}

// Mean averages the family's samples across label sets: the right reduction
// for a ratio such as KV cache usage, which would exceed 1 if summed.
func (m Metrics) Mean(name string) (mean float64, ok bool) {
	vs := m.values(name)
	if len(vs) == 0 {
		return 0, false
	}
	sum, _ := m.Sum(name)
	return sum / float64(len(vs)), true
}

// First returns the sum of the first of names that has samples: engines
// rename metrics across versions, newest name first.
func (m Metrics) First(names ...string) (float64, bool) {
	for _, n := range names {
		if v, ok := m.Sum(n); ok {
			return v, true
		}
	}
	return 0, false
}

// FirstMean is First with Mean.
func (m Metrics) FirstMean(names ...string) (float64, bool) {
	for _, n := range names {
		if v, ok := m.Mean(n); ok {
			return v, true
		}
	}
	return 0, false
}

// Count converts a metric value to a request count, saturating: negative
// or NaN is 0, above the range is the maximum.
func Count(v float64) uint32 {
	switch {
	case !(v > 0):
		return 0
	case v >= math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(math.Round(v))
}

// Total converts a counter value to a cumulative count, saturating.
func Total(v float64) uint64 {
	switch {
	case !(v > 0):
		return 0
	case v >= math.MaxUint64:
		return math.MaxUint64
	}
	return uint64(math.Round(v))
}

// Fraction clamps a ratio to [0, 1]; NaN is 0.
func Fraction(v float64) float64 {
	switch {
	case !(v > 0):
		return 0
	case v > 1:
		return 1
	}
	return v
}
