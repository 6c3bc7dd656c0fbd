package brain

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/strata-llm/strata/brain/fsm"
	"github.com/strata-llm/strata/brain/placement"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Planner decides replica counts for the SLA planner. It runs on the leader
// only; what it returns is committed and placement follows it.
type Planner interface {
	Plan(ctx context.Context, v *fsm.View) []*stratav1.PlannerDecision
}

// monitorLeadership starts the leader loops when this replica becomes the
// leader and stops them, waiting until they have returned, when it stops
// being one.
func (s *Server) monitorLeadership(ctx context.Context) {
	type run struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var leading *run
	stopLeading := func() {
		if leading != nil {
			leading.cancel()
			<-leading.done
			leading = nil
			s.log.Info("leader loops stopped")
		}
	}
	defer stopLeading()
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-s.leaderNotify:
			s.metrics.leaderChanges.Inc()
			switch {
			case !leader:
				stopLeading()
			case leading == nil:
				lctx, cancel := context.WithCancel(ctx)
				leading = &run{cancel: cancel, done: make(chan struct{})}
				go func(done chan struct{}) {
					defer close(done)
					s.lead(lctx)
				}(leading.done)
			}
		}
	}
}

// lead runs while this replica leads. Nothing runs before a Barrier has
// applied every entry of earlier terms: decisions taken on a stale FSM would
// undo committed writes.
func (s *Server) lead(ctx context.Context) {
	retry := time.NewTicker(200 * time.Millisecond)
	defer retry.Stop()
	for {
		err := s.await(ctx, s.raft.Barrier(s.cfg.ApplyTimeout))
		if err == nil {
			break
		}
		s.log.Warn("leader barrier failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		}
	}
	// The grace period: nodes were heartbeating to the old leader (or
	// nobody, during the election), so every lease restarts now.
	since := time.Now()
	s.log.Info("leading", "term", s.raft.Stats()["term"])
	s.registerSelf(ctx)

	leaseTick := time.NewTicker(max(s.cfg.LeaseTTL/4, 50*time.Millisecond))
	defer leaseTick.Stop()
	reconcileTick := time.NewTicker(s.cfg.ReconcileInterval)
	defer reconcileTick.Stop()
	var plannerC <-chan time.Time
	if s.cfg.Planner != nil {
		t := time.NewTicker(s.cfg.PlannerInterval)
		defer t.Stop()
		plannerC = t.C
	}
	changed, _ := s.fsm.Changed()
	lastPlacement := uint64(0)
	for {
		s.reconcile(ctx, &lastPlacement)
		select {
		case <-ctx.Done():
			return
		case <-leaseTick.C:
			s.expireLeases(ctx, since)
		case <-reconcileTick.C:
			lastPlacement = 0 // retry even if nothing changed (a rejected plan)
		case <-changed:
			changed, _ = s.fsm.Changed()
		case <-plannerC:
			s.runPlanner(ctx)
		}
	}
}

// registerSelf records this replica's addresses so followers can forward
// writes to it.
func (s *Server) registerSelf(ctx context.Context) {
	var cur *stratav1.BrainMember
	s.fsm.Read(func(v *fsm.View) { cur = v.Brains[s.member.GetId()] })
	if proto.Equal(cur, s.member) {
		return
	}
	if _, err := s.apply(ctx, &stratav1.SetBrainMemberCommand{Member: s.member}); err != nil {
		s.log.Warn("record own addresses", "error", err)
	}
}

// expireLeases marks down every node whose last heartbeat is older than
// the lease TTL, counting leases from no earlier than this term's start.
func (s *Server) expireLeases(ctx context.Context, since time.Time) {
	nowNanos := now()
	floor := since.UnixNano()
	var expired []string
	s.fsm.Read(func(v *fsm.View) {
		for id, n := range v.Nodes {
			if n.GetState() == stratav1.NodeState_NODE_STATE_DOWN {
				continue
			}
			if nowNanos-max(n.GetLastHeartbeatUnixNanos(), floor) > s.cfg.LeaseTTL.Nanoseconds() {
				expired = append(expired, id)
			}
		}
	})
	if len(expired) == 0 {
		return
	}
	slices.Sort(expired)
	s.log.Warn("node leases expired", "nodes", expired)
	if _, err := s.apply(ctx, &stratav1.MarkNodesDownCommand{NodeIds: expired, UnixNanos: nowNanos}); err != nil {
		s.log.Warn("mark nodes down", "error", err)
	}
}

// reconcile computes a placement plan on the current state and commits it.
// It runs only when the placement-relevant state moved since the last run
// (heartbeats alone do not trigger it) or when forced by the ticker.
func (s *Server) reconcile(ctx context.Context, last *uint64) {
	v := s.fsm.View()
	if v.PlacementIndex == *last && *last != 0 {
		return
	}
	*last = v.PlacementIndex
	start := time.Now()
	plan := placement.Compute(placementInput(v, s.cfg.WorkerPortBase))
	s.metrics.placementSeconds.Observe(time.Since(start).Seconds())
	s.metrics.recordShortfalls(plan.Unplaced)
	if plan.Empty() {
		return
	}
	seq := v.NextWorkerSeq
	for _, w := range plan.Add {
		w.Id = fsm.WorkerID(w.GetDeployment(), w.GetRole(), seq)
		seq++
	}
	if _, err := s.apply(ctx, &stratav1.ApplyPlanCommand{Add: plan.Add, Remove: plan.Remove, UnixNanos: now()}); err != nil {
		s.log.Warn("placement plan rejected; will retry", "error", err)
		*last = 0
		return
	}
	s.metrics.plans.Inc()
	s.log.Info("placement plan committed", "added", len(plan.Add), "removed", len(plan.Remove))
}

func placementInput(v *fsm.View, portBase int) placement.Input {
	return placement.Input{
		PortBase:    portBase,
		Nodes:       slices.Collect(maps.Values(v.Nodes)),
		Deployments: slices.Collect(maps.Values(v.Deployments)),
		Workers:     slices.Collect(maps.Values(v.Workers)),
		Decisions:   slices.Collect(maps.Values(v.Decisions)),
	}
}

// runPlanner commits the planner's decisions that differ from the stored ones.
func (s *Server) runPlanner(ctx context.Context) {
	v := s.fsm.View()
	decisions := s.cfg.Planner.Plan(ctx, v)
	slices.SortFunc(decisions, func(a, b *stratav1.PlannerDecision) int {
		return cmp.Or(cmp.Compare(a.GetDeployment(), b.GetDeployment()), cmp.Compare(a.GetRole(), b.GetRole()))
	})
	for _, d := range decisions {
		old := v.Decisions[fsm.DecisionKey{Deployment: d.GetDeployment(), Role: d.GetRole()}]
		if old.GetReplicas() == d.GetReplicas() && old != nil {
			continue
		}
		if d.GetUnixNanos() == 0 {
			d.UnixNanos = now()
		}
		if _, err := s.apply(ctx, &stratav1.RecordPlannerDecisionCommand{Decision: d}); err != nil {
			s.log.Warn("record planner decision", "deployment", d.GetDeployment(), "error", err)
		}
	}
}
