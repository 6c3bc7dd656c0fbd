// Package brain is Strata's control plane: a replica of the Raft group that
// holds nodes, deployments and worker placement (brain/fsm), serves the
// agent, gateway and admin gRPC APIs, forwards writes from followers to the
// leader, and runs the leader-only loops (lease expiry, placement
// reconcile, planner).
package brain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/strata-llm/strata/brain/fsm"
	"github.com/strata-llm/strata/brain/kvindex"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Server is one brain replica.
type Server struct {
	cfg Config
	log *slog.Logger

	fsm       *fsm.FSM
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	transport raft.Transport
	member    *stratav1.BrainMember

	grpc     *grpc.Server
	grpcLn   net.Listener
	http     *http.Server
	httpLn   net.Listener
	metrics  *metrics
	registry *prometheus.Registry

	leaderNotify <-chan bool
	heartbeats   *heartbeatBatcher
	kv           *kvindex.Index
	peers        *peerConns

	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup

	shutdownOnce sync.Once
	shutdownErr  error
}

// NewServer opens the data dir, starts Raft, the gRPC and HTTP listeners
// and the leadership monitor. It returns once everything listens; joining
// and elections go on in the background.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("brain config: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("brain", cfg.NodeID), fsm: fsm.New(cfg.Logger.With("component", "fsm"))}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			_ = s.Shutdown()
		}
	}()
	if err := s.startRaft(); err != nil {
		return nil, err
	}
	s.peers = newPeerConns(cfg.ClusterToken, cfg.TLS)
	s.heartbeats = newHeartbeatBatcher(s)
	s.registry = prometheus.NewRegistry()
	s.metrics = newMetrics(s, s.registry)
	s.kv = newKVIndex(s.registry, kvindex.Options{MaxBlocksPerModel: cfg.KVMaxBlocksPerModel})
	if err := s.startGRPC(); err != nil {
		return nil, err
	}
	s.member = &stratav1.BrainMember{Id: cfg.NodeID, RaftAddress: string(s.transport.LocalAddr()), GrpcAddress: s.cfg.GRPCAdvertise}
	if err := s.startHTTP(); err != nil {
		return nil, err
	}
	s.member.HttpAddress = s.cfg.HTTPAddr
	if s.httpLn != nil {
		s.member.HttpAddress = s.httpLn.Addr().String()
	}
	s.goFunc(s.heartbeats.run)
	s.goFunc(s.monitorLeadership)
	s.goFunc(s.syncKVWorkers)
	if len(cfg.Join) > 0 {
		s.goFunc(s.joinLoop)
	}
	ok = true
	s.log.Info("brain started", "raft", s.member.RaftAddress, "grpc", s.member.GrpcAddress, "http", s.member.HttpAddress, "data_dir", cfg.DataDir)
	return s, nil
}

func (s *Server) goFunc(f func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.ctx)
	}()
}

func (s *Server) startRaft() error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(s.cfg.DataDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open raft store: %w", err)
	}
	s.store = store
	hlog := hclog.FromStandardLogger(slog.NewLogLogger(s.log.Handler(), slog.LevelInfo), &hclog.LoggerOptions{Name: "raft", Level: hclog.Info})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.cfg.DataDir, 3, hlog)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}

	if s.cfg.RaftTransport != nil {
		s.transport = s.cfg.RaftTransport
	} else if err := s.listenRaft(hlog); err != nil {
		return err
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = s.cfg.RaftHeartbeatTimeout
	rc.ElectionTimeout = s.cfg.RaftElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.RaftLeaderLeaseTimeout
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	// NotifyCh, unlike LeaderCh, is never dropped from: every leadership
	// change reaches monitorLeadership in order.
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	s.leaderNotify = notify

	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	r, err := raft.NewRaft(rc, s.fsm, store, store, snaps, s.transport)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	if s.cfg.Bootstrap && !existing {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: s.transport.LocalAddr()}}}
		if err := r.BootstrapCluster(cfg).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap: %w", err)
		}
		s.log.Info("bootstrapped a new cluster")
	}
	return nil
}

// listenRaft opens the TCP transport, with the cluster-token handshake.
func (s *Server) listenRaft(hlog hclog.Logger) error {
	ln, err := net.Listen("tcp", s.cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("raft listen: %w", err)
	}
	adv, err := advertised(s.cfg.RaftAdvertise, ln.Addr())
	if err == nil {
		var advAddr *net.TCPAddr
		if advAddr, err = net.ResolveTCPAddr("tcp", adv); err == nil {
			var layer *streamLayer
			if layer, err = newStreamLayer(ln, advAddr, s.cfg.ClusterToken, s.cfg.TLS, s.log.With("component", "raft-net")); err == nil {
				s.transport = raft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, hlog)
				return nil
			}
		}
	}
	_ = ln.Close()
	return fmt.Errorf("raft transport: %w", err)
}

// Shutdown stops serving and leaves Raft's on-disk state intact: a restart
// with the same data dir picks up where this replica left off.
func (s *Server) Shutdown() error {
	s.shutdownOnce.Do(func() {
		s.cancel()
		var errs []error
		if s.grpc != nil {
			// Streams (watches) never end on their own: stop them after a grace.
			done := make(chan struct{})
			go func() { s.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				s.grpc.Stop()
			}
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			errs = append(errs, s.http.Shutdown(ctx))
			cancel()
		}
		if s.raft != nil {
			errs = append(errs, s.raft.Shutdown().Error())
		}
		s.wg.Wait()
		if c, ok := s.transport.(raft.WithClose); ok {
			errs = append(errs, c.Close())
		}
		if s.store != nil {
			errs = append(errs, s.store.Close())
		}
		if s.peers != nil {
			s.peers.close()
		}
		s.shutdownErr = errors.Join(errs...)
		s.log.Info("brain stopped")
	})
	return s.shutdownErr
}

// FSM exposes the replicated state for reads (tests, the status page).
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Raft exposes the Raft node (tests, status).
func (s *Server) Raft() *raft.Raft { return s.raft }

// Member is this replica's addresses.
func (s *Server) Member() *stratav1.BrainMember { return s.member }

// IsLeader says whether this replica is the Raft leader now.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// KV is this replica's KV index (soft state, fed by agents).
func (s *Server) KV() *kvindex.Index { return s.kv }

// Registry is the Prometheus registry served on /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }
