package brain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strata-llm/strata/brain/client"
	"github.com/strata-llm/strata/brain/kvindex"
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

// TestScoreEncoderRoundTrip: what the brain writes on a ScoreStream, read
// back by the client's decoder in order, is the matches it encoded, with
// equal counts sharing a group and the numbering starting over at its limit.
func TestScoreEncoderRoundTrip(t *testing.T) {
	m := func(id string, gpu, cpu, disk, remote uint32) kvindex.Match {
		return kvindex.Match{WorkerID: id, GPU: gpu, CPU: cpu, Disk: disk, Remote: remote}
	}
	answers := []struct {
		name    string
		matches []kvindex.Match
		groups  int
		reset   bool
	}{
		{"nothing matched", nil, 0, false},
		{"two new workers, one group", []kvindex.Match{m("w1", 3, 0, 0, 0), m("w2", 3, 0, 0, 0)}, 1, false},
		{"known and new, tiers differ", []kvindex.Match{m("w2", 1, 2, 0, 0), m("w1", 3, 0, 0, 0), m("w3", 1, 2, 0, 0)}, 2, false},
		{"up to the limit", []kvindex.Match{m("w4", 0, 0, 1, 5), m("w1", 0, 0, 0, 6)}, 2, false},
		{"could pass the limit: numbering starts over", []kvindex.Match{m("w1", 2, 0, 0, 0), m("w4", 2, 0, 0, 0), m("w5", 0, 0, 0, 1)}, 2, true},
		{"numbers after the reset", []kvindex.Match{m("w5", 1, 0, 0, 0), m("w6", 0, 1, 0, 0)}, 2, false},
	}
	enc := scoreEncoder{limit: 5}
	var res stratav1.ScoreStreamResponse
	var dec client.ScoreDecoder
	for i, a := range answers {
		t.Run(a.name, func(t *testing.T) {
			res.Id = uint64(i)
			enc.encode(&res, a.matches)
			if len(res.Groups) != a.groups || res.ResetWorkers != a.reset {
				t.Fatalf("%d groups, reset %v; want %d, %v", len(res.Groups), res.ResetWorkers, a.groups, a.reset)
			}
			wire, err := proto.Marshal(&res)
			if err != nil {
				t.Fatal(err)
			}
			var got stratav1.ScoreStreamResponse
			if err := proto.Unmarshal(wire, &got); err != nil {
				t.Fatal(err)
			}
			scores, err := dec.Decode(&got)
			if err != nil {
				t.Fatal(err)
			}
			if want := asScores(a.matches); !sameScores(scores, want) {
				t.Fatalf("decoded %v, want %v", scores, want)
			}
		})
	}
	// A number the stream never introduced is an error, not a panic.
	if _, err := new(client.ScoreDecoder).Decode(&stratav1.ScoreStreamResponse{Groups: []*stratav1.ScoreGroup{{Gpu: 1, Workers: []uint32{7}}}}); status.Code(err) != codes.Internal {
		t.Fatalf("unknown worker number: %v, want Internal", err)
	}
}

func asScores(ms []kvindex.Match) []client.WorkerScore {
	out := make([]client.WorkerScore, len(ms))
	for i, m := range ms {
		out[i] = client.WorkerScore{WorkerID: m.WorkerID, GPU: m.GPU, CPU: m.CPU, Disk: m.Disk, Remote: m.Remote}
	}
	return out
}

func fromUnary(ws []*stratav1.WorkerScore) []client.WorkerScore {
	out := make([]client.WorkerScore, len(ws))
	for i, w := range ws {
		out[i] = client.WorkerScore{WorkerID: w.WorkerId, GPU: w.Gpu, CPU: w.Cpu, Disk: w.Disk, Remote: w.Remote}
	}
	return out
}

// sameScores compares two answers as sets: the order of workers in an
// answer means nothing.
func sameScores(a, b []client.WorkerScore) bool {
	byID := func(x, y client.WorkerScore) int { return strings.Compare(x.WorkerID, y.WorkerID) }
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, byID)
	slices.SortFunc(b, byID)
	return slices.Equal(a, b)
}

// TestScoreStream: a gateway's Scorer gets the same answers on one stream
// as with unary calls, from many goroutines at once; an invalid query fails
// alone; when the replica it streams from goes away, queries fail fast and
// the next ones go to another replica.
func TestScoreStream(t *testing.T) {
	servers := testCluster(t, 2, func(c *Config) { c.LeaseTTL = time.Hour })
	leader := WaitForLeader(t, servers...)
	fakeNode(t, leader, "node-a", 4)
	deploy(t, leader, "llama", 4)
	var workers []string
	for _, s := range servers {
		wait.WaitForResult(t, 10*time.Second, func() error {
			workers = workers[:0]
			for _, w := range listWorkers(t, s, "llama") {
				if s.kv.Known(w.Id) {
					workers = append(workers, w.Id)
				}
			}
			if len(workers) != 4 {
				return fmt.Errorf("%s: %d of 4 workers in the index", s.cfg.NodeID, len(workers))
			}
			return nil
		})
	}
	slices.Sort(workers)
	// Worker i holds the first 2+i blocks of one chain, on the GPU, except
	// worker 3, whose blocks past the second are in host memory; every
	// worker holds its own second chain.
	chain := []uint64{100, 101, 102, 103, 104, 105}
	for _, s := range servers {
		for i, w := range workers {
			events := []*stratav1.KVEvent{stored(stratav1.Medium_MEDIUM_GPU, chain[:2+i]...), stored(stratav1.Medium_MEDIUM_GPU, uint64(1000*(i+1)), uint64(1000*(i+1)+1))}
			if i == 3 {
				events[0] = stored(stratav1.Medium_MEDIUM_GPU, chain[:2]...)
				events = append(events, stored(stratav1.Medium_MEDIUM_CPU, chain[2:5]...))
			}
			if _, err := s.kv.Apply(&stratav1.KVEventBatch{WorkerId: w, Seq: 1, Snapshot: true, Events: events}); err != nil {
				t.Fatal(err)
			}
		}
	}
	queries := [][]uint64{chain, chain[:1], {1000, 1001}, {3000, 3001, 3002}, {42}, nil}

	c, err := client.New([]string{servers[0].member.GetGrpcAddress(), servers[1].member.GetGrpcAddress()}, servers[0].cfg.ClusterToken, servers[0].cfg.TLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	sc := c.Scorer()
	t.Cleanup(sc.Close)
	ctx := testCtx(t)
	unary := stratav1.NewGatewayServiceClient(TestConn(t, servers[0]))
	want := make([][]client.WorkerScore, len(queries))
	for i, q := range queries {
		res, err := unary.Score(ctx, &stratav1.ScoreRequest{Model: "llama", SeqHashes: q})
		if err != nil {
			t.Fatal(err)
		}
		want[i] = fromUnary(res.Scores)
	}
	if got := want[0]; len(got) != 4 || !slices.ContainsFunc(got, func(s client.WorkerScore) bool { return s.GPU == 2 && s.CPU == 3 }) {
		t.Fatalf("unary answer to the chain: %v", got)
	}

	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for n := range 50 {
				i := (g + n) % len(queries)
				got, err := sc.Score(ctx, &stratav1.ScoreRequest{Model: "llama", SeqHashes: queries[i]})
				if err != nil {
					t.Errorf("query %d: %v", i, err)
					return
				}
				if !sameScores(got, want[i]) {
					t.Errorf("query %d: stream %v, unary %v", i, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()

	if _, err := sc.Score(ctx, &stratav1.ScoreRequest{SeqHashes: chain}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("query without a model: %v, want InvalidArgument", err)
	}
	if got, err := sc.Score(ctx, &stratav1.ScoreRequest{Model: "llama", SeqHashes: chain}); err != nil || !sameScores(got, want[0]) {
		t.Fatalf("after an invalid query: %v, %v", got, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sc.Score(done, &stratav1.ScoreRequest{Model: "llama", SeqHashes: chain}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled query: %v", err)
	}

	// The replica streamed from goes away: the stream breaks, and a query
	// soon gets the same answer from the other replica.
	if err := servers[0].Shutdown(); err != nil {
		t.Fatal(err)
	}
	wait.WaitForResult(t, 10*time.Second, func() error {
		got, err := sc.Score(ctx, &stratav1.ScoreRequest{Model: "llama", SeqHashes: chain})
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("while the replica is gone: %v, want Unavailable", err)
			}
			return err
		}
		if !sameScores(got, want[0]) {
			return fmt.Errorf("answer %v, want %v", got, want[0])
		}
		return nil
	})

	sc.Close()
	if _, err := sc.Score(ctx, &stratav1.ScoreRequest{Model: "llama", SeqHashes: chain}); !errors.Is(err, client.ErrScorerClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func stored(medium stratav1.Medium, hashes ...uint64) *stratav1.KVEvent {
	return &stratav1.KVEvent{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{SeqHashes: hashes, Medium: medium, BlockSize: 16}}}
}
