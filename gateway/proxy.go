package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/strata-llm/strata/gateway/routing"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tokenizer"
)

// maxAnswerBytes bounds a non-streamed answer read from an engine.
const maxAnswerBytes = 64 << 20

// exchange is one client request on its way through the gateway: routed,
// sent, and, if its worker fails, moved to another.
type exchange struct {
	g      *Gateway
	req    *request
	reqID  string
	start  time.Time
	m      *model
	tok    tokenizer.Tokenizer // nil: the prompt is not tokenized
	ids    []uint32            // the prompt's token ids when tokenized
	route  routing.Request
	policy routing.Policy
	tried  map[string]bool // workers that failed this request

	worker     string // the first worker that answered
	status     int
	migrations int
	output     strings.Builder // text streamed so far (for a migration)
	outChunks  int             // content chunks streamed
	usage      *usageInfo      // as the engine reported it
	predicted  uint32          // cached blocks the routing expected
	firstToken time.Time
}

func newUpstreamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}}
}

// errWorkerFailed marks a failure of the worker (connection, 5xx, a cut
// stream) as opposed to an answer about the request: the request may move.
var errWorkerFailed = errors.New("worker failed")

type workerError struct {
	worker string
	err    error
	status int // the engine's 5xx status, 0 for a transport failure
}

func (e *workerError) Error() string {
	return fmt.Sprintf("worker %s: %v", e.worker, e.err)
}
func (e *workerError) Unwrap() []error { return []error{errWorkerFailed, e.err} }

// post sends body to the worker's endpoint. Its context ends with ctx and
// when the worker leaves the routable view.
// The caller calls the returned release when done with the response.
func (x *exchange) post(ctx context.Context, w *worker, ep endpoint, body map[string]json.RawMessage) (*http.Response, context.CancelFunc, error) {
	b := encodeObject(body)
	ctx, release := context.WithCancel(ctx)
	go func() {
		select {
		case <-w.gone:
			release()
		case <-ctx.Done():
		}
	}()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.endpoint+ep.path(), bytes.NewReader(b))
	if err != nil {
		release()
		return nil, nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Request-Id", x.reqID)
	res, err := x.g.upstream.Do(hr)
	if err != nil {
		release()
		return nil, nil, &workerError{worker: w.id, err: err}
	}
	if res.StatusCode >= 500 {
		data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		_ = res.Body.Close()
		release()
		return nil, nil, &workerError{worker: w.id, status: res.StatusCode, err: engineError(res.StatusCode, data)}
	}
	return res, release, nil
}

// prefillBlocks is the prefill a request brings to a worker with overlap.
func (x *exchange) prefillBlocks(o routing.Overlap) float64 {
	return max(x.route.PromptBlocks()-float64(o.Blocks()), 0)
}

// kvBlocks is the request's sequence in blocks: the prompt and the output
// so far, or half the output it expects (its average over its life) while
// that is more — a long answer loads its worker for longer.
func (x *exchange) kvBlocks() float64 {
	expected := x.req.hints.ExpectedOutputTokens
	if expected == 0 {
		expected = x.req.maxTokens
	}
	return float64(x.route.PromptTokens+max(x.outChunks, expected/2)) / float64(x.m.blockSize)
}

// failed records a worker failure; it returns the error to answer with
// when the request may not move again.
func (x *exchange) failed(w *worker, err error, midStream bool) error {
	x.tried[w.id] = true
	x.g.log.Warn("worker failed a request", "request_id", x.reqID, "worker", w.id, "mid_stream", midStream, "error", err)
	if x.migrations >= x.g.cfg.MaxMigrations {
		return &apiError{status: http.StatusBadGateway, typ: typeServer, code: "worker_failed",
			message: fmt.Sprintf("the request failed on %d workers; the last: %v", x.migrations+1, err)}
	}
	x.migrations++
	phase := "before-first-token"
	if midStream {
		phase = "mid-stream"
	}
	x.g.metrics.migrations.WithLabelValues(x.req.model, phase).Inc()
	return nil
}

// serveAnswer proxies a non-streamed request: nothing reaches the client
// before the engine's whole answer, so a failed worker is simply replaced.
func (x *exchange) serveAnswer(ctx context.Context, rw http.ResponseWriter) {
	body := x.req.body
	if x.disaggregated() {
		var err error
		if body, err = x.prefill(ctx, body); err != nil {
			x.fail(rw, err)
			return
		}
	}
	for {
		w, d, t, err := x.g.pick(ctx, x, stratav1.WorkerRole_WORKER_ROLE_DECODE, x.decodePolicy())
		if err != nil {
			x.fail(rw, err)
			return
		}
		x.decided(d)
		res, release, err := x.post(ctx, w, x.req.endpoint, body)
		if err != nil {
			t.end()
			if x.retry(rw, w, err, false) {
				continue
			}
			return
		}
		data, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes+1))
		_ = res.Body.Close()
		release()
		t.end()
		x.g.cluster.notify()
		if err == nil && len(data) > maxAnswerBytes {
			err = fmt.Errorf("answer over %d bytes", maxAnswerBytes)
		}
		if err != nil {
			if x.retry(rw, w, &workerError{worker: w.id, err: err}, false) {
				continue
			}
			return
		}
		x.worker = w.id
		if res.StatusCode != http.StatusOK {
			x.fail(rw, engineError(res.StatusCode, data))
			return
		}
		x.firstToken = time.Now()
		if u := gjson.GetBytes(data, "usage"); u.IsObject() {
			x.usage = &usageInfo{PromptTokens: int(u.Get("prompt_tokens").Int()), CompletionTokens: int(u.Get("completion_tokens").Int()),
				CachedTokens: int(u.Get("prompt_tokens_details.cached_tokens").Int())}
		}
		x.status = http.StatusOK
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("X-Strata-Worker", w.id)
		rw.WriteHeader(http.StatusOK)
		_, _ = rw.Write(data)
		return
	}
}

// retry handles a worker failure: true when the request goes on elsewhere,
// false when the error was answered.
func (x *exchange) retry(rw http.ResponseWriter, w *worker, err error, midStream bool) bool {
	if !errors.Is(err, errWorkerFailed) {
		x.fail(rw, err)
		return false
	}
	if ferr := x.failed(w, err, midStream); ferr != nil {
		x.fail(rw, ferr)
		return false
	}
	return true
}

func (x *exchange) fail(rw http.ResponseWriter, err error) {
	if errors.Is(err, context.Canceled) {
		x.status = 499 // the client went away: nothing to answer
		return
	}
	ae := asAPIError(err)
	x.status = ae.status
	writeError(rw, ae)
}

func (x *exchange) decided(d routing.Decision) {
	x.g.metrics.decisions.WithLabelValues(d.Policy, d.Reason).Inc()
	// For P/D the prediction is the prefill worker's: the decode pick
	// goes by load alone.
	if !x.disaggregated() || d.Overlap.Blocks() > 0 {
		x.predicted = d.Overlap.Blocks()
	}
}
