package testutil

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Streamed is what a streamed completion showed its client.
type Streamed struct {
	TTFT                       time.Duration
	PromptTokens, CachedTokens int
	Text                       string
	Header                     http.Header
}

// StreamCompletion posts body (stream and the usage chunk asked for) to
// the OpenAI completions endpoint at addr (host:port) and reads the whole
// stream, timing its first token.
func StreamCompletion(t testing.TB, addr string, body map[string]any) Streamed {
	t.Helper()
	body["stream"], body["stream_options"] = true, map[string]any{"include_usage": true}
	b, _ := json.Marshal(body)
	start := time.Now()
	res, err := http.Post("http://"+addr+"/v1/completions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("completion: HTTP %d", res.StatusCode)
	}
	out := Streamed{Header: res.Header}
	var text strings.Builder
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Text string `json:"text"`
			}
			Usage *struct {
				PromptTokens        int `json:"prompt_tokens"`
				PromptTokensDetails struct {
					CachedTokens int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			}
			Error *struct{ Message string }
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		if chunk.Error != nil {
			t.Fatalf("stream error: %s", chunk.Error.Message)
		}
		if len(chunk.Choices) > 0 {
			if out.TTFT == 0 {
				out.TTFT = time.Since(start)
			}
			text.WriteString(chunk.Choices[0].Text)
		}
		if u := chunk.Usage; u != nil {
			out.PromptTokens, out.CachedTokens = u.PromptTokens, u.PromptTokensDetails.CachedTokens
		}
	}
	if err := sc.Err(); err != nil || out.TTFT == 0 || out.PromptTokens == 0 {
		t.Fatalf("stream: %v, %+v", err, out)
	}
	out.Text = text.String()
	return out
}
