package fsm

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// RoleName is the short lower-case name of a role used in worker ids and
// in the deployment spec ("both", "prefill", "decode").
func RoleName(r stratav1.WorkerRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "WORKER_ROLE_"))
}

// WorkerID is the id of the seq-th worker the brain ever placed. The leader
// stamps ids from NextWorkerSeq; Apply recomputes them to catch a plan that
// was computed against an older state.
func WorkerID(deployment string, role stratav1.WorkerRole, seq uint64) string {
	return fmt.Sprintf("%s-%s-%d", deployment, RoleName(role), seq)
}

// nodeState is the state a node's flags and lease give it.
func nodeState(drained, down bool) stratav1.NodeState {
	switch {
	case down:
		return stratav1.NodeState_NODE_STATE_DOWN
	case drained:
		return stratav1.NodeState_NODE_STATE_DRAINING
	default:
		return stratav1.NodeState_NODE_STATE_READY
	}
}

// registerNode adds or refreshes a node; returns the stored *Node. A drained
// node stays drained.
func (s *View) registerNode(c *stratav1.RegisterNodeCommand) any {
	if c.GetNodeId() == "" {
		return fmt.Errorf("register node without id: %w", ErrConflict)
	}
	n := &stratav1.Node{
		Id:                     c.GetNodeId(),
		Address:                c.GetAddress(),
		Inventory:              c.GetInventory(),
		Labels:                 c.GetLabels(),
		RegisteredUnixNanos:    c.GetUnixNanos(),
		LastHeartbeatUnixNanos: c.GetUnixNanos(),
	}
	if old, ok := s.Nodes[c.GetNodeId()]; ok {
		n.Drained = old.GetDrained()
		n.RegisteredUnixNanos = old.GetRegisteredUnixNanos()
	}
	n.State = nodeState(n.Drained, false)
	s.Nodes[n.Id] = n
	s.placementChanged = true
	return n
}

// heartbeat renews leases and records worker status; returns the ids of
// nodes it does not know ([]string), which must register again.
func (s *View) heartbeat(c *stratav1.HeartbeatBatchCommand) any {
	var unknown []string
	for _, hb := range c.GetHeartbeats() {
		old, ok := s.Nodes[hb.GetNodeId()]
		if !ok {
			unknown = append(unknown, hb.GetNodeId())
			continue
		}
		n := proto.CloneOf(old)
		n.LastHeartbeatUnixNanos = c.GetUnixNanos()
		n.State = nodeState(n.Drained, false)
		s.Nodes[n.Id] = n
		if n.State != old.GetState() {
			s.placementChanged = true
		}
		for _, st := range hb.GetWorkers() {
			w, ok := s.Workers[st.GetWorkerId()]
			// An agent can only speak for workers placed on its own node.
			if !ok || w.GetNodeId() != n.Id {
				continue
			}
			if w.GetState() != st.GetState() {
				s.placementChanged = true
			}
			w = proto.CloneOf(w)
			w.State = st.GetState()
			w.Message = st.GetMessage()
			w.Load = st.GetLoad()
			w.UpdatedUnixNanos = c.GetUnixNanos()
			s.Workers[w.Id] = w
		}
	}
	return unknown
}

// markDown marks nodes whose lease expired; returns nil.
func (s *View) markDown(c *stratav1.MarkNodesDownCommand) any {
	for _, id := range c.GetNodeIds() {
		old, ok := s.Nodes[id]
		if !ok || old.GetState() == stratav1.NodeState_NODE_STATE_DOWN {
			continue
		}
		n := proto.CloneOf(old)
		n.State = stratav1.NodeState_NODE_STATE_DOWN
		s.Nodes[id] = n
		s.placementChanged = true
	}
	return nil
}

// drain sets or clears a node's drained flag; returns the stored *Node.
func (s *View) drain(c *stratav1.DrainNodeCommand) any {
	old, ok := s.Nodes[c.GetNodeId()]
	if !ok {
		return fmt.Errorf("node %q: %w", c.GetNodeId(), ErrNotFound)
	}
	n := proto.CloneOf(old)
	n.Drained = c.GetDrained()
	n.State = nodeState(n.Drained, old.GetState() == stratav1.NodeState_NODE_STATE_DOWN)
	s.Nodes[n.Id] = n
	s.placementChanged = true
	return n
}

// UpsertResult is what applying an UpsertDeploymentCommand returns.
type UpsertResult struct {
	Deployment *stratav1.Deployment
	Changed    bool
}

// upsertDeployment stores a spec, bumping the generation when it changed;
// returns UpsertResult.
func (s *View) upsertDeployment(c *stratav1.UpsertDeploymentCommand) any {
	spec := c.GetSpec()
	if spec.GetName() == "" {
		return fmt.Errorf("deployment without a name: %w", ErrConflict)
	}
	old, ok := s.Deployments[spec.GetName()]
	if ok && proto.Equal(old.GetSpec(), spec) {
		return UpsertResult{Deployment: old}
	}
	d := &stratav1.Deployment{
		Spec:             spec,
		Generation:       1,
		CreatedUnixNanos: c.GetUnixNanos(),
		UpdatedUnixNanos: c.GetUnixNanos(),
	}
	if ok {
		d.Generation = old.GetGeneration() + 1
		d.CreatedUnixNanos = old.GetCreatedUnixNanos()
	}
	s.Deployments[spec.GetName()] = d
	s.placementChanged = true
	return UpsertResult{Deployment: d, Changed: true}
}

// deleteDeployment removes a deployment with its workers and planner
// decisions; returns nil.
func (s *View) deleteDeployment(c *stratav1.DeleteDeploymentCommand) any {
	if _, ok := s.Deployments[c.GetName()]; !ok {
		return fmt.Errorf("deployment %q: %w", c.GetName(), ErrNotFound)
	}
	delete(s.Deployments, c.GetName())
	s.placementChanged = true
	for id, w := range s.Workers {
		if w.GetDeployment() == c.GetName() {
			delete(s.Workers, id)
		}
	}
	for k := range s.Decisions {
		if k.Deployment == c.GetName() {
			delete(s.Decisions, k)
		}
	}
	return nil
}

// applyPlan removes and adds workers. The plan is checked as a whole first
// and rejected whole if any part no longer fits the state (a stale plan):
// ids must be the next ones, deployments and nodes must exist, and no GPU
// or port may be taken twice. Returns nil.
func (s *View) applyPlan(c *stratav1.ApplyPlanCommand) any {
	removed := make(map[string]bool, len(c.GetRemove()))
	for _, id := range c.GetRemove() {
		if _, ok := s.Workers[id]; !ok {
			return fmt.Errorf("plan removes worker %q: %w", id, ErrNotFound)
		}
		removed[id] = true
	}
	type slot struct{ node, key string }
	// Workers this plan removes keep their GPUs and ports within the plan:
	// their engines may still be draining, so only a later plan reuses them
	// (and the agent waits for the old engine to stop before starting one
	// on the same GPU).
	taken := map[slot]bool{}
	for _, w := range s.Workers {
		for _, g := range w.GetGpuUuids() {
			taken[slot{w.GetNodeId(), g}] = true
		}
		taken[slot{w.GetNodeId(), fmt.Sprint(":", w.GetPort())}] = true
	}
	seq := s.NextWorkerSeq
	for _, w := range c.GetAdd() {
		if want := WorkerID(w.GetDeployment(), w.GetRole(), seq); w.GetId() != want {
			return fmt.Errorf("plan adds worker %q, expected id %q: %w", w.GetId(), want, ErrConflict)
		}
		seq++
		if _, ok := s.Deployments[w.GetDeployment()]; !ok {
			return fmt.Errorf("plan adds worker %q of deployment %q: %w", w.GetId(), w.GetDeployment(), ErrNotFound)
		}
		n, ok := s.Nodes[w.GetNodeId()]
		if !ok {
			return fmt.Errorf("plan adds worker %q on node %q: %w", w.GetId(), w.GetNodeId(), ErrNotFound)
		}
		gpus := map[string]bool{}
		for _, g := range n.GetInventory().GetGpus() {
			gpus[g.GetUuid()] = true
		}
		keys := []string{fmt.Sprint(":", w.GetPort())}
		for _, g := range w.GetGpuUuids() {
			if !gpus[g] {
				return fmt.Errorf("plan puts worker %q on GPU %s that node %q does not have: %w", w.GetId(), g, n.GetId(), ErrConflict)
			}
			keys = append(keys, g)
		}
		for _, k := range keys {
			if taken[slot{n.GetId(), k}] {
				return fmt.Errorf("plan puts worker %q on node %q GPU or port %s already taken: %w", w.GetId(), n.GetId(), k, ErrConflict)
			}
			taken[slot{n.GetId(), k}] = true
		}
	}
	for id := range removed {
		delete(s.Workers, id)
	}
	for _, w := range c.GetAdd() {
		w = proto.CloneOf(w)
		w.State = stratav1.WorkerState_WORKER_STATE_PENDING
		w.CreatedUnixNanos = c.GetUnixNanos()
		w.UpdatedUnixNanos = c.GetUnixNanos()
		s.Workers[w.Id] = w
	}
	s.NextWorkerSeq = seq
	s.placementChanged = true
	return nil
}
