package brain

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/strata-llm/strata/auth"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

// TestClusterToken is the token TestServer configures.
const TestClusterToken auth.Token = "test-cluster-token"

var testServerSeq atomic.Uint64

// TestServer starts a brain on loopback with fast Raft timers, a temporary
// data dir and the test cluster token, bootstrapped as a cluster of one
// unless cb says otherwise. cb may change any field. The server is shut
// down when the test ends. Logs go to stderr when STRATA_TEST_LOG is set.
func TestServer(t testing.TB, cb func(*Config)) *Server {
	t.Helper()
	n := testServerSeq.Add(1)
	cfg := Config{
		NodeID:                 fmt.Sprintf("brain-%d", n),
		DataDir:                t.TempDir(),
		RaftAddr:               "127.0.0.1:0",
		GRPCAddr:               "127.0.0.1:0",
		HTTPAddr:               "127.0.0.1:0",
		Bootstrap:              true,
		ClusterToken:           TestClusterToken,
		LeaseTTL:               2 * time.Second,
		ReconcileInterval:      200 * time.Millisecond,
		WatchClusterInterval:   20 * time.Millisecond,
		LeaderWait:             5 * time.Second,
		ApplyTimeout:           5 * time.Second,
		RaftHeartbeatTimeout:   100 * time.Millisecond,
		RaftElectionTimeout:    100 * time.Millisecond,
		RaftLeaderLeaseTimeout: 100 * time.Millisecond,
		Logger:                 testLogger(),
	}
	if cb != nil {
		cb(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("start test brain: %v", err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

func testLogger() *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// RestartTestServer starts a stopped server again on the same data dir
// and addresses, as a process restart would.
func RestartTestServer(t testing.TB, old *Server, cb func(*Config)) *Server {
	t.Helper()
	cfg := old.cfg
	cfg.RaftAddr = old.member.GetRaftAddress()
	cfg.GRPCAddr = old.member.GetGrpcAddress()
	cfg.HTTPAddr = old.member.GetHttpAddress()
	cfg.RaftAdvertise, cfg.GRPCAdvertise = "", ""
	if cb != nil {
		cb(&cfg)
	}
	var s *Server
	// The old listeners are closed, but the kernel may take a moment to
	// release a port: retry briefly.
	testutil.WaitForResult(t, 5*time.Second, func() error {
		var err error
		s, err = NewServer(cfg)
		return err
	})
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

// TestJoin adds each of others to leader's cluster through the admin API,
// as `strata brain --join` does.
func TestJoin(t testing.TB, leader *Server, others ...*Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, o := range others {
		if _, err := TestAdminClient(t, leader).AddPeer(ctx, &stratav1.AddPeerRequest{Member: o.Member()}); err != nil {
			t.Fatalf("join %s to %s: %v", o.cfg.NodeID, leader.cfg.NodeID, err)
		}
	}
}

// WaitForLeader waits until the running servers among servers agree on one
// leader that is one of them, and returns it.
func WaitForLeader(t testing.TB, servers ...*Server) *Server {
	t.Helper()
	var leader *Server
	testutil.WaitForResult(t, 10*time.Second, func() error {
		leader = nil
		var id raft.ServerID
		for _, s := range servers {
			if s.IsLeader() {
				if leader != nil {
					return fmt.Errorf("two leaders: %s and %s", leader.cfg.NodeID, s.cfg.NodeID)
				}
				leader = s
			}
			_, seen := s.raft.LeaderWithID()
			if id == "" {
				id = seen
			} else if seen != id {
				return fmt.Errorf("servers disagree on the leader: %s vs %s", id, seen)
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader among %d servers", len(servers))
		}
		if string(id) != leader.cfg.NodeID {
			return fmt.Errorf("leader %s not seen by every server (%s)", leader.cfg.NodeID, id)
		}
		return nil
	})
	return leader
}

// TestConn is a gRPC client connection to s with the test token.
func TestConn(t testing.TB, s *Server) *grpc.ClientConn {
	t.Helper()
	opts, err := auth.DialOptions(s.cfg.ClusterToken, s.cfg.TLS)
	if err != nil {
		t.Fatal(err)
	}
	c, err := grpc.NewClient(s.member.GetGrpcAddress(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestAdminClient is an admin API client for s.
func TestAdminClient(t testing.TB, s *Server) stratav1.AdminServiceClient {
	return stratav1.NewAdminServiceClient(TestConn(t, s))
}
