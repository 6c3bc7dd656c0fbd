package brain

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
)

// startHTTP serves the unauthenticated operational endpoints: /healthz for
// load balancers and systemd checks, /status (Raft status as JSON) and
// /metrics. They expose no secrets and accept no writes.
func (s *Server) startHTTP() error {
	if s.cfg.HTTPAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /status", s.statusPage)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	s.httpLn = ln
	s.http = &http.Server{
		Handler:           http.MaxBytesHandler(mux, 1<<10),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server", "error", err)
		}
	}()
	return nil
}

// healthz is 200 when this replica is part of a cluster with a leader, 503
// otherwise (starting, partitioned away, or without quorum).
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	addr, id := s.raft.LeaderWithID()
	body := map[string]any{"id": s.cfg.NodeID, "state": s.raft.State().String(), "leader": string(id), "leader_address": string(addr)}
	code := http.StatusOK
	if id == "" || s.raft.State() == raft.Shutdown {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) statusPage(w http.ResponseWriter, _ *http.Request) {
	st, err := s.raftStatus()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Marshal(st)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
