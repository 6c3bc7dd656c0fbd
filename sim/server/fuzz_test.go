package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/strata-llm/strata/sim/engine"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

// fuzzServer is a server over a running engine fast enough that every
// accepted request completes within the fuzz iteration.
func fuzzServer(t testing.TB) *Server {
	cfg := engine.DefaultConfig()
	cfg.Speedup = 1e9
	cfg.NumGPUBlocks = 512
	cfg.MaxModelLen = 2048
	tok := bytelevel.Tokenizer{}
	cfg.EOS, cfg.TextTokens = tok.EOS(), tok.TextTokens()
	eng, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = eng.Run(ctx) }()
	s, err := New(Config{ServedModelNames: []string{"m"}, MaxModelLen: cfg.MaxModelLen, KVTransfer: true, EngineID: "e", AdvertiseHost: "127.0.0.1", AdvertisePort: 1, MaxBodyBytes: 1 << 16}, eng, tok)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkAnswer asserts the invariant for any input: a 2xx, or a 4xx/5xx in the
// error envelope with the status as its code.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	if rec.Code < 400 {
		return
	}
	var env errorEnvelope
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error.Code != rec.Code || env.Error.Message == "" {
		t.Fatalf("status %d without an error envelope: %q", rec.Code, rec.Body.String())
	}
	if rec.Code >= 500 && rec.Code != http.StatusBadGateway {
		t.Fatalf("server error on client input: %s", rec.Body.String())
	}
}

func fuzzEndpoint(f *testing.F, path string) {
	s := fuzzServer(f)
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec)
	})
}

func FuzzChatCompletions(f *testing.F) { fuzzEndpoint(f, "/v1/chat/completions") }
func FuzzCompletions(f *testing.F)     { fuzzEndpoint(f, "/v1/completions") }
func FuzzTokenize(f *testing.F)        { fuzzEndpoint(f, "/tokenize") }

func FuzzParseKVTransferConfig(f *testing.F) {
	f.Add(`{"kv_connector":"NixlConnector","kv_role":"kv_both"}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseKVTransferConfig(s)
		if err == nil {
			if _, rerr := c.Role(); rerr != nil || c.KVConnector != "NixlConnector" {
				t.Fatalf("accepted invalid config %q", s)
			}
		}
	})
}
