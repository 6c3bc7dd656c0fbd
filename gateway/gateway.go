// Package gateway is `strata gateway`: the stateless OpenAI-compatible
// endpoint in front of a Strata cluster. For every request it renders the
// chat template and tokenizes the prompt with the model's own tokenizer,
// hashes the prompt's KV blocks as the engines will cache them (kvhash),
// asks a brain replica which workers hold them, picks a worker with a
// routing policy (gateway/routing), and streams the engine's answer back,
// moving the request to another worker if its engine fails mid-way.
//
// The gateway holds no state another gateway needs: its view of the
// cluster comes from the brain's WatchCluster stream and outlives the
// brain's outages (requests keep flowing on the last view), and its
// in-flight counters only describe its own requests.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain/client"
	"github.com/strata-llm/strata/gateway/routing"
	"github.com/strata-llm/strata/gateway/routing/approxkv"
	"github.com/strata-llm/strata/gateway/routing/kv"
	"github.com/strata-llm/strata/gateway/routing/leastloaded"
	"github.com/strata-llm/strata/gateway/routing/random"
	"github.com/strata-llm/strata/gateway/routing/roundrobin"
	"github.com/strata-llm/strata/gateway/routing/session"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tokenizer"
)

// DefaultGCPercent is the Go collector's target (GOGC) `strata gateway`
// runs with. The gateway's live heap is its tokenizers, tens of MB, small
// next to a node's memory, while each 8k-token request allocates about
// 0.4 MB: at Go's default of 100 it collects twice a second at 500 req/s,
// and the requests that meet a collection make routing's p99
// (docs/benchmarks.md, "Routing overhead").
const DefaultGCPercent = 400

// Config configures a gateway. Zero values take the defaults noted.
type Config struct {
	// HTTPAddr is the OpenAI API's listen address (default 127.0.0.1:8080).
	HTTPAddr string
	// Brains are the brain replicas' gRPC addresses.
	Brains       []string
	ClusterToken auth.Token
	TLS          auth.TLSFiles
	// APIKeysFile, when set, names the file of accepted API keys (see
	// keys.go); without it the API is open.
	APIKeysFile string

	// Routing is the default policy (default "kv"); a deployment or a
	// request may name another.
	Routing string
	Weights routing.Weights
	// ScoreTimeout bounds the brain's Score answer (default 5ms).
	ScoreTimeout time.Duration
	// ApproxTTL is how long approx-kv assumes a routed prefix cached
	// (default 2m).
	ApproxTTL time.Duration

	// A worker is busy, and not routed to while another is not, when its
	// engine reports BusyWaiting or more queued requests (default 16), KV
	// usage of BusyKVUsage or more (default 0.98), or when this gateway
	// has MaxInflight requests on it (default 512).
	BusyWaiting int
	BusyKVUsage float64
	MaxInflight int
	// QueueSize bounds the requests waiting for capacity (default 1024);
	// QueueTimeout is how long one waits before a 503 (default 30s).
	QueueSize    int
	QueueTimeout time.Duration
	// MaxMigrations bounds how often one request moves to another worker
	// after its worker failed (default 3).
	MaxMigrations int

	// MaxBodyBytes bounds a request body (default 32 MiB).
	MaxBodyBytes int64
	// RequestTimeout bounds one request end to end (default 30m).
	RequestTimeout time.Duration

	// LoadTokenizer loads a deployment's tokenizer directory; nil loads
	// none (requests to models with a tokenizer directory route by load).
	LoadTokenizer func(dir string) (tokenizer.Tokenizer, error)
	Logger        *slog.Logger
	// Registry receives the gateway's metrics (default a new one).
	Registry *prometheus.Registry
}

func (c Config) withDefaults() (Config, error) {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if len(c.Brains) == 0 {
		return c, errors.New("no brain address")
	}
	if c.Routing == "" {
		c.Routing = kv.Name
	}
	if c.Weights == (routing.Weights{}) {
		c.Weights = routing.DefaultWeights
	}
	if c.Weights.PrefillScale <= 0 {
		return c, fmt.Errorf("prefill scale %v: must be above 0", c.Weights.PrefillScale)
	}
	defDur(&c.ScoreTimeout, 5*time.Millisecond)
	defDur(&c.ApproxTTL, 2*time.Minute)
	def(&c.BusyWaiting, 16)
	if c.BusyKVUsage <= 0 {
		c.BusyKVUsage = 0.98
	}
	def(&c.MaxInflight, 512)
	def(&c.QueueSize, 1024)
	defDur(&c.QueueTimeout, 30*time.Second)
	def(&c.MaxMigrations, 3)
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 32 << 20
	}
	defDur(&c.RequestTimeout, 30*time.Minute)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	return c, nil
}

// PolicyNames are the routing policies a gateway offers.
var PolicyNames = []string{kv.Name, approxkv.Name, leastloaded.Name, roundrobin.Name, random.Name, session.Name}

// Gateway is one gateway process's state.
type Gateway struct {
	cfg Config
	log *slog.Logger

	brain   *client.Client
	scorer  *client.Scorer
	cluster *cluster

	policies     map[string]routing.Policy
	observers    []routing.Observer
	observations chan observation
	toks         *tokenizers
	keys         *apiKeys
	queue        *admission
	upstream     *http.Client
	metrics      *metrics

	ln   net.Listener
	http *http.Server

	ctx    context.Context // ends with Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a gateway and opens its listener; Run serves.
func New(cfg Config) (*Gateway, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, cluster: newCluster(cfg.Logger), toks: newTokenizers(cfg.LoadTokenizer, cfg.Logger)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if g.keys, err = loadAPIKeys(cfg.APIKeysFile, cfg.Logger); err != nil {
		return nil, err
	}
	if g.brain, err = client.New(cfg.Brains, cfg.ClusterToken, cfg.TLS); err != nil {
		return nil, err
	}
	g.scorer = g.brain.Scorer()
	g.metrics = newMetrics(cfg.Registry, g)
	g.policies = g.buildPolicies()
	g.observations = make(chan observation, 4096)
	if _, ok := g.policies[cfg.Routing]; !ok {
		_ = g.brain.Close()
		return nil, fmt.Errorf("gateway config: routing policy %q: want one of %v", cfg.Routing, PolicyNames)
	}
	g.queue = newAdmission(cfg.QueueSize)
	g.upstream = newUpstreamClient()
	if g.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		_ = g.brain.Close()
		return nil, fmt.Errorf("gateway listen: %w", err)
	}
	g.http = &http.Server{
		Handler:           g.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Bodies are read whole before routing; a client that trickles one
		// is cut off. Answers stream for as long as generation takes, so
		// writes are bounded per request (RequestTimeout), not here.
		ReadTimeout:    2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return g, nil
}

func (g *Gateway) buildPolicies() map[string]routing.Policy {
	approx := approxkv.New(approxkv.Config{Weights: g.cfg.Weights, TTL: g.cfg.ApproxTTL})
	ps := map[string]routing.Policy{
		kv.Name: kv.New(kv.Config{Scorer: brainScorer{g.scorer}, Weights: g.cfg.Weights, Timeout: g.cfg.ScoreTimeout,
			Fallback: approx, Logger: g.log}),
		approxkv.Name:    approx,
		leastloaded.Name: leastloaded.New(),
		roundrobin.Name:  roundrobin.New(),
		random.Name:      random.New(),
		session.Name:     session.New(),
	}
	g.observers = []routing.Observer{approx}
	return ps
}

// Routable counts the workers of a model the gateway can route to now.
func (g *Gateway) Routable(model string) int {
	m, _ := g.cluster.model(model)
	if m == nil {
		return 0
	}
	return len(m.workers)
}

// Addr is the address the OpenAI API listens on.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// Run serves until ctx ends or Shutdown is called.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-g.ctx.Done():
		}
		cancel()
	}()
	g.wg.Go(func() { g.cluster.watch(ctx, g.brain.Gateway()) })
	g.wg.Go(func() { g.keys.watch(ctx) })
	g.wg.Go(func() { g.learn(ctx) })
	errc := make(chan error, 1)
	go func() { errc <- g.http.Serve(g.ln) }()
	g.log.Info("gateway serving the OpenAI API", "addr", g.Addr(), "routing", g.cfg.Routing, "api_keys", g.keys.enabled())
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("gateway http: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = g.http.Shutdown(sctx)
	g.wg.Wait()
	return nil
}

// Shutdown stops serving and closes the brain connection.
func (g *Gateway) Shutdown() {
	g.cancel()
	g.wg.Wait()
	g.scorer.Close()
	_ = g.brain.Close()
}

// brainScorer is the kv policy's view of the brain: Score on the
// gateway's ScoreStream.
type brainScorer struct{ s *client.Scorer }

func (b brainScorer) Score(ctx context.Context, model string, hashes []uint64) (map[string]routing.Overlap, error) {
	scores, err := b.s.Score(ctx, &stratav1.ScoreRequest{Model: model, SeqHashes: hashes})
	if err != nil {
		return nil, err
	}
	out := make(map[string]routing.Overlap, len(scores))
	for _, s := range scores {
		out[s.WorkerID] = routing.Overlap{GPU: s.GPU, CPU: s.CPU, Disk: s.Disk, Remote: s.Remote}
	}
	return out, nil
}
