package kvbm

import (
	"context"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// apiMetrics are the block API's own metrics (the tiers' are package
// tiers'): calls by method and code, their durations, the payload bytes
// moved and the blocks by outcome.
type apiMetrics struct {
	calls             *prometheus.CounterVec
	seconds           *prometheus.HistogramVec
	bytesIn, bytesOut prometheus.Counter
	blockCount        *prometheus.CounterVec
}

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_kvbm_bytes_total", Help: "Block payload bytes received (in: puts) and sent (out: gets) by the block API.",
	}, []string{"direction"})
	m := &apiMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_kvbm_calls_total", Help: "Block API calls by method and gRPC status code.",
		}, []string{"method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strata_kvbm_call_seconds", Help: "Duration of block API calls (a whole stream for gets and puts).",
			Buckets: prometheus.ExponentialBuckets(20e-6, 2, 20), // 20 µs .. 10 s
		}, []string{"method"}),
		bytesIn: bytes.WithLabelValues("in"), bytesOut: bytes.WithLabelValues("out"),
		blockCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_kvbm_blocks_total", Help: "Blocks the block API handled, by method and outcome (a lookup's found prefix; a get's serving tier or not_found; puts stored).",
		}, []string{"method", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.seconds, bytes, m.blockCount)
	}
	return m
}

func (m *apiMetrics) blocks(method, outcome string, n int) {
	if n > 0 {
		m.blockCount.WithLabelValues(method, outcome).Add(float64(n))
	}
}

func (m *apiMetrics) observe(fullMethod string, start time.Time, err error) {
	method := path.Base(fullMethod)
	m.calls.WithLabelValues(method, status.Code(err).String()).Inc()
	m.seconds.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// unaryInterceptor gives a call without a deadline the server's, and
// counts it.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.limits.CallTimeout)
		defer cancel()
	}
	res, err := handler(ctx, req)
	s.m.observe(info.FullMethod, start, err)
	return res, err
}

// streamInterceptor does the same for streams.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx := ss.Context()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.limits.CallTimeout)
		defer cancel()
		ss = ctxStream{ServerStream: ss, ctx: ctx}
	}
	err := handler(srv, ss)
	s.m.observe(info.FullMethod, start, err)
	return err
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c ctxStream) Context() context.Context { return c.ctx }
