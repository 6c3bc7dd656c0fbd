package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

const (
	both    = stratav1.WorkerRole_WORKER_ROLE_BOTH
	prefill = stratav1.WorkerRole_WORKER_ROLE_PREFILL
	decode  = stratav1.WorkerRole_WORKER_ROLE_DECODE

	ready    = stratav1.WorkerState_WORKER_STATE_READY
	starting = stratav1.WorkerState_WORKER_STATE_STARTING
	failed   = stratav1.WorkerState_WORKER_STATE_FAILED
	pending  = stratav1.WorkerState_WORKER_STATE_PENDING
)

// gpuNode returns a READY node with n GPUs "<id>-<index>". A link {i, j} is
// listed only on GPU i, which placement must treat as a link both ways.
func gpuNode(id string, n int, links ...[2]int) *stratav1.Node {
	gpus := make([]*stratav1.GPU, n)
	for i := range gpus {
		gpus[i] = &stratav1.GPU{Uuid: uuid(id, i), Index: uint32(i)}
	}
	for _, l := range links {
		gpus[l[0]].NvlinkPeers = append(gpus[l[0]].NvlinkPeers, uuid(id, l[1]))
	}
	return &stratav1.Node{Id: id, State: stratav1.NodeState_NODE_STATE_READY, Inventory: &stratav1.Inventory{Gpus: gpus}}
}

func uuid(node string, i int) string { return fmt.Sprintf("%s-%d", node, i) }

// clique links every pair of GPUs from lo to hi-1.
func clique(lo, hi int) [][2]int {
	var l [][2]int
	for i := lo; i < hi; i++ {
		for j := i + 1; j < hi; j++ {
			l = append(l, [2]int{i, j})
		}
	}
	return l
}

func withState(n *stratav1.Node, st stratav1.NodeState, drained bool) *stratav1.Node {
	n.State, n.Drained = st, drained
	return n
}

func dep(name string, gen uint64, pools ...*stratav1.Pool) *stratav1.Deployment {
	return &stratav1.Deployment{Spec: &stratav1.DeploymentSpec{Name: name, Pools: pools}, Generation: gen}
}

func pool(role stratav1.WorkerRole, tp, lo, hi, initial uint32) *stratav1.Pool {
	return &stratav1.Pool{Role: role, TensorParallelSize: tp, Replicas: &stratav1.Replicas{Min: lo, Max: hi, Initial: initial}}
}

func wk(id, deployment string, gen uint64, role stratav1.WorkerRole, node string, st stratav1.WorkerState, port uint32, gpus ...int) *stratav1.Worker {
	w := &stratav1.Worker{Id: id, Deployment: deployment, Generation: gen, Role: role, NodeId: node, State: st, Port: port}
	for _, g := range gpus {
		w.GpuUuids = append(w.GpuUuids, uuid(node, g))
	}
	return w
}

func decision(deployment string, role stratav1.WorkerRole, replicas uint32, at int64) *stratav1.PlannerDecision {
	return &stratav1.PlannerDecision{Deployment: deployment, Role: role, Replicas: replicas, UnixNanos: at}
}

var roleNames = map[stratav1.WorkerRole]string{both: "both", prefill: "prefill", decode: "decode"}

func describe(w *stratav1.Worker) string {
	return fmt.Sprintf("%s/%s@%s:%s:%d", w.GetDeployment(), roleNames[w.GetRole()], w.GetNodeId(), strings.Join(w.GetGpuUuids(), ","), w.GetPort())
}

func describeAll(ws []*stratav1.Worker) []string {
	var out []string
	for _, w := range ws {
		out = append(out, describe(w))
	}
	return out
}

func TestCompute(t *testing.T) {
	tests := []struct {
		name     string
		in       Input
		add      []string
		remove   []string
		unplaced []Shortfall
	}{
		{
			name: "bin-pack onto the node left fullest",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8, clique(0, 8)...), gpuNode("b", 8, clique(0, 8)...)},
				Deployments: []*stratav1.Deployment{dep("other", 1, pool(both, 6, 1, 1, 1)), dep("d", 1, pool(both, 2, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("x1", "other", 1, both, "b", ready, 20000, 0, 1, 2, 3, 4, 5)},
			},
			add: []string{"d/both@b:b-6,b-7:20010"},
		},
		{
			name: "best fit picks the smaller node",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("big", 8, clique(0, 8)...), gpuNode("small", 4, clique(0, 4)...)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 4, 1, 1, 1))},
			},
			add: []string{"d/both@small:small-0,small-1,small-2,small-3:20000"},
		},
		{
			name: "spread replicas before bin-packing",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8), gpuNode("b", 8), gpuNode("c", 8)},
				Deployments: []*stratav1.Deployment{dep("other", 1, pool(both, 6, 1, 1, 1)), dep("d", 1, pool(both, 1, 0, 5, 3))},
				Workers:     []*stratav1.Worker{wk("x1", "other", 1, both, "b", ready, 20000, 0, 1, 2, 3, 4, 5)},
			},
			add: []string{"d/both@b:b-6:20010", "d/both@a:a-0:20000", "d/both@c:c-0:20000"},
		},
		{
			name: "a second replica shares a node only when no other node fits",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8), gpuNode("b", 2)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 4, 2, 2, 2))},
			},
			add: []string{"d/both@a:a-0,a-1,a-2,a-3:20000", "d/both@a:a-4,a-5,a-6,a-7:20010"},
		},
		{
			name: "spread counts every pool of the deployment",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8, clique(0, 8)...), gpuNode("b", 8, clique(0, 8)...)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(prefill, 1, 1, 1, 1), pool(decode, 2, 1, 1, 1))},
			},
			add: []string{"d/prefill@a:a-0:20000", "d/decode@b:b-0,b-1:20000"},
		},
		{
			name: "node with an NVLink clique preferred",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8), gpuNode("b", 8, [2]int{0, 1}, [2]int{2, 3})},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 2, 1, 1, 1))},
			},
			add: []string{"d/both@b:b-0,b-1:20000"},
		},
		{
			name: "lowest-index clique, links listed on one side only",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 4, [2]int{3, 1}, [2]int{2, 3})},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 2, 1, 1, 1))},
			},
			add: []string{"d/both@a:a-1,a-3:20000"},
		},
		{
			name: "clique on the free NVLink island",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8, append(clique(0, 4), clique(4, 8)...)...)},
				Deployments: []*stratav1.Deployment{dep("other", 1, pool(both, 1, 1, 1, 1)), dep("d", 1, pool(both, 4, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("x1", "other", 1, both, "a", ready, 20000, 1)},
			},
			add: []string{"d/both@a:a-4,a-5,a-6,a-7:20010"},
		},
		{
			name: "no clique: lowest free GPUs of one node",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8, [2]int{0, 5})},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 4, 1, 1, 1))},
			},
			add: []string{"d/both@a:a-0,a-1,a-2,a-3:20000"},
		},
		{
			name: "clique search beyond 64 GPUs",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("big", 130, clique(60, 68)...)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 8, 1, 1, 1))},
			},
			add: []string{"d/both@big:big-60,big-61,big-62,big-63,big-64,big-65,big-66,big-67:20000"},
		},
		{
			name: "a gang is never split across nodes",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8), gpuNode("b", 8)},
				Deployments: []*stratav1.Deployment{dep("other", 1, pool(both, 5, 2, 2, 2)), dep("d", 1, pool(both, 4, 1, 1, 1))},
				Workers: []*stratav1.Worker{
					wk("x1", "other", 1, both, "a", ready, 20000, 0, 1, 2, 3, 4),
					wk("x2", "other", 1, both, "b", ready, 20000, 0, 1, 2, 3, 4),
				},
			},
			unplaced: []Shortfall{{"d", both, 1, 0, "no READY node with 4 free GPUs (NVLink not required)"}},
		},
		{
			name: "gang larger than any node",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 4)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 8, 1, 1, 1))},
			},
			unplaced: []Shortfall{{"d", both, 1, 0, "no READY node has 8 GPUs"}},
		},
		{
			name: "deployments by name compete for the last GPU",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 1)},
				Deployments: []*stratav1.Deployment{dep("b", 1, pool(both, 1, 1, 1, 1)), dep("a", 1, pool(both, 1, 1, 1, 1))},
			},
			add:      []string{"a/both@a:a-0:20000"},
			unplaced: []Shortfall{{"b", both, 1, 0, "no READY node with 1 free GPU (NVLink not required)"}},
		},
		{
			name: "drain moves workers",
			in: Input{
				Nodes:       []*stratav1.Node{withState(gpuNode("a", 8), stratav1.NodeState_NODE_STATE_DRAINING, true), gpuNode("b", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 2, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("w1", "d", 1, both, "a", ready, 20000, 0, 1)},
			},
			add:    []string{"d/both@b:b-0,b-1:20000"},
			remove: []string{"w1"},
		},
		{
			name: "drained flag alone moves workers",
			in: Input{
				Nodes:       []*stratav1.Node{withState(gpuNode("a", 8), stratav1.NodeState_NODE_STATE_READY, true), gpuNode("b", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 2, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("w1", "d", 1, both, "a", ready, 20000, 0, 1)},
			},
			add:    []string{"d/both@b:b-0,b-1:20000"},
			remove: []string{"w1"},
		},
		{
			name: "workers of a DOWN node replaced",
			in: Input{
				Nodes:       []*stratav1.Node{withState(gpuNode("a", 8), stratav1.NodeState_NODE_STATE_DOWN, false), gpuNode("b", 8), gpuNode("c", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 2, 2, 2))},
				Workers: []*stratav1.Worker{
					wk("w1", "d", 1, both, "a", ready, 20000, 0),
					wk("w2", "d", 1, both, "b", ready, 20000, 0),
				},
			},
			add:    []string{"d/both@c:c-0:20000"},
			remove: []string{"w1"},
		},
		{
			name: "no READY node at all",
			in: Input{
				Nodes:       []*stratav1.Node{withState(gpuNode("a", 8), stratav1.NodeState_NODE_STATE_DOWN, false)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("w1", "d", 1, both, "a", ready, 20000, 0)},
			},
			remove:   []string{"w1"},
			unplaced: []Shortfall{{"d", both, 1, 0, "no READY node"}},
		},
		{
			name: "workers of a deleted deployment removed",
			in: Input{
				Nodes:   []*stratav1.Node{gpuNode("a", 8)},
				Workers: []*stratav1.Worker{wk("w1", "gone", 1, both, "a", ready, 20000, 0)},
			},
			remove: []string{"w1"},
		},
		{
			name: "worker whose role is no longer a pool removed",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8), gpuNode("b", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 2, pool(prefill, 1, 1, 1, 1), pool(decode, 1, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("w1", "d", 1, both, "a", ready, 20000, 0)},
			},
			add:    []string{"d/prefill@a:a-1:20010", "d/decode@b:b-0:20000"},
			remove: []string{"w1"},
		},
		{
			name: "worker on an unknown node or a vanished GPU replaced",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 4), gpuNode("b", 4)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 2, 2, 2))},
				Workers: []*stratav1.Worker{
					wk("w1", "d", 1, both, "gone", ready, 20000, 0),
					wk("w2", "d", 1, both, "a", ready, 20000, 7),
				},
			},
			add:    []string{"d/both@a:a-0:20010", "d/both@b:b-0:20000"},
			remove: []string{"w1", "w2"},
		},
		{
			name: "FAILED worker stays",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("w1", "d", 1, both, "a", failed, 20000, 0)},
			},
		},
		{
			name: "planner decision overrides initial",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 0, 4, 1))},
				Decisions:   []*stratav1.PlannerDecision{decision("d", both, 3, 1)},
			},
			add: []string{"d/both@a:a-0:20000", "d/both@a:a-1:20010", "d/both@a:a-2:20020"},
		},
		{
			name: "planner decision clamped to max",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 0, 2, 1))},
				Decisions:   []*stratav1.PlannerDecision{decision("d", both, 9, 1)},
			},
			add: []string{"d/both@a:a-0:20000", "d/both@a:a-1:20010"},
		},
		{
			name: "planner decision clamped to min",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 1, 4, 3))},
				Decisions:   []*stratav1.PlannerDecision{decision("d", both, 0, 1), decision("other", both, 4, 1), decision("d", decode, 4, 1)},
			},
			add: []string{"d/both@a:a-0:20000"},
		},
		{
			name: "latest planner decision wins",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 0, 4, 0))},
				Decisions:   []*stratav1.PlannerDecision{decision("d", both, 2, 9), decision("d", both, 4, 5)},
			},
			add: []string{"d/both@a:a-0:20000", "d/both@a:a-1:20010"},
		},
		{
			name: "initial clamped to max",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 4, 0, 1, 5))},
			},
			add: []string{"d/both@a:a-0,a-1,a-2,a-3:20000"},
		},
		{
			name: "scale down: not READY first, then the crowded node, then the highest id",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8), gpuNode("b", 8), gpuNode("c", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 0, 4, 2))},
				Workers: []*stratav1.Worker{
					wk("w1", "d", 1, both, "a", ready, 20000, 0),
					wk("w2", "d", 1, both, "a", ready, 20010, 1),
					wk("w3", "d", 1, both, "b", ready, 20000, 0),
					wk("w4", "d", 1, both, "c", starting, 20000, 0),
				},
			},
			remove: []string{"w2", "w4"},
		},
		{
			name: "scale down to zero",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 0, 4, 0))},
				Workers: []*stratav1.Worker{
					wk("w1", "d", 1, both, "a", ready, 20000, 0),
					wk("w2", "d", 1, both, "a", failed, 20010, 1),
				},
			},
			remove: []string{"w1", "w2"},
		},
		{
			name: "lowest free port slot reused",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 8)},
				Deployments: []*stratav1.Deployment{dep("x", 1, pool(both, 1, 2, 2, 2)), dep("d", 1, pool(both, 1, 1, 1, 1))},
				Workers: []*stratav1.Worker{
					wk("x1", "x", 1, both, "a", ready, 20000, 0),
					wk("x2", "x", 1, both, "a", ready, 20020, 2),
				},
			},
			add: []string{"d/both@a:a-1:20010"},
		},
		{
			name: "GPUs and port of a removed worker not reused in the same plan",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 2)},
				Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("x1", "gone", 1, both, "a", ready, 20000, 0)},
			},
			add:    []string{"d/both@a:a-1:20010"},
			remove: []string{"x1"},
		},
		{
			name: "unaligned port holds both slots it overlaps",
			in: Input{
				Nodes:       []*stratav1.Node{gpuNode("a", 2)},
				Deployments: []*stratav1.Deployment{dep("x", 1, pool(both, 1, 1, 1, 1)), dep("d", 1, pool(both, 1, 1, 1, 1))},
				Workers:     []*stratav1.Worker{wk("x1", "x", 1, both, "a", ready, 20005, 0)},
			},
			add: []string{"d/both@a:a-1:20020"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneInput(tc.in)
			p := Compute(tc.in)
			if !inputEqual(before, tc.in) {
				t.Fatal("Compute modified its input")
			}
			if got := describeAll(p.Add); !slices.Equal(got, tc.add) {
				t.Errorf("Add\n got %q\nwant %q", got, tc.add)
			}
			if !slices.Equal(p.Remove, tc.remove) {
				t.Errorf("Remove = %q, want %q", p.Remove, tc.remove)
			}
			if !slices.Equal(p.Unplaced, tc.unplaced) {
				t.Errorf("Unplaced\n got %+v\nwant %+v", p.Unplaced, tc.unplaced)
			}
			if p.Empty() != (len(tc.add) == 0 && len(tc.remove) == 0) {
				t.Errorf("Empty() = %v", p.Empty())
			}
			for _, w := range p.Add {
				if w.GetId() != "" || w.GetState() != pending || w.GetGeneration() != generation(tc.in, w.GetDeployment()) {
					t.Errorf("added worker %v: want empty id, PENDING, deployment generation", w)
				}
			}
			for i := range 20 {
				if q := Compute(shuffled(tc.in, rand.New(rand.NewPCG(uint64(i), 1)))); !planEqual(p, q) {
					t.Fatalf("shuffled input gave another plan:\n%v\n%v", p, q)
				}
			}
		})
	}
}

func generation(in Input, name string) uint64 {
	for _, d := range in.Deployments {
		if d.GetSpec().GetName() == name {
			return d.GetGeneration()
		}
	}
	return 0
}

// world simulates the leader and the agents acting on plans.
type world struct {
	in  Input
	seq int
}

// step computes a plan, checks it and applies it: removed workers disappear,
// added ones get an id and stay PENDING.
func (w *world) step(t *testing.T) Plan {
	t.Helper()
	before := cloneInput(w.in)
	p := Compute(w.in)
	if !inputEqual(before, w.in) {
		t.Fatal("Compute modified its input")
	}
	checkPlan(t, w.in, p)
	w.in.Workers = apply(w.in.Workers, p, &w.seq)
	return p
}

func apply(ws []*stratav1.Worker, p Plan, seq *int) []*stratav1.Worker {
	var out []*stratav1.Worker
	for _, w := range ws {
		if !slices.Contains(p.Remove, w.GetId()) {
			out = append(out, w)
		}
	}
	for _, a := range p.Add {
		*seq++
		c := proto.CloneOf(a)
		c.Id = fmt.Sprintf("w%05d", *seq)
		out = append(out, c)
	}
	return out
}

// markReady returns the workers with every PENDING or STARTING one READY, as
// the agents would report once the engines start.
func markReady(ws []*stratav1.Worker) []*stratav1.Worker {
	out := make([]*stratav1.Worker, len(ws))
	for i, w := range ws {
		out[i] = w
		if w.GetState() == pending || w.GetState() == starting {
			out[i] = proto.CloneOf(w)
			out[i].State = ready
		}
	}
	return out
}

func count(ws []*stratav1.Worker, pred func(*stratav1.Worker) bool) int {
	n := 0
	for _, w := range ws {
		if pred(w) {
			n++
		}
	}
	return n
}

func TestRollingUpdateWithSpareCapacity(t *testing.T) {
	w := &world{in: Input{
		Nodes:       []*stratav1.Node{gpuNode("a", 8, clique(0, 8)...), gpuNode("b", 8, clique(0, 8)...)},
		Deployments: []*stratav1.Deployment{dep("d", 2, pool(both, 2, 3, 3, 3))},
		Workers: []*stratav1.Worker{
			wk("old1", "d", 1, both, "a", ready, 20000, 0, 1),
			wk("old2", "d", 1, both, "b", ready, 20000, 0, 1),
			wk("old3", "d", 1, both, "a", ready, 20010, 2, 3),
		},
	}}
	serving := func() int { return count(w.in.Workers, func(x *stratav1.Worker) bool { return x.State == ready }) }

	// Round 1: the surge adds all three new workers; nothing is READY yet,
	// so no old worker goes.
	p := w.step(t)
	if len(p.Add) != 3 || len(p.Remove) != 0 {
		t.Fatalf("round 1: %v", p)
	}
	// Only one new worker comes up: exactly one old one may go.
	w.in.Workers = slices.Clone(w.in.Workers)
	w.in.Workers[len(w.in.Workers)-3] = proto.CloneOf(w.in.Workers[len(w.in.Workers)-3])
	w.in.Workers[len(w.in.Workers)-3].State = ready
	p = w.step(t)
	if len(p.Add) != 0 || len(p.Remove) != 1 || serving() < 3 {
		t.Fatalf("round 2: %v, serving %d", p, serving())
	}
	w.in.Workers = markReady(w.in.Workers)
	p = w.step(t)
	if len(p.Remove) != 2 || serving() < 3 {
		t.Fatalf("round 3: %v, serving %d", p, serving())
	}
	if p = w.step(t); !p.Empty() {
		t.Fatalf("round 4 not empty: %v", p)
	}
	if n := count(w.in.Workers, func(x *stratav1.Worker) bool { return x.Generation == 2 }); n != 3 || len(w.in.Workers) != 3 {
		t.Fatalf("after update: %v", describeAll(w.in.Workers))
	}
}

func TestRollingUpdateWithoutSpareCapacity(t *testing.T) {
	w := &world{in: Input{
		Nodes:       []*stratav1.Node{gpuNode("a", 4, clique(0, 4)...)},
		Deployments: []*stratav1.Deployment{dep("d", 2, pool(both, 2, 2, 2, 2))},
		Workers: []*stratav1.Worker{
			wk("old1", "d", 1, both, "a", ready, 20000, 0, 1),
			wk("old2", "d", 1, both, "a", ready, 20010, 2, 3),
		},
	}}
	type round struct {
		add, remove int
		reason      string // of the shortfall, "" for none
	}
	want := []round{
		{0, 1, "no READY node with 2 free GPUs (NVLink not required); stopping stale worker old2 to free GPUs for the rolling update"},
		{1, 0, "no READY node with 2 free GPUs (NVLink not required)"},
		// The new worker is not READY yet: wait rather than stop the last
		// serving one.
		{0, 0, "no READY node with 2 free GPUs (NVLink not required)"},
		{0, 1, "no READY node with 2 free GPUs (NVLink not required); stopping stale worker old1 to free GPUs for the rolling update"},
		{1, 0, ""},
		{0, 0, ""},
	}
	for i, r := range want {
		if i == 3 || i == 5 {
			w.in.Workers = markReady(w.in.Workers)
		}
		p := w.step(t)
		reason := ""
		if len(p.Unplaced) > 0 {
			reason = p.Unplaced[0].Reason
		}
		if len(p.Add) != r.add || len(p.Remove) != r.remove || reason != r.reason {
			t.Fatalf("round %d: add %d remove %v reason %q, want %+v", i+1, len(p.Add), p.Remove, reason, r)
		}
	}
	if got := describeAll(w.in.Workers); len(got) != 2 || w.in.Workers[0].Generation != 2 || w.in.Workers[1].Generation != 2 {
		t.Fatalf("after update: %v", got)
	}
}

func TestRollingUpdateStallsOnFailingGeneration(t *testing.T) {
	in := Input{
		Nodes:       []*stratav1.Node{gpuNode("a", 2)},
		Deployments: []*stratav1.Deployment{dep("d", 2, pool(both, 1, 2, 2, 2))},
		Workers: []*stratav1.Worker{
			wk("new1", "d", 2, both, "a", failed, 20000, 0),
			wk("old1", "d", 1, both, "a", ready, 20010, 1),
		},
	}
	if p := Compute(in); !p.Empty() {
		t.Fatalf("a FAILED new generation must not tear down the old one: %v", p)
	}
}

func TestStaleWorkerFreeingRoomPreferred(t *testing.T) {
	// The new generation needs 2 GPUs. Stopping the stale worker on a (1
	// GPU, nothing else free) would not help; stopping one on b would.
	in := Input{
		Nodes:       []*stratav1.Node{gpuNode("a", 1), gpuNode("b", 3)},
		Deployments: []*stratav1.Deployment{dep("d", 2, pool(both, 2, 2, 2, 2))},
		Workers: []*stratav1.Worker{
			wk("w2", "d", 1, both, "a", ready, 20000, 0),
			wk("w1", "d", 1, both, "b", ready, 20000, 0, 1, 2),
		},
	}
	p := Compute(in)
	if !slices.Equal(p.Remove, []string{"w1"}) || len(p.Add) != 0 {
		t.Fatalf("got %v", p)
	}
}

func cloneInput(in Input) Input {
	c := Input{}
	for _, n := range in.Nodes {
		c.Nodes = append(c.Nodes, proto.CloneOf(n))
	}
	for _, d := range in.Deployments {
		c.Deployments = append(c.Deployments, proto.CloneOf(d))
	}
	for _, w := range in.Workers {
		c.Workers = append(c.Workers, proto.CloneOf(w))
	}
	for _, d := range in.Decisions {
		c.Decisions = append(c.Decisions, proto.CloneOf(d))
	}
	return c
}

func messagesEqual[T proto.Message](a, b []T) bool {
	return slices.EqualFunc(a, b, func(x, y T) bool { return proto.Equal(x, y) })
}

func inputEqual(a, b Input) bool {
	return messagesEqual(a.Nodes, b.Nodes) && messagesEqual(a.Deployments, b.Deployments) &&
		messagesEqual(a.Workers, b.Workers) && messagesEqual(a.Decisions, b.Decisions)
}

func planEqual(a, b Plan) bool {
	return messagesEqual(a.Add, b.Add) && slices.Equal(a.Remove, b.Remove) && slices.Equal(a.Unplaced, b.Unplaced)
}

func shuffled(in Input, r *rand.Rand) Input {
	c := Input{
		Nodes:       slices.Clone(in.Nodes),
		Deployments: slices.Clone(in.Deployments),
		Workers:     slices.Clone(in.Workers),
		Decisions:   slices.Clone(in.Decisions),
	}
	r.Shuffle(len(c.Nodes), func(i, j int) { c.Nodes[i], c.Nodes[j] = c.Nodes[j], c.Nodes[i] })
	r.Shuffle(len(c.Deployments), func(i, j int) { c.Deployments[i], c.Deployments[j] = c.Deployments[j], c.Deployments[i] })
	r.Shuffle(len(c.Workers), func(i, j int) { c.Workers[i], c.Workers[j] = c.Workers[j], c.Workers[i] })
	r.Shuffle(len(c.Decisions), func(i, j int) { c.Decisions[i], c.Decisions[j] = c.Decisions[j], c.Decisions[i] })
	return c
}

// The property tests below check every plan against an independent model
// of the rules.

func eligible(n *stratav1.Node) bool {
	return n.GetState() == stratav1.NodeState_NODE_STATE_READY && !n.GetDrained()
}

type gpuKey struct{ node, uuid string }

// linked reports the NVLink adjacency of a node, either side counting.
func linked(n *stratav1.Node) map[[2]string]bool {
	l := make(map[[2]string]bool)
	for _, g := range n.GetInventory().GetGpus() {
		for _, p := range g.GetNvlinkPeers() {
			l[[2]string{g.GetUuid(), p}] = true
			l[[2]string{p, g.GetUuid()}] = true
		}
	}
	return l
}

// oracleClique enumerates free GPU index combinations in lexicographic order
// and returns the first pairwise-linked one.
func oracleClique(n *stratav1.Node, free []string, k int) []string {
	l := linked(n)
	var pick []string
	var rec func(from int) bool
	rec = func(from int) bool {
		if len(pick) == k {
			return true
		}
		for i := from; i <= len(free)-(k-len(pick)); i++ {
			ok := true
			for _, p := range pick {
				ok = ok && l[[2]string{p, free[i]}]
			}
			if !ok {
				continue
			}
			pick = append(pick, free[i])
			if rec(i + 1) {
				return true
			}
			pick = pick[:len(pick)-1]
		}
		return false
	}
	if rec(0) {
		return pick
	}
	return nil
}

// freeGPUs lists a node's GPUs not in held, by index.
func freeGPUs(n *stratav1.Node, held map[gpuKey]bool) []string {
	gpus := slices.Clone(n.GetInventory().GetGpus())
	slices.SortFunc(gpus, func(a, b *stratav1.GPU) int { return int(a.GetIndex()) - int(b.GetIndex()) })
	var free []string
	for _, g := range gpus {
		if !held[gpuKey{n.GetId(), g.GetUuid()}] {
			free = append(free, g.GetUuid())
		}
	}
	return free
}

func poolOf(d *stratav1.Deployment, role stratav1.WorkerRole) *stratav1.Pool {
	for _, p := range d.GetSpec().GetPools() {
		if p.GetRole() == role {
			return p
		}
	}
	return nil
}

// checkPlan checks a plan for the state in against the invariants.
func checkPlan(t *testing.T, in Input, p Plan) {
	t.Helper()
	nodes := make(map[string]*stratav1.Node)
	for _, n := range in.Nodes {
		nodes[n.GetId()] = n
	}
	deps := make(map[string]*stratav1.Deployment)
	for _, d := range in.Deployments {
		deps[d.GetSpec().GetName()] = d
	}
	held := make(map[gpuKey]bool)
	ports := make(map[string][]uint32)
	ids := make(map[string]bool)
	for _, w := range in.Workers {
		ids[w.GetId()] = true
		for _, u := range w.GetGpuUuids() {
			held[gpuKey{w.GetNodeId(), u}] = true
		}
		ports[w.GetNodeId()] = append(ports[w.GetNodeId()], w.GetPort())
	}
	if !slices.IsSorted(p.Remove) || len(slices.Compact(slices.Clone(p.Remove))) != len(p.Remove) {
		t.Fatalf("Remove not sorted and unique: %q", p.Remove)
	}
	for _, id := range p.Remove {
		if !ids[id] {
			t.Fatalf("removes unknown worker %q", id)
		}
	}
	for _, a := range p.Add {
		n, d := nodes[a.GetNodeId()], deps[a.GetDeployment()]
		if n == nil || !eligible(n) {
			t.Fatalf("%s placed on a node that is not eligible: %v", describe(a), n)
		}
		pl := poolOf(d, a.GetRole())
		if d == nil || pl == nil || a.GetGeneration() != d.GetGeneration() || a.GetId() != "" || a.GetState() != pending {
			t.Fatalf("bad new worker %v", a)
		}
		if len(a.GetGpuUuids()) != int(max(pl.GetTensorParallelSize(), 1)) {
			t.Fatalf("%s: gang of %d GPUs for tp %d", describe(a), len(a.GetGpuUuids()), pl.GetTensorParallelSize())
		}
		inv := make(map[string]bool)
		for _, g := range n.GetInventory().GetGpus() {
			inv[g.GetUuid()] = true
		}
		for _, u := range a.GetGpuUuids() {
			if !inv[u] {
				t.Fatalf("%s: GPU %s is not on node %s (gang split or invented)", describe(a), u, n.GetId())
			}
			if held[gpuKey{n.GetId(), u}] {
				t.Fatalf("%s: GPU %s over-committed", describe(a), u)
			}
			held[gpuKey{n.GetId(), u}] = true
		}
		port := a.GetPort()
		if port < PortBase || (port-PortBase)%PortStride != 0 || port+PortStride-1 > 65535 {
			t.Fatalf("%s: bad port", describe(a))
		}
		for _, q := range ports[n.GetId()] {
			if q < port+PortStride && port < q+PortStride {
				t.Fatalf("%s: port range overlaps another worker's %d", describe(a), q)
			}
		}
		ports[n.GetId()] = append(ports[n.GetId()], port)
	}

	// Per pool, after the plan: current generation never above the wanted
	// number, stale workers never more than it, a shortfall exactly when
	// below it.
	after := apply(in.Workers, p, new(int))
	for _, d := range in.Deployments {
		name := d.GetSpec().GetName()
		for _, pl := range d.GetSpec().GetPools() {
			want := wantedModel(in, d, pl)
			cur := count(after, func(w *stratav1.Worker) bool {
				return w.Deployment == name && w.Role == pl.Role && w.Generation >= d.Generation
			})
			stale := count(after, func(w *stratav1.Worker) bool {
				return w.Deployment == name && w.Role == pl.Role && w.Generation < d.Generation
			})
			if cur > want || stale > want {
				t.Fatalf("%s/%v: %d current and %d stale workers, want %d", name, pl.Role, cur, stale, want)
			}
			i := slices.IndexFunc(p.Unplaced, func(s Shortfall) bool { return s.Deployment == name && s.Role == pl.Role })
			switch {
			case cur < want && (i < 0 || p.Unplaced[i].Want != want || p.Unplaced[i].Have != cur || p.Unplaced[i].Reason == ""):
				t.Fatalf("%s/%v: %d of %d placed, shortfall %+v", name, pl.Role, cur, want, p.Unplaced)
			case cur == want && i >= 0:
				t.Fatalf("%s/%v: spurious shortfall %+v", name, pl.Role, p.Unplaced[i])
			}
		}
	}

	for i := range 3 {
		if q := Compute(shuffled(in, rand.New(rand.NewPCG(uint64(i), 7)))); !planEqual(p, q) {
			t.Fatalf("shuffled input gave another plan:\n%v\n%v", p, q)
		}
	}
}

func wantedModel(in Input, d *stratav1.Deployment, pl *stratav1.Pool) int {
	n := pl.GetReplicas().GetInitial()
	var at int64 = -1
	for _, pd := range in.Decisions {
		if pd.GetDeployment() == d.GetSpec().GetName() && pd.GetRole() == pl.GetRole() &&
			(pd.GetUnixNanos() > at || pd.GetUnixNanos() == at && pd.GetReplicas() > n) {
			n, at = pd.GetReplicas(), pd.GetUnixNanos()
		}
	}
	return int(max(min(n, pl.GetReplicas().GetMax()), pl.GetReplicas().GetMin()))
}

// checkFreshPlacement replays a plan computed without existing workers and
// checks each node choice against rule 8 and each gang against rule 7.
func checkFreshPlacement(t *testing.T, in Input, p Plan) {
	t.Helper()
	held := make(map[gpuKey]bool)
	for _, a := range p.Add {
		for _, u := range a.GetGpuUuids() {
			held[gpuKey{a.GetNodeId(), u}] = true
		}
	}
	finalFree := make(map[string]int)
	for _, n := range in.Nodes {
		finalFree[n.GetId()] = len(freeGPUs(n, held))
	}

	clear(held)
	perDep := make(map[string]map[string]int)
	for _, a := range p.Add {
		d := a.GetDeployment()
		if perDep[d] == nil {
			perDep[d] = make(map[string]int)
		}
		k := len(a.GetGpuUuids())
		// Spread: a node gets another worker of a deployment only if no
		// eligible node that had room has none of it.
		if perDep[d][a.GetNodeId()] > 0 {
			for _, n := range in.Nodes {
				if eligible(n) && perDep[d][n.GetId()] == 0 && finalFree[n.GetId()] >= k {
					t.Fatalf("%s: second worker of %s on %s while %s had none and room", describe(a), d, a.GetNodeId(), n.GetId())
				}
			}
		}
		// Rule 8 against a brute-force model.
		type key struct {
			count    int
			noClique bool
			left     int
			id       string
		}
		var best *key
		var bestGang []string
		for _, n := range in.Nodes {
			free := freeGPUs(n, held)
			if !eligible(n) || len(free) < k {
				continue
			}
			c := oracleClique(n, free, k)
			kk := key{perDep[d][n.GetId()], c == nil, len(free) - k, n.GetId()}
			if best == nil || kk.count < best.count ||
				kk.count == best.count && (!kk.noClique && best.noClique ||
					kk.noClique == best.noClique && (kk.left < best.left || kk.left == best.left && kk.id < best.id)) {
				best, bestGang = &kk, c
				if c == nil {
					bestGang = free[:k]
				}
			}
		}
		if best == nil || best.id != a.GetNodeId() || !slices.Equal(bestGang, a.GetGpuUuids()) {
			t.Fatalf("%s: model places it on %+v GPUs %v", describe(a), best, bestGang)
		}
		for _, u := range a.GetGpuUuids() {
			held[gpuKey{a.GetNodeId(), u}] = true
		}
		perDep[d][a.GetNodeId()]++
	}
}

func randomNode(r *rand.Rand, id string) *stratav1.Node {
	size := r.IntN(17)
	var links [][2]int
	switch r.IntN(5) {
	case 1:
		links = clique(0, size)
	case 2:
		for i := 0; i+1 < size; i += 2 {
			links = append(links, [2]int{i, i + 1})
		}
	case 3:
		links = append(clique(0, size/2), clique(size/2, size)...)
	case 4:
		p := r.Float64()
		for _, l := range clique(0, size) {
			if r.Float64() < p {
				links = append(links, l)
			}
		}
	}
	for i := range links {
		if r.IntN(2) == 0 {
			links[i][0], links[i][1] = links[i][1], links[i][0]
		}
	}
	n := gpuNode(id, size, links...)
	// Indices need not follow the inventory order.
	r.Shuffle(size, func(i, j int) {
		n.Inventory.Gpus[i], n.Inventory.Gpus[j] = n.Inventory.Gpus[j], n.Inventory.Gpus[i]
	})
	randomizeNodeState(r, n)
	return n
}

func randomizeNodeState(r *rand.Rand, n *stratav1.Node) {
	switch x := r.IntN(20); {
	case x < 16:
		n.State, n.Drained = stratav1.NodeState_NODE_STATE_READY, false
	case x < 17:
		n.State, n.Drained = stratav1.NodeState_NODE_STATE_DRAINING, true
	case x < 18:
		n.State, n.Drained = stratav1.NodeState_NODE_STATE_DOWN, false
	case x < 19:
		n.State, n.Drained = stratav1.NodeState_NODE_STATE_READY, true
	default:
		n.State = stratav1.NodeState_NODE_STATE_UNSPECIFIED
	}
}

func randomPool(r *rand.Rand, role stratav1.WorkerRole) *stratav1.Pool {
	lo := uint32(r.IntN(3))
	hi := lo + uint32(r.IntN(4))
	return pool(role, []uint32{1, 2, 4, 8}[r.IntN(4)], lo, hi, uint32(r.IntN(int(hi)+2)))
}

func randomDeployment(r *rand.Rand, name string) *stratav1.Deployment {
	if r.IntN(3) == 0 {
		return dep(name, 1, randomPool(r, prefill), randomPool(r, decode))
	}
	return dep(name, 1, randomPool(r, both))
}

// perturb changes the world the way operators, the planner, nodes and
// engines do between reconciliation steps. It replaces what it changes, as
// the inputs of earlier Compute calls must stay intact.
func perturb(r *rand.Rand, in *Input, round int) {
	in.Workers = slices.Clone(in.Workers)
	for i, w := range in.Workers {
		if r.IntN(3) == 0 {
			c := proto.CloneOf(w)
			c.State = []stratav1.WorkerState{pending, starting, ready, ready, ready, failed, stratav1.WorkerState_WORKER_STATE_UNHEALTHY}[r.IntN(7)]
			in.Workers[i] = c
		}
	}
	in.Nodes = slices.Clone(in.Nodes)
	for i, n := range in.Nodes {
		if r.IntN(8) == 0 {
			c := proto.CloneOf(n)
			randomizeNodeState(r, c)
			in.Nodes[i] = c
		}
	}
	in.Deployments = slices.Clone(in.Deployments)
	for i, d := range in.Deployments {
		switch r.IntN(10) {
		case 0: // new spec, possibly other gang sizes
			c := randomDeployment(r, d.GetSpec().GetName())
			c.Generation = d.GetGeneration() + 1
			in.Deployments[i] = c
		case 1: // rolling restart of the same spec
			c := proto.CloneOf(d)
			c.Generation++
			in.Deployments[i] = c
		}
	}
	if r.IntN(6) == 0 && len(in.Deployments) > 0 {
		i := r.IntN(len(in.Deployments))
		in.Deployments = slices.Delete(in.Deployments, i, i+1)
	}
	if r.IntN(6) == 0 {
		in.Deployments = append(in.Deployments, randomDeployment(r, fmt.Sprintf("n%d", round)))
	}
	in.Decisions = slices.Clone(in.Decisions)
	if r.IntN(3) == 0 && len(in.Deployments) > 0 {
		d := in.Deployments[r.IntN(len(in.Deployments))]
		role := d.GetSpec().GetPools()[r.IntN(len(d.GetSpec().GetPools()))].GetRole()
		in.Decisions = append(in.Decisions, decision(d.GetSpec().GetName(), role, uint32(r.IntN(6)), int64(round)))
	}
}

func TestProperties(t *testing.T) {
	const seeds = 500
	maxRounds := 0
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 42))
		w := &world{}
		for i := range r.IntN(10) + 1 {
			w.in.Nodes = append(w.in.Nodes, randomNode(r, fmt.Sprintf("node%02d", i)))
		}
		for i := range r.IntN(4) + 1 {
			w.in.Deployments = append(w.in.Deployments, randomDeployment(r, fmt.Sprintf("d%d", i)))
		}

		fresh := Compute(w.in)
		checkFreshPlacement(t, w.in, fresh)

		// Existing workers come from applying plans to a changing world.
		for round := range 8 {
			w.step(t)
			perturb(r, &w.in, round)
		}

		// Then the world stops changing and engines come up: placement
		// must reach a fixed point.
		const bound = 60
		rounds := 0
		for {
			w.in.Workers = markReady(w.in.Workers)
			if w.step(t).Empty() {
				break
			}
			if rounds++; rounds > bound {
				t.Fatalf("seed %d: no fixed point after %d rounds", seed, bound)
			}
		}
		maxRounds = max(maxRounds, rounds)
	}
	t.Logf("fixed point reached within %d rounds", maxRounds)
}

func BenchmarkCompute(b *testing.B) {
	var in Input
	for i := range 1000 {
		in.Nodes = append(in.Nodes, gpuNode(fmt.Sprintf("node%04d", i), 8, clique(0, 8)...))
	}
	gpus := 0
	for i := range 50 {
		tp := []uint32{1, 2, 4, 8}[i%4]
		n := 120 / tp
		in.Deployments = append(in.Deployments, dep(fmt.Sprintf("d%02d", i), 1, pool(both, tp, 0, n, n)))
		gpus += int(tp * n)
	}
	p := Compute(in)
	if len(p.Unplaced) != 0 {
		b.Fatalf("unplaced: %v", p.Unplaced)
	}
	for b.Loop() {
		Compute(in)
	}
	b.ReportMetric(float64(gpus), "gpus")
	b.ReportMetric(float64(len(p.Add)), "workers")
}

// TestNodePortBase: a node whose inventory names its engine port base gets
// its workers' ports from there; the others from the cluster's.
func TestNodePortBase(t *testing.T) {
	b := gpuNode("b", 1)
	b.Inventory.EnginePortBase = 30000
	p := Compute(Input{Nodes: []*stratav1.Node{gpuNode("a", 1), b}, Deployments: []*stratav1.Deployment{dep("d", 1, pool(both, 1, 2, 2, 2))}})
	got := map[string]uint32{}
	for _, w := range p.Add {
		got[w.GetNodeId()] = w.GetPort()
	}
	if got["a"] != PortBase || got["b"] != 30000 {
		t.Fatalf("ports %v, want a on %d and b on 30000", got, PortBase)
	}
}
