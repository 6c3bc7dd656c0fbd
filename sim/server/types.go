package server

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// chatRequest holds the fields of /v1/chat/completions the simulator acts
// on. Sampling knobs it cannot honour (temperature, top_p, …) are accepted
// and ignored, as unknown fields are, like vLLM's pydantic models do.
type chatRequest struct {
	Model               string            `json:"model"`
	Messages            []chatMessage     `json:"messages"`
	MaxTokens           *int              `json:"max_tokens"`
	MaxCompletionTokens *int              `json:"max_completion_tokens"`
	Stream              bool              `json:"stream"`
	StreamOptions       *streamOptions    `json:"stream_options"`
	Stop                stringList        `json:"stop"`
	Seed                *int64            `json:"seed"`
	N                   *int              `json:"n"`
	IgnoreEOS           bool              `json:"ignore_eos"`
	KVTransferParams    *kvTransferParams `json:"kv_transfer_params"`
	AddGenerationPrompt *bool             `json:"add_generation_prompt"`
	Tools               []toolDef         `json:"tools"`
	ToolChoice          json.RawMessage   `json:"tool_choice"`
}

type completionRequest struct {
	Model            string            `json:"model"`
	Prompt           json.RawMessage   `json:"prompt"`
	MaxTokens        *int              `json:"max_tokens"`
	Stream           bool              `json:"stream"`
	StreamOptions    *streamOptions    `json:"stream_options"`
	Stop             stringList        `json:"stop"`
	Seed             *int64            `json:"seed"`
	N                *int              `json:"n"`
	IgnoreEOS        bool              `json:"ignore_eos"`
	Echo             bool              `json:"echo"`
	KVTransferParams *kvTransferParams `json:"kv_transfer_params"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role    string      `json:"role"`
	Content chatContent `json:"content"`
}

// chatContent is a message's content: a string, an array of text parts, or
// null (an assistant turn that only called tools).
type chatContent string

func (c *chatContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*c = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = chatContent(s)
		return nil
	case len(b) > 0 && b[0] == '[':
		var parts []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return fmt.Errorf("message content parts: %w", err)
		}
		var sb bytes.Buffer
		for i, p := range parts {
			if p.Type != "text" || p.Text == nil {
				return fmt.Errorf("message content part %d: type %q is not supported (text only)", i, p.Type)
			}
			if i > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(*p.Text)
		}
		*c = chatContent(sb.String())
		return nil
	}
	return fmt.Errorf("message content must be a string or an array of parts")
}

// stringList is OpenAI's "string or array of strings" (stop sequences).
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*s = nil
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("stop must be a string or an array of strings")
	}
	*s = many
	return nil
}

// kvTransferParams is vLLM's NixlConnector handshake, carried in request and
// response bodies between a P/D proxy and the two workers.
type kvTransferParams struct {
	DoRemoteDecode  bool    `json:"do_remote_decode"`
	DoRemotePrefill bool    `json:"do_remote_prefill"`
	RemoteEngineID  *string `json:"remote_engine_id"`
	RemoteBlockIDs  []int   `json:"remote_block_ids"`
	RemoteRequestID *string `json:"remote_request_id,omitempty"`
	RemoteHost      *string `json:"remote_host"`
	RemotePort      *int    `json:"remote_port"`
	TPSize          int     `json:"tp_size,omitempty"`
}

type usage struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	PromptTokensDetails *promptTokensDetails `json:"prompt_tokens_details"`
}

type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type chatResponse struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Created          int64             `json:"created"`
	Model            string            `json:"model"`
	Choices          []chatChoice      `json:"choices"`
	Usage            *usage            `json:"usage"`
	KVTransferParams *kvTransferParams `json:"kv_transfer_params"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      *chatOutput `json:"message,omitempty"`
	Delta        *chatOutput `json:"delta,omitempty"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason *string     `json:"finish_reason"`
	StopReason   *stopReason `json:"stop_reason"`
}

type chatOutput struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content,omitempty"`
	ToolCalls []toolCallJSON `json:"tool_calls,omitempty"`
}

// stopReason is the stop string that ended a request, or null.
type stopReason = string

type completionResponse struct {
	ID               string             `json:"id"`
	Object           string             `json:"object"`
	Created          int64              `json:"created"`
	Model            string             `json:"model"`
	Choices          []completionChoice `json:"choices"`
	Usage            *usage             `json:"usage"`
	KVTransferParams *kvTransferParams  `json:"kv_transfer_params,omitempty"`
}

type completionChoice struct {
	Index        int         `json:"index"`
	Text         string      `json:"text"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason *string     `json:"finish_reason"`
	StopReason   *stopReason `json:"stop_reason"`
}

type tokenizeRequest struct {
	Model               string        `json:"model"`
	Prompt              *string       `json:"prompt"`
	Messages            []chatMessage `json:"messages"`
	AddSpecialTokens    *bool         `json:"add_special_tokens"`
	AddGenerationPrompt *bool         `json:"add_generation_prompt"`
}

type tokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []uint32 `json:"tokens"`
}

type detokenizeRequest struct {
	Model  string  `json:"model"`
	Tokens []int64 `json:"tokens"`
}

type detokenizeResponse struct {
	Prompt string `json:"prompt"`
}

type modelList struct {
	Object string      `json:"object"`
	Data   []modelCard `json:"data"`
}

type modelCard struct {
	ID          string  `json:"id"`
	Object      string  `json:"object"`
	Created     int64   `json:"created"`
	OwnedBy     string  `json:"owned_by"`
	Root        string  `json:"root"`
	Parent      *string `json:"parent"`
	MaxModelLen int     `json:"max_model_len"`
}
