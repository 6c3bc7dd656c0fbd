package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/strata-llm/strata/tokenizer"
)

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	chat, err := decodeChat(w, r, s.cfg.MaxBodyBytes, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.checkModel(req.Model); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, badParam("messages", "messages must not be empty"))
		return
	}
	if err := checkN(req.N); err != nil {
		writeError(w, err)
		return
	}
	tool, err := forcedTool(req.Tools, req.ToolChoice)
	if err != nil {
		writeError(w, err)
		return
	}
	text, err := s.tok.ApplyChatTemplate(chat)
	if err != nil {
		writeError(w, badParam("messages", "%v", err))
		return
	}
	maxTokens := req.MaxCompletionTokens
	if maxTokens == nil {
		maxTokens = req.MaxTokens
	}
	s.generate(w, r, &generation{
		chat:         true,
		requestID:    s.requestID(r),
		model:        s.cfg.ServedModelNames[0],
		prompt:       s.tok.Encode(text, false),
		maxTokens:    maxTokens,
		ignoreEOS:    req.IgnoreEOS,
		seed:         req.Seed,
		stop:         req.Stop,
		stream:       req.Stream,
		includeUsage: req.Stream && req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
		kv:           req.KVTransferParams,
		tool:         tool,
	})
}

func (s *Server) handleCompletion(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.checkModel(req.Model); err != nil {
		writeError(w, err)
		return
	}
	if err := checkN(req.N); err != nil {
		writeError(w, err)
		return
	}
	prompt, err := s.parsePrompt(req.Prompt)
	if err != nil {
		writeError(w, err)
		return
	}
	s.generate(w, r, &generation{
		requestID:    s.requestID(r),
		model:        s.cfg.ServedModelNames[0],
		prompt:       prompt,
		maxTokens:    req.MaxTokens,
		ignoreEOS:    req.IgnoreEOS,
		seed:         req.Seed,
		stop:         req.Stop,
		stream:       req.Stream,
		includeUsage: req.Stream && req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
		kv:           req.KVTransferParams,
	})
}

// decodeChat decodes a chat or tokenize body into its typed request and,
// from the same bytes, into the chat template's view of it (which keeps
// key order and raw content parts: tokenizer.ChatRequest).
func decodeChat(w http.ResponseWriter, r *http.Request, limit int64, typed any) (tokenizer.ChatRequest, error) {
	var raw bytes.Buffer
	r.Body = io.NopCloser(io.TeeReader(r.Body, &raw))
	if err := decodeJSON(w, r, limit, typed); err != nil {
		return tokenizer.ChatRequest{}, err
	}
	var chat tokenizer.ChatRequest
	if err := json.Unmarshal(raw.Bytes(), &chat); err != nil {
		return tokenizer.ChatRequest{}, badRequest("%v", err)
	}
	return chat, nil
}

func checkN(n *int) error {
	if n != nil && *n != 1 {
		return badParam("n", "n must be 1: strata sim generates one choice per request")
	}
	return nil
}

// parsePrompt accepts what vLLM's completions endpoint accepts for a single
// prompt: a string, token ids, or a one-element array of either. Text gets
// the tokenizer's special tokens, as vLLM adds BOS to completion prompts.
func (s *Server) parsePrompt(raw json.RawMessage) ([]uint32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badParam("prompt", "prompt is required")
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		if text == "" {
			return nil, badParam("prompt", "prompt must not be empty")
		}
		return s.tok.Encode(text, true), nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil {
		return s.checkIDs("prompt", ids)
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil && len(texts) == 1 {
		return s.parsePrompt(json.RawMessage(raw[1 : len(raw)-1]))
	}
	var batches [][]int64
	if json.Unmarshal(raw, &batches) == nil && len(batches) == 1 {
		return s.checkIDs("prompt", batches[0])
	}
	if len(texts) > 1 || len(batches) > 1 {
		return nil, badParam("prompt", "batched prompts are not supported: send one prompt per request")
	}
	return nil, badParam("prompt", "prompt must be a string, an array of token ids, or a one-element array of either")
}

func (s *Server) checkIDs(param string, ids []int64) ([]uint32, error) {
	if len(ids) == 0 {
		return nil, badParam(param, "%s must not be empty", param)
	}
	out := make([]uint32, len(ids))
	for i, id := range ids {
		if id < 0 || id >= int64(s.tok.VocabSize()) {
			return nil, badParam(param, "token id %d at position %d is out of vocabulary (size %d)", id, i, s.tok.VocabSize())
		}
		out[i] = uint32(id)
	}
	return out, nil
}

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req tokenizeRequest
	chat, err := decodeChat(w, r, s.cfg.MaxBodyBytes, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.checkModel(req.Model); err != nil {
		writeError(w, err)
		return
	}
	var ids []uint32
	switch {
	case req.Prompt != nil && req.Messages != nil:
		writeError(w, badRequest("give either prompt or messages, not both"))
		return
	case req.Prompt != nil:
		ids = s.tok.Encode(*req.Prompt, req.AddSpecialTokens == nil || *req.AddSpecialTokens)
	case req.Messages != nil:
		// As vLLM: the template writes the BOS, so add_special_tokens
		// defaults to false here.
		text, err := s.tok.ApplyChatTemplate(chat)
		if err != nil {
			writeError(w, badParam("messages", "%v", err))
			return
		}
		ids = s.tok.Encode(text, req.AddSpecialTokens != nil && *req.AddSpecialTokens)
	default:
		writeError(w, badRequest("prompt or messages is required"))
		return
	}
	writeJSON(w, http.StatusOK, tokenizeResponse{Count: len(ids), MaxModelLen: s.cfg.MaxModelLen, Tokens: ids})
}

func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	var req detokenizeRequest
	if err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.checkModel(req.Model); err != nil {
		writeError(w, err)
		return
	}
	ids, err := s.checkIDs("tokens", req.Tokens)
	if err != nil {
		writeError(w, err)
		return
	}
	text, err := s.tok.Decode(ids, false)
	if err != nil {
		writeError(w, badParam("tokens", "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, detokenizeResponse{Prompt: text})
}
