package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
)

// toolDef is one of a chat request's tools, as the simulator reads it.
type toolDef struct {
	Type     string `json:"type"`
	Function struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// toolCall is a tool call the simulator answers with: vLLM calls a tool
// when tool_choice forces one ("required", or a named function), the
// arguments filled by guided decoding. The simulator fills the first
// property of the function's parameters (by name order; "input" when it
// has none) with the text it generates, so arguments are valid JSON whose
// length follows max_tokens.
type toolCall struct {
	id, name, key string
}

// forcedTool reads tool_choice: the tool to call, nil when the model may
// answer in text ("auto" — the simulator has no tool parser — "none", or
// no tools), or an error naming the parameter.
func forcedTool(tools []toolDef, choice json.RawMessage) (*toolCall, error) {
	choice = bytes.TrimSpace(choice)
	if len(choice) == 0 || bytes.Equal(choice, []byte("null")) {
		return nil, nil
	}
	var name string
	var mode string
	if json.Unmarshal(choice, &mode) == nil {
		switch mode {
		case "auto", "none":
			return nil, nil
		case "required":
			if len(tools) == 0 {
				return nil, badParam("tool_choice", "tool_choice \"required\" needs tools")
			}
			name = tools[0].Function.Name
		default:
			return nil, badParam("tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or a named function, got %q", mode)
		}
	} else {
		var named struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if err := json.Unmarshal(choice, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
			return nil, badParam("tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}")
		}
		name = named.Function.Name
	}
	i := slices.IndexFunc(tools, func(t toolDef) bool { return t.Function.Name == name })
	if i < 0 {
		return nil, badParam("tool_choice", "tool_choice names %q, which is not among the tools", name)
	}
	var params struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(tools[i].Function.Parameters, &params)
	key := "input"
	if len(params.Properties) > 0 {
		keys := make([]string, 0, len(params.Properties))
		for k := range params.Properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		key = keys[0]
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	return &toolCall{id: "chatcmpl-tool-" + hex.EncodeToString(id[:]), name: name, key: key}, nil
}

// argumentsOpen and argumentsClose frame the generated text as the JSON
// arguments; escaped is a piece of text as it appears inside them.
func (tc *toolCall) argumentsOpen() string {
	k, _ := json.Marshal(tc.key)
	return "{" + string(k) + ": \""
}

func (tc *toolCall) argumentsClose() string { return "\"}" }

func escaped(text string) string {
	b, _ := json.Marshal(text)
	return strings.TrimSuffix(strings.TrimPrefix(string(b), "\""), "\"")
}

func (tc *toolCall) arguments(text string) string {
	return tc.argumentsOpen() + escaped(text) + tc.argumentsClose()
}

// toolCallJSON is a tool call in a message or a delta.
type toolCallJSON struct {
	Index    *int          `json:"index,omitempty"`
	ID       string        `json:"id,omitempty"`
	Type     string        `json:"type,omitempty"`
	Function *toolFunction `json:"function,omitempty"`
}

type toolFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// message is the whole call, for a non-streamed answer.
func (tc *toolCall) message(text string) []toolCallJSON {
	return []toolCallJSON{{ID: tc.id, Type: "function", Function: &toolFunction{Name: tc.name, Arguments: tc.arguments(text)}}}
}

// delta is one streamed piece of the call's arguments; the first carries
// its id and name.
func (tc *toolCall) delta(first bool, arguments string) []toolCallJSON {
	zero := 0
	d := toolCallJSON{Index: &zero, Function: &toolFunction{Arguments: arguments}}
	if first {
		d.ID, d.Type, d.Function.Name = tc.id, "function", tc.name
	}
	return []toolCallJSON{d}
}

// finishReason is vLLM's for a forced call that ended on its own.
func toolFinish(reason string) string {
	if reason == "stop" {
		return "tool_calls"
	}
	return reason
}
