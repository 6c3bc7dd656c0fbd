package fsm

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// bigState builds a cluster of nodes × gpusPerNode GPUs with workers placed on
// `workers` GPUs, the way the leader would: through commands.
func bigState(tb testing.TB, nodes, gpusPerNode, workers int) *FSM {
	f := New(slog.New(slog.DiscardHandler))
	var index uint64
	apply := func(cmd proto.Message) {
		b, err := Encode(cmd)
		if err != nil {
			tb.Fatal(err)
		}
		index++
		if err, ok := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(error); ok {
			tb.Fatal(err)
		}
	}
	for i := range nodes {
		id := fmt.Sprintf("node-%05d", i)
		apply(&stratav1.RegisterNodeCommand{NodeId: id, Address: id + ":7070", Inventory: &stratav1.Inventory{Hostname: id, Gpus: gpus(id, gpusPerNode), CpuCores: 128, MemoryBytes: 2 << 40}})
	}
	const deployments = 50
	for d := range deployments {
		apply(&stratav1.UpsertDeploymentCommand{Spec: deploySpec(fmt.Sprintf("model-%02d", d))})
	}
	var plan []*stratav1.Worker
	for w := range workers {
		node, gpu := w%nodes, w/nodes
		dep := fmt.Sprintf("model-%02d", w%deployments)
		nodeID := fmt.Sprintf("node-%05d", node)
		plan = append(plan, &stratav1.Worker{
			Id: WorkerID(dep, stratav1.WorkerRole_WORKER_ROLE_BOTH, uint64(w)), Deployment: dep, Generation: 1,
			Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, NodeId: nodeID, GpuUuids: []string{fmt.Sprintf("%s-gpu%d", nodeID, gpu)},
			Port: uint32(20000 + 10*gpu), Load: &stratav1.WorkerLoad{RunningRequests: 3, KvUsage: 0.4},
		})
		if len(plan) == 1000 || w == workers-1 {
			apply(&stratav1.ApplyPlanCommand{Add: plan})
			plan = nil
		}
	}
	return f
}

// BenchmarkSnapshot measures Snapshot+Persist and Restore of a state with
// 10,000 nodes and 100,000 workers (the numbers the brain issue asks for).
func BenchmarkSnapshot(b *testing.B) {
	// 16-GPU nodes: 100,000 single-GPU workers need more than 8 per node.
	f := bigState(b, 10_000, 16, 100_000)
	b.ResetTimer()
	var size int
	b.Run("persist", func(b *testing.B) {
		for b.Loop() {
			snap, err := f.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			var sink memSink
			if err := snap.Persist(&sink); err != nil {
				b.Fatal(err)
			}
			size = sink.Len()
		}
		b.ReportMetric(float64(size)/(1<<20), "MiB")
	})
	snap, _ := f.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		b.Fatal(err)
	}
	data := sink.Bytes()
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			g := New(slog.New(slog.DiscardHandler))
			if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				b.Fatal(err)
			}
		}
	})
}
