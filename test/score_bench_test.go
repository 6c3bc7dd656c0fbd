package test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain/client"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

// BenchmarkScoreProcess measures Score the way a gateway calls it: a real
// `strata brain` process on loopback, its index fed through
// PublishKVEvents by 13 fake agents with 100 placed workers (800 chains of
// 128 blocks, each on one worker, and a 32-block system prompt on every
// worker), queried from this process at a paced 5,000 queries/s by 16
// callers, with a unary call per query and on one ScoreStream (what the
// gateway uses), in the same run. "one" queries a whole 128-block chain
// (one worker answers); "all" the shared prompt (all 100 answer).
func BenchmarkScoreProcess(b *testing.B) {
	dir := b.TempDir()
	p := &brainProc{id: "b1", raft: freePort(b), grpc: freePort(b), http: freePort(b), dir: filepath.Join(dir, "b1"), log: filepath.Join(dir, "b1.log")}
	// Nothing heartbeats for the fake nodes: a long lease keeps them up.
	p.args = []string{"brain", "--node-id", p.id, "--data-dir", p.dir, "--raft-addr", p.raft, "--grpc-addr", p.grpc,
		"--http-addr", p.http, "--bootstrap", "--lease-ttl", "1h"}
	p.start(b)
	waitLeader(b, 30*time.Second, p)
	opts, err := auth.DialOptions(processToken, auth.TLSFiles{})
	if err != nil {
		b.Fatal(err)
	}
	conn, err := grpc.NewClient(p.grpc, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	chains, shared := feedScoreFixture(ctx, b, conn, admin(b, p))

	gw := stratav1.NewGatewayServiceClient(conn)
	c, err := client.New([]string{p.grpc}, processToken, auth.TLSFiles{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	sc := c.Scorer()
	b.Cleanup(sc.Close)
	calls := []struct {
		name  string
		score func(*stratav1.ScoreRequest) (int, error)
	}{
		{"unary", func(q *stratav1.ScoreRequest) (int, error) {
			res, err := gw.Score(ctx, q)
			return len(res.GetScores()), err
		}},
		{"stream", func(q *stratav1.ScoreRequest) (int, error) {
			res, err := sc.Score(ctx, q)
			return len(res), err
		}},
	}
	queries := []struct {
		name    string
		hashes  func(i uint64) []uint64
		workers int
	}{
		{"one", func(i uint64) []uint64 { return chains[i%uint64(len(chains))] }, 1},
		{"all", func(uint64) []uint64 { return shared }, 100},
	}
	for _, q := range queries {
		for _, call := range calls {
			b.Run(q.name+"/"+call.name, func(b *testing.B) {
				testutil.PacedLatency(b, 5000, 16, func(i uint64) error {
					n, err := call.score(&stratav1.ScoreRequest{Model: "m", SeqHashes: q.hashes(i)})
					if err == nil && n != q.workers {
						err = fmt.Errorf("%d workers matched, want %d", n, q.workers)
					}
					return err
				})
			})
		}
	}
}

// feedScoreFixture places 100 workers of model "m" on 13 fake nodes and
// streams to the brain, as their agents would, a 32-block shared prompt
// on every worker and 800 chains of 128 blocks, each on one worker; then
// waits until the index holds every block.
func feedScoreFixture(ctx context.Context, b *testing.B, conn *grpc.ClientConn, adm stratav1.AdminServiceClient) (chains [][]uint64, shared []uint64) {
	agents := stratav1.NewAgentServiceClient(conn)
	for n := range 13 {
		id := fmt.Sprintf("node-%02d", n)
		inv := &stratav1.Inventory{Hostname: id, CpuCores: 32, MemoryBytes: 256 << 30}
		for g := range 8 {
			inv.Gpus = append(inv.Gpus, &stratav1.GPU{Uuid: fmt.Sprintf("GPU-%s-%d", id, g), Index: uint32(g), Model: "sim", MemoryBytes: 80 << 30})
		}
		if _, err := agents.Register(ctx, &stratav1.RegisterRequest{NodeId: id, Address: "127.0.0.1:7070", Inventory: inv}); err != nil {
			b.Fatal(err)
		}
	}
	spec := &stratav1.DeploymentSpec{Name: "m", Model: "test/model", Engine: "sim", Pools: []*stratav1.Pool{{
		Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, TensorParallelSize: 1,
		Replicas: &stratav1.Replicas{Min: 1, Max: 100, Initial: 100},
	}}}
	if _, err := adm.ApplyDeployment(ctx, &stratav1.ApplyDeploymentRequest{Spec: spec}); err != nil {
		b.Fatal(err)
	}
	// The index learns of placed workers from the replicated state.
	var workers []*stratav1.Worker
	testutil.WaitForResult(b, 30*time.Second, func() error {
		res, err := adm.ListWorkers(ctx, &stratav1.ListWorkersRequest{Deployment: "m"})
		if err != nil {
			return err
		}
		workers = res.GetWorkers()
		st, err := adm.KVIndexStats(ctx, &stratav1.KVIndexStatsRequest{})
		if err != nil {
			return err
		}
		if len(workers) != 100 || len(st.GetWorkers()) != 100 {
			return fmt.Errorf("%d workers placed, %d in the index", len(workers), len(st.GetWorkers()))
		}
		return nil
	})
	streams := map[string]stratav1.AgentService_PublishKVEventsClient{}
	seq := map[string]uint64{}
	send := func(w *stratav1.Worker, chain []uint64) {
		st := streams[w.GetNodeId()]
		if st == nil {
			var err error
			if st, err = agents.PublishKVEvents(ctx); err != nil {
				b.Fatal(err)
			}
			streams[w.GetNodeId()] = st
		}
		seq[w.GetId()]++
		batch := &stratav1.KVEventBatch{WorkerId: w.GetId(), Seq: seq[w.GetId()], Snapshot: seq[w.GetId()] == 1, Events: []*stratav1.KVEvent{
			{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{SeqHashes: chain, Medium: stratav1.Medium_MEDIUM_GPU, BlockSize: 16}}},
		}}
		if err := st.Send(&stratav1.PublishKVEventsRequest{NodeId: w.GetNodeId(), Batch: batch}); err != nil {
			b.Fatal(err)
		}
	}
	shared = make([]uint64, 32)
	for i := range shared {
		shared[i] = 1<<63 | uint64(i)
	}
	for _, w := range workers {
		send(w, shared)
	}
	chains = make([][]uint64, 800)
	for c := range chains {
		chain := make([]uint64, 128)
		for i := range chain {
			chain[i] = uint64(c)<<32 | uint64(i)
		}
		chains[c] = chain
		send(workers[c%len(workers)], chain)
	}
	testutil.WaitForResult(b, 30*time.Second, func() error {
		st, err := adm.KVIndexStats(ctx, &stratav1.KVIndexStatsRequest{})
		if err != nil {
			return err
		}
		var blocks uint32
		for _, w := range st.GetWorkers() {
			blocks += w.GetGpuBlocks()
		}
		if want := uint32(100*32 + 800*128); blocks != want {
			return fmt.Errorf("%d of %d blocks indexed", blocks, want)
		}
		return nil
	})
	return chains, shared
}
