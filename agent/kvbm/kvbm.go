// Package kvbm is the agent's KV block manager: the node's tiers (package
// tiers: host memory, local NVMe, the bucket the cluster shares) behind a
// block API for the engines' KV connectors, gRPC on a Unix socket under the
// agent's data directory (proto/strata/v1/kvbm.proto, docs/kvbm.md).
//
// Connectors offload the blocks their GPU pool evicts (PutKVBlocks), look
// up which blocks of a prompt the tiers hold (LookupKVBlocks, with a pin
// so that they stay until read) and onboard them (GetKVBlocks). Every
// change of the tiers becomes a KV event of the workers whose connectors
// opened the block's scope, sent through the agent's event stream to every
// brain replica: the agent's hierarchy is the single source of the CPU,
// DISK and REMOTE media in the index (engines report their GPU only).
package kvbm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/strata-llm/strata/agent/kvbm/internal/wire"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tiers"
)

// Limits bound the block API; OpenKVScope tells connectors.
type Limits struct {
	// MaxBatchBlocks bounds the hashes of one lookup, get or pin (default
	// 8192: a 128k-token prompt of 16-token blocks, as the brain's Score).
	MaxBatchBlocks int
	// MaxChunkBytes bounds the data of one get or put message (default
	// 4 MiB: a 2 MiB block is one message).
	MaxChunkBytes uint64
	// MaxBlockBytes bounds one block (default and at most
	// tiers.MaxBlockSize).
	MaxBlockBytes uint64
	// MaxPinTTL bounds a pin (default 5 minutes).
	MaxPinTTL time.Duration
	// StreamIdleTimeout aborts a put stream that sends nothing for this
	// long (default 30 s).
	StreamIdleTimeout time.Duration
	// CallTimeout bounds a call whose client set no deadline (default
	// 60 s).
	CallTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxBatchBlocks <= 0 {
		l.MaxBatchBlocks = 8192
	}
	if l.MaxChunkBytes == 0 {
		l.MaxChunkBytes = 4 << 20
	}
	if l.MaxBlockBytes == 0 || l.MaxBlockBytes > tiers.MaxBlockSize {
		l.MaxBlockBytes = tiers.MaxBlockSize
	}
	def(&l.MaxPinTTL, 5*time.Minute)
	def(&l.StreamIdleTimeout, 30*time.Second)
	def(&l.CallTimeout, time.Minute)
	return l
}

func (l Limits) proto() *stratav1.KVLimits {
	return &stratav1.KVLimits{
		MaxBatchBlocks: uint32(l.MaxBatchBlocks), MaxChunkBytes: l.MaxChunkBytes, MaxBlockBytes: l.MaxBlockBytes,
		MaxPinTtlMs: uint32(l.MaxPinTTL.Milliseconds()), StreamIdleTimeoutMs: uint32(l.StreamIdleTimeout.Milliseconds()),
	}
}

// msgOverhead is what a message may carry beyond its chunk of data: a
// full batch of hashes (8192 × 9 bytes) and the fields around it.
const msgOverhead = 1 << 20

// Config configures a Server.
type Config struct {
	// Dir is where the socket is bound (SocketName in it): the agent's
	// <data-dir>/kvbm. Created 0700.
	Dir   string
	Tiers TierConfig
	// Workers tells which workers the agent runs and takes their tier
	// events. Required.
	Workers Workers
	// Registerer receives the tiers' and the API's metrics (nil: none).
	Registerer prometheus.Registerer
	Limits     Limits
	Logger     *slog.Logger
}

// Server is the node's KVBM.
type Server struct {
	log    *slog.Logger
	limits Limits
	h      *tiers.Hierarchy
	stores []tiers.Store
	reg    *registry
	media  []stratav1.Medium
	ln     net.Listener
	path   string
	srv    *grpc.Server
	m      *apiMetrics

	closeOnce sync.Once
}

// New opens the tiers and binds the socket; Serve serves it.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" || cfg.Workers == nil {
		return nil, errors.New("kvbm: a socket dir and the agent's workers are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log, limits: cfg.Limits.withDefaults(), m: newAPIMetrics(cfg.Registerer)}
	s.reg = newRegistry(cfg.Workers, func() map[tiers.Medium][]tiers.Key { return s.h.Blocks() })
	h, stores, err := openTiers(ctx, cfg.Tiers, tiers.Config{OnEvent: s.reg.onEvent, Metrics: tiers.NewMetrics(cfg.Registerer)}, log)
	if err != nil {
		return nil, fmt.Errorf("kvbm: %w", err)
	}
	s.h, s.stores = h, stores
	for _, t := range h.Stats().Tiers {
		s.media = append(s.media, stratav1.Medium(t.Medium))
	}
	if s.ln, s.path, err = listen(cfg.Dir, log); err != nil {
		s.closeTiers()
		return nil, err
	}
	maxMsg := int(s.limits.MaxChunkBytes) + msgOverhead
	s.srv = grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg),
		// Block bytes are neither copied out of the messages received nor
		// into the ones sent (package wire).
		grpc.ForceServerCodecV2(wire.Codec{}),
		// A local socket has no bandwidth-delay product to probe: fixed
		// windows of many blocks keep the sender from waiting on acks.
		grpc.InitialWindowSize(16<<20), grpc.InitialConnWindowSize(64<<20),
		grpc.ReadBufferSize(256<<10), grpc.WriteBufferSize(256<<10),
		grpc.MaxConcurrentStreams(256),
		grpc.ConnectionTimeout(5*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	)
	stratav1.RegisterKVBlockServiceServer(s.srv, &service{s: s})
	log.Info("kvbm ready", "socket", s.path, "tiers", cfg.Tiers)
	return s, nil
}

// SocketPath is the socket connectors dial.
func (s *Server) SocketPath() string { return s.path }

// Hierarchy is the node's tiers.
func (s *Server) Hierarchy() *tiers.Hierarchy { return s.h }

// Serve answers connectors until Close; it returns nil then.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("kvbm: %w", err)
	}
	return nil
}

// Close stops serving (calls under way get a moment to finish), closes the
// tiers (queued remote writes are dropped) and removes the socket.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		done := make(chan struct{})
		go func() { s.srv.GracefulStop(); close(done) }()
		t := time.NewTimer(2 * time.Second)
		select {
		case <-done:
		case <-t.C:
			s.srv.Stop()
			<-done
		}
		t.Stop()
		_ = os.Remove(s.path)
		s.closeTiers()
	})
	return nil
}

func (s *Server) closeTiers() {
	_ = s.h.Close()
	for _, st := range s.stores {
		_ = st.Close()
	}
}

// TierBlocks is a worker's blocks on the tiers as BlockStored events, for
// its KV snapshots (kvevents.TierBlocks).
func (s *Server) TierBlocks(workerID string) []*stratav1.KVEvent { return s.reg.workerBlocks(workerID) }

// ForgetWorker stops reporting tier changes for a worker that left.
func (s *Server) ForgetWorker(workerID string) { s.reg.forget(workerID) }
