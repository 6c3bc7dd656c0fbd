package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/zeebo/xxh3"
)

// embeddingDims is the width of the simulator's embeddings (a small
// sentence-embedding model's).
const embeddingDims = 384

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

type embeddingData struct {
	Index     int    `json:"index"`
	Object    string `json:"object"`
	Embedding any    `json:"embedding"`
}

type embeddingResponse struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Data    []embeddingData `json:"data"`
	Usage   usage           `json:"usage"`
}

// handleEmbeddings serves vLLM's /v1/embeddings: one vector per input, as
// a pooling model computes it in one prefill. The vectors are not
// semantic: a unit vector drawn from a generator seeded with the input's
// token ids, so equal inputs embed equally. It takes the prefill's time.
func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.checkModel(req.Model); err != nil {
		writeError(w, err)
		return
	}
	inputs, err := s.embeddingInputs(req.Input)
	if err != nil {
		writeError(w, err)
		return
	}
	dims := embeddingDims
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > embeddingDims {
			writeError(w, badParam("dimensions", "dimensions must be between 1 and %d", embeddingDims))
			return
		}
		dims = *req.Dimensions
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		writeError(w, badParam("encoding_format", "encoding_format must be \"float\" or \"base64\""))
		return
	}
	res := embeddingResponse{ID: "embd-" + s.requestID(r), Object: "list", Created: time.Now().Unix(), Model: s.cfg.ServedModelNames[0]}
	tokens := 0
	for i, ids := range inputs {
		tokens += len(ids)
		v := embed(ids, dims)
		var out any = v
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(f))
			}
			out = base64.StdEncoding.EncodeToString(b)
		}
		res.Data = append(res.Data, embeddingData{Index: i, Object: "embedding", Embedding: out})
	}
	res.Usage = usage{PromptTokens: tokens, TotalTokens: tokens}
	cfg := s.eng.Config()
	t := time.NewTimer(time.Duration(float64(cfg.Timing.Prefill(tokens)) / cfg.Speedup))
	select {
	case <-r.Context().Done():
		t.Stop()
		return
	case <-t.C:
	}
	writeJSON(w, http.StatusOK, res)
}

// embeddingInputs reads input: a string, token ids, or an array of either.
func (s *Server) embeddingInputs(raw json.RawMessage) ([][]uint32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badParam("input", "input is required")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return s.embeddingText([]string{one})
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil {
		t, err := s.checkIDs("input", ids)
		return [][]uint32{t}, err
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil && len(texts) > 0 {
		return s.embeddingText(texts)
	}
	var batches [][]int64
	if json.Unmarshal(raw, &batches) == nil && len(batches) > 0 {
		out := make([][]uint32, len(batches))
		for i, b := range batches {
			var err error
			if out[i], err = s.checkIDs("input", b); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, badParam("input", "input must be a string, token ids, or a non-empty array of either")
}

func (s *Server) embeddingText(texts []string) ([][]uint32, error) {
	out := make([][]uint32, len(texts))
	for i, t := range texts {
		if t == "" {
			return nil, badParam("input", "input must not be empty")
		}
		out[i] = s.tok.Encode(t, true)
	}
	return out, nil
}

// embed is the unit vector drawn for these token ids, its first dims
// components renormalised (as vLLM shortens a Matryoshka embedding).
func embed(ids []uint32, dims int) []float32 {
	b := make([]byte, 4*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint32(b[4*i:], id)
	}
	rng := rand.New(rand.NewPCG(xxh3.Hash(b), uint64(len(ids))))
	full := make([]float32, embeddingDims)
	for i := range full {
		full[i] = float32(rng.NormFloat64())
	}
	v := full[:dims]
	var norm float64
	for _, x := range v {
		norm += float64(x) * float64(x)
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}
