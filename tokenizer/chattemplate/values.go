package chattemplate

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/ardanlabs/jinja"

	"github.com/strata-llm/strata/tokenizer"
)

// toValue converts decoded JSON (or plain Go values) to a template value, as
// Python's json.loads would have it: *tokenizer.Object keeps its key order,
// a map[string]any is written with sorted keys (Go maps have no order), and
// json.Number stays an int when written as one.
func toValue(v any) (jinja.Value, error) {
	return toValueDepth(v, 0)
}

func toValueDepth(v any, depth int) (jinja.Value, error) {
	if depth > 512 {
		return jinja.Undefined(), errors.New("value nested too deeply")
	}
	switch x := v.(type) {
	case nil:
		return jinja.None(), nil
	case jinja.Value:
		return x, nil
	case bool:
		return jinja.NewBool(x), nil
	case string:
		return jinja.NewString(x), nil
	case int:
		return jinja.NewInt(int64(x)), nil
	case int64:
		return jinja.NewInt(x), nil
	case float64:
		// encoding/json's numbers: an integral one was almost surely
		// written as an integer.
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return jinja.NewInt(int64(x)), nil
		}
		return jinja.NewFloat(x), nil
	case json.Number:
		return numberValue(x)
	case []any:
		return listValue(x, depth)
	case []map[string]any:
		return listValue(x, depth)
	case []string:
		return listValue(x, depth)
	case *tokenizer.Object:
		return dictValue(x.Keys, x.Values, depth)
	case map[string]any:
		return dictValue(slices.Sorted(maps.Keys(x)), x, depth)
	}
	return jinja.Undefined(), fmt.Errorf("unsupported value of type %T", v)
}

func listValue[T any](xs []T, depth int) (jinja.Value, error) {
	items := make([]jinja.Value, len(xs))
	for i, item := range xs {
		iv, err := toValueDepth(item, depth+1)
		if err != nil {
			return jinja.Undefined(), err
		}
		items[i] = iv
	}
	return jinja.NewList(items), nil
}

func dictValue(keys []string, values map[string]any, depth int) (jinja.Value, error) {
	d := jinja.NewDict()
	for _, k := range keys {
		v, err := toValueDepth(values[k], depth+1)
		if err != nil {
			return jinja.Undefined(), fmt.Errorf("%s: %w", k, err)
		}
		d.AsDict().Set(k, v)
	}
	return d, nil
}

// numberValue reads a JSON number as Python does: an int if written without
// a fraction or exponent (falling back to a float beyond int64), a float
// otherwise.
func numberValue(n json.Number) (jinja.Value, error) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return jinja.NewInt(i), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return jinja.Undefined(), fmt.Errorf("number %q: %w", s, err)
	}
	return jinja.NewFloat(f), nil
}

// dict builds a template dict from keys and values in order.
func dict(kv ...any) jinja.Value {
	d := jinja.NewDict()
	for i := 0; i+1 < len(kv); i += 2 {
		d.AsDict().Set(kv[i].(string), kv[i+1].(jinja.Value))
	}
	return d
}

// conversation turns request messages into what vLLM's parse_chat_messages
// gives the template: {"role", "content"} built anew (content a string, or a
// list of text parts for FormatOpenAI), then tool_calls and reasoning for
// assistant messages, tool_call_id for tool messages, name when a string;
// tool-call arguments parsed from their JSON string into objects.
func conversation(msgs []map[string]any, format ContentFormat) (jinja.Value, error) {
	out := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		v, err := message(m, format)
		if err != nil {
			return jinja.Undefined(), fmt.Errorf("messages[%d]: %w", i, err)
		}
		out[i] = v
	}
	return jinja.NewList(out), nil
}

func message(m map[string]any, format ContentFormat) (jinja.Value, error) {
	role, ok := m["role"].(string)
	if !ok {
		return jinja.Undefined(), errors.New("role must be a string")
	}
	parts, err := tokenizer.ContentParts(m["content"])
	if err != nil {
		return jinja.Undefined(), err
	}
	var content jinja.Value
	if format == FormatOpenAI {
		items := make([]jinja.Value, len(parts))
		for i, p := range parts {
			items[i] = dict("type", jinja.NewString("text"), "text", jinja.NewString(p))
		}
		content = jinja.NewList(items)
	} else {
		content = jinja.NewString(strings.Join(parts, "\n"))
	}
	msg := dict("role", jinja.NewString(role), "content", content)
	d := msg.AsDict()
	switch role {
	case "assistant":
		if calls, ok := m["tool_calls"]; ok && calls != nil {
			v, err := toolCalls(calls)
			if err != nil {
				return jinja.Undefined(), err
			}
			d.Set("tool_calls", v)
		}
		// vLLM: message.get("reasoning") or message.get("reasoning_content")
		reasoning := m["reasoning"]
		if s, ok := reasoning.(string); reasoning == nil || (ok && s == "") {
			reasoning = m["reasoning_content"]
		}
		if reasoning != nil {
			s, ok := reasoning.(string)
			if !ok {
				return jinja.Undefined(), errors.New("reasoning_content must be a string")
			}
			d.Set("reasoning", jinja.NewString(s))
			d.Set("reasoning_content", jinja.NewString(s))
		}
	case "tool":
		if id, ok := m["tool_call_id"]; ok {
			v, err := toValue(id)
			if err != nil {
				return jinja.Undefined(), fmt.Errorf("tool_call_id: %w", err)
			}
			d.Set("tool_call_id", v)
		}
	}
	if name, ok := m["name"].(string); ok {
		d.Set("name", jinja.NewString(name))
	}
	return msg, nil
}

// toolCalls copies an assistant message's tool calls with each function's
// arguments parsed, as vLLM's _postprocess_messages: templates expect a
// mapping ({} for null or empty arguments).
func toolCalls(raw any) (jinja.Value, error) {
	calls, ok := raw.([]any)
	if !ok {
		return jinja.Undefined(), errors.New("tool_calls must be an array")
	}
	out := make([]jinja.Value, len(calls))
	for i, c := range calls {
		v, err := toValue(c)
		if err != nil {
			return jinja.Undefined(), fmt.Errorf("tool_calls[%d]: %w", i, err)
		}
		if !v.IsDict() {
			return jinja.Undefined(), fmt.Errorf("tool_calls[%d] must be an object", i)
		}
		fn, ok := v.AsDict().Get("function")
		if !ok || !fn.IsDict() {
			return jinja.Undefined(), fmt.Errorf("tool_calls[%d]: function must be an object", i)
		}
		args, _ := fn.AsDict().Get("arguments")
		switch {
		case args.IsUndefined() || args.IsNone() || (args.IsString() && args.AsString() == ""):
			fn.AsDict().Set("arguments", jinja.NewDict())
		case args.IsString():
			parsed, err := tokenizer.DecodeJSON([]byte(args.AsString()))
			if err != nil {
				return jinja.Undefined(), fmt.Errorf("tool_calls[%d]: arguments are not JSON: %w", i, err)
			}
			pv, err := toValue(parsed)
			if err != nil {
				return jinja.Undefined(), fmt.Errorf("tool_calls[%d]: arguments: %w", i, err)
			}
			fn.AsDict().Set("arguments", pv)
		}
		out[i] = v
	}
	return jinja.NewList(out), nil
}

// tools turns request tools into what vLLM passes the template,
// [tool.model_dump() for tool in request.tools]: type, then function with
// name, description and parameters (null when absent) and any other keys
// after them.
func tools(ts []map[string]any) (jinja.Value, error) {
	out := make([]jinja.Value, len(ts))
	for i, t := range ts {
		if typ, ok := t["type"]; ok && typ != "function" {
			return jinja.Undefined(), fmt.Errorf("tools[%d]: type %v: only function tools are supported", i, typ)
		}
		fnRaw, ok := t["function"]
		fn, isMap := tokenizer.AsMap(fnRaw)
		if !ok || !isMap {
			return jinja.Undefined(), fmt.Errorf("tools[%d]: function must be an object", i)
		}
		if _, ok := fn["name"].(string); !ok {
			return jinja.Undefined(), fmt.Errorf("tools[%d]: function name must be a string", i)
		}
		fnKeys := orderedKeys(fnRaw, "name", "description", "parameters")
		fnVal, err := dictWith(fnKeys, fn)
		if err != nil {
			return jinja.Undefined(), fmt.Errorf("tools[%d].function: %w", i, err)
		}
		tool := dict("type", jinja.NewString("function"), "function", fnVal)
		for _, k := range orderedKeys(t, "type", "function")[2:] {
			v, err := toValue(t[k])
			if err != nil {
				return jinja.Undefined(), fmt.Errorf("tools[%d].%s: %w", i, k, err)
			}
			tool.AsDict().Set(k, v)
		}
		out[i] = tool
	}
	return jinja.NewList(out), nil
}

// orderedKeys lists the declared fields first, then the object's other keys
// in its order (sorted for a plain map).
func orderedKeys(obj any, declared ...string) []string {
	keys := slices.Clone(declared)
	var rest []string
	switch o := obj.(type) {
	case *tokenizer.Object:
		rest = o.Keys
	case map[string]any:
		rest = slices.Sorted(maps.Keys(o))
	}
	for _, k := range rest {
		if !slices.Contains(declared, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

func dictWith(keys []string, m map[string]any) (jinja.Value, error) {
	d := jinja.NewDict()
	for _, k := range keys {
		v, err := toValue(m[k]) // absent declared fields are None
		if err != nil {
			return jinja.Undefined(), fmt.Errorf("%s: %w", k, err)
		}
		d.AsDict().Set(k, v)
	}
	return d, nil
}
