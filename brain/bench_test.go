package brain

import (
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// BenchmarkHeartbeats measures heartbeats committed per second on a
// 3-replica loopback cluster, sent by many agents at once (group-committed
// into HeartbeatBatch entries) against one agent at a time (one entry per
// heartbeat: the baseline the batching is measured against, in the same
// run on the same machine).
func BenchmarkHeartbeats(b *testing.B) {
	servers := testCluster(b, 3, nil)
	leader := WaitForLeader(b, servers...)
	const nodes = 1000
	for i := range nodes {
		fakeNode(b, leader, fmt.Sprintf("node-%04d", i), 8)
	}
	agent := stratav1.NewAgentServiceClient(TestConn(b, leader))
	ctx := testCtx(b)
	heartbeat := func(i uint64) {
		if _, err := agent.Heartbeat(ctx, &stratav1.HeartbeatRequest{NodeId: fmt.Sprintf("node-%04d", i%nodes)}); err != nil {
			b.Error(err)
		}
	}
	report := func(b *testing.B, start time.Time, firstIndex uint64) {
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "heartbeats/s")
		b.ReportMetric(float64(b.N)/float64(max(leader.raft.LastIndex()-firstIndex, 1)), "heartbeats/entry")
	}
	b.Run("agents=1", func(b *testing.B) {
		start, first := time.Now(), leader.raft.LastIndex()
		for i := range uint64(b.N) {
			heartbeat(i)
		}
		report(b, start, first)
	})
	b.Run("agents=256", func(b *testing.B) {
		var next atomic.Uint64
		b.SetParallelism(256 / runtime.GOMAXPROCS(0))
		start, first := time.Now(), leader.raft.LastIndex()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				heartbeat(next.Add(1))
			}
		})
		report(b, start, first)
	})
}

// BenchmarkApplyLatency measures one committed write (a deployment update)
// on a 3-replica loopback cluster, proposed on the leader: p50 and p99.
func BenchmarkApplyLatency(b *testing.B) {
	servers := testCluster(b, 3, nil)
	leader := WaitForLeader(b, servers...)
	ctx := testCtx(b)
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		sp := testSpec("bench", 1)
		sp.EngineArgs = []string{fmt.Sprint(i)}
		start := time.Now()
		if _, err := leader.apply(ctx, &stratav1.UpsertDeploymentCommand{Spec: sp, UnixNanos: now()}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
