package sim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/sim"
	"github.com/strata-llm/strata/sim/server"
	"github.com/strata-llm/strata/test/testutil"
)

func post(t *testing.T, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// errorEnvelope is vLLM's error shape: OpenAI's envelope, integer code.
type errorEnvelope struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    int     `json:"code"`
	} `json:"error"`
}

func TestBadInputGetsErrorEnvelope(t *testing.T) {
	s := sim.TestSim(t, func(o *sim.Options) { o.MaxBodyBytes = 4096; o.Engine.MaxModelLen = 1024 })
	chat, comp := s.URL()+"/v1/chat/completions", s.URL()+"/v1/completions"
	tests := []struct {
		name, url, body string
		status          int
	}{
		{"malformed json", chat, `{"model":`, 400},
		{"not an object", chat, `[1,2]`, 400},
		{"wrong type", chat, `{"messages":"hi"}`, 400},
		{"wrong max_tokens type", chat, `{"messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}`, 400},
		{"zero max_tokens", chat, `{"messages":[{"role":"user","content":"x"}],"max_tokens":0}`, 400},
		{"absurd max_tokens", chat, `{"messages":[{"role":"user","content":"x"}],"max_tokens":99999999999}`, 400},
		{"image content", chat, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400},
		{"n above one", chat, `{"messages":[{"role":"user","content":"x"}],"n":3}`, 400},
		{"unknown model", chat, `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, 404},
		{"oversized body", chat, `{"messages":[{"role":"user","content":"` + strings.Repeat("a", 5000) + `"}]}`, 413},
		{"trailing garbage", chat, `{"messages":[{"role":"user","content":"x"}]} xx`, 400},
		{"empty prompt", comp, `{"prompt":""}`, 400},
		{"negative token id", comp, `{"prompt":[1,-2]}`, 400},
		{"token id out of vocabulary", comp, `{"prompt":[1,99999]}`, 400},
		{"batched prompts", comp, `{"prompt":["a","b"]}`, 400},
		{"prompt over context", comp, `{"prompt":[` + strings.Repeat("1,", 1100) + `1]}`, 400},
		{"stop of wrong type", comp, `{"prompt":"x","stop":5}`, 400},
		{"detokenize out of vocabulary", s.URL() + "/detokenize", `{"tokens":[70000]}`, 400},
		{"tokenize nothing", s.URL() + "/tokenize", `{}`, 400},
		{"embeddings without input", s.URL() + "/v1/embeddings", `{}`, 400},
		{"unknown path", s.URL() + "/v1/rerank", `{}`, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, tc.url, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var env errorEnvelope
			if err := json.Unmarshal(body, &env); err != nil || env.Error.Message == "" || env.Error.Code != tc.status || env.Error.Type == "" {
				t.Fatalf("not an error envelope: %s (%v)", body, err)
			}
		})
	}
	resp, err := http.Get(s.URL() + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sim unhealthy after bad input: %v", err)
	}
	resp.Body.Close()
}

func TestTokenizeDetokenize(t *testing.T) {
	s := sim.TestSim(t, nil)
	resp, body := post(t, s.URL()+"/tokenize", `{"prompt":"hi!"}`)
	var tr struct {
		Count       int      `json:"count"`
		MaxModelLen int      `json:"max_model_len"`
		Tokens      []uint32 `json:"tokens"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("tokenize: %d %s", resp.StatusCode, body)
	}
	if tr.Count != 4 || tr.MaxModelLen != 8192 || tr.Tokens[1] != 'h' {
		t.Fatalf("tokenize = %+v", tr)
	}
	resp, body = post(t, s.URL()+"/detokenize", `{"tokens":[104,105,33]}`)
	if resp.StatusCode != 200 || string(body) != `{"prompt":"hi!"}` {
		t.Fatalf("detokenize: %d %s", resp.StatusCode, body)
	}
	// The chat form tokenizes exactly what a chat request prefills.
	_, body = post(t, s.URL()+"/tokenize", `{"messages":[{"role":"user","content":"yo"}]}`)
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	_, chat := post(t, s.URL()+"/v1/chat/completions", `{"messages":[{"role":"user","content":"yo"}],"max_tokens":1}`)
	var cr struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(chat, &cr); err != nil || cr.Usage.PromptTokens != tr.Count {
		t.Fatalf("chat prompt tokens %d, tokenize count %d", cr.Usage.PromptTokens, tr.Count)
	}
}

func TestRequestIDAndMetrics(t *testing.T) {
	s := sim.TestSim(t, nil)
	resp, body := post(t, s.URL()+"/v1/completions", `{"prompt":"abcdefghijklmnopqrstuvwxyz0123456789","max_tokens":3,"ignore_eos":true}`, "X-Request-Id", "req-42")
	if resp.Header.Get("X-Request-Id") != "req-42" || !bytes.Contains(body, []byte(`"id":"cmpl-req-42"`)) {
		t.Fatalf("request id not honoured: %s %s", resp.Header, body)
	}
	post(t, s.URL()+"/v1/completions", `{"prompt":"abcdefghijklmnopqrstuvwxyz0123456789","max_tokens":3,"ignore_eos":true}`)
	mresp, err := http.Get(s.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	m, _ := io.ReadAll(mresp.Body)
	for _, want := range []string{
		`vllm:num_requests_running{engine="0",model_name="sim-model"} 0`,
		`vllm:num_requests_waiting{engine="0",model_name="sim-model"} 0`,
		`vllm:kv_cache_usage_perc{engine="0",model_name="sim-model"} 0`,
		`vllm:prompt_tokens_total{engine="0",model_name="sim-model"} 74`,
		`vllm:generation_tokens_total{engine="0",model_name="sim-model"} 6`,
		`vllm:prefix_cache_queries_total{engine="0",model_name="sim-model"} 74`,
		`vllm:prefix_cache_hits_total{engine="0",model_name="sim-model"} 32`,
		`vllm:request_success_total{engine="0",finished_reason="length",model_name="sim-model"} 2`,
		`vllm:time_to_first_token_seconds_count{engine="0",model_name="sim-model"} 2`,
		`vllm:inter_token_latency_seconds_count{engine="0",model_name="sim-model"} 4`,
		`vllm:e2e_request_latency_seconds_count{engine="0",model_name="sim-model"} 2`,
		`vllm:request_queue_time_seconds_count`, `vllm:request_prefill_time_seconds_count`, `vllm:request_decode_time_seconds_count`,
		`vllm:num_preemptions_total`, `vllm:external_prefix_cache_hits_total`,
		`vllm:cache_config_info{block_size="16"`,
	} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestClientDisconnectFreesBlocks(t *testing.T) {
	s := sim.TestSim(t, func(o *sim.Options) { o.Engine.Speedup = 1 }) // real-time decode steps
	c, cancel := context.WithCancel(ctx(t))
	req, _ := http.NewRequestWithContext(c, http.MethodPost, s.URL()+"/v1/chat/completions",
		strings.NewReader(`{"messages":[{"role":"user","content":"a long answer please"}],"max_tokens":5000,"ignore_eos":true,"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil { // the stream has started
		t.Fatal(err)
	}
	if s.Engine.Stats().KVUsage == 0 {
		waitFor(t, func() bool { return s.Engine.Stats().KVUsage > 0 })
	}
	cancel()
	resp.Body.Close()
	waitFor(t, func() bool { st := s.Engine.Stats(); return st.Running == 0 && st.KVUsage == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, cond)
}

func TestPrefillDecodeHandshake(t *testing.T) {
	pd := `{"kv_connector":"NixlConnector","kv_role":"kv_both"}`
	prefill := sim.TestSim(t, func(o *sim.Options) { o.KVTransferConfig = pd; o.Role = server.RolePrefill })
	decode := sim.TestSim(t, func(o *sim.Options) { o.KVTransferConfig = pd; o.Role = server.RoleDecode })
	body := `{"messages":[{"role":"user","content":"` + strings.Repeat("disaggregate me ", 10) + `"}],"max_tokens":%d,"ignore_eos":true,"stream":false%s}`
	askPrefill := `,"kv_transfer_params":{"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null}`

	resp, out := post(t, prefill.URL()+"/v1/chat/completions", sprintf(body, 1, askPrefill), "X-Request-Id", "pd-1")
	if resp.StatusCode != 200 {
		t.Fatalf("prefill: %d %s", resp.StatusCode, out)
	}
	var pr struct {
		KVTransferParams map[string]any `json:"kv_transfer_params"`
	}
	if err := json.Unmarshal(out, &pr); err != nil || pr.KVTransferParams == nil {
		t.Fatalf("prefill answer lacks kv_transfer_params: %s", out)
	}
	kv := pr.KVTransferParams
	if kv["do_remote_prefill"] != true || kv["remote_engine_id"] == nil || kv["remote_port"] == nil || len(kv["remote_block_ids"].([]any)) == 0 {
		t.Fatalf("kv_transfer_params = %v", kv)
	}
	// Stats are published at the end of the engine's step, which may come
	// after the answer.
	waitFor(t, func() bool { return prefill.Engine.Stats().HeldRequests == 1 })
	params, _ := json.Marshal(kv)
	resp, out = post(t, decode.URL()+"/v1/chat/completions", sprintf(body, 6, `,"kv_transfer_params":`+string(params)), "X-Request-Id", "pd-1")
	if resp.StatusCode != 200 {
		t.Fatalf("decode: %d %s", resp.StatusCode, out)
	}
	var dr struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
			Details          struct {
				CachedTokens int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(out, &dr); err != nil || dr.Usage.CompletionTokens != 6 || dr.Usage.Details.CachedTokens == 0 {
		t.Fatalf("decode answer: %s", out)
	}
	waitFor(t, func() bool { return decode.Engine.Stats().ExternalHits > 0 })
	waitFor(t, func() bool { return prefill.Engine.Stats().HeldRequests == 0 })

	// The same params again: the KV was handed over, so they are unknown now.
	resp, out = post(t, decode.URL()+"/v1/chat/completions", sprintf(body, 6, `,"kv_transfer_params":`+string(params)))
	if resp.StatusCode != 400 || !bytes.Contains(out, []byte("unknown or expired")) {
		t.Fatalf("reused params: %d %s", resp.StatusCode, out)
	}
	// A decode worker refuses to prefill for a remote decode.
	resp, _ = post(t, decode.URL()+"/v1/chat/completions", sprintf(body, 1, askPrefill))
	if resp.StatusCode != 400 {
		t.Fatalf("decode worker accepted a prefill: %d", resp.StatusCode)
	}
}

func TestHeldKVExpiresForAbsentDecode(t *testing.T) {
	pd := `{"kv_connector":"NixlConnector","kv_role":"kv_producer"}`
	prefill := sim.TestSim(t, func(o *sim.Options) { o.KVTransferConfig = pd; o.Engine.KVHoldTimeout = 50 * time.Millisecond })
	decode := sim.TestSim(t, func(o *sim.Options) { o.KVTransferConfig = `{"kv_connector":"NixlConnector","kv_role":"kv_consumer"}` })
	body := `{"prompt":"` + strings.Repeat("x", 64) + `","max_tokens":1,"kv_transfer_params":%s}`
	_, out := post(t, prefill.URL()+"/v1/completions", sprintf(body, `{"do_remote_decode":true}`))
	var pr struct {
		KVTransferParams json.RawMessage `json:"kv_transfer_params"`
	}
	if err := json.Unmarshal(out, &pr); err != nil || len(pr.KVTransferParams) < 10 {
		t.Fatalf("prefill: %s", out)
	}
	waitFor(t, func() bool { return prefill.Engine.Stats().HeldRequests == 0 })
	resp, out := post(t, decode.URL()+"/v1/completions", sprintf(body, string(pr.KVTransferParams)))
	if resp.StatusCode != 400 || !bytes.Contains(out, []byte("expired")) {
		t.Fatalf("expired params: %d %s", resp.StatusCode, out)
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// TestStallAfterFault: the injected fault hangs completions after N while
// /health still answers, the case health canaries exist for.
func TestStallAfterFault(t *testing.T) {
	s := sim.TestSim(t, func(o *sim.Options) { o.StallAfter = 1 })
	body := `{"model":"sim-model","prompt":"hi","max_tokens":1}`
	if res, b := post(t, s.URL()+"/v1/completions", body); res.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d %s", res.StatusCode, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v1/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if res, err := http.DefaultClient.Do(req); err == nil {
		_ = res.Body.Close()
		t.Fatalf("second request answered %d, want a hang", res.StatusCode)
	}
	res, err := http.Get(s.URL() + "/health")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("health during the stall: %v %v", res, err)
	}
	_ = res.Body.Close()
}
