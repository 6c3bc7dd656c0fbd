package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/strata-llm/strata/tokenizer"
)

// endpoint is the OpenAI API a request came to.
type endpoint int

const (
	chatEndpoint endpoint = iota
	completionsEndpoint
	embeddingsEndpoint
)

func (e endpoint) path() string {
	switch e {
	case chatEndpoint:
		return "/v1/chat/completions"
	case completionsEndpoint:
		return "/v1/completions"
	}
	return "/v1/embeddings"
}

func (e endpoint) String() string {
	switch e {
	case chatEndpoint:
		return "chat"
	case completionsEndpoint:
		return "completions"
	}
	return "embeddings"
}

// hintsField is the request body's extension object for Strata: routing
// hints the gateway reads and removes before the engine sees the body
// (docs/gateway.md).
const hintsField = "strata"

// hints are the extension object's fields.
type hints struct {
	// Priority orders requests waiting for capacity: higher first.
	Priority int `json:"priority"`
	// ExpectedOutputTokens sizes the request's decode load when it has no
	// max_tokens.
	ExpectedOutputTokens int `json:"expected_output_tokens"`
	// Worker pins the request to a worker id (debugging): no routing.
	Worker string `json:"worker"`
	// SessionID is the affinity key of the session policy.
	SessionID string `json:"session_id"`
	// Routing names the policy for this request (experiments).
	Routing string `json:"routing"`
}

// request is a decoded inference request.
type request struct {
	endpoint endpoint
	// body is the client's body as it was, minus the extension object: the
	// engine gets it with the fields it does not know untouched.
	body map[string]json.RawMessage
	// text is the whole body as read; messages is the value of its
	// messages field, a part of text, empty if there is none.
	text, messages string
	model          string
	// stream and includeUsage are as the client asked.
	stream, includeUsage bool
	// maxTokens is max_tokens (or chat's max_completion_tokens), 0 if unset.
	maxTokens int
	user      string
	hints     hints

	chat tokenizer.ChatRequest // chat: what the template renders
	// Completions: the prompt as text, or as token ids; manyPrompts when the
	// body carries a batch of prompts (routed on the first, never migrated).
	promptText  string
	promptIDs   []uint32
	isIDs       bool
	manyPrompts bool
}

// decodeRequest reads an inference request body. Every problem is a 400 in
// OpenAI's envelope naming the offending parameter; nothing panics.
func decodeRequest(ep endpoint, text string) (*request, error) {
	r := &request{endpoint: ep, text: text}
	var err error
	if r.body, err = decodeObject(text, func(key, value string) {
		if key == "messages" {
			r.messages = value
		}
	}); err != nil {
		return nil, badRequest("", "the request body must be a JSON object: %s", err.Error())
	}
	if err := field(r.body, "model", &r.model); err != nil {
		return nil, err
	}
	if r.model == "" {
		return nil, badRequest("model", "you must provide a model parameter")
	}
	if h, ok := r.body[hintsField]; ok {
		if err := strictDecode(h, &r.hints); err != nil {
			return nil, badRequest(hintsField, "the %q extension object: %s", hintsField, jsonProblem(err))
		}
		delete(r.body, hintsField)
	}
	if err := field(r.body, "user", &r.user); err != nil {
		return nil, err
	}
	if ep == embeddingsEndpoint {
		if _, ok := r.body["input"]; !ok {
			return nil, badRequest("input", "you must provide an input parameter")
		}
		return r, nil
	}
	if err := field(r.body, "stream", &r.stream); err != nil {
		return nil, err
	}
	var opts struct {
		IncludeUsage bool `json:"include_usage"`
	}
	if err := field(r.body, "stream_options", &opts); err != nil {
		return nil, err
	}
	r.includeUsage = opts.IncludeUsage
	for _, name := range []string{"max_tokens", "max_completion_tokens"} {
		var n *float64
		if err := field(r.body, name, &n); err != nil {
			return nil, err
		}
		if n == nil {
			continue
		}
		if *n < 1 || *n != math.Trunc(*n) || *n > math.MaxInt32 {
			return nil, badRequest(name, "%s must be a positive integer, got %v", name, *n)
		}
		r.maxTokens = int(*n)
	}
	switch ep {
	case chatEndpoint:
		return r, r.decodeChat()
	default:
		return r, r.decodePrompt()
	}
}

func (r *request) decodeChat() error {
	// The body is valid JSON (decodeObject): gjson reads it in place, where
	// encoding/json's scanner would take half a millisecond over a long
	// system prompt on each pass.
	msgs := gjson.Parse(r.messages)
	if r.messages == "" || msgs.Type == gjson.Null {
		return badRequest("messages", "messages must be a non-empty array")
	}
	if !msgs.IsArray() {
		return badRequest("messages", "messages must be a non-empty array, got %s", jsonTypeName(msgs))
	}
	// One decode of the body is what the template renders, and the roles
	// are checked on it; only a body it refuses is read again, message by
	// message, to name the one at fault.
	if err := r.chat.DecodeString(r.text); err != nil {
		if bad := checkMessages(msgs); bad != nil {
			return bad
		}
		return badRequest("messages", "%s", err.Error())
	}
	if len(r.chat.Messages) == 0 {
		return badRequest("messages", "messages must be a non-empty array")
	}
	for i, m := range r.chat.Messages {
		if bad := checkRole(i, m["role"]); bad != nil {
			return bad
		}
	}
	return nil
}

// checkMessages finds the first message that is not an object with a role.
func checkMessages(msgs gjson.Result) error {
	var bad error
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		if !m.IsObject() {
			bad = badRequest(fmt.Sprintf("messages[%d]", i), "each message must be an object with a role, got %s", jsonTypeName(m))
		} else if role := m.Get("role"); role.Type == gjson.String {
			bad = checkRole(i, role.Str)
		} else {
			bad = checkRole(i, nil)
		}
		i++
		return bad == nil
	})
	return bad
}

func checkRole(i int, role any) error {
	switch s, ok := role.(string); {
	case !ok:
		return badRequest(fmt.Sprintf("messages[%d].role", i), "each message needs a role (a string)")
	case s == "":
		return badRequest(fmt.Sprintf("messages[%d].role", i), "each message needs a role")
	}
	return nil
}

// decodePrompt reads completions' prompt: a string, a list of token ids, or
// a batch of either.
func (r *request) decodePrompt() error {
	p, ok := r.body["prompt"]
	if !ok || bytes.Equal(bytes.TrimSpace(p), []byte("null")) {
		return badRequest("prompt", "you must provide a prompt parameter")
	}
	if p = bytes.TrimSpace(p); p[0] == '"' {
		if err := json.Unmarshal(p, &r.promptText); err != nil {
			return badRequest("prompt", "prompt %s", jsonProblem(err))
		}
		return nil
	}
	if ids, err := tokenIDs(p); err == nil {
		r.promptIDs, r.isIDs = ids, true
		if len(ids) == 0 {
			return badRequest("prompt", "prompt must not be an empty list of token ids")
		}
		return nil
	}
	var batch []json.RawMessage
	if err := json.Unmarshal(p, &batch); err != nil || len(batch) == 0 {
		return badRequest("prompt", "prompt must be a string, an array of token ids, or a non-empty array of either")
	}
	r.manyPrompts = len(batch) > 1
	if json.Unmarshal(batch[0], &r.promptText) == nil {
		return nil
	}
	ids, err := tokenIDs(batch[0])
	if err != nil || len(ids) == 0 {
		return badRequest("prompt", "prompt must be a string, an array of token ids, or a non-empty array of either")
	}
	r.promptIDs, r.isIDs = ids, true
	return nil
}

// tokenIDs reads a JSON array of non-negative 32-bit integers. It is
// written out rather than left to encoding/json, which takes ~200 µs for a
// 1k-token prompt (an allocation per number): prompts of token ids are
// what benchmarks send, at every request.
func tokenIDs(raw json.RawMessage) ([]uint32, error) {
	i := skipSpace(raw, 0)
	if i == len(raw) || raw[i] != '[' {
		return nil, errors.New("want an array of token ids")
	}
	// One id per comma, and at most one per two bytes ("1,"), so that a
	// body of commas does not size a huge array.
	ids := make([]uint32, 0, min(bytes.Count(raw[i:], []byte{','}), len(raw)/2)+1)
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == ']' {
		return ids, nil
	}
	for {
		start := i
		var v uint64
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			v = v*10 + uint64(raw[i]-'0')
			if v > math.MaxUint32 {
				return nil, fmt.Errorf("token id %s… is not a 32-bit integer", raw[start:i+1])
			}
			i++
		}
		if i == start || (raw[start] == '0' && i-start > 1) {
			return nil, fmt.Errorf("token ids must be non-negative integers (at byte %d)", start)
		}
		ids = append(ids, uint32(v))
		i = skipSpace(raw, i)
		if i == len(raw) {
			return nil, errors.New("unterminated array of token ids")
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case ']':
			if skipSpace(raw, i+1) != len(raw) {
				return nil, errors.New("data after the array of token ids")
			}
			return ids, nil
		default:
			return nil, fmt.Errorf("token ids must be non-negative integers (at byte %d)", i)
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// decodeObject splits a JSON object into its fields, each value the
// client's own bytes (validated, not decoded): the gateway reads a few
// fields and passes the rest to the engine untouched. The last of
// repeated keys wins, as with encoding/json. each sees every field's value
// as a part of text, in order.
func decodeObject(text string, each func(key, value string)) (map[string]json.RawMessage, error) {
	if !gjson.Valid(text) {
		var v any
		err := json.Unmarshal([]byte(text), &v) // for the position and words of the error
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, errors.New(jsonProblem(err))
	}
	root := gjson.Parse(text)
	if !root.IsObject() {
		return nil, errors.New("got " + jsonTypeName(root))
	}
	out := map[string]json.RawMessage{}
	root.ForEach(func(k, v gjson.Result) bool {
		out[k.String()] = json.RawMessage(v.Raw)
		each(k.String(), v.Raw)
		return true
	})
	return out, nil
}

func jsonTypeName(r gjson.Result) string {
	switch {
	case r.IsObject():
		return "an object"
	case r.IsArray():
		return "an array"
	case r.Type == gjson.String:
		return "a string"
	case r.Type == gjson.Number:
		return "a number"
	case r.Type == gjson.True || r.Type == gjson.False:
		return "a boolean"
	}
	return "null"
}

// encodeObject writes fields as a JSON object, the values as they are
// (client bytes decodeObject validated, or JSON the gateway made); keys
// sorted, so that an engine sees the same body for the same request.
func encodeObject(body map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(body))
	n := 2
	for k, v := range body {
		keys = append(keys, k)
		n += len(k) + len(v) + 4
	}
	slices.Sort(keys)
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		key, _ := json.Marshal(k) // a string always encodes
		out = append(out, key...)
		out = append(out, ':')
		out = append(out, body[k]...)
	}
	return append(out, '}')
}

// field decodes body[name] into dst when present and not null.
func field(body map[string]json.RawMessage, name string, dst any) error {
	raw, ok := body[name]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return badRequest(name, "%s %s", name, jsonProblem(err))
	}
	return nil
}

func strictDecode(raw json.RawMessage, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(dst)
}

// jsonProblem says what is wrong with a JSON value in words a client can
// act on.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
		return "got null"
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s must be %s, got %s", typ.Field, jsonKind(typ.Type), typ.Value)
		}
		return fmt.Sprintf("must be %s, got %s", jsonKind(typ.Type), typ.Value)
	}
	return err.Error()
}

// jsonKind names a Go type as the JSON it decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}
