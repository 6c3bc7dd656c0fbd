// Package routing is the routing benchmark (`strata bench routing`, `make
// bench-routing`): one workload replayed under each of the gateway's
// routing policies, each against a fresh cluster so that every policy
// starts with cold caches, at the same rate and with the same seed, and a
// table of what each achieved against round-robin and against the
// workload's reuse bounds.
//
// The rate is a fraction of the cluster's measured capacity: a calibration
// run first keeps a fresh cluster saturated under least-loaded (a
// concurrency cap well above what the engines can run at once, so they
// always have work queued) and counts the requests it completes per second
// once past its warm-up.
package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/strata-llm/strata/bench"
	"github.com/strata-llm/strata/bench/report"
	"github.com/strata-llm/strata/bench/workload"
	"github.com/strata-llm/strata/gateway"
)

// Baseline is the policy every other is compared with.
const Baseline = "round-robin"

// Policies are the policies benchmarked by default, the baseline first.
var Policies = []string{Baseline, "kv", "approx-kv", "least-loaded", "random"}

// Header is the request header that names the gateway's routing policy.
const Header = "X-Strata-Routing"

// Cluster is a running cluster to send a workload to.
type Cluster interface {
	// URL is the gateway's API root, ending in /v1.
	URL() string
	Close()
}

// Starter starts a fresh cluster: new engines with empty caches, a new
// gateway and brain.
type Starter func(ctx context.Context) (Cluster, error)

// Calibration is how the cluster's capacity is measured.
type Calibration struct {
	// Policy routes the calibration run (default least-loaded).
	Policy string
	// Concurrency is the requests kept in flight (default 64 per engine:
	// more than an engine can run at once, so each always has work
	// queued; the gateway queues what its engines refuse).
	Concurrency int
	// Duration is the run's length and Warmup the part of it not counted
	// (defaults 60 s and 15 s).
	Duration, Warmup time.Duration
}

// Config is one routing benchmark.
type Config struct {
	// Start starts the cluster of each run.
	Start Starter
	// Engines is the cluster's engine count, for the report and the
	// calibration's default concurrency.
	Engines int
	// Policies are run in this order (default Policies); the first is the
	// baseline the ratios are to.
	Policies []string
	// Bench is the workload and every setting of the runs but the URL,
	// the rate, the duration and the routing header, which Run sets. Its
	// BoundCapacityBlocks should be the cluster's total KV blocks.
	Bench bench.Config
	// Load is the request rate as a fraction of the measured capacity
	// (default 0.8). RequestRate, if set, is used instead and the
	// calibration is skipped.
	Load        float64
	RequestRate float64
	Calibration Calibration
	// Duration is how long each policy's run sends (default 90 s), of
	// which the requests due in the first Warmup are sent but not measured
	// (neither in the figures nor in the reuse bounds): every policy
	// starts cold and is measured once it has seen the workload.
	Duration, Warmup time.Duration
	// Logger reports the benchmark's progress (default: discarded).
	Logger *slog.Logger
	// Progress, if set, receives each run's progress, named by policy.
	Progress func(run string, p bench.Progress)
}

// Result is a routing benchmark's outcome.
type Result struct {
	// Capacity is the cluster's throughput at saturation in requests per
	// second, and Calibration its run (zero and nil when the rate was
	// given).
	Capacity    float64
	Calibration *bench.Result
	// Rate is the rate every policy ran at; Load is Rate/Capacity.
	Rate, Load float64
	Engines    int
	// Runs are the policies' results, in Config.Policies order.
	Runs []report.Named
}

// calibrationRequests is the least the calibration run has.
const calibrationRequests = 5000

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("invalid routing benchmark config")

func (cfg *Config) normalize() error {
	if cfg.Start == nil {
		return fmt.Errorf("%w: no cluster starter", ErrConfig)
	}
	if len(cfg.Policies) == 0 {
		cfg.Policies = Policies
	}
	for i, p := range cfg.Policies {
		if !slices.Contains(gateway.PolicyNames, p) {
			return fmt.Errorf("%w: unknown policy %q (want one of %v)", ErrConfig, p, gateway.PolicyNames)
		}
		if slices.Contains(cfg.Policies[:i], p) {
			return fmt.Errorf("%w: policy %q twice", ErrConfig, p)
		}
	}
	if cfg.Engines <= 0 {
		return fmt.Errorf("%w: engines %d", ErrConfig, cfg.Engines)
	}
	if cfg.Load == 0 {
		cfg.Load = 0.8
	}
	if !(cfg.Load > 0) || math.IsInf(cfg.Load, 0) {
		return fmt.Errorf("%w: load %v must be a positive fraction of capacity", ErrConfig, cfg.Load)
	}
	if cfg.RequestRate < 0 || math.IsNaN(cfg.RequestRate) || math.IsInf(cfg.RequestRate, 0) {
		return fmt.Errorf("%w: request rate %v", ErrConfig, cfg.RequestRate)
	}
	if cfg.Duration == 0 {
		cfg.Duration = 90 * time.Second
	}
	c := &cfg.Calibration
	if c.Policy == "" {
		c.Policy = "least-loaded"
	}
	if !slices.Contains(gateway.PolicyNames, c.Policy) {
		return fmt.Errorf("%w: unknown calibration policy %q", ErrConfig, c.Policy)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64 * cfg.Engines
	}
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = 15 * time.Second
	}
	switch {
	case cfg.Warmup < 0 || cfg.Warmup >= cfg.Duration:
		return fmt.Errorf("%w: warm-up %v must be shorter than the duration %v", ErrConfig, cfg.Warmup, cfg.Duration)
	case cfg.Duration < 0 || c.Duration < 0 || c.Warmup < 0 || c.Concurrency < 0:
		return fmt.Errorf("%w: negative duration or concurrency", ErrConfig)
	case c.Warmup+time.Second > c.Duration:
		return fmt.Errorf("%w: calibration warm-up %v leaves under a second of its %v", ErrConfig, c.Warmup, c.Duration)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run calibrates (unless a rate is given), then runs every policy. The
// runs done so far are returned with the error of one that failed.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	cfg.Logger.Info("routing benchmark", "workload", cfg.Bench.Workload.Kind, "policies", cfg.Policies,
		"duration", cfg.Duration, "warmup", cfg.Warmup, "seed", cfg.Bench.Seed)
	res := &Result{Rate: cfg.RequestRate, Engines: cfg.Engines}
	if res.Rate == 0 {
		cal, capacity, err := calibrate(ctx, &cfg)
		if err != nil {
			return res, fmt.Errorf("calibration: %w", err)
		}
		res.Calibration, res.Capacity = cal, capacity
		res.Rate, res.Load = cfg.Load*capacity, cfg.Load
		cfg.Logger.Info("capacity measured", "policy", cfg.Calibration.Policy,
			"requests_per_second", round(capacity, 2), "rate", round(res.Rate, 2), "load", cfg.Load)
	}
	for _, policy := range cfg.Policies {
		b := cfg.Bench
		b.RequestRate = res.Rate
		b.Duration = cfg.Duration
		b.Warmup = cfg.Warmup
		// Enough requests that the duration, not the count, ends the run.
		b.NumRequests = requests(b.Workload, int(math.Ceil(res.Rate*cfg.Duration.Seconds()*1.5))+100)
		r, err := runOn(ctx, &cfg, policy, b, 0)
		if r != nil {
			res.Runs = append(res.Runs, report.Named{Name: policy, Result: r})
		}
		if err != nil {
			return res, fmt.Errorf("%s: %w", policy, err)
		}
		cfg.Logger.Info("policy done", "policy", policy, "succeeded", r.GetRequestsSucceeded(), "failed", r.GetRequestsFailed(),
			"ttft_p50_ms", round(r.GetTtftMs().GetP50(), 1), "ttft_p99_ms", round(r.GetTtftMs().GetP99(), 1),
			"cached", round(r.GetCachedTokenFraction(), 3), "pooled_bound", round(r.GetReuseBounds().GetPooledHitFraction(), 3))
	}
	return res, nil
}

// calibrate measures the requests per second a fresh cluster completes
// when kept saturated.
func calibrate(ctx context.Context, cfg *Config) (*bench.Result, float64, error) {
	c := cfg.Calibration
	b := cfg.Bench
	b.RequestRate = 0 // all due at once: the concurrency cap paces them
	b.MaxConcurrency = c.Concurrency
	b.Duration = c.Duration
	b.Warmup = c.Warmup
	// Every request is due at once and waits for a slot in a goroutine of
	// its own: enough for the duration, not a million.
	b.NumRequests = requests(b.Workload, max(calibrationRequests, 50*c.Concurrency))
	b.SaveRequests = false
	// What is still in flight at the end is not counted: cancel it rather
	// than wait for a saturated cluster to drain.
	r, err := runOn(ctx, cfg, c.Policy, b, c.Duration+time.Second)
	if err != nil {
		return r, 0, err
	}
	if r.GetRequestsNotSent() == 0 {
		return r, 0, fmt.Errorf("all %d requests were done within %v: the cluster was not kept saturated (shorten the calibration or raise its concurrency)", b.NumRequests, c.Duration)
	}
	capacity := SteadyThroughput(r, c.Warmup, c.Duration)
	if capacity <= 0 {
		return r, 0, fmt.Errorf("no request completed between %v and %v (%d failed: %v)", c.Warmup, c.Duration, r.GetRequestsFailed(), r.GetErrorExamples())
	}
	return r, capacity, nil
}

// requests is how many requests to ask of a workload that should last
// about want: a chat has users × rounds turns and a trace its rows, all of
// them (0) unless want is fewer.
func requests(spec workload.Spec, want int) int {
	switch spec.Kind {
	case workload.KindChat:
		if turns := spec.Chat.Users * spec.Chat.Rounds; turns > 0 && want >= turns {
			return 0
		}
	case workload.KindTrace:
		return 0
	}
	return want
}

// SteadyThroughput is the requests per second r completed in the whole
// seconds from `from` to `to` after its start: a saturated run's rate, free
// of its ramp-up and of the drain after the last request was sent.
func SteadyThroughput(r *bench.Result, from, to time.Duration) float64 {
	lo, hi := int(math.Ceil(from.Seconds())), int(to.Seconds())
	if hi <= lo {
		return 0
	}
	var done uint32
	for _, s := range r.GetTimeSeries() {
		if int(s.GetSecond()) >= lo && int(s.GetSecond()) < hi {
			done += s.GetRequestsSucceeded()
		}
	}
	return float64(done) / float64(hi-lo)
}

// runOn runs b against a fresh cluster with requests routed by policy;
// with a cutoff, the requests still in flight that long after the start
// are cancelled.
func runOn(ctx context.Context, cfg *Config, policy string, b bench.Config, cutoff time.Duration) (*bench.Result, error) {
	start := time.Now()
	cl, err := cfg.Start(ctx)
	if err != nil {
		return nil, fmt.Errorf("start a cluster: %w", err)
	}
	defer cl.Close()
	cfg.Logger.Info("cluster up", "policy", policy, "took", time.Since(start).Round(time.Millisecond))
	b.URL = cl.URL()
	b.Header = b.Header.Clone()
	if b.Header == nil {
		b.Header = http.Header{}
	}
	b.Header.Set(Header, policy)
	if cfg.Progress != nil {
		b.Progress = func(p bench.Progress) { cfg.Progress(policy, p) }
	}
	rctx := ctx
	if cutoff > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, cutoff)
		defer cancel()
	}
	r, err := bench.Run(rctx, b)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = nil // the cutoff
	}
	if err == nil && r.GetRequestsSent() > 0 && r.GetRequestsSucceeded() == 0 {
		err = fmt.Errorf("every request failed: %v", r.GetErrorExamples())
	}
	return r, err
}

// Rows are the comparison table's metrics.
var Rows = []string{
	"Successful requests", "Failed requests",
	"P50 TTFT (ms)", "P99 TTFT (ms)", "P50 ITL (ms)",
	"Request throughput (req/s)", "Output token throughput (tok/s)", "Request goodput (req/s)",
	"Cached-token fraction", "Pooled-cache (LRU) bound", "Cached / pooled bound",
}

// WriteTable prints the benchmark: the load, the comparison with ratios to
// the baseline, and the workload's reuse bounds.
func WriteTable(w io.Writer, res *Result) error {
	if len(res.Runs) == 0 {
		return errors.New("no run to report")
	}
	first := res.Runs[0].Result
	if res.Capacity > 0 {
		if _, err := fmt.Fprintf(w, "Capacity: %.2f req/s at saturation under %s (%d engines); load %.2f req/s = %.0f %% of it\n",
			res.Capacity, res.Calibration.GetConfig().GetHeaders()[Header], res.Engines, res.Rate, 100*res.Load); err != nil {
			return err
		}
	} else if _, err := fmt.Fprintf(w, "Load: %.2f req/s (given; capacity not measured)\n", res.Rate); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "Ratios are to %s.\n\n", res.Runs[0].Name); err != nil {
		return err
	}
	if err := report.WriteCompare(w, res.Runs, Rows...); err != nil {
		return err
	}
	rb := first.GetReuseBounds()
	_, err := fmt.Fprintf(w, "\nReuse bounds of the workload (%d prompt tokens, blocks of %d):\n"+
		"  infinite cache (every block ever seen stays):           %.3f\n"+
		"  pooled cache (%d blocks, the cluster's KV, one LRU):  %.3f\n",
		rb.GetPromptTokens(), rb.GetBlockSize(), rb.GetInfiniteHitFraction(), rb.GetCapacityBlocks(), rb.GetPooledHitFraction())
	return err
}

func round(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}
