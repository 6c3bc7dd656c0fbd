package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// streamIdentity is the first stream's chunk identity: after a migration
// the gateway writes the chunks itself, with this id, so that the client
// sees one stream.
type streamIdentity struct {
	id      string
	created int64
}

// serveStream proxies a streamed request chunk by chunk. If the worker
// fails before the first chunk, the request goes to another worker as it
// was; if it fails mid-stream, the request continues on another worker as
// a completion of the prompt's tokens plus the text streamed so far, with
// the tokens left of max_tokens, and the gateway writes the new worker's
// chunks in the client's format and the first stream's identity: the
// client sees one stream, every token once.
func (x *exchange) serveStream(ctx context.Context, rw http.ResponseWriter) {
	flush := http.NewResponseController(rw)
	var (
		started  bool // the 200 and headers are out
		identity *streamIdentity
		migrated bool // chunks now come from a continuation request
		lastTok  time.Time
	)
	body, ep := x.upstreamStreamBody(), x.req.endpoint
	if x.disaggregated() {
		var err error
		if body, err = x.prefill(ctx, body); err != nil {
			x.streamFail(rw, false, err)
			return
		}
	}
	for {
		w, d, t, err := x.g.pick(ctx, x, stratav1.WorkerRole_WORKER_ROLE_DECODE, x.decodePolicy())
		if err != nil {
			x.streamFail(rw, started, err)
			return
		}
		x.decided(d)
		res, release, err := x.post(ctx, w, ep, body)
		if err == nil && res.StatusCode != http.StatusOK {
			data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
			_ = res.Body.Close()
			release()
			err = engineError(res.StatusCode, data)
		}
		if err != nil {
			t.end()
			if !errors.Is(err, errWorkerFailed) {
				x.streamFail(rw, started, err)
				return
			}
			if ferr := x.failed(w, err, started); ferr != nil {
				x.streamFail(rw, started, ferr)
				return
			}
			continue
		}
		if !started {
			h := rw.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Strata-Worker", w.id)
			rw.WriteHeader(http.StatusOK)
			_ = flush.Flush()
			started, x.worker, x.status = true, w.id, http.StatusOK
		}
		done, err := x.relay(rw, flush, res.Body, t, &identity, migrated, &lastTok)
		_ = res.Body.Close()
		release()
		t.end()
		x.g.cluster.notify()
		switch {
		case err == nil && done:
			_, _ = io.WriteString(rw, "data: [DONE]\n\n")
			_ = flush.Flush()
			return
		case ctx.Err() != nil:
			x.status = 499
			return
		case err != nil && !errors.Is(err, errWorkerFailed):
			x.streamFail(rw, true, err)
			return
		}
		if err == nil {
			err = &workerError{worker: w.id, err: errors.New("stream ended without [DONE]")}
		}
		if ferr := x.failed(w, err, true); ferr != nil {
			x.streamFail(rw, true, ferr)
			return
		}
		if x.outChunks == 0 {
			// Nothing generated yet: the request goes again as it was
			// (its chunks rewritten with the identity the client saw).
			body, ep, migrated = x.upstreamStreamBody(), x.req.endpoint, identity != nil
			continue
		}
		cont, remaining, cerr := x.continuation()
		if cerr != nil {
			x.streamFail(rw, true, cerr)
			return
		}
		if remaining == 0 {
			// The worker died after the last token of max_tokens.
			x.writeFinal(rw, flush, identity, "length")
			return
		}
		body, ep, migrated = cont, completionsEndpoint, true
	}
}

// relay copies one upstream stream to the client until [DONE] (done), a
// worker failure (errWorkerFailed: the caller moves the request), or an
// answer to end with.
func (x *exchange) relay(rw http.ResponseWriter, flush *http.ResponseController, upstream io.Reader, t *ticket,
	identity **streamIdentity, migrated bool, lastTok *time.Time) (bool, error) {
	rd := newSSEReader(upstream)
	for {
		data, err := rd.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream ended without [DONE]")
			}
			return false, &workerError{worker: t.w.id, err: err}
		}
		if string(data) == "[DONE]" {
			return true, nil
		}
		ci, err := inspectChunk(data)
		if err != nil {
			return false, &workerError{worker: t.w.id, err: err}
		}
		if ci.errStatus != 0 {
			if ci.errStatus >= 500 {
				return false, &workerError{worker: t.w.id, status: ci.errStatus, err: errors.New(ci.errMessage)}
			}
			// The engine refused the request mid-way (a client error):
			// pass it on, in OpenAI's envelope.
			return false, engineError(ci.errStatus, []byte(fmt.Sprintf(`{"error":{"message":%q}}`, ci.errMessage)))
		}
		if *identity == nil {
			*identity = &streamIdentity{id: gjson.GetBytes(data, "id").String(), created: gjson.GetBytes(data, "created").Int()}
		}
		if ci.usage != nil && !ci.hasChoices {
			x.usage = ci.usage
			if x.req.includeUsage {
				if migrated {
					data = x.usageChunk(*identity)
				}
				if err := writeEvent(rw, flush, data, !rd.pending()); err != nil {
					return false, err
				}
			}
			continue
		}
		if ci.text != "" {
			now := time.Now()
			if x.firstToken.IsZero() {
				x.firstToken = now
				x.g.metrics.ttft.WithLabelValues(x.req.model).Observe(now.Sub(x.start).Seconds())
			} else {
				x.g.metrics.itl.WithLabelValues(x.req.model).Observe(now.Sub(*lastTok).Seconds())
			}
			*lastTok = now
			x.output.WriteString(ci.text)
			x.outChunks++
			if x.outChunks == 1 || x.outChunks%x.m.blockSize == 0 {
				t.decoding(x.kvBlocks())
			}
		}
		if migrated {
			data = x.rebuiltChunk(*identity, ci)
		}
		// Each chunk goes out as soon as it came in; chunks that came in
		// together go out together.
		if err := writeEvent(rw, flush, data, !rd.pending()); err != nil {
			return false, err
		}
	}
}

// writeEvent writes one server-sent event, and flushes it to the client
// with everything before it when flushNow.
func writeEvent(rw io.Writer, flush *http.ResponseController, data []byte, flushNow bool) error {
	if _, err := io.WriteString(rw, "data: "); err != nil {
		return err
	}
	if _, err := rw.Write(data); err != nil {
		return err
	}
	if _, err := io.WriteString(rw, "\n\n"); err != nil {
		return err
	}
	if !flushNow {
		return nil
	}
	return flush.Flush()
}

// upstreamStreamBody is the client's body, asking for the usage chunk
// (the gateway reads it for its metrics; it drops it when the client did
// not ask for it). llama.cpp does not take stream_options.
func (x *exchange) upstreamStreamBody() map[string]json.RawMessage {
	if x.req.includeUsage || x.m.info.GetEngine() == "llamacpp" {
		return x.req.body
	}
	body := make(map[string]json.RawMessage, len(x.req.body)+1)
	for k, v := range x.req.body {
		body[k] = v
	}
	body["stream_options"] = json.RawMessage(`{"include_usage":true}`)
	return body
}

// chatOnly are the chat request fields a completion request has no use
// for (or reads differently: logprobs is a boolean in chat, a count in
// completions).
var chatOnly = []string{"messages", "tools", "tool_choice", "parallel_tool_calls", "response_format", "functions",
	"function_call", "chat_template", "chat_template_kwargs", "add_generation_prompt", "continue_final_message",
	"documents", "logprobs", "top_logprobs", "max_completion_tokens", "echo", "suffix", "prompt_logprobs"}

// continuation is the request that resumes a stream on another worker:
// the prompt's tokens followed by those of the text streamed so far, as a
// completion, with what is left of max_tokens (remaining −1: no limit).
func (x *exchange) continuation() (map[string]json.RawMessage, int, error) {
	remaining, generated := -1, x.outChunks
	var prompt any
	switch {
	case x.ids != nil && x.tok != nil:
		out := x.tok.Encode(x.output.String(), false)
		generated = len(out)
		ids := make([]uint32, 0, len(x.ids)+len(out))
		prompt = append(append(ids, x.ids...), out...)
	case x.req.endpoint == completionsEndpoint && !x.req.isIDs && !x.req.manyPrompts:
		prompt = x.req.promptText + x.output.String()
	default:
		return nil, 0, &apiError{status: http.StatusBadGateway, typ: typeServer, code: "worker_failed",
			message: "the worker failed mid-stream and the request cannot move without the model's tokenizer"}
	}
	if x.req.maxTokens > 0 {
		if remaining = max(x.req.maxTokens-generated, 0); remaining == 0 {
			return nil, 0, nil
		}
	}
	body := make(map[string]json.RawMessage, len(x.req.body))
	for k, v := range x.req.body {
		body[k] = v
	}
	for _, k := range chatOnly {
		delete(body, k)
	}
	p, err := json.Marshal(prompt)
	if err != nil {
		return nil, 0, err
	}
	body["prompt"] = p
	body["stream"] = json.RawMessage("true")
	body["stream_options"] = json.RawMessage(`{"include_usage":true}`)
	if remaining > 0 {
		body["max_tokens"] = json.RawMessage(strconv.Itoa(remaining))
	}
	var minTokens int
	if field(x.req.body, "min_tokens", &minTokens) == nil && minTokens > 0 {
		body["min_tokens"] = json.RawMessage(strconv.Itoa(max(minTokens-generated, 0)))
	}
	return body, remaining, nil
}

// rebuiltChunk writes a continuation's chunk in the client's format with
// the first stream's identity.
func (x *exchange) rebuiltChunk(id *streamIdentity, ci chunkInfo) []byte {
	var finish any
	if ci.finishReason != "" {
		finish = ci.finishReason
	}
	choice := map[string]any{"index": 0, "logprobs": nil, "finish_reason": finish}
	object := "text_completion"
	if x.req.endpoint == chatEndpoint {
		object = "chat.completion.chunk"
		delta := map[string]any{}
		if ci.text != "" {
			delta["content"] = ci.text
		}
		choice["delta"] = delta
	} else {
		choice["text"] = ci.text
	}
	b, _ := json.Marshal(map[string]any{"id": id.id, "object": object, "created": id.created, "model": x.req.model, "choices": []any{choice}})
	return b
}

// usageChunk is the final usage chunk after a migration, counting the
// whole request: the prompt as the client sent it, every output token.
func (x *exchange) usageChunk(id *streamIdentity) []byte {
	prompt := len(x.ids)
	var cached int
	if x.usage != nil {
		cached = min(x.usage.CachedTokens, prompt)
		if prompt == 0 {
			prompt = x.usage.PromptTokens
		}
	}
	object := "text_completion"
	if x.req.endpoint == chatEndpoint {
		object = "chat.completion.chunk"
	}
	out := x.outChunks
	b, _ := json.Marshal(map[string]any{"id": id.id, "object": object, "created": id.created, "model": x.req.model, "choices": []any{},
		"usage": map[string]any{"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
			"prompt_tokens_details": map[string]any{"cached_tokens": cached}}})
	return b
}

// writeFinal ends a stream the gateway finishes itself.
func (x *exchange) writeFinal(rw http.ResponseWriter, flush *http.ResponseController, id *streamIdentity, reason string) {
	if id == nil {
		id = &streamIdentity{}
	}
	_ = writeEvent(rw, flush, x.rebuiltChunk(id, chunkInfo{finishReason: reason}), false)
	if x.req.includeUsage {
		_ = writeEvent(rw, flush, x.usageChunk(id), false)
	}
	_, _ = io.WriteString(rw, "data: [DONE]\n\n")
	_ = flush.Flush()
}

// streamFail answers an error: as a JSON error before the stream started,
// in-band (an error chunk, then [DONE]) after, as OpenAI does.
func (x *exchange) streamFail(rw http.ResponseWriter, started bool, err error) {
	if !started {
		x.fail(rw, err)
		return
	}
	if errors.Is(err, context.Canceled) {
		x.status = 499
		return
	}
	ae := asAPIError(err)
	b, _ := json.Marshal(ae.envelope())
	_, _ = fmt.Fprintf(rw, "data: %s\n\ndata: [DONE]\n\n", b)
	_ = http.NewResponseController(rw).Flush()
}
