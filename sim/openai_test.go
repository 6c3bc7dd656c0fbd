package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/strata-llm/strata/sim"
)

func client(s *sim.Sim) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(s.URL()+"/v1/"),
		option.WithAPIKey("unused"),
		option.WithMaxRetries(0),
	)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func chatParams(text string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: "sim-model",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are a simulated assistant."),
			openai.UserMessage(text),
		},
		MaxTokens: openai.Int(maxTokens),
	}
}

func TestOpenAIChat(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	resp, err := c.Chat.Completions.New(ctx(t), chatParams("Tell me about prefix caching.", 12), option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if resp.Object != "chat.completion" || len(resp.Choices) != 1 {
		t.Fatalf("unexpected response %+v", resp)
	}
	ch := resp.Choices[0]
	if ch.FinishReason != "length" || ch.Message.Role != "assistant" || len(ch.Message.Content) != 12 {
		t.Fatalf("choice = %+v, want 12 bytes of content ending by length", ch)
	}
	if resp.Usage.CompletionTokens != 12 || resp.Usage.PromptTokens == 0 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+12 {
		t.Fatalf("usage = %+v", resp.Usage)
	}
}

func TestOpenAIChatCachedTokensOnRepeatedPrefix(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)
	first, err := c.Chat.Completions.New(ctx(t), chatParams(long+"First question?", 4))
	if err != nil {
		t.Fatalf("first: %v", err)
	}
	if got := first.Usage.PromptTokensDetails.CachedTokens; got != 0 {
		t.Fatalf("first request cached %d tokens, want 0", got)
	}
	second, err := c.Chat.Completions.New(ctx(t), chatParams(long+"Second question?", 4))
	if err != nil {
		t.Fatalf("second: %v", err)
	}
	cached := second.Usage.PromptTokensDetails.CachedTokens
	// The shared prefix is the system turn plus the repeated text: every
	// full 16-token block of it must be a hit.
	if cached < 900 || cached%16 != 0 || cached >= second.Usage.PromptTokens {
		t.Fatalf("second request cached %d of %d prompt tokens", cached, second.Usage.PromptTokens)
	}
}

func TestOpenAIChatStreaming(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	p := chatParams("Stream me something.", 20)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx(t), p, option.WithJSONSet("ignore_eos", true))
	var text strings.Builder
	var finish string
	var usage openai.CompletionUsage
	chunks := 0
	for stream.Next() {
		ch := stream.Current()
		chunks++
		if ch.Object != "chat.completion.chunk" {
			t.Fatalf("chunk object %q", ch.Object)
		}
		for _, choice := range ch.Choices {
			text.WriteString(choice.Delta.Content)
			if choice.FinishReason != "" {
				finish = choice.FinishReason
			}
		}
		if len(ch.Choices) == 0 {
			usage = ch.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if text.Len() != 20 || finish != "length" {
		t.Fatalf("streamed %q finish %q", text.String(), finish)
	}
	if usage.CompletionTokens != 20 || usage.PromptTokens == 0 {
		t.Fatalf("usage chunk = %+v", usage)
	}
	if chunks < 3 {
		t.Fatalf("only %d chunks: not streamed", chunks)
	}
}

func TestOpenAICompletions(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	tests := []struct {
		name   string
		prompt openai.CompletionNewParamsPromptUnion
		want   int64 // prompt tokens
	}{
		{"string", openai.CompletionNewParamsPromptUnion{OfString: openai.String("hello")}, 6},
		{"token ids", openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{104, 105, 33}}, 3},
		{"one string in an array", openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"hey"}}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Completions.New(ctx(t), openai.CompletionNewParams{
				Model: "sim-model", Prompt: tc.prompt, MaxTokens: openai.Int(5),
			}, option.WithJSONSet("ignore_eos", true))
			if err != nil {
				t.Fatalf("completion: %v", err)
			}
			if resp.Object != "text_completion" || len(resp.Choices[0].Text) != 5 || resp.Usage.PromptTokens != tc.want {
				t.Fatalf("response %+v", resp)
			}
		})
	}
}

func TestOpenAICompletionsStreaming(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	stream := c.Completions.NewStreaming(ctx(t), openai.CompletionNewParams{
		Model: "sim-model", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("stream")},
		MaxTokens: openai.Int(8), StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}, option.WithJSONSet("ignore_eos", true))
	var text strings.Builder
	var usage openai.CompletionUsage
	for stream.Next() {
		cur := stream.Current()
		for _, ch := range cur.Choices {
			text.WriteString(ch.Text)
		}
		if len(cur.Choices) == 0 {
			usage = cur.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if text.Len() != 8 || usage.CompletionTokens != 8 {
		t.Fatalf("text %q usage %+v", text.String(), usage)
	}
}

func TestOpenAIDeterministicWithSeed(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	run := func() string {
		p := chatParams("Same seed, same words.", 30)
		p.Seed = openai.Int(7)
		resp, err := c.Chat.Completions.New(ctx(t), p, option.WithJSONSet("ignore_eos", true))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Choices[0].Message.Content
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("seeded outputs differ: %q vs %q", a, b)
	}
}

func TestOpenAIStopString(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	// Find what the model says for this prompt, then stop on a piece of it.
	p := chatParams("Say something.", 40)
	p.Seed = openai.Int(3)
	full, err := c.Chat.Completions.New(ctx(t), p, option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	text := full.Choices[0].Message.Content
	stop := text[10:13]
	want := text[:strings.Index(text, stop)]
	p.Stop = openai.ChatCompletionNewParamsStopUnion{OfString: openai.String(stop)}
	for _, streamed := range []bool{false, true} {
		var got, finish string
		if streamed {
			st := c.Chat.Completions.NewStreaming(ctx(t), p, option.WithJSONSet("ignore_eos", true))
			for st.Next() {
				for _, ch := range st.Current().Choices {
					got += ch.Delta.Content
					if ch.FinishReason != "" {
						finish = ch.FinishReason
					}
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
		} else {
			resp, err := c.Chat.Completions.New(ctx(t), p, option.WithJSONSet("ignore_eos", true))
			if err != nil {
				t.Fatal(err)
			}
			got, finish = resp.Choices[0].Message.Content, resp.Choices[0].FinishReason
		}
		if got != want || finish != "stop" {
			t.Fatalf("streamed=%v: got %q (%s), want %q (stop)", streamed, got, finish, want)
		}
	}
}

func TestOpenAIErrors(t *testing.T) {
	s := sim.TestSim(t, func(o *sim.Options) { o.Engine.MaxModelLen = 512 })
	c := client(s)
	tests := []struct {
		name   string
		params openai.ChatCompletionNewParams
		status int
	}{
		{"unknown model", openai.ChatCompletionNewParams{Model: "nope", Messages: chatParams("x", 1).Messages}, 404},
		{"negative max_tokens", chatParams("x", -5), 400},
		{"max_tokens over context", chatParams("x", 100000), 400},
		{"prompt over context", chatParams(strings.Repeat("y", 600), 1), 400},
		{"no messages", openai.ChatCompletionNewParams{Model: "sim-model"}, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Chat.Completions.New(ctx(t), tc.params)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want *openai.Error", err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Message == "" {
				t.Fatalf("status %d message %q, want %d", apiErr.StatusCode, apiErr.Message, tc.status)
			}
		})
	}
}

func TestOpenAIModels(t *testing.T) {
	s := sim.TestSim(t, func(o *sim.Options) { o.ServedModelNames = []string{"a", "b"} })
	c := client(s)
	page, err := c.Models.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != "a" || page.Data[1].ID != "b" {
		t.Fatalf("models %+v", page.Data)
	}
}

// TestOpenAIToolCalls: a forced tool choice answers with a tool call whose
// arguments are JSON, whole or streamed in pieces; auto answers in text.
func TestOpenAIToolCalls(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	tool := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})
	named := openai.ChatCompletionToolChoiceOptionUnionParam{OfFunctionToolChoice: &openai.ChatCompletionNamedToolChoiceParam{
		Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"}}}
	for _, tc := range []struct {
		name   string
		choice openai.ChatCompletionToolChoiceOptionUnionParam
		call   bool
	}{
		{"named", named, true},
		{"required", openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}, true},
		{"auto", openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("auto")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := chatParams("What is the weather in Paris?", 6)
			p.Tools, p.ToolChoice = []openai.ChatCompletionToolUnionParam{tool}, tc.choice
			resp, err := c.Chat.Completions.New(ctx(t), p, option.WithJSONSet("ignore_eos", true))
			if err != nil {
				t.Fatal(err)
			}
			msg := resp.Choices[0].Message
			if !tc.call {
				if len(msg.ToolCalls) != 0 || len(msg.Content) != 6 {
					t.Fatalf("auto: %+v", msg)
				}
				return
			}
			if len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" || msg.ToolCalls[0].ID == "" {
				t.Fatalf("tool calls %+v", msg.ToolCalls)
			}
			var args map[string]string
			if err := json.Unmarshal([]byte(msg.ToolCalls[0].Function.Arguments), &args); err != nil || len(args["city"]) != 6 {
				t.Fatalf("arguments %q: %v", msg.ToolCalls[0].Function.Arguments, err)
			}

			stream := c.Chat.Completions.NewStreaming(ctx(t), p, option.WithJSONSet("ignore_eos", true))
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			got := acc.Choices[0].Message.ToolCalls
			if len(got) != 1 || got[0].Function.Name != "get_weather" || acc.Choices[0].FinishReason != "length" {
				t.Fatalf("streamed tool calls %+v (finish %q)", got, acc.Choices[0].FinishReason)
			}
			if err := json.Unmarshal([]byte(got[0].Function.Arguments), &args); err != nil || len(args["city"]) != 6 {
				t.Fatalf("streamed arguments %q: %v", got[0].Function.Arguments, err)
			}
		})
	}
}

// TestOpenAIEmbeddings: vectors of unit length, equal for equal inputs,
// shortened by dimensions; bad input is a 400.
func TestOpenAIEmbeddings(t *testing.T) {
	s := sim.TestSim(t, nil)
	c := client(s)
	res, err := c.Embeddings.New(ctx(t), openai.EmbeddingNewParams{Model: "sim-model",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello", "world", "hello"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 3 || len(res.Data[0].Embedding) != 384 || res.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings: %d, dims %d, usage %+v", len(res.Data), len(res.Data[0].Embedding), res.Usage)
	}
	var norm float64
	for i, x := range res.Data[0].Embedding {
		norm += x * x
		if x != res.Data[2].Embedding[i] {
			t.Fatal("equal inputs embedded differently")
		}
	}
	if norm < 0.999 || norm > 1.001 || res.Data[0].Embedding[0] == res.Data[1].Embedding[0] {
		t.Fatalf("norm %v", norm)
	}
	short, err := c.Embeddings.New(ctx(t), openai.EmbeddingNewParams{Model: "sim-model", Dimensions: openai.Int(64),
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello")}})
	if err != nil || len(short.Data[0].Embedding) != 64 {
		t.Fatalf("dimensions 64: %v", err)
	}
	_, err = c.Embeddings.New(ctx(t), openai.EmbeddingNewParams{Model: "sim-model", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
		t.Fatalf("empty input: %v", err)
	}
}
