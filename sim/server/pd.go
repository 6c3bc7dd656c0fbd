package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"

	"github.com/strata-llm/strata/sim/engine"
)

// pullPath is the simulator's stand-in for NIXL's side channel: a decode
// worker fetches the KV a prefill worker holds for it. Real NIXL moves the
// blocks GPU to GPU; the simulator moves the token ids, from which the
// decode worker rebuilds the same blocks, and charges the transfer time.
const pullPath = "/internal/kv_transfer/pull"

type pullRequest struct {
	RemoteEngineID  string `json:"remote_engine_id"`
	RemoteRequestID string `json:"remote_request_id"`
}

type pullResponse struct {
	TokenIDs []uint32 `json:"token_ids"`
}

// heldKVParams is what a prefill worker returns for its decode peer, the
// fields vLLM's NixlConnector puts in request_finished.
func (s *Server) heldKVParams(engineReqID string, blocks []int) *kvTransferParams {
	host, port, id := s.cfg.AdvertiseHost, s.cfg.AdvertisePort, s.cfg.EngineID
	return &kvTransferParams{
		DoRemotePrefill: true,
		RemoteEngineID:  &id,
		RemoteBlockIDs:  blocks,
		RemoteRequestID: &engineReqID,
		RemoteHost:      &host,
		RemotePort:      &port,
		TPSize:          1,
	}
}

// prepareKVTransfer applies a request's kv_transfer_params: a prefill holds
// its KV for the decode worker, a decode pulls it from the prefill worker.
func (s *Server) prepareKVTransfer(ctx context.Context, g *generation, req *engine.Request) error {
	kv := g.kv
	if kv == nil || !s.cfg.KVTransfer {
		return nil
	}
	switch {
	case kv.DoRemoteDecode && kv.DoRemotePrefill:
		return badParam("kv_transfer_params", "kv_transfer_params: do_remote_decode and do_remote_prefill are exclusive")
	case kv.DoRemoteDecode:
		if s.cfg.Role == RoleDecode {
			return badParam("kv_transfer_params", "this worker has the decode role and cannot prefill for a remote decode")
		}
		req.HoldKV = true
	case kv.DoRemotePrefill:
		if s.cfg.Role == RolePrefill {
			return badParam("kv_transfer_params", "this worker has the prefill role and cannot decode")
		}
		tokens, err := s.pull(ctx, kv)
		if err != nil {
			return err
		}
		if len(tokens) > len(g.prompt) || !slices.Equal(tokens, g.prompt[:len(tokens)]) {
			return badParam("kv_transfer_params", "kv_transfer_params: the remote KV was computed for a different prompt")
		}
		req.RemoteTokens = len(tokens)
	}
	return nil
}

func (s *Server) pull(ctx context.Context, kv *kvTransferParams) ([]uint32, error) {
	if kv.RemoteEngineID == nil || kv.RemoteRequestID == nil || kv.RemoteHost == nil || kv.RemotePort == nil {
		return nil, badParam("kv_transfer_params", "kv_transfer_params: do_remote_prefill needs remote_engine_id, remote_request_id, remote_host and remote_port")
	}
	if *kv.RemotePort <= 0 || *kv.RemotePort > 65535 {
		return nil, badParam("kv_transfer_params", "kv_transfer_params: remote_port %d is not a port", *kv.RemotePort)
	}
	body, err := json.Marshal(pullRequest{RemoteEngineID: *kv.RemoteEngineID, RemoteRequestID: *kv.RemoteRequestID})
	if err != nil {
		return nil, err
	}
	url := "http://" + net.JoinHostPort(*kv.RemoteHost, strconv.Itoa(*kv.RemotePort)) + pullPath
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, badParam("kv_transfer_params", "kv_transfer_params: bad remote address: %v", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(hreq)
	if err != nil {
		return nil, &apiError{status: http.StatusBadGateway, message: fmt.Sprintf("kv transfer: prefill worker unreachable: %v", err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, badParam("kv_transfer_params", "kv_transfer_params: remote KV for request %q is unknown or expired", *kv.RemoteRequestID)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &apiError{status: http.StatusBadGateway, message: fmt.Sprintf("kv transfer: prefill worker answered %s", resp.Status)}
	}
	var pr pullResponse
	dec := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, s.cfg.MaxBodyBytes))
	if err := dec.Decode(&pr); err != nil {
		return nil, &apiError{status: http.StatusBadGateway, message: fmt.Sprintf("kv transfer: bad answer from the prefill worker: %v", err)}
	}
	return pr.TokenIDs, nil
}

func (s *Server) handlePull(w http.ResponseWriter, r *http.Request) {
	var req pullRequest
	if err := decodeJSON(w, r, 64<<10, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.RemoteEngineID != s.cfg.EngineID {
		writeError(w, &apiError{status: http.StatusNotFound, message: fmt.Sprintf("engine %q is not this worker", req.RemoteEngineID)})
		return
	}
	tokens, err := s.eng.TakeHeld(r.Context(), req.RemoteRequestID)
	switch {
	case errors.Is(err, engine.ErrNotHeld):
		writeError(w, &apiError{status: http.StatusNotFound, message: err.Error()})
	case err != nil:
		writeError(w, &apiError{status: http.StatusServiceUnavailable, message: err.Error()})
	default:
		writeJSON(w, http.StatusOK, pullResponse{TokenIDs: tokens})
	}
}
