package gateway

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/strata-llm/strata/brain/spec"
)

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ep    endpoint
		body  string
		param string // "" with no error expected when ok
		ok    bool
		check func(t *testing.T, r *request)
	}{
		{name: "chat", ep: chatEndpoint, ok: true,
			body: `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":7,"temperature":0.5,"unknown_field":{"kept":1}}`,
			check: func(t *testing.T, r *request) {
				if !r.stream || !r.includeUsage || r.maxTokens != 7 || len(r.chat.Messages) != 1 || string(r.body["unknown_field"]) != `{"kept":1}` {
					t.Fatalf("decoded %+v", r)
				}
			}},
		{name: "hints are read and removed", ep: chatEndpoint, ok: true,
			body: `{"model":"m","messages":[{"role":"user","content":"hi"}],"strata":{"priority":3,"worker":"w1","session_id":"s","routing":"random","expected_output_tokens":9}}`,
			check: func(t *testing.T, r *request) {
				if r.hints != (hints{Priority: 3, Worker: "w1", SessionID: "s", Routing: "random", ExpectedOutputTokens: 9}) {
					t.Fatalf("hints %+v", r.hints)
				}
				if _, ok := r.body[hintsField]; ok {
					t.Fatal("the extension object would reach the engine")
				}
			}},
		{name: "content parts", ep: chatEndpoint, ok: true,
			body: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`},
		{name: "completion text", ep: completionsEndpoint, ok: true, body: `{"model":"m","prompt":"hello","max_tokens":3}`,
			check: func(t *testing.T, r *request) {
				if r.promptText != "hello" || r.isIDs || r.maxTokens != 3 {
					t.Fatalf("decoded %+v", r)
				}
			}},
		{name: "completion token ids", ep: completionsEndpoint, ok: true, body: `{"model":"m","prompt":[1,2,3]}`,
			check: func(t *testing.T, r *request) {
				if !r.isIDs || len(r.promptIDs) != 3 || r.promptIDs[2] != 3 {
					t.Fatalf("decoded %+v", r)
				}
			}},
		{name: "completion batch", ep: completionsEndpoint, ok: true, body: `{"model":"m","prompt":["a","b"]}`,
			check: func(t *testing.T, r *request) {
				if !r.manyPrompts || r.promptText != "a" {
					t.Fatalf("decoded %+v", r)
				}
			}},
		{name: "completion batch of token ids", ep: completionsEndpoint, ok: true, body: `{"model":"m","prompt":[[5,6]]}`,
			check: func(t *testing.T, r *request) {
				if r.manyPrompts || !r.isIDs || r.promptIDs[1] != 6 {
					t.Fatalf("decoded %+v", r)
				}
			}},
		{name: "embeddings", ep: embeddingsEndpoint, ok: true, body: `{"model":"e","input":["a"]}`},

		{name: "not JSON", ep: chatEndpoint, body: `{"model":`, param: ""},
		{name: "not an object", ep: chatEndpoint, body: `[1,2]`, param: ""},
		{name: "null body", ep: chatEndpoint, body: `null`, param: ""},
		{name: "no model", ep: chatEndpoint, body: `{"messages":[{"role":"user","content":"x"}]}`, param: "model"},
		{name: "model not a string", ep: chatEndpoint, body: `{"model":5,"messages":[]}`, param: "model"},
		{name: "empty messages", ep: chatEndpoint, body: `{"model":"m","messages":[]}`, param: "messages"},
		{name: "messages not an array", ep: chatEndpoint, body: `{"model":"m","messages":"hi"}`, param: "messages"},
		{name: "message without role", ep: chatEndpoint, body: `{"model":"m","messages":[{"content":"x"}]}`, param: "messages[0].role"},
		{name: "message not an object", ep: chatEndpoint, body: `{"model":"m","messages":[3]}`, param: "messages[0]"},
		{name: "max_tokens a string", ep: chatEndpoint, body: `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"9"}`, param: "max_tokens"},
		{name: "max_tokens zero", ep: completionsEndpoint, body: `{"model":"m","prompt":"x","max_tokens":0}`, param: "max_tokens"},
		{name: "max_tokens fractional", ep: completionsEndpoint, body: `{"model":"m","prompt":"x","max_tokens":1.5}`, param: "max_tokens"},
		{name: "stream not a boolean", ep: completionsEndpoint, body: `{"model":"m","prompt":"x","stream":"yes"}`, param: "stream"},
		{name: "no prompt", ep: completionsEndpoint, body: `{"model":"m"}`, param: "prompt"},
		{name: "prompt a number", ep: completionsEndpoint, body: `{"model":"m","prompt":5}`, param: "prompt"},
		{name: "negative token id", ep: completionsEndpoint, body: `{"model":"m","prompt":[1,-2]}`, param: "prompt"},
		{name: "token id too big", ep: completionsEndpoint, body: `{"model":"m","prompt":[4294967296]}`, param: "prompt"},
		{name: "empty token ids", ep: completionsEndpoint, body: `{"model":"m","prompt":[]}`, param: "prompt"},
		{name: "unknown hint", ep: chatEndpoint, body: `{"model":"m","messages":[{"role":"user","content":"x"}],"strata":{"prio":1}}`, param: "strata"},
		{name: "no input", ep: embeddingsEndpoint, body: `{"model":"e"}`, param: "input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := decodeRequest(tc.ep, tc.body)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil {
					tc.check(t, r)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.param != tc.param || ae.message == "" {
				t.Fatalf("error %#v, want a 400 naming %q", err, tc.param)
			}
		})
	}
}

func TestEngineErrorNormalised(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		msg, param string
		typ        string
	}{
		{"vLLM", `{"error":{"message":"too long","type":"BadRequestError","param":"messages","code":400}}`, 400, "too long", "messages", typeInvalidRequest},
		{"TensorRT-LLM", `{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}`, 400, "bad", "", typeInvalidRequest},
		{"llama.cpp", `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`, 503, "Loading model", "", typeUnavailable},
		{"garbage", `<html>oops</html>`, 500, "the engine answered 500 Internal Server Error", "", typeServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := engineError(tc.status, []byte(tc.body))
			env := e.envelope()
			if e.status != tc.status || env.Error.Message != tc.msg || e.param != tc.param || env.Error.Type != tc.typ || env.Error.Code != nil {
				t.Fatalf("got %+v / %+v", e, env.Error)
			}
		})
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		`{"model":"m","prompt":[1,2,3],"max_tokens":4}`,
		`{"model":"m","prompt":["a",[1]],"strata":{"priority":1}}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"tools":[{"type":"function","function":{"name":"f"}}]}`,
		`{"model":"e","input":"x"}`, `[]`, `{"model":""}`, `{`,
	} {
		f.Add(byte(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, ep byte, body []byte) {
		r, err := decodeRequest(endpoint(ep%3), string(body))
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || strings.TrimSpace(ae.message) == "" {
				t.Fatalf("error %#v is not a 400 with a message", err)
			}
			return
		}
		if r.model == "" {
			t.Fatal("accepted without a model")
		}
	})
}

// TestPolicyNamesMatchSpec: a deployment spec accepts exactly the routing
// policies gateways offer.
func TestPolicyNamesMatchSpec(t *testing.T) {
	if !slices.Equal(PolicyNames, spec.RoutingPolicies) {
		t.Fatalf("gateway policies %v, spec accepts %v", PolicyNames, spec.RoutingPolicies)
	}
}
