package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ChatRequest is what a chat template renders: the fields of an OpenAI chat
// completion request that vLLM passes to the template.
//
// Decode a request body into it with json.Unmarshal (UnmarshalJSON) to keep
// what vLLM keeps: key order of nested objects (tool schemas, tool-call
// arguments), integers versus floats. Built by hand from map[string]any
// values instead, nested objects render with sorted keys, which differs from
// vLLM wherever a template serialises them with tojson.
type ChatRequest struct {
	// Messages are OpenAI chat messages as decoded JSON: role, content (a
	// string, an array of content parts, or null), name, tool_calls,
	// tool_call_id, reasoning_content…
	Messages []map[string]any
	// Tools are OpenAI tool definitions ({"type":"function","function":{…}}),
	// nil when the request has none.
	Tools []map[string]any
	// AddGenerationPrompt ends the prompt with the assistant's turn opener.
	// vLLM's default is true; UnmarshalJSON applies it.
	AddGenerationPrompt bool
	// ContinueFinalMessage ends the prompt inside the final message, so the
	// model continues it (vLLM's continue_final_message).
	ContinueFinalMessage bool
	// Kwargs are the request's chat_template_kwargs (enable_thinking…),
	// passed to the template as variables.
	Kwargs map[string]any
}

// UnmarshalJSON reads an OpenAI chat completion (or vLLM /tokenize) request
// body: messages, tools, add_generation_prompt (default true),
// continue_final_message and chat_template_kwargs. Other fields are ignored.
// Nested objects are *Object and numbers json.Number (see DecodeJSON).
func (r *ChatRequest) UnmarshalJSON(data []byte) error {
	v, err := DecodeJSON(data)
	if err != nil {
		return err
	}
	return r.fromJSON(v)
}

// DecodeString is UnmarshalJSON of a body held as a string; the messages
// share its memory (DecodeJSONString).
func (r *ChatRequest) DecodeString(data string) error {
	v, err := DecodeJSONString(data)
	if err != nil {
		return err
	}
	return r.fromJSON(v)
}

func (r *ChatRequest) fromJSON(v any) error {
	var err error
	body, ok := v.(*Object)
	if !ok {
		return fmt.Errorf("chat request: want a JSON object, got %s", jsonType(v))
	}
	*r = ChatRequest{AddGenerationPrompt: true}
	if raw, ok := body.Get("messages"); ok && raw != nil {
		if r.Messages, err = objectList("messages", raw); err != nil {
			return err
		}
	}
	if raw, ok := body.Get("tools"); ok && raw != nil {
		if r.Tools, err = objectList("tools", raw); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"add_generation_prompt", &r.AddGenerationPrompt}, {"continue_final_message", &r.ContinueFinalMessage}} {
		raw, ok := body.Get(f.name)
		if !ok || raw == nil {
			continue
		}
		b, ok := raw.(bool)
		if !ok {
			return fmt.Errorf("%s: want a boolean, got %s", f.name, jsonType(raw))
		}
		*f.dst = b
	}
	if raw, ok := body.Get("chat_template_kwargs"); ok && raw != nil {
		obj, ok := raw.(*Object)
		if !ok {
			return fmt.Errorf("chat_template_kwargs: want an object, got %s", jsonType(raw))
		}
		r.Kwargs = obj.Map()
	}
	return nil
}

func objectList(field string, raw any) ([]map[string]any, error) {
	arr, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: want an array, got %s", field, jsonType(raw))
	}
	out := make([]map[string]any, len(arr))
	for i, item := range arr {
		obj, ok := item.(*Object)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: want an object, got %s", field, i, jsonType(item))
		}
		out[i] = obj.Map()
	}
	return out, nil
}

// Message is a chat message with plain-text content.
type Message struct {
	Role    string
	Content string
}

// Chat builds a request from plain-text messages.
func Chat(msgs []Message, addGenerationPrompt bool) ChatRequest {
	req := ChatRequest{Messages: make([]map[string]any, len(msgs)), AddGenerationPrompt: addGenerationPrompt}
	for i, m := range msgs {
		req.Messages[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	return req
}

// MessageText returns a message's role and its content as one string, as vLLM
// gives it to a template that expects a string: text parts joined with "\n",
// null content as "". Parts other than text fail with ErrUnsupportedContent.
func MessageText(msg map[string]any) (role, text string, err error) {
	role, ok := msg["role"].(string)
	if !ok || role == "" {
		return "", "", errors.New("chat message without a role")
	}
	parts, err := ContentParts(msg["content"])
	if err != nil {
		return "", "", err
	}
	return role, strings.Join(parts, "\n"), nil
}

// ContentParts returns the texts of a message's content: one for a string,
// one per text part for an array, none for null. It accepts the part types
// vLLM reads as text (text, input_text, refusal) and fails with
// ErrUnsupportedContent on the others.
func ContentParts(content any) ([]string, error) {
	switch c := content.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{c}, nil
	case []any:
		texts := make([]string, 0, len(c))
		for i, p := range c {
			part, ok := AsMap(p)
			if !ok {
				return nil, fmt.Errorf("content part %d: want an object, got %s", i, jsonType(p))
			}
			typ, _ := part["type"].(string)
			key := "text"
			switch typ {
			case "text", "input_text":
			case "refusal":
				key = "refusal"
			case "":
				return nil, fmt.Errorf("content part %d: no type", i)
			default:
				return nil, fmt.Errorf("content part %d has type %q: %w (text only)", i, typ, ErrUnsupportedContent)
			}
			text, ok := part[key].(string)
			if !ok {
				return nil, fmt.Errorf("content part %d: %q must be a string", i, key)
			}
			texts = append(texts, text)
		}
		return texts, nil
	}
	return nil, fmt.Errorf("message content must be a string, an array of parts or null, got %s", jsonType(content))
}

// AsMap views a decoded JSON object (*Object or map[string]any) as a map, or
// reports false for any other value.
func AsMap(v any) (map[string]any, bool) {
	switch o := v.(type) {
	case map[string]any:
		return o, true
	case *Object:
		return o.Values, true
	}
	return nil, false
}

var _ json.Unmarshaler = (*ChatRequest)(nil)
