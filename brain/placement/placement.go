// Package placement decides which GPUs of which nodes run the workers
// (engine processes) of every deployment.
//
// It is pure code over a snapshot of the brain's state: no I/O, clock,
// randomness or goroutines. The Raft leader calls Compute and commits the
// resulting Plan, so the same state must always give the same plan whatever
// the order of the input slices; everything is sorted and ties are broken on
// ids, names and GPU indices.
//
// Compute makes one reconciliation step; the leader calls it again after the
// agents act on the plan. Within one step:
//
//  1. Workers that cannot stay are removed: their deployment is gone, their
//     node is unknown, DOWN, DRAINING or drained, their role is no longer a
//     pool of the deployment, or they hold a GPU their node no longer
//     reports. Their pools get replacements below, elsewhere.
//  2. Deployments are taken by name and their pools in spec order. A pool
//     wants the latest planner decision for it, else its initial replica
//     count, clamped to [min, max].
//  3. Scale down: current-generation workers beyond that number are removed,
//     non-READY ones first (they serve nothing), then those on the node most
//     crowded with the deployment (it restores spread), then the highest id
//     (the newest).
//  4. Rolling update: workers of an older generation ("stale") are removed
//     only while READY current-generation workers plus the remaining stale
//     ones exceed the wanted number, so the pool never serves with fewer
//     workers than wanted because of the update itself. New
//     current-generation workers are added until the pool has the wanted
//     number of them, even while stale ones still run (a surge): that needs
//     spare GPUs. When the pool is short of GPUs, no stale worker was
//     removed in this step and every current-generation worker is READY,
//     waiting would change nothing: one stale worker is removed instead,
//     preferably one whose GPUs would let a gang fit on an eligible node,
//     and its GPUs are used on the next step. A current-generation worker
//     that never becomes READY (for example FAILED because the new spec is
//     broken) stalls the update rather than tearing down the old
//     generation.
//  5. New workers are placed one at a time, each seeing the GPUs taken by
//     the previous ones. A tensor-parallel gang always sits on one READY
//     node. The node has (a) the fewest workers of the deployment, to
//     spread replicas over failure domains, (b) a set of free GPUs that are
//     all NVLink-connected, because tensor parallelism all-reduces on every
//     layer, (c) the fewest GPUs left free afterwards, to bin-pack and keep
//     whole nodes for big gangs, (d) the smallest id. On it the gang takes
//     the NVLink clique with the lowest GPU indices, else the lowest free
//     indices.
//
// GPUs and ports of workers removed by a plan are not reused by the same
// plan: the agent must first stop the old engine, and the next step sees
// them free. A worker listens on PortBase+PortStride*j for the lowest j free
// on its node and owns the PortStride ports from there.
//
// Ids of nodes, workers and deployment names are assumed unique, as they are
// keys of the brain's state.
package placement

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

const (
	// PortBase is the first port given to a worker on a node.
	PortBase = 20000
	// PortStride is how many consecutive ports a worker owns: engine HTTP,
	// KV events, replay and the KV transfer side channel.
	PortStride = 10
)

// maxSlot is the highest j whose ports [base+PortStride*j, +PortStride)
// all fit in 16 bits.
func maxSlot(base int) int { return (1<<16 - PortStride - base) / PortStride }

// Input is the brain's state as placement needs it. Compute does not modify
// it and does not depend on the order of its slices.
type Input struct {
	Nodes       []*stratav1.Node
	Deployments []*stratav1.Deployment
	// Every placed worker, in any state.
	Workers []*stratav1.Worker
	// The latest planner decision per (deployment, role); may be empty. If
	// several are given for one pool, the one with the largest unix_nanos
	// wins.
	Decisions []*stratav1.PlannerDecision
	// PortBase replaces the default first worker port (tests running many
	// clusters on one host use it); 0 means PortBase. A node whose
	// inventory names its own engine port base uses that.
	PortBase int
}

// Plan is one reconciliation step.
type Plan struct {
	// New workers in placement order, State PENDING and Id empty: the leader
	// stamps ids.
	Add []*stratav1.Worker
	// Ids of workers to stop, sorted.
	Remove []string
	// Pools left with fewer current-generation workers than they want, by
	// deployment name and then pool order.
	Unplaced []Shortfall
}

// Shortfall says that a pool could not get all the workers it wants, and
// why.
type Shortfall struct {
	Deployment string
	Role       stratav1.WorkerRole
	// Want is the wanted number of workers, Have the number of
	// current-generation workers the pool has once the plan is applied.
	Want, Have int
	Reason     string
}

// Empty reports whether the plan changes nothing. A shortfall alone does not
// count: it persists until capacity appears.
func (p Plan) Empty() bool { return len(p.Add) == 0 && len(p.Remove) == 0 }

// Compute returns the next step from the state in to the desired placement.
func Compute(in Input) Plan {
	s := newState(in)
	for _, d := range s.deps {
		s.reconcile(d)
	}
	slices.Sort(s.plan.Remove)
	return s.plan
}

type poolKey struct {
	deployment string
	role       stratav1.WorkerRole
}

type deployment struct {
	msg *stratav1.Deployment
	// Workers that survive the unconditional removals, sorted by id.
	workers []*stratav1.Worker
}

type state struct {
	nodes    []*node // sorted by id
	byID     map[string]*node
	eligible []*node // READY and not drained, sorted by id
	deps     []*deployment
	decision map[poolKey]*stratav1.PlannerDecision
	// count[n.pos] is the number of kept or added workers of the deployment
	// being reconciled on node n.
	count []int
	plan  Plan
}

func newState(in Input) *state {
	s := &state{
		byID:     make(map[string]*node, len(in.Nodes)),
		decision: make(map[poolKey]*stratav1.PlannerDecision, len(in.Decisions)),
	}
	for _, pn := range sortedBy(in.Nodes, (*stratav1.Node).GetId) {
		n := newNode(pn, len(s.nodes))
		n.portBase = cmp.Or(int(pn.GetInventory().GetEnginePortBase()), in.PortBase, PortBase)
		s.nodes = append(s.nodes, n)
		s.byID[n.id] = n
		if n.eligible {
			s.eligible = append(s.eligible, n)
		}
	}
	s.count = make([]int, len(s.nodes))

	byName := make(map[string]*deployment, len(in.Deployments))
	for _, pd := range sortedBy(in.Deployments, func(d *stratav1.Deployment) string { return d.GetSpec().GetName() }) {
		d := &deployment{msg: pd}
		s.deps = append(s.deps, d)
		byName[pd.GetSpec().GetName()] = d
	}

	for _, pd := range in.Decisions {
		if pd == nil {
			continue
		}
		k := poolKey{pd.GetDeployment(), pd.GetRole()}
		old, ok := s.decision[k]
		if !ok || pd.GetUnixNanos() > old.GetUnixNanos() ||
			pd.GetUnixNanos() == old.GetUnixNanos() && pd.GetReplicas() > old.GetReplicas() {
			s.decision[k] = pd
		}
	}

	for _, w := range sortedBy(in.Workers, (*stratav1.Worker).GetId) {
		n := s.byID[w.GetNodeId()]
		if n != nil {
			// Every worker, even one removed below, holds its GPUs and
			// ports until its agent has stopped it.
			n.hold(w)
		}
		d := byName[w.GetDeployment()]
		if d == nil || n == nil || n.leaving() || !hasPool(d.msg, w.GetRole()) || !n.owns(w.GetGpuUuids()) {
			s.plan.Remove = append(s.plan.Remove, w.GetId())
			continue
		}
		// A FAILED worker stays: its agent restarts it with backoff, and
		// re-placing a crash-looping engine elsewhere would only move the
		// crash loop while churning GPUs.
		d.workers = append(d.workers, w)
	}
	return s
}

// sortedBy returns the non-nil elements of xs sorted by key.
func sortedBy[T any](xs []*T, key func(*T) string) []*T {
	out := make([]*T, 0, len(xs))
	for _, x := range xs {
		if x != nil {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, func(a, b *T) int { return cmp.Compare(key(a), key(b)) })
	return out
}

func hasPool(d *stratav1.Deployment, role stratav1.WorkerRole) bool {
	for _, p := range d.GetSpec().GetPools() {
		if p != nil && p.GetRole() == role {
			return true
		}
	}
	return false
}

func (s *state) reconcile(d *deployment) {
	clear(s.count)
	byRole := make(map[stratav1.WorkerRole][]*stratav1.Worker)
	for _, w := range d.workers {
		s.count[s.byID[w.GetNodeId()].pos]++
		byRole[w.GetRole()] = append(byRole[w.GetRole()], w)
	}
	seen := make(map[stratav1.WorkerRole]bool)
	for _, p := range d.msg.GetSpec().GetPools() {
		// A role's workers belong to its first pool; a repeated role (a spec
		// error) has nothing left to manage.
		if p == nil || seen[p.GetRole()] {
			continue
		}
		seen[p.GetRole()] = true
		s.reconcilePool(d.msg, p, byRole[p.GetRole()])
	}
}

func (s *state) reconcilePool(d *stratav1.Deployment, p *stratav1.Pool, workers []*stratav1.Worker) {
	name := d.GetSpec().GetName()
	k := max(int(p.GetTensorParallelSize()), 1)
	want := s.wanted(name, p)

	var cur, stale []*stratav1.Worker
	for _, w := range workers {
		if w.GetGeneration() < d.GetGeneration() {
			stale = append(stale, w)
		} else {
			cur = append(cur, w)
		}
	}

	for len(cur) > want {
		cur = s.remove(cur, s.victim(cur, s.removeFirst))
	}

	ready := 0
	for _, w := range cur {
		if w.GetState() == stratav1.WorkerState_WORKER_STATE_READY {
			ready++
		}
	}
	removedStale := false
	for len(stale) > 0 && ready+len(stale) > want {
		stale = s.remove(stale, s.victim(stale, s.removeFirst))
		removedStale = true
	}

	reason := ""
	for len(cur) < want {
		w := s.place(d, p.GetRole(), k)
		if w == nil {
			reason = s.why(k)
			break
		}
		cur = append(cur, w)
	}
	if len(cur) == want {
		return
	}
	// cur only contains READY workers if nothing was added above.
	if len(stale) > 0 && !removedStale && ready == len(cur) {
		i := s.victim(stale, func(a, b *stratav1.Worker) bool {
			if ra, rb := s.makesRoom(a, k), s.makesRoom(b, k); ra != rb {
				return ra
			}
			return s.removeFirst(a, b)
		})
		reason += fmt.Sprintf("; stopping stale worker %s to free GPUs for the rolling update", stale[i].GetId())
		s.remove(stale, i)
	}
	s.plan.Unplaced = append(s.plan.Unplaced, Shortfall{
		Deployment: name, Role: p.GetRole(), Want: want, Have: len(cur), Reason: reason,
	})
}

// wanted is the number of workers a pool should have. If the bounds are
// inconsistent (max < min), min wins: it is the operator's availability
// floor.
func (s *state) wanted(deployment string, p *stratav1.Pool) int {
	r := p.GetReplicas()
	n := r.GetInitial()
	if pd := s.decision[poolKey{deployment, p.GetRole()}]; pd != nil {
		n = pd.GetReplicas()
	}
	return int(max(min(n, r.GetMax()), r.GetMin()))
}

// victim returns the index of the worker of ws to stop first.
func (s *state) victim(ws []*stratav1.Worker, first func(a, b *stratav1.Worker) bool) int {
	best := 0
	for i := 1; i < len(ws); i++ {
		if first(ws[i], ws[best]) {
			best = i
		}
	}
	return best
}

// removeFirst orders workers for removal: not serving, then on the node most
// crowded with the deployment, then newest (highest id).
func (s *state) removeFirst(a, b *stratav1.Worker) bool {
	ra := a.GetState() == stratav1.WorkerState_WORKER_STATE_READY
	rb := b.GetState() == stratav1.WorkerState_WORKER_STATE_READY
	if ra != rb {
		return rb
	}
	ca, cb := s.count[s.byID[a.GetNodeId()].pos], s.count[s.byID[b.GetNodeId()].pos]
	if ca != cb {
		return ca > cb
	}
	return a.GetId() > b.GetId()
}

// makesRoom reports whether stopping w would let a gang of k GPUs fit on w's
// node (once its agent has stopped it).
func (s *state) makesRoom(w *stratav1.Worker, k int) bool {
	n := s.byID[w.GetNodeId()]
	return n.eligible && n.nfree+len(w.GetGpuUuids()) >= k
}

// remove records the removal of ws[i] and returns ws without it.
func (s *state) remove(ws []*stratav1.Worker, i int) []*stratav1.Worker {
	s.plan.Remove = append(s.plan.Remove, ws[i].GetId())
	s.count[s.byID[ws[i].GetNodeId()].pos]--
	return slices.Delete(ws, i, i+1)
}

// place puts a new worker of k GPUs on the best eligible node, or returns nil
// if none can take it.
func (s *state) place(d *stratav1.Deployment, role stratav1.WorkerRole, k int) *stratav1.Worker {
	var best *node
	bestClique := false
	for _, n := range s.eligible {
		if n.nfree < k || n.nextSlot > maxSlot(n.portBase) {
			continue
		}
		if best == nil {
			best, bestClique = n, n.clique(k) != nil
			continue
		}
		if c, bc := s.count[n.pos], s.count[best.pos]; c != bc {
			if c < bc {
				best, bestClique = n, n.clique(k) != nil
			}
			continue
		}
		if c := n.clique(k) != nil; c != bestClique {
			if c {
				best, bestClique = n, c
			}
			continue
		}
		// Nodes come by ascending id, so an equal node never replaces best.
		if n.nfree < best.nfree {
			best = n
		}
	}
	if best == nil {
		return nil
	}
	gpus := best.clique(k)
	if gpus == nil {
		gpus = best.lowestFree(k)
	}
	uuids, port := best.take(gpus)
	s.count[best.pos]++
	w := &stratav1.Worker{
		Deployment: d.GetSpec().GetName(),
		Generation: d.GetGeneration(),
		Role:       role,
		NodeId:     best.id,
		GpuUuids:   uuids,
		Port:       port,
		State:      stratav1.WorkerState_WORKER_STATE_PENDING,
	}
	s.plan.Add = append(s.plan.Add, w)
	return w
}

// why explains why no eligible node can take a gang of k GPUs.
func (s *state) why(k int) string {
	if len(s.eligible) == 0 {
		return "no READY node"
	}
	for _, n := range s.eligible {
		if len(n.uuids) >= k {
			return fmt.Sprintf("no READY node with %s (NVLink not required)", gpuCount(k, "free GPU"))
		}
	}
	return fmt.Sprintf("no READY node has %s", gpuCount(k, "GPU"))
}

func gpuCount(k int, noun string) string {
	if k == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", k, noun)
}

// node is the placement view of one node. GPUs are numbered by their
// position in index order, which is the order sets are searched and gangs
// listed in.
type node struct {
	id       string
	pos      int
	state    stratav1.NodeState
	drained  bool
	eligible bool
	uuids    []string
	byUUID   map[string]int
	adj      []bitset // adj[i]: GPUs NVLinked to GPU i
	free     bitset
	nfree    int
	// slots[j] reports that port slot j is held; nextSlot is the lowest
	// free one.
	slots    []bool
	nextSlot int
	portBase int
	// memo[k] caches the clique of k GPUs for the current free set.
	memo []cliqueMemo
}

type cliqueMemo struct {
	done bool
	set  bitset // nil: no clique
}

func newNode(pn *stratav1.Node, pos int) *node {
	n := &node{id: pn.GetId(), pos: pos, state: pn.GetState(), drained: pn.GetDrained()}
	n.eligible = n.state == stratav1.NodeState_NODE_STATE_READY && !n.drained

	gpus := sortedGPUs(pn.GetInventory().GetGpus())
	n.byUUID = make(map[string]int, len(gpus))
	kept := gpus[:0]
	for _, g := range gpus {
		if _, dup := n.byUUID[g.GetUuid()]; dup || g.GetUuid() == "" {
			continue
		}
		n.byUUID[g.GetUuid()] = len(n.uuids)
		n.uuids = append(n.uuids, g.GetUuid())
		kept = append(kept, g)
	}

	size := len(n.uuids)
	words := (size + 63) / 64
	n.free = make(bitset, words)
	for i := range size {
		n.free.set(i)
	}
	n.nfree = size
	backing := make(bitset, size*words)
	n.adj = make([]bitset, size)
	for i := range size {
		n.adj[i] = backing[i*words : (i+1)*words]
	}
	// A link exists if either side reports it: NVML on one GPU may list a
	// peer that the other GPU's report leaves out.
	for i, g := range kept {
		for _, p := range g.GetNvlinkPeers() {
			if j, ok := n.byUUID[p]; ok && j != i {
				n.adj[i].set(j)
				n.adj[j].set(i)
			}
		}
	}
	n.memo = make([]cliqueMemo, size+1)
	return n
}

// sortedGPUs returns the non-nil GPUs by index, then uuid.
func sortedGPUs(in []*stratav1.GPU) []*stratav1.GPU {
	out := make([]*stratav1.GPU, 0, len(in))
	for _, g := range in {
		if g != nil {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *stratav1.GPU) int {
		return cmp.Or(cmp.Compare(a.GetIndex(), b.GetIndex()), cmp.Compare(a.GetUuid(), b.GetUuid()))
	})
	return out
}

// leaving reports whether the node's workers must move: it is down or
// being drained.
func (n *node) leaving() bool {
	return n.drained || n.state == stratav1.NodeState_NODE_STATE_DOWN ||
		n.state == stratav1.NodeState_NODE_STATE_DRAINING
}

// owns reports whether every uuid is a GPU of the node.
func (n *node) owns(uuids []string) bool {
	for _, u := range uuids {
		if _, ok := n.byUUID[u]; !ok {
			return false
		}
	}
	return true
}

// hold marks an existing worker's GPUs and port slots as taken.
func (n *node) hold(w *stratav1.Worker) {
	for _, u := range w.GetGpuUuids() {
		if i, ok := n.byUUID[u]; ok && n.free.has(i) {
			n.free.clear(i)
			n.nfree--
		}
	}
	// Ports need not be on a slot boundary (a worker placed under another
	// PortBase); every slot its range overlaps is taken.
	off := int(w.GetPort()) - n.portBase
	j := floorDiv(off, PortStride)
	n.holdSlot(j)
	if off%PortStride != 0 {
		n.holdSlot(j + 1)
	}
	clear(n.memo)
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func (n *node) holdSlot(j int) {
	if j < 0 || j > maxSlot(n.portBase) {
		return
	}
	for len(n.slots) <= j {
		n.slots = append(n.slots, false)
	}
	n.slots[j] = true
	for n.nextSlot < len(n.slots) && n.slots[n.nextSlot] {
		n.nextSlot++
	}
}

// take gives the GPUs in set and the lowest free port slot to a new worker.
func (n *node) take(set bitset) (uuids []string, port uint32) {
	for i := set.next(0); i >= 0; i = set.next(i + 1) {
		uuids = append(uuids, n.uuids[i])
		n.free.clear(i)
		n.nfree--
	}
	clear(n.memo)
	port = uint32(n.portBase + PortStride*n.nextSlot)
	n.holdSlot(n.nextSlot)
	return uuids, port
}

// lowestFree returns the k free GPUs of lowest index; the caller checked
// that k are free.
func (n *node) lowestFree(k int) bitset {
	set := make(bitset, len(n.free))
	for i := n.free.next(0); k > 0; i = n.free.next(i + 1) {
		set.set(i)
		k--
	}
	return set
}

// clique returns the k free, pairwise NVLink-connected GPUs with the
// lexicographically lowest indices, or nil if there are none.
func (n *node) clique(k int) bitset {
	m := &n.memo[k]
	if !m.done {
		m.set, m.done = n.findClique(k), true
	}
	return m.set
}

// findClique is a depth-first search over candidate bitsets, lowest GPU
// first, so the first clique found is the lowest. It prunes a branch as soon
// as too few candidates remain; with at most 16 GPUs and gangs of at most 8
// that bounds it by C(16,8) leaves.
func (n *node) findClique(k int) bitset {
	words := len(n.free)
	scratch := make(bitset, (k+1)*words)
	level := func(d int) bitset { return scratch[d*words : (d+1)*words] }
	copy(level(0), n.free)
	chosen := make([]int, 0, k)

	var search func(d int) bool
	search = func(d int) bool {
		if d == k {
			return true
		}
		cand := level(d)
		for cand.count() >= k-d {
			i := cand.next(0)
			next := level(d + 1)
			for w := range next {
				next[w] = cand[w] & n.adj[i][w]
			}
			chosen = append(chosen, i)
			if search(d + 1) {
				return true
			}
			chosen = chosen[:d]
			cand.clear(i)
		}
		return false
	}
	if !search(0) {
		return nil
	}
	set := make(bitset, words)
	for _, i := range chosen {
		set.set(i)
	}
	return set
}

// bitset is a set of GPU positions on one node; most nodes need one word.
type bitset []uint64

func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) clear(i int)    { b[i/64] &^= 1 << (i % 64) }

func (b bitset) count() int {
	c := 0
	for _, w := range b {
		c += bits.OnesCount64(w)
	}
	return c
}

// next returns the lowest member >= i, or -1.
func (b bitset) next(i int) int {
	for wi := i / 64; wi < len(b); wi++ {
		w := b[wi]
		if wi == i/64 {
			w &= ^uint64(0) << (i % 64)
		}
		if w != 0 {
			return wi*64 + bits.TrailingZeros64(w)
		}
	}
	return -1
}
