package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain/client"
	"github.com/strata-llm/strata/dev"
	"github.com/strata-llm/strata/gateway"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

func openaiClient(c *dev.Cluster, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL("http://" + c.Gateway.Addr() + "/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0),
	}, opts...)...)
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestGatewayWithOpenAIClient: the official openai-go client works against
// the gateway unchanged — chat and completions, whole and streamed, usage,
// tool calls, unknown fields and X-Request-Id passed through.
func TestGatewayWithOpenAIClient(t *testing.T) {
	c := TestCluster(t, nil)
	cl := openaiClient(c)
	ctx := timeout(t, 60*time.Second)

	models, err := cl.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "strata-sim" {
		t.Fatalf("models %+v, %v", models, err)
	}

	chat := openai.ChatCompletionNewParams{Model: "strata-sim", MaxTokens: openai.Int(9), Messages: []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("You are terse."), openai.UserMessage("Say something."),
	}}
	var res *http.Response
	resp, err := cl.Chat.Completions.New(ctx, chat, option.WithJSONSet("ignore_eos", true),
		option.WithHeader("X-Request-Id", "client-chosen-id"), option.WithResponseInto(&res))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices[0].Message.Content) != 9 || resp.Usage.CompletionTokens != 9 || resp.ID != "chatcmpl-client-chosen-id" ||
		res.Header.Get("X-Request-Id") != "client-chosen-id" || !strings.HasPrefix(res.Header.Get("X-Strata-Worker"), "strata-sim-") {
		t.Fatalf("chat %+v (headers %v)", resp, res.Header)
	}

	chat.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := cl.Chat.Completions.NewStreaming(ctx, chat, option.WithJSONSet("ignore_eos", true))
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || len(acc.Choices[0].Message.Content) != 9 || acc.Usage.CompletionTokens != 9 || acc.Usage.PromptTokens == 0 {
		t.Fatalf("streamed chat %+v", acc.ChatCompletion)
	}

	comp := openai.CompletionNewParams{Model: "strata-sim", MaxTokens: openai.Int(5),
		Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{72, 101, 108, 108, 111}}}
	cr, err := cl.Completions.New(ctx, comp, option.WithJSONSet("ignore_eos", true))
	if err != nil || len(cr.Choices[0].Text) != 5 || cr.Usage.PromptTokens != 5 {
		t.Fatalf("completion %+v, %v", cr, err)
	}
	comp.Prompt = openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")}
	cs := cl.Completions.NewStreaming(ctx, comp, option.WithJSONSet("ignore_eos", true))
	var text strings.Builder
	for cs.Next() {
		if ch := cs.Current(); len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Text)
		}
	}
	if err := cs.Err(); err != nil || text.Len() != 5 {
		t.Fatalf("streamed completion %q, %v", text.String(), err)
	}

	// Tool definitions and the engine's tool calls pass through untouched.
	chat.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name: "lookup", Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}},
	})}
	chat.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
	chat.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
	tr, err := cl.Chat.Completions.New(ctx, chat)
	if err != nil {
		t.Fatal(err)
	}
	calls := tr.Choices[0].Message.ToolCalls
	var args map[string]string
	if len(calls) != 1 || calls[0].Function.Name != "lookup" || json.Unmarshal([]byte(calls[0].Function.Arguments), &args) != nil {
		t.Fatalf("tool calls %+v", calls)
	}
	ts := cl.Chat.Completions.NewStreaming(ctx, chat)
	acc = openai.ChatCompletionAccumulator{}
	for ts.Next() {
		acc.AddChunk(ts.Current())
	}
	if err := ts.Err(); err != nil || len(acc.Choices[0].Message.ToolCalls) != 1 || acc.Choices[0].Message.ToolCalls[0].Function.Name != "lookup" {
		t.Fatalf("streamed tool calls %+v, %v", acc.Choices, err)
	}

	// Embeddings go to the model's workers.
	emb, err := cl.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "strata-sim",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}}})
	if err != nil || len(emb.Data) != 2 || len(emb.Data[1].Embedding) == 0 {
		t.Fatalf("embeddings %+v, %v", emb, err)
	}

	// An engine error comes back in OpenAI's envelope.
	_, err = cl.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "strata-sim", Messages: chat.Messages, N: openai.Int(3)})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "n" {
		t.Fatalf("n=3: %v", err)
	}
}

// sharedPrefix is a prompt of n token ids that decode as text in the
// simulator's byte-level tokenizer.
func sharedPrefix(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64('a' + i%26)
	}
	return out
}

// complete sends a completion and returns the worker that served it and
// the cached tokens it reported.
func complete(t *testing.T, ctx context.Context, cl openai.Client, prompt []int64, maxTokens int64) (string, int64) {
	t.Helper()
	var res *http.Response
	cr, err := cl.Completions.New(ctx, openai.CompletionNewParams{Model: "strata-sim", MaxTokens: openai.Int(maxTokens),
		Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: prompt}}, option.WithJSONSet("ignore_eos", true), option.WithResponseInto(&res))
	if err != nil {
		t.Fatal(err)
	}
	return res.Header.Get("X-Strata-Worker"), cr.Usage.PromptTokensDetails.CachedTokens
}

// TestGatewayRoutesToCachedPrefix: with the kv policy, requests sharing a
// long prefix go to the worker whose engine holds it (its reported cached
// tokens show it), and a burst of them spreads once that worker is busy.
func TestGatewayRoutesToCachedPrefix(t *testing.T) {
	c := TestCluster(t, func(cfg *dev.Config) {
		cfg.Engines = 4
		cfg.SimArgs = []string{"--speedup", "20"}
	})
	cl := openaiClient(c)
	ctx := timeout(t, 90*time.Second)
	prefix := sharedPrefix(1024) // 64 blocks of 16
	first, _ := complete(t, ctx, cl, append(prefix, 1), 1)
	// The engine's KV events reach the brain's index.
	bc, err := client.New([]string{c.Brain.Member().GetGrpcAddress()}, c.ClusterToken, auth.TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bc.Close() }()
	testutil.WaitForResult(t, 10*time.Second, func() error {
		st, err := bc.Admin().KVIndexStats(ctx, &stratav1.KVIndexStatsRequest{})
		if err != nil {
			return err
		}
		for _, w := range st.GetWorkers() {
			if w.GetWorkerId() == first && w.GetGpuBlocks() >= 64 {
				return nil
			}
		}
		return fmt.Errorf("%s's blocks not indexed yet: %v", first, st.GetWorkers())
	})
	for i := range 6 {
		worker, cached := complete(t, ctx, cl, append(append([]int64{}, prefix...), 2, int64(i)), 1)
		if worker != first || cached < 1024 {
			t.Fatalf("request %d went to %s with %d cached tokens; the prefix is on %s", i, worker, cached, first)
		}
	}

	// A burst on the hot prefix: the holder takes the first ones, and the
	// cost of its growing load sends the rest elsewhere.
	var mu sync.Mutex
	per := map[string]int{}
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			worker, _ := complete(t, ctx, cl, append(append([]int64{}, prefix...), 3, int64(i)), 64)
			mu.Lock()
			per[worker]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(per) < 2 || per[first] == 0 {
		t.Fatalf("the burst went to %v (prefix on %s)", per, first)
	}
	t.Logf("burst of 24 on one prefix: %v (prefix on %s)", per, first)
}

// sseChunks reads an OpenAI stream as raw events until [DONE].
type sseChunk struct {
	ID      string `json:"id"`
	Choices []struct {
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
		Delta        struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// TestGatewayMigratesMidStream: the engine serving a stream is killed
// mid-way; the client's stream goes on from another worker, one stream
// (same id), every token once, max_tokens honoured — for completions and
// for chat.
func TestGatewayMigratesMidStream(t *testing.T) {
	c := TestCluster(t, func(cfg *dev.Config) { cfg.SimArgs = []string{"--speedup", "2"} })
	for _, tc := range []struct {
		name, path, body string
	}{
		{"completions", "/v1/completions", `{"model":"strata-sim","prompt":"The quick brown fox jumps over the lazy dog","max_tokens":120,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true}}`},
		{"chat", "/v1/chat/completions", `{"model":"strata-sim","messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":120,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := timeout(t, 60*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.Gateway.Addr()+tc.path, strings.NewReader(tc.body))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = res.Body.Close() }()
			victim := res.Header.Get("X-Strata-Worker")
			if res.StatusCode != http.StatusOK || victim == "" {
				t.Fatalf("status %d, worker %q", res.StatusCode, victim)
			}
			pid := EnginePID(t, c, victim)
			sc := bufio.NewScanner(res.Body)
			var (
				text   strings.Builder
				ids    = map[string]bool{}
				tokens int
				usage  int
				done   bool
				finish string
			)
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				if data == "[DONE]" {
					done = true
					break
				}
				var ch sseChunk
				if err := json.Unmarshal([]byte(data), &ch); err != nil {
					t.Fatalf("chunk %q: %v", data, err)
				}
				if ch.Error != nil {
					t.Fatalf("stream error: %s", ch.Error.Message)
				}
				ids[ch.ID] = true
				if ch.Usage != nil {
					usage = ch.Usage.CompletionTokens
				}
				for _, choice := range ch.Choices {
					if piece := choice.Text + choice.Delta.Content; piece != "" {
						text.WriteString(piece)
						tokens++
						if tokens == 20 {
							// Mid-stream: the engine dies.
							if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
								t.Fatal(err)
							}
						}
					}
					if choice.FinishReason != nil {
						finish = *choice.FinishReason
					}
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if !done || tokens != 120 || text.Len() != 120 || usage != 120 || len(ids) != 1 || finish != "length" {
				t.Fatalf("done %v, %d tokens, %d bytes of text, usage %d, ids %v, finish %q", done, tokens, text.Len(), usage, ids, finish)
			}
		})
	}
	if n := metricValue(t, c, `strata_gateway_migrations_total{model="strata-sim",phase="mid-stream"}`); n != 2 {
		t.Fatalf("%v mid-stream migrations counted, want 2", n)
	}
}

// metricValue scrapes one sample of the cluster gateway's /metrics.
func metricValue(t *testing.T, c *dev.Cluster, series string) float64 {
	t.Helper()
	return scrape(t, c.Gateway.Addr(), series)
}

// scrape reads one sample of the /metrics at addr.
func scrape(t *testing.T, addr, series string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			_, _ = fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// TestGatewayWithoutBrain: with the brain gone, requests keep succeeding
// on the last view of the cluster, routed without scores.
func TestGatewayWithoutBrain(t *testing.T) {
	c := TestCluster(t, nil)
	cl := openaiClient(c)
	ctx := timeout(t, 60*time.Second)
	complete(t, ctx, cl, sharedPrefix(64), 2)
	if err := c.Brain.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if worker, _ := complete(t, ctx, cl, append(sharedPrefix(64), int64(i)), 2); worker == "" {
			t.Fatalf("request %d: no worker", i)
		}
	}
	if n := metricValue(t, c, `strata_gateway_routing_decisions_total{policy="approx-kv",reason="brain-unavailable"}`); n < 10 {
		t.Fatalf("%v requests routed without the brain, want 10", n)
	}
}

// TestGatewayRejectsBadInput: every bad request gets the right status in
// OpenAI's error envelope.
func TestGatewayRejectsBadInput(t *testing.T) {
	c := TestCluster(t, func(cfg *dev.Config) {
		cfg.Gateway = func(g *gateway.Config) { g.MaxBodyBytes = 1 << 20 }
	})
	base := "http://" + c.Gateway.Addr()
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		param, code              string
	}{
		{"malformed JSON", "POST", "/v1/chat/completions", `{"model":"strata-sim","messages":[`, 400, "", ""},
		{"not an object", "POST", "/v1/completions", `"hello"`, 400, "", ""},
		{"wrong type", "POST", "/v1/chat/completions", `{"model":"strata-sim","messages":[{"role":"user","content":"x"}],"stream":"no"}`, 400, "stream", ""},
		{"empty messages", "POST", "/v1/chat/completions", `{"model":"strata-sim","messages":[]}`, 400, "messages", ""},
		{"missing model", "POST", "/v1/completions", `{"prompt":"x"}`, 400, "model", ""},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, 404, "model", "model_not_found"},
		{"unknown policy", "POST", "/v1/completions", `{"model":"strata-sim","prompt":"x","strata":{"routing":"best"}}`, 400, "strata.routing", ""},
		{"pinned to nothing", "POST", "/v1/completions", `{"model":"strata-sim","prompt":"x","strata":{"worker":"nope"}}`, 400, "strata.worker", ""},
		{"huge body", "POST", "/v1/completions", `{"model":"strata-sim","prompt":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "", "request_too_large"},
		{"unknown path", "GET", "/v1/nothing", ``, 404, "", "unknown_url"},
		{"wrong method", "GET", "/v1/chat/completions", ``, 405, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = res.Body.Close() }()
			var env struct {
				Error *struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.NewDecoder(res.Body).Decode(&env); err != nil || env.Error == nil || env.Error.Message == "" || env.Error.Type == "" {
				t.Fatalf("status %d, body not an OpenAI error envelope: %v", res.StatusCode, err)
			}
			param, code := "", ""
			if env.Error.Param != nil {
				param = *env.Error.Param
			}
			if env.Error.Code != nil {
				code = *env.Error.Code
			}
			if res.StatusCode != tc.status || param != tc.param || code != tc.code {
				t.Fatalf("status %d param %q code %q (%s); want %d %q %q", res.StatusCode, param, code, env.Error.Message, tc.status, tc.param, tc.code)
			}
		})
	}
}

// TestGatewayKeysAndAdmission: API keys (401 without or with a wrong one,
// 429 past a key's rate) and admission (a request waits while every worker
// is busy, 503 with Retry-After when the queue is full or it waited too
// long).
func TestGatewayKeysAndAdmission(t *testing.T) {
	keys := t.TempDir() + "/keys"
	if err := os.WriteFile(keys, []byte("sk-limited name=limited rps=0.5 burst=1\nsk-free name=free\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := TestCluster(t, func(cfg *dev.Config) {
		cfg.Engines = 1
		cfg.SimArgs = []string{"--speedup", "1"}
		cfg.Gateway = func(g *gateway.Config) {
			g.APIKeysFile, g.MaxInflight, g.QueueSize, g.QueueTimeout = keys, 1, 1, 300*time.Millisecond
		}
	})
	send := func(key, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, "http://"+c.Gateway.Addr()+"/v1/completions", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = res.Body.Close() })
		return res
	}
	short := `{"model":"strata-sim","prompt":"hi","max_tokens":1}`
	for _, tc := range []struct {
		key    string
		status int
	}{{"", 401}, {"sk-nope", 401}, {"sk-limited", 200}, {"sk-limited", 429}, {"sk-free", 200}} {
		res := send(tc.key, short)
		_, _ = io.Copy(io.Discard, res.Body)
		if res.StatusCode != tc.status {
			t.Fatalf("key %q: status %d, want %d", tc.key, res.StatusCode, tc.status)
		}
		if tc.status == 429 && res.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}

	// One long stream takes the only slot.
	long := send("sk-free", `{"model":"strata-sim","prompt":"hi","max_tokens":400,"ignore_eos":true,"stream":true}`)
	if long.StatusCode != 200 {
		t.Fatalf("long stream: %d", long.StatusCode)
	}
	waiting := make(chan *http.Response, 1)
	go func() { waiting <- send("sk-free", short) }()
	testutil.WaitFor(t, 5*time.Second, func() bool {
		return metricValue(t, c, "strata_gateway_queue_depth") == 1
	})
	full := send("sk-free", short)
	if full.StatusCode != 503 || full.Header.Get("Retry-After") == "" {
		t.Fatalf("queue full: %d, Retry-After %q", full.StatusCode, full.Header.Get("Retry-After"))
	}
	if res := <-waiting; res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("waited too long: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// When the slot frees, requests flow again.
	_, _ = io.Copy(io.Discard, long.Body)
	testutil.WaitForResult(t, 10*time.Second, func() error {
		res := send("sk-free", short)
		_, _ = io.Copy(io.Discard, res.Body)
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	})
}

// TestGatewayDisaggregated: for a deployment with prefill and decode
// pools, the gateway runs the prefill step on a prefill worker and streams
// the answer from a decode worker that pulled its KV (vLLM's NixlConnector
// flow, as the simulator speaks it).
func TestGatewayDisaggregated(t *testing.T) {
	c := TestCluster(t, func(cfg *dev.Config) { cfg.Engines, cfg.GPUs = 1, 3 })
	ctx := timeout(t, 60*time.Second)
	bc, err := client.New([]string{c.Brain.Member().GetGrpcAddress()}, c.ClusterToken, auth.TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bc.Close() }()
	pool := func(role stratav1.WorkerRole) *stratav1.Pool {
		return &stratav1.Pool{Role: role, TensorParallelSize: 1, Replicas: &stratav1.Replicas{Min: 1, Max: 1, Initial: 1}}
	}
	if _, err := bc.Admin().ApplyDeployment(ctx, &stratav1.ApplyDeploymentRequest{Spec: &stratav1.DeploymentSpec{
		Name: "pd", Model: "pd", Engine: "sim", EngineArgs: []string{"--speedup", "1000"},
		Mode:  stratav1.DeploymentMode_DEPLOYMENT_MODE_DISAGGREGATED,
		Pools: []*stratav1.Pool{pool(stratav1.WorkerRole_WORKER_ROLE_PREFILL), pool(stratav1.WorkerRole_WORKER_ROLE_DECODE)},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitRoutableModel(ctx, "pd", 2); err != nil {
		t.Fatal(err)
	}
	// The agent canaries an engine once it is ready (a one-token
	// completion); count the prefill worker's requests from after it.
	var prefillPort int
	for _, v := range EngineViews(t, c) {
		if strings.HasPrefix(v.ID, "pd-prefill-") {
			prefillPort = v.Port
			testutil.WaitFor(t, 30*time.Second, func() bool {
				for _, cs := range Canaries(t, c) {
					if cs.WorkerID == v.ID && !cs.LastRun.IsZero() {
						return true
					}
				}
				return false
			})
		}
	}
	if prefillPort == 0 {
		t.Fatal("no prefill worker")
	}
	prefillSteps := func() float64 {
		return scrape(t, fmt.Sprintf("127.0.0.1:%d", prefillPort), `vllm:request_success_total{engine="0",finished_reason="length",model_name="pd"}`)
	}
	before := prefillSteps()
	cl := openaiClient(c)
	for _, stream := range []bool{false, true} {
		var res *http.Response
		var text string
		if stream {
			s := cl.Completions.NewStreaming(ctx, openai.CompletionNewParams{Model: "pd", MaxTokens: openai.Int(8),
				Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(strings.Repeat("a long shared prompt ", 20))}},
				option.WithJSONSet("ignore_eos", true), option.WithResponseInto(&res))
			for s.Next() {
				if ch := s.Current(); len(ch.Choices) > 0 {
					text += ch.Choices[0].Text
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
		} else {
			cr, err := cl.Completions.New(ctx, openai.CompletionNewParams{Model: "pd", MaxTokens: openai.Int(8),
				Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(strings.Repeat("a long shared prompt ", 20))}},
				option.WithJSONSet("ignore_eos", true), option.WithResponseInto(&res))
			if err != nil {
				t.Fatal(err)
			}
			text = cr.Choices[0].Text
		}
		if len(text) != 8 || !strings.HasPrefix(res.Header.Get("X-Strata-Worker"), "pd-decode-") {
			t.Fatalf("stream %v: %q from %s", stream, text, res.Header.Get("X-Strata-Worker"))
		}
	}
	if n := metricValue(t, c, `strata_gateway_pd_fallbacks_total{model="pd"}`); n != 0 {
		t.Fatalf("%v requests fell back to decode-only", n)
	}
	// The prefill worker computed the prompts.
	if n := prefillSteps() - before; n != 2 {
		t.Fatalf("the prefill worker served %v prefill steps, want 2", n)
	}
}
