package tokenizer

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	v, err := DecodeJSON([]byte(`{"z": 1, "a": [1.0, "x", null, true, {"k": {}}], "z2": -0, "a": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(*Object)
	// A repeated key keeps its first place and its last value, as in Python.
	if want := []string{"z", "a", "z2"}; !slices.Equal(obj.Keys, want) {
		t.Fatalf("keys %v, want %v", obj.Keys, want)
	}
	if got, _ := obj.Get("a"); got != json.Number("2") {
		t.Fatalf("a = %#v", got)
	}
	b, err := json.Marshal(obj)
	if err != nil || string(b) != `{"z":1,"a":2,"z2":-0}` {
		t.Fatalf("MarshalJSON = %s, %v", b, err)
	}
	for _, bad := range []string{``, `{`, `{"a":1}x`, `[1,]`, `{1:2}`, strings.Repeat("[", 600) + strings.Repeat("]", 600)} {
		if _, err := DecodeJSON([]byte(bad)); err == nil {
			t.Errorf("DecodeJSON(%.20q) accepted", bad)
		}
	}
}

func TestChatRequestUnmarshal(t *testing.T) {
	var req ChatRequest
	body := `{"model":"m","messages":[{"role":"user","content":"hi","x":{"b":1,"a":2}}],"tools":[{"type":"function","function":{"name":"f"}}],"chat_template_kwargs":{"enable_thinking":false},"stream":true}`
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Fatal(err)
	}
	if !req.AddGenerationPrompt || req.ContinueFinalMessage {
		t.Fatalf("defaults: %+v", req)
	}
	if len(req.Messages) != 1 || req.Messages[0]["role"] != "user" || len(req.Tools) != 1 || req.Kwargs["enable_thinking"] != false {
		t.Fatalf("decoded %+v", req)
	}
	if x := req.Messages[0]["x"].(*Object); !slices.Equal(x.Keys, []string{"b", "a"}) {
		t.Fatalf("nested key order %v", x.Keys)
	}
	if err := json.Unmarshal([]byte(`{"messages":[],"add_generation_prompt":false,"continue_final_message":true}`), &req); err != nil || req.AddGenerationPrompt || !req.ContinueFinalMessage {
		t.Fatalf("flags: %+v, %v", req, err)
	}
	for _, bad := range []string{`[]`, `{"messages":{}}`, `{"messages":[1]}`, `{"tools":"x"}`, `{"add_generation_prompt":"yes"}`, `{"chat_template_kwargs":[]}`} {
		if err := json.Unmarshal([]byte(bad), &req); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestContentParts(t *testing.T) {
	tests := []struct {
		content any
		want    []string
		err     error
	}{
		{nil, nil, nil},
		{"a", []string{"a"}, nil},
		{[]any{map[string]any{"type": "text", "text": "a"}, &Object{Keys: []string{"type", "text"}, Values: map[string]any{"type": "input_text", "text": "b"}}, map[string]any{"type": "refusal", "refusal": "c"}}, []string{"a", "b", "c"}, nil},
		{[]any{map[string]any{"type": "image_url"}}, nil, ErrUnsupportedContent},
		{[]any{map[string]any{"text": "no type"}}, nil, errors.New("any")},
		{[]any{map[string]any{"type": "text", "text": 3}}, nil, errors.New("any")},
		{3, nil, errors.New("any")},
	}
	for _, tt := range tests {
		got, err := ContentParts(tt.content)
		switch {
		case tt.err == nil && (err != nil || !reflect.DeepEqual(got, tt.want)):
			t.Errorf("ContentParts(%v) = %q, %v; want %q", tt.content, got, err, tt.want)
		case tt.err == ErrUnsupportedContent && !errors.Is(err, ErrUnsupportedContent):
			t.Errorf("ContentParts(%v) err = %v, want ErrUnsupportedContent", tt.content, err)
		case tt.err != nil && err == nil:
			t.Errorf("ContentParts(%v) accepted", tt.content)
		}
	}
	role, text, err := MessageText(map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "a"}, map[string]any{"type": "text", "text": "b"}}})
	if err != nil || role != "user" || text != "a\nb" {
		t.Fatalf("MessageText = %q %q %v", role, text, err)
	}
}

// FuzzChatRequest: any body is rejected with an error or decoded, never a
// panic; what decodes keeps its messages as objects.
func FuzzChatRequest(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"b":1,"a":[1.5,null]}}}],"chat_template_kwargs":{"x":true}}`))
	f.Add([]byte(`{"messages":[],"add_generation_prompt":false}`))
	f.Add([]byte(`[[[[{"a":"\ud800"}]]]]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req ChatRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return
		}
		for _, m := range req.Messages {
			if m == nil {
				t.Fatal("nil message")
			}
			_, _, _ = MessageText(m)
		}
	})
}
