package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/gateway/routing"
	"github.com/strata-llm/strata/gateway/routing/leastloaded"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Disaggregated prefill/decode (ENGINES.md): for a deployment whose
// prefill and decode run on separate pools, the gateway runs the prefill
// step on a prefill worker chosen by the request's policy (the prefix cache
// lives there), then sends the request to a decode worker chosen by load,
// with what the engine needs to take over the KV. If the prefill step
// fails, the decode worker does the whole request (vLLM's proxy does the
// same). A request that moves mid-stream continues on a decode worker
// alone.

func (x *exchange) disaggregated() bool {
	return x.m.info.GetMode() == stratav1.DeploymentMode_DEPLOYMENT_MODE_DISAGGREGATED
}

// decodePolicy picks the worker that streams the answer: for P/D the KV
// comes from the prefill worker, so only load matters.
func (x *exchange) decodePolicy() routing.Policy {
	if x.disaggregated() {
		return x.g.policies[leastloaded.Name]
	}
	return x.policy
}

// prefill runs the prefill step and returns the decode worker's body, or
// body itself when the step failed (decode-only) or the engine has no P/D
// protocol the gateway drives. An answer about the request itself (a 4xx)
// is returned as an error for the client.
func (x *exchange) prefill(ctx context.Context, body map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	w, d, t, err := x.g.pick(ctx, x, stratav1.WorkerRole_WORKER_ROLE_PREFILL, x.policy)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusServiceUnavailable {
			x.g.log.Warn("no prefill worker; decoding alone", "request_id", x.reqID, "error", err)
			x.g.metrics.pdFallbacks.WithLabelValues(x.req.model).Inc()
			return body, nil
		}
		return nil, err
	}
	x.decided(d)
	var out map[string]json.RawMessage
	switch x.m.info.GetEngine() {
	case "vllm", "sim":
		out, err = x.prefillNixl(ctx, w, t, body)
	case "trtllm":
		out, err = x.prefillTRTLLM(ctx, w, t, body)
	case "sglang":
		out, err = x.prefillSGLang(ctx, w, t, body)
	default:
		x.endPrefill(t)
		return body, nil
	}
	if err != nil {
		if !errors.Is(err, errWorkerFailed) {
			return nil, err
		}
		x.g.log.Warn("prefill failed; decoding alone", "request_id", x.reqID, "worker", w.id, "error", err)
		x.g.metrics.pdFallbacks.WithLabelValues(x.req.model).Inc()
		return body, nil
	}
	return out, nil
}

// prefillBody is body as a prefill step: one token, not streamed.
func prefillBody(body map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(body)+2)
	for k, v := range body {
		out[k] = v
	}
	out["stream"] = json.RawMessage("false")
	out["max_tokens"] = json.RawMessage("1")
	if _, ok := out["max_completion_tokens"]; ok {
		out["max_completion_tokens"] = json.RawMessage("1")
	}
	delete(out, "stream_options")
	delete(out, "min_tokens")
	return out
}

// endPrefill takes a prefill step off its worker's load.
func (x *exchange) endPrefill(t *ticket) {
	t.end()
	x.g.cluster.notify()
}

// runPrefill sends a prefill step and returns the engine's answer; it ends
// the step's ticket.
func (x *exchange) runPrefill(ctx context.Context, w *worker, t *ticket, body map[string]json.RawMessage) ([]byte, error) {
	defer x.endPrefill(t)
	res, release, err := x.post(ctx, w, x.req.endpoint, body)
	if err != nil {
		return nil, err
	}
	defer release()
	defer func() { _ = res.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return nil, &workerError{worker: w.id, err: err}
	}
	if res.StatusCode != http.StatusOK {
		return nil, engineError(res.StatusCode, data)
	}
	return data, nil
}

// prefillNixl is vLLM's NixlConnector flow: the prefill worker keeps the
// KV and answers where it is; the decode worker pulls it.
func (x *exchange) prefillNixl(ctx context.Context, w *worker, t *ticket, body map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	p := prefillBody(body)
	p["kv_transfer_params"] = json.RawMessage(`{"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null}`)
	data, err := x.runPrefill(ctx, w, t, p)
	if err != nil {
		return nil, err
	}
	kv := gjson.GetBytes(data, "kv_transfer_params")
	if !kv.IsObject() {
		return nil, &workerError{worker: w.id, err: errors.New("prefill answer without kv_transfer_params")}
	}
	return withField(body, "kv_transfer_params", json.RawMessage(kv.Raw)), nil
}

// prefillTRTLLM is TensorRT-LLM's: a context-only request, whose returned
// disaggregated_params the generation worker gets as generation-only.
func (x *exchange) prefillTRTLLM(ctx context.Context, w *worker, t *ticket, body map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	p := prefillBody(body)
	p["disaggregated_params"] = json.RawMessage(`{"request_type":"context_only"}`)
	data, err := x.runPrefill(ctx, w, t, p)
	if err != nil {
		return nil, err
	}
	dp := gjson.GetBytes(data, "choices.0.disaggregated_params")
	if !dp.IsObject() {
		return nil, &workerError{worker: w.id, err: errors.New("context answer without disaggregated_params")}
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal([]byte(dp.Raw), &params); err != nil {
		return nil, &workerError{worker: w.id, err: fmt.Errorf("disaggregated_params: %w", err)}
	}
	params["request_type"] = json.RawMessage(`"generation_only"`)
	b, _ := json.Marshal(params)
	return withField(body, "disaggregated_params", b), nil
}

// prefillSGLang is SGLang's: prefill and decode get the same bootstrap
// room at once and meet through the prefill worker's bootstrap server
// (its KV-transfer port, engine.OffsetKVTransfer above its HTTP port, as
// the agent launches it). The prefill answer is not used; the decode
// worker answers.
func (x *exchange) prefillSGLang(ctx context.Context, w *worker, t *ticket, body map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	host, portStr, err := net.SplitHostPort(w.endpoint)
	port, perr := strconv.Atoi(portStr)
	if err = cmp.Or(err, perr); err != nil {
		x.endPrefill(t)
		return nil, &workerError{worker: w.id, err: err}
	}
	hostJSON, _ := json.Marshal(host)
	out := withField(body, "bootstrap_host", hostJSON)
	out["bootstrap_port"] = json.RawMessage(strconv.Itoa(port + engine.OffsetKVTransfer))
	out["bootstrap_room"] = json.RawMessage(strconv.FormatUint(rand.Uint64()>>1, 10))
	p := prefillBody(out)
	go func() {
		if _, err := x.runPrefill(context.WithoutCancel(ctx), w, t, p); err != nil {
			x.g.log.Warn("SGLang prefill failed", "request_id", x.reqID, "worker", w.id, "error", err)
		}
	}()
	return out, nil
}

// withField is a copy of body with one field set.
func withField(body map[string]json.RawMessage, key string, value json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(body)+1)
	for k, v := range body {
		out[k] = v
	}
	out[key] = value
	return out
}
