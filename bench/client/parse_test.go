package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func events(t *testing.T, in string) []string {
	t.Helper()
	r := newEventReader(strings.NewReader(in))
	var out []string
	for {
		d, err := r.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		out = append(out, string(d))
	}
}

func TestEventReader(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"openai", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []string{`{"a":1}`, "[DONE]"}},
		{"crlf", "data: x\r\n\r\ndata: y\r\n\r\n", []string{"x", "y"}},
		{"no space", "data:x\n\n", []string{"x"}},
		{"two spaces keep one", "data:  x\n\n", []string{" x"}},
		{"multi-line data", "data: a\ndata: b\n\n", []string{"a\nb"}},
		{"comments and fields", ": keep-alive\nevent: message\nid: 7\nretry: 10\ndata: x\n\n", []string{"x"}},
		{"blank lines between", "\n\n\ndata: x\n\n\n", []string{"x"}},
		{"last event without blank line", "data: x\n\ndata: y", []string{"x", "y"}},
		{"field without colon", "data\n\n", []string{""}},
		{"only comments", ": a\n: b\n\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := events(t, tc.in); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			// The same bytes one at a time (a slow network) give the same events.
			r := newEventReader(iotest.OneByteReader(strings.NewReader(tc.in)))
			var got []string
			for {
				d, err := r.next()
				if err != nil {
					break
				}
				got = append(got, string(d))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("byte by byte: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEventReaderLimits(t *testing.T) {
	long := "data: " + strings.Repeat("x", MaxEventBytes+1) + "\n\n"
	if _, err := newEventReader(strings.NewReader(long)).next(); !errors.Is(err, errEventTooLong) {
		t.Fatalf("long line: %v", err)
	}
	many := strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n", MaxEventBytes/1000+2) + "\n"
	if _, err := newEventReader(strings.NewReader(many)).next(); !errors.Is(err, errEventTooLong) {
		t.Fatalf("long event: %v", err)
	}
	noNewline := strings.Repeat("x", MaxEventBytes+100)
	if _, err := newEventReader(strings.NewReader(noNewline)).next(); !errors.Is(err, errEventTooLong) {
		t.Fatalf("no newline: %v", err)
	}
}

func TestParseChunk(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		text     string
		finish   string
		usage    bool
		wantErr  string
	}{
		{"completion", `{"choices":[{"index":0,"text":"hi","finish_reason":null}]}`, "hi", "", false, ""},
		{"chat role chunk", `{"choices":[{"delta":{"role":"assistant","content":""}}]}`, "", "", false, ""},
		{"chat content", `{"choices":[{"delta":{"content":"ab"},"finish_reason":"length"}]}`, "ab", "length", false, ""},
		{"reasoning", `{"choices":[{"delta":{"reasoning_content":"think"}}]}`, "think", "", false, ""},
		{"whole chat", `{"choices":[{"message":{"role":"assistant","content":"all"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`, "all", "", true, ""},
		{"usage chunk", `{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}}`, "", "", true, ""},
		{"usage null details", `{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":null}}`, "", "", true, ""},
		{"unknown fields", `{"id":"x","object":"text_completion","created":1,"model":"m","choices":[{"text":"a","logprobs":null,"stop_reason":null}],"system_fingerprint":"z"}`, "a", "", false, ""},
		{"not an object", `[1,2]`, "", "", false, "not a JSON object"},
		{"null", `null`, "", "", false, "not a JSON object"},
		{"empty", ``, "", "", false, "not a JSON object"},
		{"truncated", `{"choices":[{"text":"a"`, "", "", false, "unexpected end"},
		{"wrong type", `{"choices":[{"text":5}]}`, "", "", false, "choices[0].text: want a string, got a number"},
		{"choices not an array", `{"choices":{"text":"a"}}`, "", "", false, "choices: want an array"},
		{"choice not an object", `{"choices":["a"]}`, "", "", false, "choices[0]: want an object"},
		{"delta not an object", `{"choices":[{"delta":"a"}]}`, "", "", false, "choices[0].delta: want an object"},
		{"negative usage", `{"usage":{"prompt_tokens":-1,"completion_tokens":5}}`, "", "", false, "not a token count"},
		{"fractional usage", `{"usage":{"prompt_tokens":1.5,"completion_tokens":5}}`, "", "", false, "not a token count"},
		{"string usage", `{"usage":{"prompt_tokens":"5"}}`, "", "", false, "want a number"},
		{"invalid escape", `{"choices":[{"text":"\q"}]}`, "", "", false, "invalid character"},
		{"trailing garbage", `{"choices":[]} x`, "", "", false, "invalid character"},
		{"cached above prompt", `{"usage":{"prompt_tokens":3,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}}`, "", "", false, "cached_tokens"},
		{"two choices", `{"choices":[{"text":"a"},{"text":"b"}]}`, "", "", false, "several choices"},
		{"escaped text", `{"choices":[{"text":"a\n\u00e9"}]}`, "a\né", "", false, ""},
		{"string error", `{"error":"overloaded"}`, "", "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseChunk([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.text != tc.text || p.hasText != (tc.text != "") || p.finishReason != tc.finish || (p.usage != nil) != tc.usage {
				t.Fatalf("parsed %+v", p)
			}
		})
	}
	p, _ := parseChunk([]byte(`{"error":{"message":"boom","type":"InternalServerError","code":500}}`))
	if p.err == nil || p.err.String() != "InternalServerError: boom" {
		t.Fatalf("in-band error %+v", p.err)
	}
}

func TestReadStream(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		kind       string
		chunks     int
		text       string
	}{
		{"complete", "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\",\"finish_reason\":\"length\"}]}\n\n" +
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\ndata: [DONE]\n\n", "", 2, "ab"},
		{"data after done is ignored", "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\ngarbage", "", 1, "a"},
		{"no done", "data: {\"choices\":[{\"text\":\"a\"}]}\n\n", KindIncomplete, 1, ""},
		{"empty body", "", KindIncomplete, 0, ""},
		{"garbage", "data: <html>\n\n", KindProtocol, 0, ""},
		{"in-band error", "data: {\"error\":{\"message\":\"engine died\"}}\n\ndata: [DONE]\n\n", KindStreamError, 0, ""},
		{"html page", "<html><body>502 Bad Gateway</body></html>", KindIncomplete, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp Response
			err := readStream(context.Background(), strings.NewReader(tc.body), true, &resp)
			if tc.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) || e.Kind != tc.kind {
					t.Fatalf("error %v, want kind %s", err, tc.kind)
				}
			}
			if len(resp.Chunks) != tc.chunks || (tc.kind == "" && resp.Text != tc.text) {
				t.Fatalf("%d chunks, text %q", len(resp.Chunks), resp.Text)
			}
		})
	}
}

func TestAppendBody(t *testing.T) {
	var got map[string]any
	b := appendBody(nil, &Request{Endpoint: Completions, Model: "m\"x", Tokens: []uint32{1, 2, 4294967295}, MaxTokens: 7,
		IgnoreEOS: true, MinTokens: true, Stream: true, IncludeUsage: true})
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	want := `{"ignore_eos":true,"max_tokens":7,"min_tokens":7,"model":"m\"x","prompt":[1,2,4294967295],"stream":true,"stream_options":{"include_usage":true}}`
	if norm, _ := json.Marshal(got); string(norm) != want {
		t.Fatalf("body %s, want %s", norm, want)
	}
	b = appendBody(nil, &Request{Endpoint: Chat, Model: "m", Messages: []Message{{"system", "s"}, {"user", "tab\there\n\u2028 \x01"}}, MaxTokens: 1})
	got = nil
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if norm, _ := json.Marshal(got); string(norm) != `{"max_tokens":1,"messages":[{"content":"s","role":"system"},{"content":"tab\there\n\u2028 \u0001","role":"user"}],"model":"m"}` {
		t.Fatalf("chat body %s", norm)
	}
	b = appendBody(nil, &Request{Endpoint: Completions, Model: "m", Text: "plain", MaxTokens: 2})
	if !bytes.Contains(b, []byte(`"prompt":"plain"`)) || bytes.Contains(b, []byte("stream")) {
		t.Fatalf("text body %s", b)
	}
}

// FuzzStream feeds arbitrary bytes to the stream reader as an answer body:
// it must end with a classified error or a result, never panic.
func FuzzStream(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var resp Response
		err := readStream(context.Background(), bytes.NewReader(body), true, &resp)
		if err == nil {
			if resp.Done.IsZero() {
				t.Fatal("success without [DONE]")
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("unclassified error %v", err)
		}
		switch e.Kind {
		case KindProtocol, KindIncomplete, KindStreamError:
		default:
			t.Fatalf("kind %s for a body read from memory: %v", e.Kind, err)
		}
	})
}

// FuzzAppendString checks the hand-written JSON string encoder against
// encoding/json: the same string decodes back from both.
func FuzzAppendString(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		var mine, theirs string
		if err := json.Unmarshal(appendString(nil, s), &mine); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, appendString(nil, s), err)
		}
		b, _ := json.Marshal(s)
		_ = json.Unmarshal(b, &theirs)
		if mine != theirs {
			t.Fatalf("%q decodes to %q, encoding/json's to %q", s, mine, theirs)
		}
	})
}
