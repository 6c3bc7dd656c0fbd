package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// maxJSONDepth bounds the nesting DecodeJSON accepts, so that hostile input
// cannot exhaust the stack.
const maxJSONDepth = 512

// Object is a JSON object that keeps its keys in document order. Chat
// templates serialise tool schemas and tool-call arguments with tojson, and
// vLLM (Python dicts) writes their keys in the order the client sent them: a
// plain map[string]any would lose that order, and with it the exact prompt.
// A key given twice keeps its first position and its last value, as Python's
// json.loads does.
type Object struct {
	Keys   []string
	Values map[string]any
}

// NewObject returns an empty object.
func NewObject() *Object { return &Object{Values: map[string]any{}} }

// Get returns the value of key.
func (o *Object) Get(key string) (any, bool) {
	v, ok := o.Values[key]
	return v, ok
}

// Set sets key, appending it if new.
func (o *Object) Set(key string, v any) {
	if _, ok := o.Values[key]; !ok {
		o.Keys = append(o.Keys, key)
	}
	o.Values[key] = v
}

// Map returns the object's members as a plain map; nested values are shared.
func (o *Object) Map() map[string]any {
	m := make(map[string]any, len(o.Values))
	for k, v := range o.Values {
		m[k] = v
	}
	return m
}

// MarshalJSON writes the object with its keys in order.
func (o *Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.Keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(o.Values[k])
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// DecodeJSON decodes one JSON value keeping what Python's json.loads keeps
// and encoding/json drops: objects become *Object (key order), numbers
// json.Number (an integer stays an integer, 1.0 stays a float). Strings,
// booleans, null and arrays are string, bool, nil and []any. Invalid UTF-8 in
// strings becomes U+FFFD, as with encoding/json.
//
// Valid UTF-8 without escaped surrogates, nested within the limit, is read
// with gjson, several times faster than encoding/json's scanner on the long
// strings of chat prompts (a 32 KB system prompt took 0.5 ms); anything
// else, and every error, goes through encoding/json's decoder, whose answer
// the fast path matches (FuzzDecodeJSON).
func DecodeJSON(data []byte) (any, error) {
	return DecodeJSONString(string(data))
}

// DecodeJSONString is DecodeJSON of a string. Its strings share the
// input's memory where they need no unescaping, so a caller holding the
// body as a string decodes it without a copy.
func DecodeJSONString(data string) (any, error) {
	if utf8.ValidString(data) && shallow(data) && gjson.Valid(data) {
		return fromGJSON(gjson.Parse(data)), nil
	}
	return decodeJSONSlow([]byte(data))
}

// shallow says whether data nests no deeper than maxJSONDepth and has no
// escaped surrogate (\uD800–\uDFFF: encoding/json's handling of a lone one
// is the reference), in one pass that jumps through strings from quote to
// quote (strings are most of a chat body) and looks at their backslashes
// only.
func shallow(data string) bool {
	depth := 0
	esc := -1 // the first backslash at or after j below; len(data) if none
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			for j := i + 1; ; {
				q := strings.IndexByte(data[j:], '"')
				if q < 0 {
					q = len(data) - j // unterminated: its escapes still count
				}
				q += j
				if esc < j {
					if esc = strings.IndexByte(data[j:], '\\'); esc < 0 {
						esc = len(data)
					} else {
						esc += j
					}
				}
				if esc > q {
					i = q
					break
				}
				if esc+2 < len(data) && data[esc+1] == 'u' && (data[esc+2] == 'd' || data[esc+2] == 'D') {
					return false
				}
				if j = esc + 2; j >= len(data) {
					return true
				}
			}
		case '{', '[':
			if depth++; depth > maxJSONDepth {
				return false
			}
		case '}', ']':
			depth--
		}
	}
	return true
}

// fromGJSON converts a valid value.
func fromGJSON(r gjson.Result) any {
	switch r.Type {
	case gjson.Null:
		return nil
	case gjson.False:
		return false
	case gjson.True:
		return true
	case gjson.Number:
		return json.Number(r.Raw)
	case gjson.String:
		return r.Str
	}
	if r.IsArray() {
		arr := []any{}
		r.ForEach(func(_, e gjson.Result) bool {
			arr = append(arr, fromGJSON(e))
			return true
		})
		return arr
	}
	obj := NewObject()
	r.ForEach(func(k, e gjson.Result) bool {
		obj.Set(k.Str, fromGJSON(e))
		return true
	})
	return obj
}

func decodeJSONSlow(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("json: trailing data after the value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, fmt.Errorf("json: nested deeper than %d levels", maxJSONDepth)
		}
		switch t {
		case '{':
			obj := NewObject()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("json: object key %v is not a string", kt)
				}
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj.Set(key, v)
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return arr, nil
		}
		return nil, fmt.Errorf("json: unexpected %v", t)
	default:
		return t, nil
	}
}

// jsonType names a decoded value's JSON type for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, int, int64:
		return "a number"
	case []any:
		return "an array"
	case *Object, map[string]any:
		return "an object"
	}
	return strconv.Quote(fmt.Sprintf("%T", v))
}
