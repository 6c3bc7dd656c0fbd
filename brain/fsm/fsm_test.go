package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// testFSM wraps an FSM with a log index so tests read like a command log.
type testFSM struct {
	*FSM
	t     *testing.T
	index uint64
}

func newTestFSM(t *testing.T) *testFSM {
	return &testFSM{FSM: New(slog.New(slog.DiscardHandler)), t: t}
}

func (f *testFSM) apply(cmd proto.Message) any {
	f.t.Helper()
	b, err := Encode(cmd)
	if err != nil {
		f.t.Fatal(err)
	}
	f.index++
	return f.Apply(&raft.Log{Index: f.index, Type: raft.LogCommand, Data: b})
}

func (f *testFSM) mustApply(cmd proto.Message) any {
	f.t.Helper()
	res := f.apply(cmd)
	if err, ok := res.(error); ok {
		f.t.Fatalf("apply %T: %v", cmd, err)
	}
	return res
}

func gpus(node string, n int) []*stratav1.GPU {
	var out []*stratav1.GPU
	for i := range n {
		out = append(out, &stratav1.GPU{Uuid: fmt.Sprintf("%s-gpu%d", node, i), Index: uint32(i), Model: "H100", MemoryBytes: 80 << 30})
	}
	return out
}

func register(f *testFSM, id string, nGPU int, at int64) *stratav1.Node {
	f.t.Helper()
	return f.mustApply(&stratav1.RegisterNodeCommand{
		NodeId: id, Address: id + ":7070", UnixNanos: at,
		Inventory: &stratav1.Inventory{Hostname: id, Gpus: gpus(id, nGPU), CpuCores: 64},
		Labels:    map[string]string{"rack": "r1"},
	}).(*stratav1.Node)
}

func deploySpec(name string) *stratav1.DeploymentSpec {
	return &stratav1.DeploymentSpec{
		Name: name, Model: "m", ServedModelName: name, Engine: "sim", BlockSize: 16,
		Mode: stratav1.DeploymentMode_DEPLOYMENT_MODE_AGGREGATED,
		Pools: []*stratav1.Pool{{
			Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, TensorParallelSize: 1,
			Replicas: &stratav1.Replicas{Min: 1, Max: 4, Initial: 2},
		}},
	}
}

func worker(f *testFSM, dep, node string, gpu int, port uint32) *stratav1.Worker {
	v := f.View()
	return &stratav1.Worker{
		Id:         WorkerID(dep, stratav1.WorkerRole_WORKER_ROLE_BOTH, v.NextWorkerSeq),
		Deployment: dep, Generation: v.Deployments[dep].GetGeneration(),
		Role:   stratav1.WorkerRole_WORKER_ROLE_BOTH,
		NodeId: node, GpuUuids: []string{v.Nodes[node].Inventory.Gpus[gpu].Uuid}, Port: port,
	}
}

func TestRegisterNode(t *testing.T) {
	f := newTestFSM(t)
	n := register(f, "n1", 2, 100)
	if n.State != stratav1.NodeState_NODE_STATE_READY || n.RegisteredUnixNanos != 100 || n.LastHeartbeatUnixNanos != 100 {
		t.Fatalf("registered node = %v", n)
	}
	// Re-registering keeps the first registration time and a drain.
	f.mustApply(&stratav1.DrainNodeCommand{NodeId: "n1", Drained: true})
	n = register(f, "n1", 4, 200)
	if n.RegisteredUnixNanos != 100 || !n.Drained || n.State != stratav1.NodeState_NODE_STATE_DRAINING || len(n.Inventory.Gpus) != 4 {
		t.Fatalf("re-registered node = %v", n)
	}
	if err, _ := f.apply(&stratav1.RegisterNodeCommand{}).(error); !errors.Is(err, ErrConflict) {
		t.Fatalf("register without id: %v", err)
	}
}

func TestHeartbeatAndLeases(t *testing.T) {
	f := newTestFSM(t)
	register(f, "n1", 2, 100)
	register(f, "n2", 2, 100)
	f.mustApply(&stratav1.UpsertDeploymentCommand{Spec: deploySpec("d"), UnixNanos: 1})
	w1 := worker(f, "d", "n1", 0, 20000)
	f.mustApply(&stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{w1}, UnixNanos: 2})

	load := &stratav1.WorkerLoad{RunningRequests: 3, WaitingRequests: 1, KvUsage: 0.5}
	unknown := f.mustApply(&stratav1.HeartbeatBatchCommand{UnixNanos: 300, Heartbeats: []*stratav1.NodeHeartbeat{
		{NodeId: "n1", Workers: []*stratav1.WorkerStatus{{WorkerId: w1.Id, State: stratav1.WorkerState_WORKER_STATE_READY, Load: load}}},
		// n2 claims n1's worker: ignored.
		{NodeId: "n2", Workers: []*stratav1.WorkerStatus{{WorkerId: w1.Id, State: stratav1.WorkerState_WORKER_STATE_FAILED}}},
		{NodeId: "ghost"},
	}}).([]string)
	if len(unknown) != 1 || unknown[0] != "ghost" {
		t.Fatalf("unknown nodes = %v", unknown)
	}
	v := f.View()
	if got := v.Workers[w1.Id]; got.State != stratav1.WorkerState_WORKER_STATE_READY || !proto.Equal(got.Load, load) || got.UpdatedUnixNanos != 300 {
		t.Fatalf("worker after heartbeat = %v", got)
	}
	if v.Nodes["n1"].LastHeartbeatUnixNanos != 300 {
		t.Fatalf("lease not renewed: %v", v.Nodes["n1"])
	}

	f.mustApply(&stratav1.MarkNodesDownCommand{NodeIds: []string{"n1", "ghost"}, UnixNanos: 400})
	if st := f.View().Nodes["n1"].State; st != stratav1.NodeState_NODE_STATE_DOWN {
		t.Fatalf("n1 state = %v", st)
	}
	// A heartbeat from a down node brings it back.
	f.mustApply(&stratav1.HeartbeatBatchCommand{UnixNanos: 500, Heartbeats: []*stratav1.NodeHeartbeat{{NodeId: "n1"}}})
	if st := f.View().Nodes["n1"].State; st != stratav1.NodeState_NODE_STATE_READY {
		t.Fatalf("n1 state after heartbeat = %v", st)
	}
}

func TestDrainNode(t *testing.T) {
	f := newTestFSM(t)
	register(f, "n1", 1, 1)
	n := f.mustApply(&stratav1.DrainNodeCommand{NodeId: "n1", Drained: true}).(*stratav1.Node)
	if n.State != stratav1.NodeState_NODE_STATE_DRAINING {
		t.Fatalf("drained node = %v", n)
	}
	f.mustApply(&stratav1.MarkNodesDownCommand{NodeIds: []string{"n1"}})
	n = f.mustApply(&stratav1.DrainNodeCommand{NodeId: "n1", Drained: false}).(*stratav1.Node)
	if n.State != stratav1.NodeState_NODE_STATE_DOWN || n.Drained {
		t.Fatalf("undrained down node = %v", n)
	}
	if err, _ := f.apply(&stratav1.DrainNodeCommand{NodeId: "nope"}).(error); !errors.Is(err, ErrNotFound) {
		t.Fatalf("drain unknown node: %v", err)
	}
}

func TestDeployments(t *testing.T) {
	f := newTestFSM(t)
	res := f.mustApply(&stratav1.UpsertDeploymentCommand{Spec: deploySpec("d"), UnixNanos: 10}).(UpsertResult)
	if !res.Changed || res.Deployment.Generation != 1 || res.Deployment.CreatedUnixNanos != 10 {
		t.Fatalf("first upsert = %+v", res)
	}
	res = f.mustApply(&stratav1.UpsertDeploymentCommand{Spec: deploySpec("d"), UnixNanos: 20}).(UpsertResult)
	if res.Changed || res.Deployment.Generation != 1 || res.Deployment.UpdatedUnixNanos != 10 {
		t.Fatalf("identical upsert = %+v", res)
	}
	changed := deploySpec("d")
	changed.EngineArgs = []string{"--max-num-seqs", "64"}
	res = f.mustApply(&stratav1.UpsertDeploymentCommand{Spec: changed, UnixNanos: 30}).(UpsertResult)
	if !res.Changed || res.Deployment.Generation != 2 || res.Deployment.CreatedUnixNanos != 10 || res.Deployment.UpdatedUnixNanos != 30 {
		t.Fatalf("changed upsert = %+v", res)
	}

	register(f, "n1", 1, 1)
	f.mustApply(&stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{worker(f, "d", "n1", 0, 20000)}})
	f.mustApply(&stratav1.RecordPlannerDecisionCommand{Decision: &stratav1.PlannerDecision{Deployment: "d", Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, Replicas: 3}})
	f.mustApply(&stratav1.DeleteDeploymentCommand{Name: "d"})
	v := f.View()
	if len(v.Deployments)+len(v.Workers)+len(v.Decisions) != 0 {
		t.Fatalf("delete left %d deployments, %d workers, %d decisions", len(v.Deployments), len(v.Workers), len(v.Decisions))
	}
	if err, _ := f.apply(&stratav1.DeleteDeploymentCommand{Name: "d"}).(error); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if err, _ := f.apply(&stratav1.RecordPlannerDecisionCommand{Decision: &stratav1.PlannerDecision{Deployment: "d"}}).(error); !errors.Is(err, ErrNotFound) {
		t.Fatalf("decision for deleted deployment: %v", err)
	}
}

func TestApplyPlan(t *testing.T) {
	f := newTestFSM(t)
	register(f, "n1", 2, 1)
	f.mustApply(&stratav1.UpsertDeploymentCommand{Spec: deploySpec("d")})
	w0 := worker(f, "d", "n1", 0, 20000)
	f.mustApply(&stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{w0}, UnixNanos: 5})
	if got := f.View().Workers[w0.Id]; got.State != stratav1.WorkerState_WORKER_STATE_PENDING || got.CreatedUnixNanos != 5 {
		t.Fatalf("placed worker = %v", got)
	}

	tests := []struct {
		name   string
		plan   func() *stratav1.ApplyPlanCommand
		reject error
	}{
		{"stale id", func() *stratav1.ApplyPlanCommand {
			w := worker(f, "d", "n1", 1, 20010)
			w.Id = WorkerID("d", w.Role, 0)
			return &stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{w}}
		}, ErrConflict},
		{"GPU taken", func() *stratav1.ApplyPlanCommand {
			return &stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{worker(f, "d", "n1", 0, 20010)}}
		}, ErrConflict},
		{"port taken", func() *stratav1.ApplyPlanCommand {
			return &stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{worker(f, "d", "n1", 1, 20000)}}
		}, ErrConflict},
		{"GPU taken by a worker removed in the same plan", func() *stratav1.ApplyPlanCommand {
			return &stratav1.ApplyPlanCommand{Remove: []string{w0.Id}, Add: []*stratav1.Worker{worker(f, "d", "n1", 0, 20010)}}
		}, ErrConflict},
		{"foreign GPU", func() *stratav1.ApplyPlanCommand {
			w := worker(f, "d", "n1", 1, 20010)
			w.GpuUuids = []string{"GPU-elsewhere"}
			return &stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{w}}
		}, ErrConflict},
		{"unknown node", func() *stratav1.ApplyPlanCommand {
			w := worker(f, "d", "n1", 1, 20010)
			w.NodeId = "n9"
			return &stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{w}}
		}, ErrNotFound},
		{"unknown removal", func() *stratav1.ApplyPlanCommand {
			return &stratav1.ApplyPlanCommand{Remove: []string{"nope"}}
		}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := EncodeSnapshot(f.View())
			err, _ := f.apply(tt.plan()).(error)
			if !errors.Is(err, tt.reject) {
				t.Fatalf("err = %v, want %v", err, tt.reject)
			}
			after, _ := EncodeSnapshot(f.View())
			// A rejected plan changes nothing but the index.
			if a, b := mustDecode(t, before), mustDecode(t, after); !sameTables(a, b) {
				t.Fatal("rejected plan changed the state")
			}
		})
	}

	w1 := worker(f, "d", "n1", 1, 20010)
	f.mustApply(&stratav1.ApplyPlanCommand{Remove: []string{w0.Id}, Add: []*stratav1.Worker{w1}})
	v := f.View()
	if _, ok := v.Workers[w0.Id]; ok || v.Workers[w1.Id] == nil || v.NextWorkerSeq != 2 {
		t.Fatalf("after plan: workers %v, next seq %d", v.Workers, v.NextWorkerSeq)
	}
}

func mustDecode(t *testing.T, b []byte) *View {
	t.Helper()
	v, err := DecodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sameTables compares everything but the index.
func sameTables(a, b *View) bool {
	a, b = a.clone(), b.clone()
	a.Index, b.Index = 0, 0
	x, _ := EncodeSnapshot(a)
	y, _ := EncodeSnapshot(b)
	return bytes.Equal(x, y)
}

func TestBrainMembers(t *testing.T) {
	f := newTestFSM(t)
	m := &stratav1.BrainMember{Id: "b1", RaftAddress: "10.0.0.1:7000", GrpcAddress: "10.0.0.1:7001"}
	f.mustApply(&stratav1.SetBrainMemberCommand{Member: m})
	if !proto.Equal(f.View().Brains["b1"], m) {
		t.Fatal("member not stored")
	}
	f.mustApply(&stratav1.RemoveBrainMemberCommand{Id: "b1"})
	if len(f.View().Brains) != 0 {
		t.Fatal("member not removed")
	}
	if err, _ := f.apply(&stratav1.SetBrainMemberCommand{Member: &stratav1.BrainMember{}}).(error); !errors.Is(err, ErrConflict) {
		t.Fatalf("member without id: %v", err)
	}
}

// populated builds a state with an entry in every table.
func populated(t *testing.T) *testFSM {
	f := newTestFSM(t)
	register(f, "n1", 2, 1)
	register(f, "n2", 8, 2)
	f.mustApply(&stratav1.DrainNodeCommand{NodeId: "n2", Drained: true})
	f.mustApply(&stratav1.UpsertDeploymentCommand{Spec: deploySpec("a"), UnixNanos: 3})
	f.mustApply(&stratav1.UpsertDeploymentCommand{Spec: deploySpec("b"), UnixNanos: 4})
	f.mustApply(&stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{worker(f, "a", "n1", 0, 20000)}})
	f.mustApply(&stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{worker(f, "b", "n1", 1, 20010)}})
	f.mustApply(&stratav1.SetBrainMemberCommand{Member: &stratav1.BrainMember{Id: "b1", RaftAddress: "x:1"}})
	f.mustApply(&stratav1.RecordPlannerDecisionCommand{Decision: &stratav1.PlannerDecision{Deployment: "a", Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, Replicas: 3, Reason: "ttft"}})
	return f
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

// TestSnapshotRestore round-trips each table through Snapshot/Persist and
// Restore into a fresh FSM.
func TestSnapshotRestore(t *testing.T) {
	src := populated(t)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot was taken must not leak into it.
	register(src, "n3", 1, 9)
	var sink memSink
	if err := snap.Persist(&sink); err != nil || sink.cancelled {
		t.Fatalf("persist: %v (cancelled %v)", err, sink.cancelled)
	}
	snap.Release()

	dst := newTestFSM(t)
	register(dst, "stale", 1, 1) // Restore replaces, never merges.
	ch, _ := dst.Changed()
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Restore did not signal a change")
	}
	got, want := dst.View(), src.View()
	if got.Index != want.Index-1 {
		t.Fatalf("restored index %d, want %d", got.Index, want.Index-1)
	}
	delete(want.Nodes, "n3")
	tables := []struct {
		name      string
		got, want int
		equal     func() bool
	}{
		{"nodes", len(got.Nodes), len(want.Nodes), func() bool { return equalMaps(got.Nodes, want.Nodes) }},
		{"deployments", len(got.Deployments), len(want.Deployments), func() bool { return equalMaps(got.Deployments, want.Deployments) }},
		{"workers", len(got.Workers), len(want.Workers), func() bool { return equalMaps(got.Workers, want.Workers) }},
		{"brains", len(got.Brains), len(want.Brains), func() bool { return equalMaps(got.Brains, want.Brains) }},
		{"planner decisions", len(got.Decisions), len(want.Decisions), func() bool { return equalMaps(got.Decisions, want.Decisions) }},
		{"next worker seq", int(got.NextWorkerSeq), int(want.NextWorkerSeq), func() bool { return true }},
	}
	for _, tt := range tables {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got == 0 || tt.got != tt.want || !tt.equal() {
				t.Fatalf("restored %d entries, want %d (non-zero), equal=%v", tt.got, tt.want, tt.equal())
			}
		})
	}
}

func equalMaps[K comparable, V proto.Message](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !proto.Equal(v, w) {
			return false
		}
	}
	return true
}

func TestSnapshotDeterministic(t *testing.T) {
	a, _ := EncodeSnapshot(populated(t).View())
	b, _ := EncodeSnapshot(populated(t).View())
	if !bytes.Equal(a, b) {
		t.Fatal("equal states gave different snapshot bytes")
	}
}

func TestRestoreRejectsGarbage(t *testing.T) {
	f := populated(t)
	before := f.View()
	if err := f.Restore(io.NopCloser(bytes.NewReader([]byte{0xff, 0xff, 0xff}))); err == nil {
		t.Fatal("garbage snapshot restored")
	}
	if !sameTables(before, f.View()) {
		t.Fatal("failed restore changed the state")
	}
}

func TestUnknownAndMalformedCommands(t *testing.T) {
	f := populated(t)
	before := f.View()
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformedCommand},
		{"unknown type", []byte{0xee, 0x08, 0x01}, ErrUnknownCommand},
		{"zero type", []byte{0}, ErrUnknownCommand},
		{"truncated protobuf", []byte{byte(RegisterNodeType), 0x0a, 0x05, 'a'}, ErrMalformedCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.index++
			err, _ := f.Apply(&raft.Log{Index: f.index, Type: raft.LogCommand, Data: tt.data}).(error)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if f.Index() != f.index {
				t.Fatalf("index %d, want %d: a rejected entry still advances the index", f.Index(), f.index)
			}
		})
	}
	if !sameTables(before, f.View()) {
		t.Fatal("rejected commands changed the state")
	}
	if _, err := Encode(&stratav1.Node{}); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("encode of a non-command: %v", err)
	}
}

func TestCommandTypesAppendOnly(t *testing.T) {
	// The numbers are on disk in every Raft log: this list may only grow.
	want := map[CommandType]string{
		1: "RegisterNodeCommand", 2: "HeartbeatBatchCommand", 3: "MarkNodesDownCommand",
		4: "DrainNodeCommand", 5: "UpsertDeploymentCommand", 6: "DeleteDeploymentCommand",
		7: "ApplyPlanCommand", 8: "SetBrainMemberCommand", 9: "RemoveBrainMemberCommand",
		10: "RecordPlannerDecisionCommand",
	}
	for typ, name := range want {
		if typ.String() != name {
			t.Errorf("type %d is %s, want %s", typ, typ, name)
		}
	}
	if len(registry) < len(want) {
		t.Errorf("registry lost types: %d < %d", len(registry), len(want))
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range []proto.Message{
		&stratav1.RegisterNodeCommand{NodeId: "n1", Inventory: &stratav1.Inventory{Gpus: gpus("n1", 2)}},
		&stratav1.HeartbeatBatchCommand{Heartbeats: []*stratav1.NodeHeartbeat{{NodeId: "n1", Workers: []*stratav1.WorkerStatus{{WorkerId: "w"}}}}},
		&stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{{Id: "d-both-0", Deployment: "d", NodeId: "n1", GpuUuids: []string{"n1-gpu0"}}}, Remove: []string{"x"}},
		&stratav1.UpsertDeploymentCommand{Spec: deploySpec("d")},
		&stratav1.DeleteDeploymentCommand{Name: "d"},
	} {
		b, err := Encode(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, cmd, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrUnknownCommand) && !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		again, err := Encode(cmd)
		if err != nil || again[0] != byte(typ) {
			t.Fatalf("re-encode: %v", err)
		}
		// Applying any decodable command to a populated state never panics.
		fsm := populated(t)
		fsm.index++
		fsm.Apply(&raft.Log{Index: fsm.index, Type: raft.LogCommand, Data: data})
	})
}

// TestPlacementIndex: load reports do not wake placement; state changes do.
func TestPlacementIndex(t *testing.T) {
	f := newTestFSM(t)
	register(f, "n1", 1, 1)
	f.mustApply(&stratav1.UpsertDeploymentCommand{Spec: deploySpec("d")})
	w := worker(f, "d", "n1", 0, 20000)
	f.mustApply(&stratav1.ApplyPlanCommand{Add: []*stratav1.Worker{w}})
	report := func(st stratav1.WorkerState, running uint32) {
		f.mustApply(&stratav1.HeartbeatBatchCommand{Heartbeats: []*stratav1.NodeHeartbeat{{NodeId: "n1", Workers: []*stratav1.WorkerStatus{
			{WorkerId: w.Id, State: st, Load: &stratav1.WorkerLoad{RunningRequests: running}},
		}}}})
	}
	tests := []struct {
		name  string
		apply func()
		moves bool
	}{
		{"worker becomes ready", func() { report(stratav1.WorkerState_WORKER_STATE_READY, 0) }, true},
		{"load only", func() { report(stratav1.WorkerState_WORKER_STATE_READY, 5) }, false},
		{"brain member", func() { f.mustApply(&stratav1.SetBrainMemberCommand{Member: &stratav1.BrainMember{Id: "b"}}) }, false},
		{"node down", func() { f.mustApply(&stratav1.MarkNodesDownCommand{NodeIds: []string{"n1"}}) }, true},
		{"node back", func() { report(stratav1.WorkerState_WORKER_STATE_READY, 5) }, true},
		{"drain", func() { f.mustApply(&stratav1.DrainNodeCommand{NodeId: "n1", Drained: true}) }, true},
		{"planner decision", func() {
			f.mustApply(&stratav1.RecordPlannerDecisionCommand{Decision: &stratav1.PlannerDecision{Deployment: "d", Replicas: 2}})
		}, true},
	}
	for _, tt := range tests {
		before := f.View().PlacementIndex
		tt.apply()
		after := f.View()
		if moved := after.PlacementIndex != before; moved != tt.moves {
			t.Errorf("%s: placement index moved=%v, want %v", tt.name, moved, tt.moves)
		}
		if tt.moves && after.PlacementIndex != after.Index {
			t.Errorf("%s: placement index %d, want the entry's index %d", tt.name, after.PlacementIndex, after.Index)
		}
	}
}
