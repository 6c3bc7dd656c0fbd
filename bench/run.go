package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strata-llm/strata/bench/arrival"
	"github.com/strata-llm/strata/bench/client"
	"github.com/strata-llm/strata/bench/metrics"
	"github.com/strata-llm/strata/bench/reuse"
	"github.com/strata-llm/strata/bench/workload"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tokenizer"
)

// SchemaVersion is the BenchResult schema this package writes.
const SchemaVersion = 1

// Run sends cfg's workload and returns what it measured. If ctx is
// cancelled, Run stops sending, cancels the requests in flight and returns
// the partial result together with ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	w, err := workload.Build(cfg.Workload, cfg.NumRequests, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if err := schedule(&cfg, w); err != nil {
		return nil, err
	}
	render, err := workload.NewRenderer(cfg.Tokenizer, cfg.TokenIDMin, cfg.TokenIDMax)
	if err != nil {
		return nil, err
	}
	tracker, err := reuse.NewTracker(cfg.BoundBlockSize, cfg.BoundCapacityBlocks)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	conns := cfg.MaxConcurrency
	if conns == 0 {
		conns = min(len(w.Items), 4096)
	}
	c, err := client.New(client.Config{BaseURL: cfg.URL, APIKey: cfg.APIKey, Header: cfg.Header, MaxConns: conns})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	defer c.Close()
	if cfg.Model == "" {
		models, err := c.Models(ctx)
		if err != nil {
			return nil, fmt.Errorf("find the model (or set one): %w", err)
		}
		if len(models) == 0 {
			return nil, fmt.Errorf("find the model: %s/models lists none (set one)", cfg.URL)
		}
		cfg.Model = models[0]
	}
	r := newRunner(&cfg, w, c, render, tracker)
	startedAt := time.Now()
	runErr := r.run(ctx)

	res := metrics.Aggregate(r.records, metrics.Options{SLO: cfg.SLO, SaveRequests: cfg.SaveRequests})
	res.SchemaVersion = SchemaVersion
	res.StrataVersion = cfg.Version
	res.CommandLine = cfg.CommandLine
	res.Config = cfg.proto(w)
	res.StartedAt = timestamppb.New(startedAt)
	res.WallSeconds = time.Since(startedAt).Seconds()
	b := tracker.Bounds()
	res.ReuseBounds = &stratav1.BenchReuseBounds{
		BlockSize: uint32(b.BlockSize), CapacityBlocks: uint64(b.CapacityBlocks), PromptTokens: b.PromptTokens,
		InfiniteHitTokens: b.InfiniteHitTokens, InfiniteHitFraction: b.InfiniteFraction(),
		PooledHitTokens: b.PooledHitTokens, PooledHitFraction: b.PooledFraction(),
	}
	return res, runErr
}

// schedule sets every item's arrival time: a trace's own (divided by the
// speed) unless a rate is given, else the arrival process's.
func schedule(cfg *Config, w *workload.Workload) error {
	var at []time.Duration
	var err error
	switch cfg.arrivalProcess(w) {
	case "trace":
		at = make([]time.Duration, len(w.Items))
		for i := range w.Items {
			at[i] = w.Items[i].At
		}
		at, err = arrival.Replay(at, cfg.Speed)
	case "burst":
		at = arrival.Schedule(arrival.Burst{}, len(w.Items))
	default:
		var p arrival.Process
		p, err = arrival.NewGamma(cfg.RequestRate, cfg.Burstiness, cfg.Seed)
		if err == nil {
			at = arrival.Schedule(p, len(w.Items))
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for i := range w.Items {
		w.Items[i].At = at[i]
	}
	return nil
}

// runner is one run in progress.
type runner struct {
	cfg     *Config
	w       *workload.Workload
	client  *client.Client
	render  *workload.Renderer
	records []metrics.Record
	// prev is the index of the previous round of a chat item's session
	// (-1: none); done[i] is closed when item i has ended.
	prev []int
	done []chan struct{}
	// history[s] is chat session s's conversation so far; only the
	// session's current round touches it.
	history [][]client.Message
	slots   chan struct{}
	runID   string
	start   time.Time

	trackMu sync.Mutex
	tracker *reuse.Tracker

	sent, succeeded, failed, inFlight atomic.Int64
	outputTokens                      atomic.Int64
}

func newRunner(cfg *Config, w *workload.Workload, c *client.Client, render *workload.Renderer, tracker *reuse.Tracker) *runner {
	n := len(w.Items)
	r := &runner{
		cfg: cfg, w: w, client: c, render: render, tracker: tracker,
		records: make([]metrics.Record, n), prev: make([]int, n), done: make([]chan struct{}, n),
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	r.runID = hex.EncodeToString(id[:])
	if cfg.MaxConcurrency > 0 {
		r.slots = make(chan struct{}, cfg.MaxConcurrency)
	}
	last := map[int]int{}
	sessions := 0
	for i := range w.Items {
		sessions = max(sessions, w.Items[i].Session)
	}
	r.history = make([][]client.Message, sessions+1)
	for i := range w.Items {
		it := &w.Items[i]
		r.done[i] = make(chan struct{})
		r.prev[i] = -1
		if it.Session > 0 {
			if p, ok := last[it.Session]; ok {
				r.prev[i] = p
			}
			last[it.Session] = i
		}
		r.records[i] = metrics.Record{
			Index: i, Session: it.Session, Round: it.Round, Scheduled: it.At,
			Warmup:    i < cfg.WarmupRequests || it.At < cfg.Warmup,
			MaxTokens: it.OutputTokens,
		}
	}
	return r
}

// run dispatches every item at its time and waits for all to end.
func (r *runner) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.start = time.Now()
	progressDone := r.startProgress()
	var wg sync.WaitGroup
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
dispatch:
	for i := range r.w.Items {
		at := r.w.Items[i].At
		if r.cfg.Duration > 0 && at >= r.cfg.Duration {
			break
		}
		if wait := time.Until(r.start.Add(at - prepareAhead)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break dispatch
			case <-timer.C:
			}
		}
		if ctx.Err() != nil || r.pastDuration() {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(r.done[i])
			r.send(ctx, i)
		}()
	}
	wg.Wait()
	progressDone()
	return ctx.Err()
}

// prepareAhead is how long before its time a request is rendered, so that
// rendering and encoding a long prompt does not make it late.
const prepareAhead = 50 * time.Millisecond

func (r *runner) pastDuration() bool {
	return r.cfg.Duration > 0 && time.Since(r.start) >= r.cfg.Duration
}

// send waits for the item's turn (its previous chat round), renders its
// prompt, waits for its time and a concurrency slot, and sends it.
func (r *runner) send(ctx context.Context, i int) {
	rec := &r.records[i]
	it := &r.w.Items[i]
	if p := r.prev[i]; p >= 0 {
		select {
		case <-r.done[p]:
		case <-ctx.Done():
			return
		}
		// A round is due no earlier than the end of the previous one.
		if !r.records[p].Sent {
			return
		}
		rec.Scheduled = max(rec.Scheduled, r.records[p].Done)
	}
	// Render ahead of time unless the request will queue for a slot: a
	// queue of rendered long prompts would hold them all in memory.
	var req *client.Request
	var nominal []uint32
	if r.slots == nil || len(r.slots) < cap(r.slots) {
		req, nominal = r.build(it)
	}
	if wait := time.Until(r.start.Add(rec.Scheduled)); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	if r.pastDuration() {
		return
	}
	if r.slots != nil {
		select {
		case r.slots <- struct{}{}:
		default:
			rec.Throttled = true
			select {
			case r.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		defer func() { <-r.slots }()
		// The run may have ended while this request queued for a slot.
		if r.pastDuration() {
			return
		}
	}
	if req == nil {
		req, nominal = r.build(it)
	}
	r.trackMu.Lock()
	var tracked *reuse.Request
	if rec.Warmup {
		tracked = r.tracker.StartWarmup(nominal)
	} else {
		tracked = r.tracker.Start(nominal)
	}
	r.trackMu.Unlock()

	rec.Sent = true
	r.sent.Add(1)
	r.inFlight.Add(1)
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	var resp client.Response
	err := r.client.Do(rctx, req, &resp)
	cancel()
	r.inFlight.Add(-1)
	if resp.Sent.IsZero() {
		resp.Sent = time.Now()
	}
	rec.SentAt = resp.Sent.Sub(r.start)
	rec.Worker = resp.Worker
	if err != nil {
		rec.Done = time.Since(r.start)
		var ce *client.Error
		if errors.As(err, &ce) {
			rec.ErrKind, rec.Err = ce.Kind, ce.Error()
		} else {
			rec.ErrKind, rec.Err = client.KindProtocol, err.Error()
		}
		r.failed.Add(1)
		r.finish(tracked, nil, 0)
		r.answered(it, req, "")
		return
	}
	rec.Done = resp.Done.Sub(r.start)
	rec.Chunks = resp.Chunks
	rec.PromptTokens, rec.OutputTokens = len(nominal), len(resp.Chunks)
	if resp.HasUsage {
		rec.HasUsage = true
		rec.PromptTokens, rec.OutputTokens = resp.PromptTokens, resp.CompletionTokens
	}
	rec.HasCached, rec.CachedTokens = resp.HasCached, resp.CachedTokens
	r.succeeded.Add(1)
	r.outputTokens.Add(int64(rec.OutputTokens))
	var output []uint32
	if it.Session > 0 {
		// The next round repeats this answer: its blocks are reusable.
		output = r.cfg.Tokenizer.Encode(resp.Text, false)
	}
	r.finish(tracked, output, rec.OutputTokens)
	r.answered(it, req, resp.Text)
}

func (r *runner) finish(tracked *reuse.Request, output []uint32, outputTokens int) {
	r.trackMu.Lock()
	r.tracker.Finish(tracked, output, outputTokens)
	r.trackMu.Unlock()
}

// answered extends a chat session's history with the round just ended; the
// next round reads it after done[i] is closed.
func (r *runner) answered(it *workload.Item, req *client.Request, reply string) {
	if it.Session == 0 {
		return
	}
	msgs := req.Messages
	if len(r.w.System) > 0 {
		msgs = msgs[1:] // the system prompt is added afresh each round
	}
	r.history[it.Session] = append(msgs[:len(msgs):len(msgs)], client.Message{Role: "assistant", Content: reply})
}

// build renders the item's request and the token ids the reuse bounds
// count for it (the prompt as sent, or the tokenizer's rendering of text).
func (r *runner) build(it *workload.Item) (*client.Request, []uint32) {
	cfg := r.cfg
	req := &client.Request{
		Endpoint: cfg.Endpoint, Model: cfg.Model, MaxTokens: it.OutputTokens,
		IgnoreEOS: cfg.IgnoreEOS, MinTokens: cfg.MinTokens, Stream: cfg.Stream, IncludeUsage: cfg.IncludeUsage,
		RequestID: "bench-" + r.runID + "-" + strconv.Itoa(it.Index),
	}
	if cfg.Endpoint == client.Chat {
		var msgs []client.Message
		if len(r.w.System) > 0 {
			msgs = append(msgs, client.Message{Role: "system", Content: string(r.render.AppendText(nil, r.w.System...))})
		}
		if it.Session > 0 {
			msgs = append(msgs, r.history[it.Session]...)
			req.KeepText = true
		}
		req.Messages = append(msgs, client.Message{Role: "user", Content: string(r.render.AppendText(nil, it.Prompt...))})
		return req, chatTokens(cfg.Tokenizer, req.Messages)
	}
	if cfg.PromptFormat == workload.FormatTokens {
		req.Tokens = r.render.AppendTokens(make([]uint32, 0, it.PromptLen()), it.Prompt...)
		return req, req.Tokens
	}
	req.Text = string(r.render.AppendText(make([]byte, 0, it.PromptLen()), it.Prompt...))
	// Completion prompts get the tokenizer's special tokens, as vLLM adds BOS.
	return req, cfg.Tokenizer.Encode(req.Text, true)
}

func chatTokens(tok tokenizer.Tokenizer, msgs []client.Message) []uint32 {
	tm := make([]tokenizer.Message, len(msgs))
	for i, m := range msgs {
		tm[i] = tokenizer.Message{Role: m.Role, Content: m.Content}
	}
	text, err := tok.ApplyChatTemplate(tokenizer.Chat(tm, true))
	if err != nil {
		// Roles here are always set; a template that still fails leaves
		// the bounds without this prompt rather than failing the run.
		return nil
	}
	return tok.Encode(text, false)
}

// startProgress reports progress every interval until the returned
// function is called, which reports once more, finished.
func (r *runner) startProgress() func() {
	if r.cfg.Progress == nil {
		return func() {}
	}
	total := len(r.w.Items)
	if r.cfg.Duration > 0 {
		for i := range r.w.Items {
			if r.w.Items[i].At >= r.cfg.Duration {
				total = i
				break
			}
		}
	}
	snapshot := func(finished bool) Progress {
		return Progress{
			Elapsed: time.Since(r.start), Total: total,
			Sent: int(r.sent.Load()), Succeeded: int(r.succeeded.Load()), Failed: int(r.failed.Load()),
			InFlight: int(r.inFlight.Load()), OutputTokens: r.outputTokens.Load(), Finished: finished,
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				r.cfg.Progress(snapshot(false))
			}
		}
	})
	return func() {
		close(stop)
		wg.Wait()
		r.cfg.Progress(snapshot(true))
	}
}
