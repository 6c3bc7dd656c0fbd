package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Chunks are parsed with gjson, after a full validation of the JSON: it
// reads the few fields a benchmark needs in place, about three times
// faster than encoding/json's reflection into structs, and parsing is most
// of the load generator's work per token.

// parsed is what one chunk, or one whole answer, contributed: generated
// text, the finish reason, usage and an in-band error.
type parsed struct {
	text         string
	hasText      bool
	finishReason string
	usage        *usage
	err          *errorBody
}

type usage struct {
	PromptTokens, CompletionTokens, CachedTokens int64
	HasCached                                    bool
}

// errorBody is OpenAI's error object.
type errorBody struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
}

// maxTokens bounds a token count in an answer: beyond any context length.
const maxTokens = 1 << 31

// parseChunk decodes one chunk or whole answer and checks the types of the
// fields it reads; other fields are ignored.
func parseChunk(data []byte) (parsed, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return parsed{}, fmt.Errorf("chunk is not a JSON object: %s", excerpt(data))
	}
	if !gjson.ValidBytes(data) {
		// encoding/json says where it went wrong.
		var v any
		err := json.Unmarshal(data, &v)
		if err == nil {
			err = fmt.Errorf("invalid JSON")
		}
		return parsed{}, fmt.Errorf("chunk %s: %w", excerpt(data), err)
	}
	var choices, usageField, errField gjson.Result
	gjson.ParseBytes(data).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "choices":
			choices = v
		case "usage":
			usageField = v
		case "error":
			errField = v
		}
		return true
	})
	var p parsed
	if present(errField) {
		p.err = parseError(errField)
		return p, nil
	}
	if present(usageField) {
		u, err := parseUsage(usageField)
		if err != nil {
			return parsed{}, err
		}
		p.usage = u
	}
	if !present(choices) {
		return p, nil
	}
	if !choices.IsArray() {
		return parsed{}, fmt.Errorf("choices: want an array, got %s", kind(choices))
	}
	n := 0
	var first gjson.Result
	choices.ForEach(func(_, v gjson.Result) bool {
		if n == 0 {
			first = v
		}
		n++
		return n < 2
	})
	switch {
	case n == 0:
		return p, nil
	case n > 1:
		return parsed{}, fmt.Errorf("chunk with several choices: a benchmark request asks for one")
	case !first.IsObject():
		return parsed{}, fmt.Errorf("choices[0]: want an object, got %s", kind(first))
	}
	var err error
	first.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "text":
			err = p.addText("choices[0].text", v)
		case "delta", "message":
			err = p.addMessage("choices[0]."+k.Str, v)
		case "finish_reason":
			p.finishReason, err = str("choices[0].finish_reason", v)
		}
		return err == nil
	})
	if err != nil {
		return parsed{}, err
	}
	return p, nil
}

// present reports whether a field is there and not null.
func present(v gjson.Result) bool { return v.Exists() && v.Type != gjson.Null }

func (p *parsed) addText(field string, v gjson.Result) error {
	s, err := str(field, v)
	if s != "" {
		p.text += s
		p.hasText = true
	}
	return err
}

// addMessage reads a chat delta or message: content and, from reasoning
// models, reasoning_content, which is generated text too and counts for
// TTFT and ITL.
func (p *parsed) addMessage(field string, m gjson.Result) error {
	if !present(m) {
		return nil
	}
	if !m.IsObject() {
		return fmt.Errorf("%s: want an object, got %s", field, kind(m))
	}
	var err error
	m.ForEach(func(k, v gjson.Result) bool {
		if k.Str == "content" || k.Str == "reasoning_content" {
			err = p.addText(field+"."+k.Str, v)
		}
		return err == nil
	})
	return err
}

func parseUsage(u gjson.Result) (*usage, error) {
	if !u.IsObject() {
		return nil, fmt.Errorf("usage: want an object, got %s", kind(u))
	}
	out := &usage{}
	var err error
	u.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "prompt_tokens":
			out.PromptTokens, err = count("usage.prompt_tokens", v)
		case "completion_tokens":
			out.CompletionTokens, err = count("usage.completion_tokens", v)
		case "prompt_tokens_details":
			if !present(v) {
				break
			}
			if !v.IsObject() {
				err = fmt.Errorf("usage.prompt_tokens_details: want an object, got %s", kind(v))
				break
			}
			out.HasCached = true
			out.CachedTokens, err = count("usage.prompt_tokens_details.cached_tokens", v.Get("cached_tokens"))
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	if out.HasCached && out.CachedTokens > out.PromptTokens {
		return nil, fmt.Errorf("usage with cached_tokens %d above prompt_tokens %d", out.CachedTokens, out.PromptTokens)
	}
	return out, nil
}

func parseError(e gjson.Result) *errorBody {
	if !e.IsObject() {
		// Some servers send the message alone.
		return &errorBody{Message: e.String()}
	}
	return &errorBody{Message: e.Get("message").String(), Type: e.Get("type").String(), Code: json.RawMessage(e.Get("code").Raw)}
}

// str reads a string field; null or absent is "".
func str(field string, v gjson.Result) (string, error) {
	switch v.Type {
	case gjson.String:
		return v.Str, nil
	case gjson.Null:
		return "", nil
	}
	return "", fmt.Errorf("%s: want a string, got %s", field, kind(v))
}

// count reads a token count: an integer in [0, 2^31]; null or absent is 0.
func count(field string, v gjson.Result) (int64, error) {
	switch v.Type {
	case gjson.Null:
		return 0, nil
	case gjson.Number:
		n, err := strconv.ParseInt(v.Raw, 10, 64)
		if err != nil || n < 0 || n > maxTokens {
			return 0, fmt.Errorf("%s: %s is not a token count", field, v.Raw)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: want a number, got %s", field, kind(v))
}

func kind(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.Number:
		return "a number"
	case v.Type == gjson.True, v.Type == gjson.False:
		return "a boolean"
	}
	return "null"
}

func (e *errorBody) String() string {
	msg := e.Message
	if msg == "" {
		msg = "(no message)"
	}
	if e.Type != "" {
		msg = e.Type + ": " + msg
	}
	return msg
}

// excerpt quotes the start of b for an error message.
func excerpt(b []byte) string {
	const n = 120
	if len(b) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return strconv.Quote(string(b[:cut])) + "…"
	}
	return strconv.Quote(string(b))
}
