package brain

import (
	"fmt"
	"testing"
	"time"

	"github.com/strata-llm/strata/brain/fsm"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	wait "github.com/strata-llm/strata/test/testutil"
)

func heartbeat(t *testing.T, s *Server, node string, workers ...*stratav1.WorkerStatus) *stratav1.HeartbeatResponse {
	t.Helper()
	res, err := stratav1.NewAgentServiceClient(TestConn(t, s)).Heartbeat(testCtx(t), &stratav1.HeartbeatRequest{NodeId: node, Workers: workers})
	if err != nil {
		t.Fatalf("heartbeat %s: %v", node, err)
	}
	return res
}

func nodeState(s *Server, id string) stratav1.NodeState {
	var st stratav1.NodeState
	s.FSM().Read(func(v *fsm.View) { st = v.Nodes[id].GetState() })
	return st
}

// TestLeaseExpiryReplacesWorkers: a node that stops heartbeating is marked
// down after the lease TTL and its workers move to a node that is up.
func TestLeaseExpiryReplacesWorkers(t *testing.T) {
	servers := testCluster(t, 3, func(c *Config) { c.LeaseTTL = 500 * time.Millisecond })
	f := follower(servers)
	fakeNode(t, f, "node-a", 1)
	fakeNode(t, f, "node-b", 1)
	deploy(t, f, "d", 1)

	var placedOn string
	wait.WaitForResult(t, 5*time.Second, func() error {
		ws := listWorkers(t, f, "d")
		if len(ws) != 1 {
			return fmt.Errorf("%d workers", len(ws))
		}
		placedOn = ws[0].NodeId
		return nil
	})
	survivor := map[string]string{"node-a": "node-b", "node-b": "node-a"}[placedOn]

	// Only the survivor keeps heartbeating (through a follower: forwarded).
	agent := stratav1.NewAgentServiceClient(TestConn(t, f))
	ctx := testCtx(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = agent.Heartbeat(ctx, &stratav1.HeartbeatRequest{NodeId: survivor})
			}
		}
	}()
	defer func() { close(stop); <-done }()

	wait.WaitForResult(t, 10*time.Second, func() error {
		if st := nodeState(f, placedOn); st != stratav1.NodeState_NODE_STATE_DOWN {
			return fmt.Errorf("%s is %v", placedOn, st)
		}
		if st := nodeState(f, survivor); st != stratav1.NodeState_NODE_STATE_READY {
			return fmt.Errorf("survivor %s is %v", survivor, st)
		}
		ws := listWorkers(t, f, "d")
		if len(ws) != 1 || ws[0].NodeId != survivor {
			return fmt.Errorf("workers %v, want one on %s", ws, survivor)
		}
		return nil
	})

	// The dead node comes back with a heartbeat: READY again, and an unknown
	// node is told to register.
	heartbeat(t, f, placedOn)
	wait.WaitForResult(t, 5*time.Second, func() error {
		if st := nodeState(f, placedOn); st != stratav1.NodeState_NODE_STATE_READY {
			return fmt.Errorf("returning node is %v", st)
		}
		return nil
	})
	if !heartbeat(t, f, "never-registered").Reregister {
		t.Fatal("unknown node not asked to register")
	}
}

// TestWatches: an agent's WatchAssignments sees its worker appear; once the
// agent reports it READY, a gateway's WatchCluster lists it as routable.
func TestWatches(t *testing.T) {
	s := TestServer(t, nil)
	WaitForLeader(t, s)
	fakeNode(t, s, "node-a", 2)

	assignStream, err := stratav1.NewAgentServiceClient(TestConn(t, s)).WatchAssignments(testCtx(t), &stratav1.WatchAssignmentsRequest{NodeId: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := assignStream.Recv()
	if err != nil || len(first.Assignments) != 0 {
		t.Fatalf("first assignments = %v, %v", first, err)
	}
	clusterStream, err := stratav1.NewGatewayServiceClient(TestConn(t, s)).WatchCluster(testCtx(t), &stratav1.WatchClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := clusterStream.Recv(); err != nil || len(v.Workers) != 0 {
		t.Fatalf("first cluster view = %v, %v", v, err)
	}

	deploy(t, s, "llama", 1)
	var a *stratav1.Assignment
	for a == nil {
		msg, err := assignStream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Assignments) == 1 {
			a = msg.Assignments[0]
		}
	}
	if a.Spec.GetName() != "llama" || a.Worker.GetNodeId() != "node-a" || len(a.Worker.GetGpuUuids()) != 1 || a.Worker.GetPort() == 0 {
		t.Fatalf("assignment = %v", a)
	}

	load := &stratav1.WorkerLoad{RunningRequests: 2, KvUsage: 0.25}
	heartbeat(t, s, "node-a", &stratav1.WorkerStatus{WorkerId: a.Worker.Id, State: stratav1.WorkerState_WORKER_STATE_READY, Load: load})
	for {
		v, err := clusterStream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Workers) == 0 {
			continue
		}
		w := v.Workers[0]
		if w.Model != "llama" || w.Endpoint != fmt.Sprintf("127.0.0.1:%d", a.Worker.Port) || w.BlockSize != 16 || w.Worker.GetLoad().GetRunningRequests() != 2 {
			t.Fatalf("routable worker = %v", w)
		}
		if len(v.Models) != 1 || v.Models[0].Name != "llama" {
			t.Fatalf("models = %v", v.Models)
		}
		break
	}
}
