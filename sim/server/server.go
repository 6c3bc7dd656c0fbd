// Package server is the HTTP face of `strata sim`: the subset of vLLM's
// OpenAI-compatible server that Strata and its users rely on, answered from
// the simulated engine, with vLLM's endpoints, error shapes, metrics and
// NixlConnector-style prefill/decode handshake.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strata-llm/strata/sim/engine"
	"github.com/strata-llm/strata/tokenizer"
)

// Role is the part a simulated worker plays in disaggregated serving.
type Role string

// Roles, as vLLM's kv_role: a prefill worker holds KV for a remote decode, a
// decode worker pulls it, both does either.
const (
	RolePrefill Role = "prefill"
	RoleDecode  Role = "decode"
	RoleBoth    Role = "both"
)

// Config configures the HTTP server.
type Config struct {
	// ServedModelNames are the names the model answers to; the first is
	// reported in responses, as vLLM does.
	ServedModelNames []string
	MaxModelLen      int
	// KVTransfer enables the P/D handshake; without it kv_transfer_params
	// are ignored, as vLLM without a KV connector ignores them.
	KVTransfer bool
	Role       Role
	// EngineID identifies this worker in kv_transfer_params.
	EngineID string
	// AdvertiseHost and AdvertisePort are where remote decode workers pull
	// held KV from (vLLM's NIXL side channel).
	AdvertiseHost string
	AdvertisePort int
	MaxBodyBytes  int64
	// StallAfter > 0 injects a fault for tests of health checking: after
	// that many completion requests, every further one hangs until its
	// client gives up, while /health keeps answering 200 — a wedged engine
	// (a stuck collective, a deadlocked scheduler) whose HTTP server lives.
	StallAfter int
	Logger     *slog.Logger
}

// Server serves the OpenAI API from an engine.
type Server struct {
	cfg     Config
	eng     *engine.Engine
	tok     tokenizer.Tokenizer
	log     *slog.Logger
	metrics *metrics
	reg     *prometheus.Registry
	client  *http.Client
	seq     atomic.Uint64
	served  atomic.Int64 // completion requests, for StallAfter
	mux     *http.ServeMux
}

// stall wraps a completion handler with the StallAfter fault.
func (s *Server) stall(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.StallAfter <= 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if s.served.Add(1) > int64(s.cfg.StallAfter) {
			// Read the body first: only then does net/http watch the
			// connection and cancel the context when the client leaves.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		h(w, r)
	}
}

// New builds a server over eng. Its metrics go to their own registry, so
// several simulated engines can live in one process (tests, benchmarks).
func New(cfg Config, eng *engine.Engine, tok tokenizer.Tokenizer) (*Server, error) {
	if len(cfg.ServedModelNames) == 0 {
		return nil, errors.New("server config: no served model name")
	}
	switch cfg.Role {
	case RolePrefill, RoleDecode, RoleBoth:
	case "":
		cfg.Role = RoleBoth
	default:
		return nil, fmt.Errorf("server config: role %q: want prefill, decode or both", cfg.Role)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 32 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:    cfg,
		eng:    eng,
		tok:    tok,
		log:    cfg.Logger,
		reg:    prometheus.NewRegistry(),
		client: &http.Client{Timeout: 30 * time.Second},
		mux:    http.NewServeMux(),
	}
	s.metrics = newMetrics(s.reg, cfg.ServedModelNames[0], eng)
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.mux.HandleFunc("GET /v1/models", s.handleModels)
	s.mux.HandleFunc("POST /v1/chat/completions", s.stall(s.handleChat))
	s.mux.HandleFunc("POST /v1/completions", s.stall(s.handleCompletion))
	s.mux.HandleFunc("POST /v1/embeddings", s.handleEmbeddings)
	s.mux.HandleFunc("POST /tokenize", s.handleTokenize)
	s.mux.HandleFunc("POST /detokenize", s.handleDetokenize)
	s.mux.HandleFunc("POST /reset_prefix_cache", s.handleResetPrefixCache)
	s.mux.HandleFunc("POST "+pullPath, s.handlePull)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
}

// Handler returns the server's HTTP handler: routes plus request ids and
// the OpenAI error envelope for unknown paths and methods.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("X-Request-Id"); id != "" {
			w.Header().Set("X-Request-Id", id)
		}
		h, pattern := s.mux.Handler(r)
		if pattern == "" {
			// ServeMux answers 404/405 in plain text; clients expect JSON.
			rec := &statusRecorder{ResponseWriter: w}
			h.ServeHTTP(rec, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// statusRecorder replaces ServeMux's plain-text 404 and 405 with the error
// envelope.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		msg := "Not Found"
		if code == http.StatusMethodNotAllowed {
			msg = "Method Not Allowed"
		}
		s.ResponseWriter.Header().Del("X-Content-Type-Options")
		writeError(s.ResponseWriter, &apiError{status: code, message: msg})
		return
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == http.StatusNotFound || s.status == http.StatusMethodNotAllowed {
		return len(b), nil
	}
	return s.ResponseWriter.Write(b)
}

// Serve answers on ln until ctx ends, then drains for up to ten seconds.
// Timeouts bound slow clients; there is no write timeout because a stream
// lasts as long as its generation.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		// Streams still running after the grace period are cut; their
		// requests are aborted through their contexts.
		_ = hs.Close()
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	list := modelList{Object: "list"}
	for _, name := range s.cfg.ServedModelNames {
		list.Data = append(list.Data, modelCard{
			ID: name, Object: "model", Created: time.Now().Unix(), OwnedBy: "vllm",
			Root: s.cfg.ServedModelNames[0], MaxModelLen: s.cfg.MaxModelLen,
		})
	}
	writeJSON(w, http.StatusOK, list)
}

// checkModel accepts an empty model (vLLM then uses the default) or any
// served name.
func (s *Server) checkModel(name string) error {
	if name == "" {
		return nil
	}
	for _, n := range s.cfg.ServedModelNames {
		if n == name {
			return nil
		}
	}
	return &apiError{status: http.StatusNotFound, message: fmt.Sprintf("The model `%s` does not exist.", name), param: "model"}
}

// requestID is the id a request is known by: the caller's X-Request-Id when
// given, so logs and the P/D handshake line up across workers.
func (s *Server) requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" {
		return id
	}
	return strconv.FormatUint(s.seq.Add(1), 16) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

func (s *Server) handleResetPrefixCache(w http.ResponseWriter, r *http.Request) {
	ok, err := s.eng.ResetPrefixCache(r.Context())
	if err != nil {
		writeError(w, &apiError{status: http.StatusServiceUnavailable, message: err.Error()})
		return
	}
	if !ok {
		writeError(w, badRequest("cannot reset the prefix cache while requests hold blocks"))
		return
	}
	w.WriteHeader(http.StatusOK)
}
