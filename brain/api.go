package brain

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain/fsm"
	"github.com/strata-llm/strata/brain/spec"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// maxMessageBytes caps every gRPC message the brain receives. The largest
// legitimate ones are heartbeats of big nodes and deployment specs.
const maxMessageBytes = 4 << 20

func (s *Server) startGRPC() error {
	opts, err := auth.ServerOptions(s.cfg.ClusterToken, s.cfg.TLS)
	if err != nil {
		return err
	}
	opts = append(opts,
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.ConnectionTimeout(s.cfg.LeaderWait),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30e9, Timeout: 10e9}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10e9, PermitWithoutStream: true}),
	)
	s.grpc = grpc.NewServer(opts...)
	stratav1.RegisterAgentServiceServer(s.grpc, agentAPI{s: s})
	stratav1.RegisterGatewayServiceServer(s.grpc, gatewayAPI{s: s})
	stratav1.RegisterAdminServiceServer(s.grpc, adminAPI{s: s})
	ln, err := net.Listen("tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	s.grpcLn = ln
	if s.cfg.GRPCAdvertise, err = advertised(s.cfg.GRPCAdvertise, ln.Addr()); err != nil {
		return fmt.Errorf("grpc advertise address: %w", err)
	}
	go func() {
		if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc server", "error", err)
		}
	}()
	return nil
}

// brains lists the known brain replicas, sorted by id.
func (s *Server) brains() []*stratav1.BrainMember {
	var out []*stratav1.BrainMember
	s.fsm.Read(func(v *fsm.View) {
		for _, id := range slices.Sorted(maps.Keys(v.Brains)) {
			out = append(out, v.Brains[id])
		}
	})
	return out
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

type agentAPI struct {
	stratav1.UnimplementedAgentServiceServer
	s *Server
}

func (a agentAPI) Register(ctx context.Context, req *stratav1.RegisterRequest) (*stratav1.RegisterResponse, error) {
	if err := validateRegister(req); err != nil {
		return nil, err
	}
	return forward(a.s, ctx, "Register", req, func(ctx context.Context, req *stratav1.RegisterRequest) (*stratav1.RegisterResponse, error) {
		_, err := a.s.apply(ctx, &stratav1.RegisterNodeCommand{
			NodeId: req.GetNodeId(), Address: req.GetAddress(), Inventory: req.GetInventory(), Labels: req.GetLabels(), UnixNanos: now(),
		})
		if err != nil {
			return nil, err
		}
		return &stratav1.RegisterResponse{LeaseTtlMs: uint32(a.s.cfg.LeaseTTL.Milliseconds()), Brains: a.s.brains()}, nil
	}, func(c *grpc.ClientConn, ctx context.Context, req *stratav1.RegisterRequest) (*stratav1.RegisterResponse, error) {
		return stratav1.NewAgentServiceClient(c).Register(ctx, req)
	})
}

func validateRegister(req *stratav1.RegisterRequest) error {
	if !nodeIDPattern.MatchString(req.GetNodeId()) {
		return invalid("node_id %q: want 1-128 of [A-Za-z0-9._-], starting alphanumeric", req.GetNodeId())
	}
	if _, _, err := net.SplitHostPort(req.GetAddress()); err != nil {
		return invalid("address %q: %v", req.GetAddress(), err)
	}
	seen := map[string]bool{}
	for _, g := range req.GetInventory().GetGpus() {
		if g.GetUuid() == "" || seen[g.GetUuid()] {
			return invalid("inventory: GPU uuid %q empty or repeated", g.GetUuid())
		}
		seen[g.GetUuid()] = true
	}
	return nil
}

func (a agentAPI) Heartbeat(ctx context.Context, req *stratav1.HeartbeatRequest) (*stratav1.HeartbeatResponse, error) {
	if req.GetNodeId() == "" {
		return nil, invalid("node_id is required")
	}
	return forward(a.s, ctx, "Heartbeat", req, func(ctx context.Context, req *stratav1.HeartbeatRequest) (*stratav1.HeartbeatResponse, error) {
		unknown, err := a.s.heartbeats.submit(ctx, &stratav1.NodeHeartbeat{NodeId: req.GetNodeId(), Workers: req.GetWorkers()})
		if err != nil {
			if _, ok := status.FromError(err); !ok {
				err = status.FromContextError(err).Err()
			}
			return nil, err
		}
		return &stratav1.HeartbeatResponse{LeaseTtlMs: uint32(a.s.cfg.LeaseTTL.Milliseconds()), Reregister: unknown}, nil
	}, func(c *grpc.ClientConn, ctx context.Context, req *stratav1.HeartbeatRequest) (*stratav1.HeartbeatResponse, error) {
		return stratav1.NewAgentServiceClient(c).Heartbeat(ctx, req)
	})
}

func (a agentAPI) WatchAssignments(req *stratav1.WatchAssignmentsRequest, stream grpc.ServerStreamingServer[stratav1.WatchAssignmentsResponse]) error {
	if req.GetNodeId() == "" {
		return invalid("node_id is required")
	}
	return watch(a.s, stream.Context(), 0, func(v *fsm.View) *stratav1.WatchAssignmentsResponse {
		return assignments(v, req.GetNodeId())
	}, stream.Send)
}

type gatewayAPI struct {
	stratav1.UnimplementedGatewayServiceServer
	s *Server
}

func (g gatewayAPI) WatchCluster(_ *stratav1.WatchClusterRequest, stream grpc.ServerStreamingServer[stratav1.WatchClusterResponse]) error {
	return watch(g.s, stream.Context(), g.s.cfg.WatchClusterInterval, clusterView, stream.Send)
}

type adminAPI struct {
	stratav1.UnimplementedAdminServiceServer
	s *Server
}

func (a adminAPI) ApplyDeployment(ctx context.Context, req *stratav1.ApplyDeploymentRequest) (*stratav1.ApplyDeploymentResponse, error) {
	if req.GetSpec() == nil {
		return nil, invalid("spec is required")
	}
	sp := proto.CloneOf(req.GetSpec())
	spec.ApplyDefaults(sp)
	if err := spec.Validate(sp); err != nil {
		return nil, invalid("%v", err)
	}
	req = &stratav1.ApplyDeploymentRequest{Spec: sp}
	return forward(a.s, ctx, "ApplyDeployment", req, func(ctx context.Context, req *stratav1.ApplyDeploymentRequest) (*stratav1.ApplyDeploymentResponse, error) {
		res, err := a.s.apply(ctx, &stratav1.UpsertDeploymentCommand{Spec: req.GetSpec(), UnixNanos: now()})
		if err != nil {
			return nil, err
		}
		r := res.(fsm.UpsertResult)
		return &stratav1.ApplyDeploymentResponse{Deployment: r.Deployment, Changed: r.Changed}, nil
	}, func(c *grpc.ClientConn, ctx context.Context, req *stratav1.ApplyDeploymentRequest) (*stratav1.ApplyDeploymentResponse, error) {
		return stratav1.NewAdminServiceClient(c).ApplyDeployment(ctx, req)
	})
}

func (a adminAPI) DeleteDeployment(ctx context.Context, req *stratav1.DeleteDeploymentRequest) (*stratav1.DeleteDeploymentResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	return forward(a.s, ctx, "DeleteDeployment", req, func(ctx context.Context, req *stratav1.DeleteDeploymentRequest) (*stratav1.DeleteDeploymentResponse, error) {
		if _, err := a.s.apply(ctx, &stratav1.DeleteDeploymentCommand{Name: req.GetName(), UnixNanos: now()}); err != nil {
			return nil, err
		}
		return &stratav1.DeleteDeploymentResponse{}, nil
	}, func(c *grpc.ClientConn, ctx context.Context, req *stratav1.DeleteDeploymentRequest) (*stratav1.DeleteDeploymentResponse, error) {
		return stratav1.NewAdminServiceClient(c).DeleteDeployment(ctx, req)
	})
}

func (a adminAPI) DrainNode(ctx context.Context, req *stratav1.DrainNodeRequest) (*stratav1.DrainNodeResponse, error) {
	if req.GetNodeId() == "" {
		return nil, invalid("node_id is required")
	}
	return forward(a.s, ctx, "DrainNode", req, func(ctx context.Context, req *stratav1.DrainNodeRequest) (*stratav1.DrainNodeResponse, error) {
		res, err := a.s.apply(ctx, &stratav1.DrainNodeCommand{NodeId: req.GetNodeId(), Drained: !req.GetUndrain(), UnixNanos: now()})
		if err != nil {
			return nil, err
		}
		return &stratav1.DrainNodeResponse{Node: res.(*stratav1.Node)}, nil
	}, func(c *grpc.ClientConn, ctx context.Context, req *stratav1.DrainNodeRequest) (*stratav1.DrainNodeResponse, error) {
		return stratav1.NewAdminServiceClient(c).DrainNode(ctx, req)
	})
}

// Reads are answered from this replica's state: it may lag the leader by
// the entries in flight, and says which index it answers at.

func (a adminAPI) ListNodes(context.Context, *stratav1.ListNodesRequest) (*stratav1.ListNodesResponse, error) {
	v := a.s.fsm.View()
	return &stratav1.ListNodesResponse{Nodes: sortedByKey(v.Nodes), Index: v.Index}, nil
}

func (a adminAPI) ListDeployments(context.Context, *stratav1.ListDeploymentsRequest) (*stratav1.ListDeploymentsResponse, error) {
	v := a.s.fsm.View()
	return &stratav1.ListDeploymentsResponse{Deployments: sortedByKey(v.Deployments), Index: v.Index}, nil
}

func (a adminAPI) ListWorkers(_ context.Context, req *stratav1.ListWorkersRequest) (*stratav1.ListWorkersResponse, error) {
	v := a.s.fsm.View()
	out := &stratav1.ListWorkersResponse{Index: v.Index}
	for _, w := range sortedByKey(v.Workers) {
		if (req.GetDeployment() == "" || w.GetDeployment() == req.GetDeployment()) && (req.GetNodeId() == "" || w.GetNodeId() == req.GetNodeId()) {
			out.Workers = append(out.Workers, w)
		}
	}
	return out, nil
}

func sortedByKey[V any](m map[string]V) []V {
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

func (a adminAPI) RaftStatus(context.Context, *stratav1.RaftStatusRequest) (*stratav1.RaftStatusResponse, error) {
	return a.s.raftStatus()
}

func (s *Server) raftStatus() (*stratav1.RaftStatusResponse, error) {
	stats := s.raft.Stats()
	leaderAddr, leaderID := s.raft.LeaderWithID()
	out := &stratav1.RaftStatusResponse{
		Id:                s.cfg.NodeID,
		State:             s.raft.State().String(),
		LeaderId:          string(leaderID),
		LeaderRaftAddress: string(leaderAddr),
		LeaderGrpcAddress: s.leaderGRPCAddress(),
		Term:              parseUint(stats["term"]),
		CommitIndex:       s.raft.CommitIndex(),
		AppliedIndex:      s.raft.AppliedIndex(),
		LastLogIndex:      s.raft.LastIndex(),
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raftStatus(err)
	}
	brains := map[string]string{}
	for _, b := range s.brains() {
		brains[b.GetId()] = b.GetGrpcAddress()
	}
	for _, srv := range f.Configuration().Servers {
		out.Servers = append(out.Servers, &stratav1.RaftServer{
			Id: string(srv.ID), Address: string(srv.Address), Suffrage: srv.Suffrage.String(),
			Leader: srv.ID == leaderID, GrpcAddress: brains[string(srv.ID)],
		})
	}
	slices.SortFunc(out.Servers, func(a, b *stratav1.RaftServer) int { return cmp.Compare(a.Id, b.Id) })
	return out, nil
}

func (a adminAPI) AddPeer(ctx context.Context, req *stratav1.AddPeerRequest) (*stratav1.AddPeerResponse, error) {
	m := req.GetMember()
	if !nodeIDPattern.MatchString(m.GetId()) {
		return nil, invalid("member id %q: want 1-128 of [A-Za-z0-9._-], starting alphanumeric", m.GetId())
	}
	for name, addr := range map[string]string{"raft_address": m.GetRaftAddress(), "grpc_address": m.GetGrpcAddress()} {
		if err := dialable(addr); err != nil {
			return nil, invalid("member %s: %v", name, err)
		}
	}
	return forward(a.s, ctx, "AddPeer", req, a.s.addPeer, func(c *grpc.ClientConn, ctx context.Context, req *stratav1.AddPeerRequest) (*stratav1.AddPeerResponse, error) {
		return stratav1.NewAdminServiceClient(c).AddPeer(ctx, req)
	})
}

// addPeer adds a voter. The member's addresses are committed first, so the
// moment it counts as a voter every replica can forward to it.
func (s *Server) addPeer(ctx context.Context, req *stratav1.AddPeerRequest) (*stratav1.AddPeerResponse, error) {
	m := req.GetMember()
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raftStatus(err)
	}
	present := false
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == m.GetId() && string(srv.Address) == m.GetRaftAddress() && srv.Suffrage == raft.Voter {
			present = true
		}
	}
	var cur *stratav1.BrainMember
	s.fsm.Read(func(v *fsm.View) { cur = v.Brains[m.GetId()] })
	known := proto.Equal(cur, m)
	if !known {
		if _, err := s.apply(ctx, &stratav1.SetBrainMemberCommand{Member: m}); err != nil {
			return nil, err
		}
	}
	if present {
		return &stratav1.AddPeerResponse{Changed: !known}, nil
	}
	if err := s.await(ctx, s.raft.AddVoter(raft.ServerID(m.GetId()), raft.ServerAddress(m.GetRaftAddress()), 0, s.cfg.ApplyTimeout)); err != nil {
		return nil, raftStatus(err)
	}
	s.log.Info("brain peer added", "id", m.GetId(), "raft", m.GetRaftAddress(), "grpc", m.GetGrpcAddress())
	return &stratav1.AddPeerResponse{Changed: true}, nil
}

func (a adminAPI) RemovePeer(ctx context.Context, req *stratav1.RemovePeerRequest) (*stratav1.RemovePeerResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("id is required")
	}
	return forward(a.s, ctx, "RemovePeer", req, func(ctx context.Context, req *stratav1.RemovePeerRequest) (*stratav1.RemovePeerResponse, error) {
		f := a.s.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return nil, raftStatus(err)
		}
		found := slices.ContainsFunc(f.Configuration().Servers, func(srv raft.Server) bool { return string(srv.ID) == req.GetId() })
		if !found {
			return nil, status.Errorf(codes.NotFound, "brain %q is not a member", req.GetId())
		}
		// Forget the addresses first: once removed, a replica can no longer
		// commit anything, and it must not be forwarded to.
		if _, err := a.s.apply(ctx, &stratav1.RemoveBrainMemberCommand{Id: req.GetId()}); err != nil {
			return nil, err
		}
		if err := a.s.await(ctx, a.s.raft.RemoveServer(raft.ServerID(req.GetId()), 0, a.s.cfg.ApplyTimeout)); err != nil {
			return nil, raftStatus(err)
		}
		a.s.log.Info("brain peer removed", "id", req.GetId())
		return &stratav1.RemovePeerResponse{}, nil
	}, func(c *grpc.ClientConn, ctx context.Context, req *stratav1.RemovePeerRequest) (*stratav1.RemovePeerResponse, error) {
		return stratav1.NewAdminServiceClient(c).RemovePeer(ctx, req)
	})
}
