package kvevents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Poller defaults.
const (
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultMaxBody bounds one drained event list. TRT-LLM's own event
	// buffer is bounded (event_buffer_max_size), so a larger body is a
	// misbehaving server.
	DefaultMaxBody = 64 << 20
)

// PollerConfig configures a Poller for one TensorRT-LLM worker.
type PollerConfig struct {
	// WorkerID names the worker in every batch.
	WorkerID string
	// PollURL is trtllm-serve's POST /kv_cache_events URL.
	PollURL string
	// Interval is the time between polls.
	Interval time.Duration
	// Client makes the requests; nil means a client whose timeout is the
	// larger of 5 s and Interval.
	Client *http.Client
	// MaxBody bounds a response body (see DefaultMaxBody).
	MaxBody int64
	// BlockSize is the deployment's block size. TRT-LLM reports the
	// tokens of each block, so it is only a fallback.
	BlockSize int
	// Sink receives the batches. Required.
	Sink Sink
	// Tiers lists the worker's blocks on the node's KV tiers, for
	// snapshots and after a clear (nil: none; see TierBlocks).
	Tiers TierBlocks
	// Logger; nil discards.
	Logger *slog.Logger
	// FlushInterval and MaxBatchEvents bound batching (see Default*).
	FlushInterval  time.Duration
	MaxBatchEvents int
}

// PollerStats counts what a Poller saw.
type PollerStats struct {
	// Polls counts requests answered with 200; Failures the others
	// (connection errors, non-200 statuses, oversized bodies).
	Polls, Failures uint64
	// Garbage counts bodies that were not a valid event list.
	Garbage uint64
	// Batches is the number of Strata batches emitted.
	Batches    uint64
	Translator TranslatorStats
}

// Poller drains a TensorRT-LLM worker's KV cache events over HTTP and emits
// the worker's Strata batches. TRT-LLM has no sequence numbers to find gaps
// with, and a drained list cannot be asked for again, so the Poller resyncs
// (AllBlocksCleared) whenever it may have missed events: when it starts, and
// after a failed poll (the engine may have restarted, or the failed request
// may have drained events).
type Poller struct {
	cfg PollerConfig
	log *slog.Logger
	em  *emitter
	lc  lifecycle

	polls, failures, garbage atomic.Uint64
}

// NewPoller checks cfg and returns a Poller; Run starts it.
func NewPoller(cfg PollerConfig) (*Poller, error) {
	if cfg.WorkerID == "" {
		return nil, errors.New("kvevents: poller needs a worker id")
	}
	if cfg.Sink == nil {
		return nil, errors.New("kvevents: poller needs a sink")
	}
	if cfg.PollURL == "" {
		return nil, errors.New("kvevents: poller needs a poll URL")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultPollInterval
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: max(5*time.Second, cfg.Interval)}
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Poller{
		cfg: cfg,
		log: cfg.Logger.With("worker", cfg.WorkerID, "url", cfg.PollURL),
		em:  newEmitter(cfg.WorkerID, cfg.BlockSize, cfg.Sink, cfg.Tiers, cfg.FlushInterval, cfg.MaxBatchEvents),
	}, nil
}

// Run polls until ctx ends or Close is called. It returns nil then,
// ErrClosed if the Poller was already closed.
func (p *Poller) Run(ctx context.Context) error {
	return p.lc.run(ctx, p.em, p.loop)
}

// Close stops Run and waits for it; queued events are flushed. It is
// idempotent.
func (p *Poller) Close() error {
	p.lc.close()
	return nil
}

// EmitSnapshot sends the worker's whole block set as a snapshot, like
// Subscriber.EmitSnapshot.
func (p *Poller) EmitSnapshot() { p.em.snapshot() }

// Inject adds events that did not come from the engine, like
// Subscriber.Inject.
func (p *Poller) Inject(events []*stratav1.KVEvent) { p.em.inject(events) }

// Stats returns the counters.
func (p *Poller) Stats() PollerStats {
	tr, batches := p.em.stats()
	return PollerStats{
		Polls:      p.polls.Load(),
		Failures:   p.failures.Load(),
		Garbage:    p.garbage.Load(),
		Batches:    batches,
		Translator: tr,
	}
}

func (p *Poller) loop(ctx context.Context) {
	// Whatever was drained before this Poller existed is gone.
	p.em.resync()
	for {
		body, err := p.poll(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if n := p.failures.Add(1); n&(n-1) == 0 {
				p.log.Warn("kv event poll failed", "err", err, "failures_total", n)
			}
			p.em.resync()
		default:
			p.polls.Add(1)
			events, err := DecodeTRTLLM(body)
			if err != nil {
				if n := p.garbage.Add(1); n&(n-1) == 0 {
					p.log.Warn("undecodable kv event list skipped", "err", err, "garbage_total", n)
				}
				break
			}
			p.em.apply(events)
		}
		if !sleep(ctx, p.cfg.Interval) {
			return
		}
	}
}

// poll drains the events once.
func (p *Poller) poll(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.PollURL, http.NoBody)
	if err != nil {
		return nil, err
	}
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > p.cfg.MaxBody {
		return nil, fmt.Errorf("body larger than %d bytes", p.cfg.MaxBody)
	}
	return body, nil
}
