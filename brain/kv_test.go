package brain

import (
	"fmt"
	"slices"
	"testing"
	"time"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	wait "github.com/strata-llm/strata/test/testutil"
)

// TestKVEventsReachEveryReplica: an agent streams a worker's KV events to
// each replica; every replica answers Score the same way, asks for a
// snapshot after a gap, and forgets the worker's blocks when its node goes
// down.
func TestKVEventsReachEveryReplica(t *testing.T) {
	servers := testCluster(t, 3, func(c *Config) { c.LeaseTTL = time.Second })
	leader := WaitForLeader(t, servers...)
	fakeNode(t, leader, "node-a", 2)
	deploy(t, leader, "llama", 1)
	var worker string
	wait.WaitForResult(t, 5*time.Second, func() error {
		ws := listWorkers(t, leader, "llama")
		if len(ws) != 1 {
			return fmt.Errorf("%d workers", len(ws))
		}
		worker = ws[0].Id
		return nil
	})

	type conn struct {
		s      *Server
		stream stratav1.AgentService_PublishKVEventsClient
		resync chan []string
	}
	var conns []conn
	for _, s := range servers {
		st, err := stratav1.NewAgentServiceClient(TestConn(t, s)).PublishKVEvents(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		c := conn{s, st, make(chan []string, 16)}
		go func() {
			for {
				res, err := st.Recv()
				if err != nil {
					return
				}
				c.resync <- res.ResyncWorkerIds
			}
		}()
		conns = append(conns, c)
	}
	batch := func(seq uint64, snapshot bool, hashes ...uint64) *stratav1.PublishKVEventsRequest {
		return &stratav1.PublishKVEventsRequest{NodeId: "node-a", Batch: &stratav1.KVEventBatch{
			WorkerId: worker, Seq: seq, Snapshot: snapshot,
			Events: []*stratav1.KVEvent{{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{SeqHashes: hashes, Medium: stratav1.Medium_MEDIUM_GPU, BlockSize: 16}}}},
		}}
	}
	send := func(seq uint64, snapshot bool, hashes ...uint64) {
		for _, c := range conns {
			if err := c.stream.Send(batch(seq, snapshot, hashes...)); err != nil {
				t.Fatal(err)
			}
		}
	}
	score := func(s *Server) uint32 {
		res, err := stratav1.NewGatewayServiceClient(TestConn(t, s)).Score(testCtx(t), &stratav1.ScoreRequest{Model: "llama", SeqHashes: []uint64{10, 11, 12, 13}})
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range res.Scores {
			if sc.WorkerId == worker {
				return sc.Gpu
			}
		}
		return 0
	}
	// Followers may learn of the worker after the first batch: they ask
	// for a snapshot once they do, and the agent sends one.
	send(1, true, 10, 11)
	for _, c := range conns {
		wait.WaitForResult(t, 5*time.Second, func() error {
			select {
			case ids := <-c.resync: // answer as an agent would
				if slices.Contains(ids, worker) {
					if err := c.stream.Send(batch(1, true, 10, 11)); err != nil {
						return err
					}
				}
			default:
			}
			if got := score(c.s); got != 2 {
				return fmt.Errorf("%s scores %d, want 2", c.s.cfg.NodeID, got)
			}
			return nil
		})
	}
	send(2, false, 12)
	for _, c := range conns {
		wait.WaitForResult(t, 5*time.Second, func() error {
			if got := score(c.s); got != 3 {
				return fmt.Errorf("%s scores %d, want 3", c.s.cfg.NodeID, got)
			}
			return nil
		})
	}
	// A gap: every replica asks for a snapshot.
	send(4, false, 13)
	for _, c := range conns {
		select {
		case ids := <-c.resync:
			if !slices.Contains(ids, worker) {
				t.Fatalf("%s: resync %v, want %s", c.s.cfg.NodeID, ids, worker)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not ask for a snapshot after a gap", c.s.cfg.NodeID)
		}
	}
	send(4, true, 10, 11, 12, 13)
	for _, c := range conns {
		wait.WaitForResult(t, 5*time.Second, func() error {
			if got := score(c.s); got != 4 {
				return fmt.Errorf("%s scores %d after the snapshot, want 4", c.s.cfg.NodeID, got)
			}
			return nil
		})
	}
	// The admin view shows the same blocks on every replica.
	for _, c := range conns {
		st, err := TestAdminClient(t, c.s).KVIndexStats(testCtx(t), &stratav1.KVIndexStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Workers) != 1 || st.Workers[0].WorkerId != worker || st.Workers[0].GpuBlocks != 4 || st.Workers[0].AwaitingSnapshot || st.BrainId != c.s.cfg.NodeID {
			t.Fatalf("%s: KV stats %v", c.s.cfg.NodeID, st)
		}
	}

	// Another node cannot speak for node-a's worker.
	forged := batch(5, true, 99)
	forged.NodeId = "node-b"
	if err := conns[0].stream.Send(forged); err != nil {
		t.Fatal(err)
	}
	send(5, false, 14) // ordered after the forged batch on the same stream
	wait.WaitForResult(t, 5*time.Second, func() error {
		res, err := stratav1.NewGatewayServiceClient(TestConn(t, conns[0].s)).Score(testCtx(t), &stratav1.ScoreRequest{Model: "llama", SeqHashes: []uint64{10, 11, 12, 13, 14}})
		if err != nil || len(res.Scores) != 1 || res.Scores[0].Gpu != 5 {
			return fmt.Errorf("scores %v, %v: want the real worker's 5 blocks, the forged snapshot ignored", res.GetScores(), err)
		}
		return nil
	})

	// node-a stops heartbeating: marked down, its worker's blocks dropped.
	for _, c := range conns {
		wait.WaitForResult(t, 10*time.Second, func() error {
			if got := score(c.s); got != 0 {
				return fmt.Errorf("%s still credits %d blocks of a down node", c.s.cfg.NodeID, got)
			}
			return nil
		})
	}
}
