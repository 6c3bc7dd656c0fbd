package gateway

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSSEReader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream string
		want   []string
		end    error
	}{
		{"events", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []string{`{"a":1}`, "[DONE]"}, io.EOF},
		{"CRLF, comments, other fields", ": ping\r\n\r\nevent: x\r\nid: 3\r\ndata: one\r\n\r\n", []string{"one"}, io.EOF},
		{"multi-line data", "data: a\ndata: b\n\n", []string{"a\nb"}, io.EOF},
		{"no space after the colon", "data:x\n\n", []string{"x"}, io.EOF},
		{"last event without its blank line", "data: a\n\ndata: b\n", []string{"a", "b"}, io.EOF},
		{"cut inside an event", "data: a\n\ndata: {\"b\"", []string{"a"}, io.ErrUnexpectedEOF},
		{"long line", "data: " + strings.Repeat("x", 100<<10) + "\n\n", []string{strings.Repeat("x", 100<<10)}, io.EOF},
		{"too long", "data: " + strings.Repeat("x", maxEventBytes+10) + "\n\n", nil, errEventTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSSEReader(strings.NewReader(tc.stream))
			var got []string
			for {
				d, err := r.next()
				if err != nil {
					if !errors.Is(err, tc.end) {
						t.Fatalf("ended with %v, want %v", err, tc.end)
					}
					break
				}
				got = append(got, string(d))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("events %.60q, want %.60q", got, tc.want)
			}
		})
	}
}

func TestInspectChunk(t *testing.T) {
	for _, tc := range []struct {
		name, chunk string
		want        chunkInfo
		bad         bool
	}{
		{"chat delta", `{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`, chunkInfo{text: "hi", hasChoices: true}, false},
		{"completion text, finished", `{"choices":[{"text":"x","finish_reason":"length"}]}`, chunkInfo{text: "x", hasChoices: true, finishReason: "length"}, false},
		{"usage", `{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}`,
			chunkInfo{usage: &usageInfo{PromptTokens: 5, CompletionTokens: 2, CachedTokens: 4}}, false},
		{"vLLM error", `{"error":{"message":"boom","code":500}}`, chunkInfo{errStatus: 500, errMessage: "boom"}, false},
		{"client error", `{"error":{"message":"too long","code":400}}`, chunkInfo{errStatus: 400, errMessage: "too long"}, false},
		{"TensorRT-LLM error", `{"object":"error","message":"bad"}`, chunkInfo{errStatus: 500, errMessage: "bad"}, false},
		{"not JSON", `{"choices":[`, chunkInfo{}, true},
		{"not an object", `[1]`, chunkInfo{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := inspectChunk([]byte(tc.chunk))
			if tc.bad {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.text != tc.want.text || got.hasChoices != tc.want.hasChoices || got.finishReason != tc.want.finishReason ||
				got.errStatus != tc.want.errStatus || got.errMessage != tc.want.errMessage || (got.usage == nil) != (tc.want.usage == nil) ||
				(got.usage != nil && *got.usage != *tc.want.usage) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzEngineStream: whatever an engine streams, reading it ends with an
// error or io.EOF and never panics.
func FuzzEngineStream(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: {\"error\":{\"code\":500}}\n\n"))
	f.Add([]byte(": x\r\ndata:\r\n\r\ndata: {\"usage\":{}}"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := newSSEReader(strings.NewReader(string(stream)))
		for range 1 << 16 {
			d, err := r.next()
			if err != nil {
				return
			}
			_, _ = inspectChunk(d)
		}
		t.Fatal("a finite stream never ended")
	})
}
