package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench/client"
)

// server answers every request with the handler for its path and records
// the last request body.
func server(t *testing.T, h http.HandlerFunc) (*client.Client, *string) {
	t.Helper()
	var last string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		last = string(b)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{BaseURL: srv.URL + "/v1/", APIKey: "sk-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, &last
}

func sse(w http.ResponseWriter, events ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set(client.WorkerHeader, "node-1/w0")
	for _, e := range events {
		_, _ = io.WriteString(w, "data: "+e+"\n\n")
		w.(http.Flusher).Flush()
	}
}

func TestStreamedChat(t *testing.T) {
	c, body := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-test" || r.Header.Get("X-Request-Id") != "req-1" {
			http.Error(w, "bad request line", http.StatusTeapot)
			return
		}
		sse(w,
			`{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
			`{"choices":[{"index":0,"delta":{"content":"Hel"}}]}`,
			`{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"length"}]}`,
			`{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":8}}}`,
			`[DONE]`)
	})
	var resp client.Response
	err := c.Do(context.Background(), &client.Request{
		Endpoint: client.Chat, Model: "m", Messages: []client.Message{{Role: "user", Content: "hi"}},
		MaxTokens: 2, Stream: true, IncludeUsage: true, RequestID: "req-1", KeepText: true,
	}, &resp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Worker != "node-1/w0" || resp.Text != "Hello" || len(resp.Chunks) != 2 || resp.FinishReason != "length" {
		t.Fatalf("response %+v", resp)
	}
	if !resp.HasUsage || !resp.HasCached || resp.PromptTokens != 12 || resp.CompletionTokens != 2 || resp.CachedTokens != 8 {
		t.Fatalf("usage %+v", resp)
	}
	if resp.Chunks[0] <= 0 || resp.Chunks[1] < resp.Chunks[0] || resp.Done.Sub(resp.Sent) < resp.Chunks[1] {
		t.Fatalf("times: chunks %v, e2e %v", resp.Chunks, resp.Done.Sub(resp.Sent))
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(*body), &sent); err != nil || sent["stream"] != true || sent["messages"] == nil {
		t.Fatalf("sent %s (%v)", *body, err)
	}
}

func TestWholeCompletion(t *testing.T) {
	c, body := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"choices":[{"text":"abc","finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3}}`)
	})
	var resp client.Response
	if err := c.Do(context.Background(), &client.Request{Endpoint: client.Completions, Model: "m", Tokens: []uint32{5, 6, 7}, MaxTokens: 3}, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Text != "abc" || len(resp.Chunks) != 1 || resp.HasCached || resp.CompletionTokens != 3 {
		t.Fatalf("%+v", resp)
	}
	if !strings.Contains(*body, `"prompt":[5,6,7]`) {
		t.Fatalf("body %s", *body)
	}
}

// Config.Header goes with every request, and cannot replace the headers
// the client sets itself.
func TestExtraHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Strata-Routing") != "round-robin" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "headers "+r.Header.Get("X-Strata-Routing")+" "+r.Header.Get("Content-Type"), http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"choices":[{"text":"a","finish_reason":"length"}]}`)
	}))
	t.Cleanup(srv.Close)
	h := http.Header{}
	h.Set("X-Strata-Routing", "round-robin")
	h.Set("Content-Type", "text/plain")
	c, err := client.New(client.Config{BaseURL: srv.URL + "/v1", Header: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	h.Set("X-Strata-Routing", "kv") // the client keeps its own copy
	var resp client.Response
	if err := c.Do(context.Background(), &client.Request{Endpoint: client.Completions, Model: "m", Tokens: []uint32{5}, MaxTokens: 1}, &resp); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		kind    string
		msg     string
	}{
		{"openai envelope", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"message":"max_tokens too large","type":"BadRequestError","code":400}}`)
		}, "http_400", "BadRequestError: max_tokens too large"},
		{"plain body", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		}, "http_503", "overloaded"},
		{"not a stream", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{}`)
		}, client.KindProtocol, "text/event-stream"},
		{"in-band error", func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"choices":[{"text":"a"}]}`, `{"error":{"message":"engine died","type":"InternalServerError"}}`, `[DONE]`)
		}, client.KindStreamError, "engine died"},
		{"cut short", func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"choices":[{"text":"a"}]}`)
		}, client.KindIncomplete, "[DONE]"},
		{"garbage chunk", func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"choices":[{"text":"a"}`, `[DONE]`)
		}, client.KindProtocol, "unexpected end"},
		{"connection dropped", func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"choices":[{"text":"a"}]}`)
			conn, _, _ := w.(http.Hijacker).Hijack()
			_ = conn.Close()
		}, client.KindRead, "unexpected EOF"}, // the chunked body ends mid-chunk
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := server(t, tc.handler)
			var resp client.Response
			err := c.Do(context.Background(), &client.Request{Endpoint: client.Completions, Model: "m", Text: "x", MaxTokens: 1, Stream: true}, &resp)
			var e *client.Error
			if !errors.As(err, &e) || e.Kind != tc.kind || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("error %v, want kind %s containing %q", err, tc.kind, tc.msg)
			}
		})
	}
}

func TestTimeoutAndConnect(t *testing.T) {
	release := make(chan struct{})
	c, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, `{"choices":[{"text":"a"}]}`)
		<-release
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var resp client.Response
	err := c.Do(ctx, &client.Request{Endpoint: client.Completions, Model: "m", Text: "x", MaxTokens: 1, Stream: true}, &resp)
	var e *client.Error
	if !errors.As(err, &e) || e.Kind != client.KindTimeout || len(resp.Chunks) != 1 {
		t.Fatalf("error %v after %d chunks, want a timeout after 1", err, len(resp.Chunks))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	dead, _ := client.New(client.Config{BaseURL: "http://" + addr + "/v1"})
	err = dead.Do(context.Background(), &client.Request{Endpoint: client.Completions, Model: "m", Text: "x", MaxTokens: 1}, &resp)
	if !errors.As(err, &e) || e.Kind != client.KindConnect {
		t.Fatalf("refused connection: %v", err)
	}
	if _, err := client.New(client.Config{BaseURL: "localhost:8000/v1"}); err == nil {
		t.Fatal("a URL without scheme accepted")
	}
}

func TestModels(t *testing.T) {
	c, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/models" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"llama","object":"model"},{"id":"qwen"}]}`)
	})
	ids, err := c.Models(context.Background())
	if err != nil || strings.Join(ids, ",") != "llama,qwen" {
		t.Fatalf("%v %v", ids, err)
	}
	bad, _ := server(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `[`) })
	if _, err := bad.Models(context.Background()); err == nil {
		t.Fatal("garbage model list accepted")
	}
}
