// Package client is the load generator's OpenAI client: /v1/completions
// (text or token-id prompts) and /v1/chat/completions, streamed or whole,
// timing every chunk as it is parsed.
//
// It is written on net/http instead of an SDK so that the per-request cost
// stays in the microseconds (the load generator must not be the bottleneck)
// and so that each chunk is timestamped the moment its bytes are read.
// Everything the server sends is checked: a malformed stream, chunk or
// usage is a *Error of kind protocol with an excerpt, never a panic.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Endpoint is an OpenAI API.
type Endpoint string

const (
	Completions Endpoint = "completions"
	Chat        Endpoint = "chat"
)

func (e Endpoint) path() string {
	if e == Chat {
		return "/chat/completions"
	}
	return "/completions"
}

// WorkerHeader is the response header in which Strata's gateway names the
// worker that served a request.
const WorkerHeader = "X-Strata-Worker"

// Message is one chat message.
type Message struct {
	Role, Content string
}

// Request is one benchmark request.
type Request struct {
	Endpoint Endpoint
	Model    string
	// Completions take Tokens (a token-id prompt) if set, else Text.
	Tokens []uint32
	Text   string
	// Chat takes Messages.
	Messages  []Message
	MaxTokens int
	// IgnoreEOS and MinTokens (min_tokens = max_tokens) make the output
	// exactly MaxTokens long on engines that honour them (vLLM, SGLang,
	// strata sim); OpenAI's own API rejects them.
	IgnoreEOS, MinTokens bool
	Stream, IncludeUsage bool
	// RequestID is sent as X-Request-Id, which vLLM and Strata honour.
	RequestID string
	// KeepText collects the generated text in Response.Text.
	KeepText bool
}

// Response is what a request measured.
type Response struct {
	Status int
	// Worker is the X-Strata-Worker response header, if any.
	Worker string
	// Sent is taken just before the request is written; Done when the
	// answer ended (the [DONE] event of a stream).
	Sent, Done time.Time
	// Chunks are the arrival times, after Sent, of the chunks that carried
	// generated text: the first is the time to first token.
	Chunks []time.Duration
	Text   string
	// Usage, when the answer reported it (HasUsage), and the cached prompt
	// tokens when it reported prompt_tokens_details (HasCached).
	PromptTokens, CompletionTokens, CachedTokens int
	HasUsage, HasCached                          bool
	FinishReason                                 string
}

// Error kinds.
const (
	KindConnect     = "connect"
	KindTimeout     = "timeout"
	KindCanceled    = "canceled"
	KindStreamError = "stream_error"
	KindProtocol    = "protocol"
	KindIncomplete  = "incomplete"
	KindRead        = "read"
)

// Error is a failed request: its kind (one of the Kind constants, or
// http_<status> for an error status) and what went wrong.
type Error struct {
	Kind   string
	Status int
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Kind + ": " + e.Msg + ": " + e.Err.Error()
	}
	return e.Kind + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Config configures a Client.
type Config struct {
	// BaseURL is the API root, ending in /v1.
	BaseURL string
	// APIKey is sent as a bearer token when set.
	APIKey string
	// MaxConns bounds the connections kept open to the endpoint; it should
	// be at least the requests in flight (0: 1024).
	MaxConns int
	// MaxBodyBytes bounds a whole (non-streamed) answer or an error body
	// (0: 64 MiB).
	MaxBodyBytes int64
	// Header is sent with every request (e.g. X-Strata-Routing to choose
	// Strata's routing policy); the client's own headers win.
	Header http.Header
}

// Client sends benchmark requests; it is safe for concurrent use.
type Client struct {
	base    string
	auth    string
	header  http.Header
	http    *http.Client
	maxBody int64
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	base := strings.TrimRight(cfg.BaseURL, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("url %q: want http://host:port/v1 or https://…", cfg.BaseURL)
	}
	conns := cfg.MaxConns
	if conns <= 0 {
		conns = 1024
	}
	maxBody := cfg.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = 64 << 20
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		// Compression would cost the client CPU and delay chunks.
		DisableCompression: true,
		WriteBufferSize:    64 << 10,
		ReadBufferSize:     64 << 10,
	}
	c := &Client{base: base, header: cfg.Header.Clone(), http: &http.Client{Transport: tr}, maxBody: maxBody}
	if cfg.APIKey != "" {
		c.auth = "Bearer " + cfg.APIKey
	}
	return c, nil
}

// Close closes idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Do sends req and fills resp. Its error is always a *Error. The context
// bounds the whole request, answer included.
func (c *Client) Do(ctx context.Context, req *Request, resp *Response) error {
	// Not pooled: the transport may read the body after Do returns.
	body := appendBody(make([]byte, 0, bodySize(req)), req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+req.Endpoint.path(), bytes.NewReader(body))
	if err != nil {
		return &Error{Kind: KindConnect, Msg: "build request", Err: err}
	}
	for k, v := range c.header {
		hreq.Header[k] = v
	}
	hreq.Header.Set("Content-Type", "application/json")
	if req.Stream {
		hreq.Header.Set("Accept", "text/event-stream")
	} else {
		hreq.Header.Set("Accept", "application/json")
	}
	if c.auth != "" {
		hreq.Header.Set("Authorization", c.auth)
	}
	if req.RequestID != "" {
		hreq.Header.Set("X-Request-Id", req.RequestID)
	}
	*resp = Response{Chunks: resp.Chunks[:0]}
	resp.Sent = time.Now()
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return transportError(ctx, "send", err)
	}
	defer func() { _ = hresp.Body.Close() }()
	resp.Status = hresp.StatusCode
	resp.Worker = hresp.Header.Get(WorkerHeader)
	if hresp.StatusCode != http.StatusOK {
		return c.statusError(ctx, hresp)
	}
	if req.Stream {
		if ct := hresp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			return &Error{Kind: KindProtocol, Status: hresp.StatusCode, Msg: fmt.Sprintf("streamed answer has Content-Type %q, want text/event-stream", ct)}
		}
		if err := readStream(ctx, hresp.Body, req.KeepText, resp); err != nil {
			return err
		}
		// Read the end of the body (after [DONE], the chunked encoding's
		// last chunk) so that the connection goes back to the pool: closed
		// unread, it is torn down, a new connection per request, and the
		// server sees each client leave mid-answer.
		_, _ = io.Copy(io.Discard, io.LimitReader(hresp.Body, maxTrailingBytes))
		return nil
	}
	return c.readWhole(ctx, hresp.Body, resp)
}

// maxTrailingBytes bounds what is read of a stream after its [DONE].
const maxTrailingBytes = 64 << 10

// readStream consumes an OpenAI stream into resp.
func readStream(ctx context.Context, body io.Reader, keepText bool, resp *Response) error {
	events := newEventReader(body)
	defer events.release()
	var text strings.Builder
	for {
		data, err := events.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return &Error{Kind: KindIncomplete, Msg: "stream ended without data: [DONE]"}
			}
			if errors.Is(err, errEventTooLong) {
				return &Error{Kind: KindProtocol, Msg: err.Error()}
			}
			return transportError(ctx, "read stream", err)
		}
		now := time.Now()
		if string(data) == "[DONE]" {
			resp.Done = now
			if keepText {
				resp.Text = text.String()
			}
			return nil
		}
		p, err := parseChunk(data)
		if err != nil {
			return &Error{Kind: KindProtocol, Msg: err.Error()}
		}
		if p.err != nil {
			return &Error{Kind: KindStreamError, Msg: p.err.String()}
		}
		if p.hasText {
			resp.Chunks = append(resp.Chunks, now.Sub(resp.Sent))
			if keepText {
				text.WriteString(p.text)
			}
		}
		if p.finishReason != "" {
			resp.FinishReason = p.finishReason
		}
		if p.usage != nil {
			setUsage(resp, p.usage)
		}
	}
}

func (c *Client) readWhole(ctx context.Context, body io.Reader, resp *Response) error {
	b, err := io.ReadAll(io.LimitReader(body, c.maxBody+1))
	now := time.Now()
	if err != nil {
		return transportError(ctx, "read answer", err)
	}
	if int64(len(b)) > c.maxBody {
		return &Error{Kind: KindProtocol, Msg: fmt.Sprintf("answer longer than %d bytes", c.maxBody)}
	}
	p, err := parseChunk(b)
	if err != nil {
		return &Error{Kind: KindProtocol, Msg: err.Error()}
	}
	if p.err != nil {
		return &Error{Kind: KindStreamError, Msg: p.err.String()}
	}
	resp.Done = now
	if p.hasText {
		resp.Chunks = append(resp.Chunks, now.Sub(resp.Sent))
	}
	resp.Text = p.text
	resp.FinishReason = p.finishReason
	if p.usage != nil {
		setUsage(resp, p.usage)
	}
	return nil
}

func setUsage(resp *Response, u *usage) {
	resp.HasUsage = true
	resp.PromptTokens, resp.CompletionTokens = int(u.PromptTokens), int(u.CompletionTokens)
	resp.HasCached, resp.CachedTokens = u.HasCached, int(u.CachedTokens)
}

// statusError reads an error answer: OpenAI's envelope if it is one, else
// the start of the body.
func (c *Client) statusError(ctx context.Context, hresp *http.Response) error {
	kind := "http_" + strconv.Itoa(hresp.StatusCode)
	b, err := io.ReadAll(io.LimitReader(hresp.Body, 64<<10))
	if err != nil && ctx.Err() != nil {
		return transportError(ctx, "read error answer", err)
	}
	var env struct {
		Error *errorBody `json:"error"`
	}
	if json.Unmarshal(b, &env) == nil && env.Error != nil {
		return &Error{Kind: kind, Status: hresp.StatusCode, Msg: env.Error.String()}
	}
	return &Error{Kind: kind, Status: hresp.StatusCode, Msg: hresp.Status + ": " + excerpt(bytes.TrimSpace(b))}
}

// transportError classifies a failure of the connection or the context.
func transportError(ctx context.Context, during string, err error) *Error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return &Error{Kind: KindTimeout, Msg: during, Err: err}
	case ctx.Err() != nil:
		return &Error{Kind: KindCanceled, Msg: during, Err: err}
	}
	var op *net.OpError
	if during == "send" || (errors.As(err, &op) && op.Op == "dial") {
		return &Error{Kind: KindConnect, Msg: during, Err: err}
	}
	return &Error{Kind: KindRead, Msg: during, Err: err}
}

// Models lists the model ids the endpoint serves (GET /models).
func (c *Client) Models(ctx context.Context) ([]string, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/models", nil)
	if err != nil {
		return nil, err
	}
	if c.auth != "" {
		hreq.Header.Set("Authorization", c.auth)
	}
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("GET %s/models: %w", c.base, err)
	}
	defer func() { _ = hresp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s/models: %w", c.base, err)
	}
	if hresp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/models: %s: %s", c.base, hresp.Status, excerpt(bytes.TrimSpace(b)))
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("GET %s/models: %s: %w", c.base, excerpt(b), err)
	}
	var ids []string
	for _, m := range list.Data {
		if m.ID != "" {
			ids = append(ids, m.ID)
		}
	}
	return ids, nil
}

// bodySize estimates the encoded size of req.
func bodySize(req *Request) int {
	n := 256 + len(req.Model) + 6*len(req.Tokens) + len(req.Text)
	for _, m := range req.Messages {
		n += 32 + len(m.Content)
	}
	return n
}

// appendBody encodes req as the JSON request body. It is written by hand
// because a token-id prompt of 100k ids through encoding/json's reflection
// would cost the load generator more than the rest of the request.
func appendBody(b []byte, req *Request) []byte {
	b = append(b, `{"model":`...)
	b = appendString(b, req.Model)
	if req.Endpoint == Chat {
		b = append(b, `,"messages":[`...)
		for i, m := range req.Messages {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"role":`...)
			b = appendString(b, m.Role)
			b = append(b, `,"content":`...)
			b = appendString(b, m.Content)
			b = append(b, '}')
		}
		b = append(b, ']')
	} else {
		b = append(b, `,"prompt":`...)
		if req.Tokens != nil {
			b = append(b, '[')
			for i, t := range req.Tokens {
				if i > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendUint(b, uint64(t), 10)
			}
			b = append(b, ']')
		} else {
			b = appendString(b, req.Text)
		}
	}
	b = append(b, `,"max_tokens":`...)
	b = strconv.AppendInt(b, int64(req.MaxTokens), 10)
	if req.MinTokens {
		b = append(b, `,"min_tokens":`...)
		b = strconv.AppendInt(b, int64(req.MaxTokens), 10)
	}
	if req.IgnoreEOS {
		b = append(b, `,"ignore_eos":true`...)
	}
	if req.Stream {
		b = append(b, `,"stream":true`...)
		if req.IncludeUsage {
			b = append(b, `,"stream_options":{"include_usage":true}`...)
		}
	}
	return append(b, '}')
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
