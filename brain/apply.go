package brain

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain/fsm"
)

// apply proposes a command on this replica, which must be the leader, and
// returns Apply's value. Errors come back as gRPC statuses.
func (s *Server) apply(ctx context.Context, cmd proto.Message) (any, error) {
	b, err := fsm.Encode(cmd)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	start := time.Now()
	f := s.raft.Apply(b, s.cfg.ApplyTimeout)
	if err := s.await(ctx, f); err != nil {
		return nil, raftStatus(err)
	}
	s.metrics.applyLatency.Observe(time.Since(start).Seconds())
	if err, ok := f.Response().(error); ok {
		return nil, fsmStatus(err)
	}
	return f.Response(), nil
}

// await waits for a Raft future, but no longer than ctx or the server
// lives: hashicorp/raft does not answer every future it accepted when it
// shuts down, and a caller must never hang on one. Giving up does not
// withdraw the command; it may still commit.
func (s *Server) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return raft.ErrRaftShutdown
	}
}

func raftStatus(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown):
		// Retryable: the client (or the forwarding follower) tries again and
		// finds the new leader.
		return status.Errorf(codes.Unavailable, "not the leader: %v", err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return status.Errorf(codes.DeadlineExceeded, "raft apply: %v", err)
	default:
		return status.Errorf(codes.Internal, "raft apply: %v", err)
	}
}

func fsmStatus(err error) error {
	switch {
	case errors.Is(err, fsm.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, fsm.ErrConflict):
		return status.Error(codes.FailedPrecondition, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// forwardedKey marks a call a follower forwarded, so that the leader it
// reached never forwards it again (a stale leader view must not bounce a
// call around the cluster).
const forwardedKey = "x-strata-forwarded"

// leaderConn returns nil when this replica is the leader and should serve
// the write itself, or a connection to the leader's gRPC server. It waits
// up to LeaderWait for an election to finish.
func (s *Server) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(forwardedKey)) > 0 && !s.IsLeader() {
		return nil, status.Error(codes.Unavailable, "forwarded to a replica that is no longer the leader; retry")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LeaderWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.IsLeader() {
			return nil, nil
		}
		if addr := s.leaderGRPCAddress(); addr != "" {
			return s.peers.get(addr)
		}
		select {
		case <-ctx.Done():
			return nil, status.Errorf(codes.Unavailable, "no brain leader within %s", s.cfg.LeaderWait)
		case <-tick.C:
		}
	}
}

// leaderGRPCAddress is the leader's gRPC address, or "" while unknown.
func (s *Server) leaderGRPCAddress() string {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	var addr string
	s.fsm.Read(func(v *fsm.View) { addr = v.Brains[string(id)].GetGrpcAddress() })
	return addr
}

// forwardContext is the outgoing context of a forwarded call.
func forwardContext(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
}

// forward runs a write on this replica when it leads, and otherwise relays
// the same call to the leader.
func forward[Req, Resp any](s *Server, ctx context.Context, method string, req Req,
	local func(context.Context, Req) (Resp, error),
	remote func(*grpc.ClientConn, context.Context, Req) (Resp, error),
) (Resp, error) {
	conn, err := s.leaderConn(ctx)
	if err != nil {
		var zero Resp
		return zero, err
	}
	if conn == nil {
		return local(ctx, req)
	}
	s.metrics.forwarded.WithLabelValues(method).Inc()
	return remote(conn, forwardContext(ctx), req)
}

// peerConns caches one gRPC client connection per brain address.
type peerConns struct {
	opts  []grpc.DialOption
	err   error
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerConns(token auth.Token, files auth.TLSFiles) *peerConns {
	opts, err := auth.DialOptions(token, files)
	p := &peerConns{opts: opts, err: err, conns: map[string]*grpc.ClientConn{}}
	return p
}

func (p *peerConns) get(addr string) (*grpc.ClientConn, error) {
	if p.err != nil {
		return nil, status.Error(codes.Internal, p.err.Error())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "dial leader %s: %v", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		_ = c.Close()
		delete(p.conns, addr)
	}
}

// now is the leader's clock, stamped into commands.
func now() int64 { return time.Now().UnixNano() }
