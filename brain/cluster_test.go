package brain

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strata-llm/strata/brain/fsm"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	wait "github.com/strata-llm/strata/test/testutil"
)

// testCluster starts n brains, the first bootstrapped, the others joined
// through it, and waits for a leader.
func testCluster(t testing.TB, n int, cb func(*Config)) []*Server {
	t.Helper()
	servers := []*Server{TestServer(t, cb)}
	WaitForLeader(t, servers[0])
	for range n - 1 {
		servers = append(servers, TestServer(t, func(c *Config) {
			if cb != nil {
				cb(c)
			}
			c.Bootstrap = false
		}))
	}
	TestJoin(t, servers[0], servers[1:]...)
	WaitForLeader(t, servers...)
	return servers
}

func others(servers []*Server, not *Server) []*Server {
	return slices.DeleteFunc(slices.Clone(servers), func(s *Server) bool { return s == not })
}

func follower(servers []*Server) *Server {
	for _, s := range servers {
		if !s.IsLeader() {
			return s
		}
	}
	return nil
}

func deploy(t testing.TB, via *Server, name string, replicas uint32) {
	t.Helper()
	if _, err := TestAdminClient(t, via).ApplyDeployment(testCtx(t), &stratav1.ApplyDeploymentRequest{Spec: testSpec(name, replicas)}); err != nil {
		t.Fatalf("deploy %s via %s: %v", name, via.cfg.NodeID, err)
	}
}

// waitReplicated waits until every server's FSM has the deployments.
func waitReplicated(t *testing.T, servers []*Server, deployments ...string) {
	t.Helper()
	wait.WaitForResult(t, 10*time.Second, func() error {
		for _, s := range servers {
			v := s.FSM().View()
			for _, d := range deployments {
				if v.Deployments[d] == nil {
					return fmt.Errorf("%s lacks deployment %s", s.cfg.NodeID, d)
				}
			}
		}
		return nil
	})
}

func TestFollowerForwardsWrites(t *testing.T) {
	servers := testCluster(t, 3, nil)
	f := follower(servers)
	deploy(t, f, "via-follower", 1)
	fakeNode(t, f, "node-a", 2)
	waitReplicated(t, servers, "via-follower")
	if got := testutil.ToFloat64(f.metrics.forwarded.WithLabelValues("ApplyDeployment")); got != 1 {
		t.Fatalf("forwarded ApplyDeployment = %v, want 1", got)
	}
	// Reads are local (they may lag the leader by the entries in flight)
	// and say at which index they were answered.
	wait.WaitForResult(t, 5*time.Second, func() error {
		res, err := TestAdminClient(t, f).ListNodes(testCtx(t), &stratav1.ListNodesRequest{})
		if err != nil || len(res.Nodes) != 1 || res.Index == 0 {
			return fmt.Errorf("list nodes on follower = %v, %v", res, err)
		}
		return nil
	})
}

func TestLeaderFailoverKeepsCommittedState(t *testing.T) {
	servers := testCluster(t, 3, nil)
	leader := WaitForLeader(t, servers...)
	deploy(t, leader, "before", 2)
	waitReplicated(t, servers, "before")

	start := time.Now()
	if err := leader.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rest := others(servers, leader)
	next := WaitForLeader(t, rest...)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("new leader after %v, want < 3s", took)
	}
	for _, s := range rest {
		if s.FSM().View().Deployments["before"] == nil {
			t.Fatalf("%s lost the committed deployment", s.cfg.NodeID)
		}
	}
	// The survivors still have a quorum (2 of 3) and take writes, through
	// either of them.
	deploy(t, follower(rest), "after", 1)
	waitReplicated(t, rest, "before", "after")
	if next.FSM().View().Brains[next.cfg.NodeID] == nil {
		t.Fatal("new leader did not record its own addresses")
	}
}

func TestRestartAllFromDisk(t *testing.T) {
	servers := testCluster(t, 3, func(c *Config) { c.SnapshotThreshold = 16 })
	leader := WaitForLeader(t, servers...)
	fakeNode(t, leader, "node-a", 4)
	// Enough writes to cross the snapshot threshold, so the restart goes
	// through Restore and log replay both.
	for i := range 20 {
		deploy(t, leader, fmt.Sprintf("d%02d", i), 1)
	}
	if err := leader.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	deploy(t, leader, "last", 1)
	waitReplicated(t, servers, "d00", "d19", "last")
	want, _ := fsm.EncodeSnapshot(normalised(leader.FSM().View()))

	for _, s := range servers {
		if err := s.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	var restarted []*Server
	for _, s := range servers {
		restarted = append(restarted, RestartTestServer(t, s, nil))
	}
	leader = WaitForLeader(t, restarted...)
	wait.WaitForResult(t, 10*time.Second, func() error {
		for _, s := range restarted {
			got, _ := fsm.EncodeSnapshot(normalised(s.FSM().View()))
			if !proto.Equal(mustSnap(t, got), mustSnap(t, want)) {
				return fmt.Errorf("%s: state after restart differs", s.cfg.NodeID)
			}
		}
		return nil
	})
	deploy(t, leader, "after-restart", 1)
}

// normalised drops what legitimately changes across a restart: the index,
// the node heartbeat time and worker placement done since (the lease of
// a node that stopped heartbeating, re-placement).
func normalised(v *fsm.View) *fsm.View {
	out := &fsm.View{Deployments: v.Deployments, Brains: v.Brains}
	return out
}

func mustSnap(t *testing.T, b []byte) *stratav1.FSMSnapshot {
	var s stratav1.FSMSnapshot
	if err := proto.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// TestPartitionedMinorityCannotCommit cuts the leader off from both
// followers with raft's in-memory transport: the isolated leader must not
// commit, the majority elects a new leader and commits, and on healing the
// old leader rejoins as a follower with the majority's writes.
func TestPartitionedMinorityCannotCommit(t *testing.T) {
	transports := map[raft.ServerAddress]*raft.InmemTransport{}
	var servers []*Server
	for i := range 3 {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("127.0.0.1:%d", 1+i)))
		transports[addr] = tr
		servers = append(servers, TestServer(t, func(c *Config) {
			c.RaftTransport = tr
			c.Bootstrap = i == 0
			c.ApplyTimeout = 500 * time.Millisecond
		}))
	}
	for a, ta := range transports {
		for b, tb := range transports {
			if a != b {
				ta.Connect(b, tb)
			}
		}
	}
	WaitForLeader(t, servers[0])
	TestJoin(t, servers[0], servers[1:]...)
	old := WaitForLeader(t, servers...)
	deploy(t, old, "before", 1)
	waitReplicated(t, servers, "before")

	oldAddr := old.transport.LocalAddr()
	partition := func(connect bool) {
		for a, tr := range transports {
			for b, peer := range transports {
				if a == b || (a != oldAddr && b != oldAddr) {
					continue
				}
				if connect {
					tr.Connect(b, peer)
				} else {
					tr.Disconnect(b)
				}
			}
		}
	}
	partition(false)

	// The minority side: its apply cannot commit.
	_, err := old.apply(testCtx(t), &stratav1.UpsertDeploymentCommand{Spec: testSpec("minority", 1)})
	if err == nil {
		t.Fatal("an isolated leader committed a write")
	}
	majority := others(servers, old)
	next := WaitForLeader(t, majority...)
	deploy(t, next, "majority", 1)
	waitReplicated(t, majority, "before", "majority")

	partition(true)
	wait.WaitForResult(t, 10*time.Second, func() error {
		if old.IsLeader() {
			return fmt.Errorf("old leader still leads")
		}
		v := old.FSM().View()
		if v.Deployments["majority"] == nil {
			return fmt.Errorf("old leader lacks the majority's write")
		}
		if v.Deployments["minority"] != nil {
			return fmt.Errorf("the minority's uncommitted write survived")
		}
		return nil
	})
	WaitForLeader(t, servers...)
}

func TestJoinTwiceAndRemovePeer(t *testing.T) {
	servers := testCluster(t, 3, nil)
	leader := WaitForLeader(t, servers...)
	f := follower(servers)
	// Joining again, through a follower this time, changes nothing.
	res, err := TestAdminClient(t, f).AddPeer(testCtx(t), &stratav1.AddPeerRequest{Member: f.Member()})
	if err != nil || res.Changed {
		t.Fatalf("second join = %v, %v", res, err)
	}
	if _, err := TestAdminClient(t, leader).RemovePeer(testCtx(t), &stratav1.RemovePeerRequest{Id: f.cfg.NodeID}); err != nil {
		t.Fatal(err)
	}
	st, err := TestAdminClient(t, leader).RaftStatus(testCtx(t), &stratav1.RaftStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Servers) != 2 || slices.ContainsFunc(st.Servers, func(s *stratav1.RaftServer) bool { return s.Id == f.cfg.NodeID }) {
		t.Fatalf("servers after removal: %v", st.Servers)
	}
	if _, ok := leader.FSM().View().Brains[f.cfg.NodeID]; ok {
		t.Fatal("removed brain still listed as a member")
	}
	_, err = TestAdminClient(t, leader).RemovePeer(testCtx(t), &stratav1.RemovePeerRequest{Id: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("remove unknown peer: %v", err)
	}
}
