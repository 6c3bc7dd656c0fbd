package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/strata-llm/strata/sim/engine"
)

// generation is one parsed chat or completion request, reduced to what the
// engine and the response writer need.
type generation struct {
	chat         bool
	requestID    string
	model        string
	prompt       []uint32
	maxTokens    *int
	ignoreEOS    bool
	seed         *int64
	stop         []string
	stream       bool
	includeUsage bool
	kv           *kvTransferParams
	created      int64
	tool         *toolCall // a forced tool call: the output is its arguments
}

// outcome is how a generation ended, for the response and the metrics.
type outcome struct {
	text       string
	tokens     int
	reason     string
	stopString *string
	result     engine.Result
	kvResponse *kvTransferParams
	tokenTimes []time.Time
}

func (s *Server) validate(g *generation) error {
	if n := len(g.prompt); n >= s.cfg.MaxModelLen {
		return badParam("messages", "This model's maximum context length is %d tokens. However, your request has %d input tokens. Please reduce the length of the input messages.", s.cfg.MaxModelLen, n)
	}
	room := s.cfg.MaxModelLen - len(g.prompt)
	if g.maxTokens == nil {
		g.maxTokens = &room
		return nil
	}
	switch mt := *g.maxTokens; {
	case mt < 1:
		return badParam("max_tokens", "max_tokens must be at least 1, got %d.", mt)
	case mt > room:
		return badParam("max_tokens", "'max_tokens' or 'max_completion_tokens' is too large: %d. This model's maximum context length is %d tokens and your request has %d input tokens (%d > %d - %d).", mt, s.cfg.MaxModelLen, len(g.prompt), mt, s.cfg.MaxModelLen, len(g.prompt))
	}
	for _, st := range g.stop {
		if st == "" {
			return badParam("stop", "stop strings must not be empty")
		}
	}
	return nil
}

// generate runs g on the engine and writes the answer, streamed or whole.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, g *generation) {
	if err := s.validate(g); err != nil {
		writeError(w, err)
		return
	}
	req := engine.Request{
		ID:        g.requestID + "-" + strconv.FormatUint(s.seq.Add(1), 10),
		Prompt:    g.prompt,
		MaxTokens: *g.maxTokens,
		IgnoreEOS: g.ignoreEOS,
		Seed:      promptSeed(g.prompt),
	}
	if g.seed != nil {
		req.Seed = uint64(*g.seed)
	}
	if err := s.prepareKVTransfer(r.Context(), g, &req); err != nil {
		writeError(w, err)
		return
	}
	g.created = time.Now().Unix()
	stream, err := s.eng.Add(req)
	if err != nil {
		if errors.Is(err, engine.ErrInvalidRequest) {
			writeError(w, badRequest("%v", err))
		} else {
			writeError(w, &apiError{status: http.StatusServiceUnavailable, message: err.Error()})
		}
		return
	}
	s.metrics.promptTokens.Add(float64(len(g.prompt)))

	var out outcome
	var werr error
	if g.stream {
		out, werr = s.streamResponse(w, r.Context(), g, req.ID, stream)
	} else {
		out, werr = s.collect(r.Context(), g, req.ID, stream)
	}
	if werr != nil {
		out.reason = string(engine.FinishAbort)
	}
	if g.kv != nil && g.kv.DoRemoteDecode && len(out.result.HeldBlocks) > 0 {
		out.kvResponse = s.heldKVParams(req.ID, out.result.HeldBlocks)
	}
	s.metrics.observe(out)
	if werr != nil {
		if !g.stream && r.Context().Err() == nil {
			writeError(w, werr)
		}
		return
	}
	if !g.stream {
		s.writeWhole(w, g, out)
	}
}

func promptSeed(prompt []uint32) uint64 {
	h := fnv.New64a()
	var b [4]byte
	for _, t := range prompt {
		binary.LittleEndian.PutUint32(b[:], t)
		_, _ = h.Write(b[:])
	}
	return h.Sum64()
}

// textStream turns engine tokens into output text: incremental detokenizing
// (held back while it ends inside a UTF-8 sequence), stop strings, and the
// hold-back that keeps a stop string's prefix from being streamed.
type textStream struct {
	s        *Server
	g        *generation
	engineID string
	ids      []uint32
	text     string
	sent     int // bytes of text already released
	maxStop  int
	out      outcome
	done     bool
}

func newTextStream(s *Server, g *generation, engineID string) *textStream {
	ts := &textStream{s: s, g: g, engineID: engineID}
	for _, st := range g.stop {
		ts.maxStop = max(ts.maxStop, len(st))
	}
	return ts
}

// next waits for engine output and returns newly releasable text.
func (ts *textStream) next(ctx context.Context, stream *engine.Stream) (string, error) {
	d, err := stream.Next(ctx)
	if err != nil {
		ts.s.eng.Abort(ts.engineID)
		return "", fmt.Errorf("client went away: %w", err)
	}
	if len(d.Times) > 0 {
		ts.out.tokenTimes = append(ts.out.tokenTimes, d.Times...)
		ts.s.metrics.generationTokens.Add(float64(len(d.Tokens)))
	}
	ts.ids = append(ts.ids, d.Tokens...)
	ts.out.tokens = len(ts.ids)
	full, err := ts.s.tok.Decode(ts.ids, true)
	if err != nil {
		return "", fmt.Errorf("detokenize: %w", err)
	}
	prev := len(ts.text)
	if !strings.HasSuffix(full, "\uFFFD") || d.Done {
		ts.text = full
	}
	if ts.maxStop > 0 {
		from := max(0, prev-ts.maxStop+1)
		for _, st := range ts.g.stop {
			if i := strings.Index(ts.text[from:], st); i >= 0 {
				ts.text = ts.text[:from+i]
				stop := st
				ts.out.stopString = &stop
				ts.out.reason = string(engine.FinishStop)
				ts.done = true
				ts.s.eng.Abort(ts.engineID)
				ts.out.result = waitResult(stream)
				return ts.release(true), nil
			}
		}
	}
	if d.Done {
		ts.done = true
		ts.out.result = stream.Result()
		ts.out.reason = string(ts.out.result.Reason)
		return ts.release(true), nil
	}
	return ts.release(false), nil
}

// release hands out text up to where a stop string could still begin.
func (ts *textStream) release(final bool) string {
	end := len(ts.text)
	if !final && ts.maxStop > 1 {
		end = max(ts.sent, end-(ts.maxStop-1))
	}
	chunk := ts.text[ts.sent:end]
	ts.sent = end
	return chunk
}

// waitResult collects the result of a request just aborted for a stop
// string; the engine acknowledges an abort within one step.
func waitResult(stream *engine.Stream) engine.Result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		d, err := stream.Next(ctx)
		if err != nil || d.Done {
			return stream.Result()
		}
	}
}

func (s *Server) collect(ctx context.Context, g *generation, engineID string, stream *engine.Stream) (outcome, error) {
	ts := newTextStream(s, g, engineID)
	for !ts.done {
		if _, err := ts.next(ctx, stream); err != nil {
			return ts.finalOutcome(), err
		}
	}
	return ts.finalOutcome(), nil
}

func (ts *textStream) finalOutcome() outcome {
	o := ts.out
	o.text = ts.text
	if o.reason == string(engine.FinishAbort) || o.reason == "" {
		o.reason = string(engine.FinishAbort)
	}
	o.result.CompletionTokens = o.tokens
	return o
}

func (o outcome) usage() *usage {
	return &usage{
		PromptTokens:        o.result.PromptTokens,
		CompletionTokens:    o.tokens,
		TotalTokens:         o.result.PromptTokens + o.tokens,
		PromptTokensDetails: &promptTokensDetails{CachedTokens: o.result.CachedTokens},
	}
}

func (g *generation) responseID() string {
	if g.chat {
		return "chatcmpl-" + g.requestID
	}
	return "cmpl-" + g.requestID
}

func (s *Server) writeWhole(w http.ResponseWriter, g *generation, o outcome) {
	reason := o.reason
	if g.chat {
		text := o.text
		msg := &chatOutput{Role: "assistant", Content: &text}
		if g.tool != nil {
			msg.Content, msg.ToolCalls, reason = nil, g.tool.message(text), toolFinish(reason)
		}
		writeJSON(w, http.StatusOK, chatResponse{
			ID: g.responseID(), Object: "chat.completion", Created: g.created, Model: g.model,
			Choices: []chatChoice{{
				Message:      msg,
				FinishReason: &reason, StopReason: o.stopString,
			}},
			Usage: o.usage(), KVTransferParams: o.kvResponse,
		})
		return
	}
	writeJSON(w, http.StatusOK, completionResponse{
		ID: g.responseID(), Object: "text_completion", Created: g.created, Model: g.model,
		Choices: []completionChoice{{Text: o.text, FinishReason: &reason, StopReason: o.stopString}},
		Usage:   o.usage(), KVTransferParams: o.kvResponse,
	})
}

// chunk is one server-sent event of a stream; usage appears only on the
// final usage chunk, as in OpenAI's and vLLM's streams.
type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices any    `json:"choices"`
	Usage   *usage `json:"usage,omitempty"`
}

func (s *Server) streamResponse(w http.ResponseWriter, ctx context.Context, g *generation, engineID string, stream *engine.Stream) (outcome, error) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	object := "text_completion"
	if g.chat {
		object = "chat.completion.chunk"
	}
	base := chunk{ID: g.responseID(), Object: object, Created: g.created, Model: g.model}
	send := func(c chunk) error {
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if g.chat {
		empty := ""
		c := base
		c.Choices = []chatChoice{{Delta: &chatOutput{Role: "assistant", Content: &empty}}}
		if err := send(c); err != nil {
			s.eng.Abort(engineID)
			return outcome{}, err
		}
	}
	ts := newTextStream(s, g, engineID)
	toolOpened := false // the tool call's first delta is out
	for !ts.done {
		text, err := ts.next(ctx, stream)
		if err != nil {
			if ctx.Err() == nil {
				// A mid-stream failure is reported in-band, as vLLM does.
				_, env := envelope(&apiError{status: http.StatusInternalServerError, message: err.Error()})
				b, _ := json.Marshal(env)
				_, _ = fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", b)
			}
			return ts.finalOutcome(), err
		}
		if text == "" && !ts.done {
			continue
		}
		c := base
		var reason *string
		if ts.done {
			r := ts.out.reason
			reason = &r
		}
		if g.chat {
			delta := &chatOutput{}
			switch {
			case g.tool != nil:
				args := escaped(text)
				if !toolOpened {
					args = g.tool.argumentsOpen() + args
				}
				if ts.done {
					args += g.tool.argumentsClose()
					r := toolFinish(*reason)
					reason = &r
				}
				delta.ToolCalls = g.tool.delta(!toolOpened, args)
				toolOpened = true
			case text != "":
				delta.Content = &text
			}
			c.Choices = []chatChoice{{Delta: delta, FinishReason: reason, StopReason: stopIf(ts.done, ts.out.stopString)}}
		} else {
			c.Choices = []completionChoice{{Text: text, FinishReason: reason, StopReason: stopIf(ts.done, ts.out.stopString)}}
		}
		if err := send(c); err != nil {
			s.eng.Abort(engineID)
			return ts.finalOutcome(), err
		}
	}
	o := ts.finalOutcome()
	if g.includeUsage {
		c := base
		c.Choices = []struct{}{}
		c.Usage = o.usage()
		if err := send(c); err != nil {
			return o, err
		}
	}
	if _, err := fmt.Fprint(w, "data: [DONE]\n\n"); err != nil {
		return o, err
	}
	return o, rc.Flush()
}

func stopIf(done bool, s *string) *string {
	if !done {
		return nil
	}
	return s
}
