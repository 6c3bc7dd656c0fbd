// Package fsm is the brain's replicated state machine: the tables Raft keeps
// identical on every brain replica (nodes with their leases, deployments,
// workers, brain members, planner decisions) and the commands that change
// them.
//
// Apply is deterministic: it reads nothing but the state and the command,
// because every replica replays the same log and must reach the same state.
// The leader stamps ids and times into a command before proposing it.
//
// Stored messages are immutable once they are in a table: Apply replaces an
// entry with a modified clone instead of changing it in place. A reader can
// therefore take a View (a shallow copy of the tables, O(entries) pointer
// copies) under a short read lock and then read the messages without any lock
// while Apply goes on, which keeps long streams and snapshots from blocking
// the log.
package fsm

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Errors returned (as the Apply response) for commands that are well formed
// but do not fit the state. They are deterministic: every replica rejects
// the same command the same way.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// DecisionKey identifies a pool's planner decision.
type DecisionKey struct {
	Deployment string
	Role       stratav1.WorkerRole
}

// View is a consistent, read-only copy of the tables at one Raft index.
// The messages are shared with the FSM and must not be modified.
type View struct {
	Index         uint64
	Nodes         map[string]*stratav1.Node
	Deployments   map[string]*stratav1.Deployment
	Workers       map[string]*stratav1.Worker
	Brains        map[string]*stratav1.BrainMember
	Decisions     map[DecisionKey]*stratav1.PlannerDecision
	NextWorkerSeq uint64
	// PlacementIndex is the index of the last entry that changed anything
	// placement reads (nodes' states, deployments, workers' set or states,
	// planner decisions) — not the load reports every heartbeat carries, so
	// the leader re-plans only when there is something new to plan for.
	PlacementIndex uint64

	placementChanged bool // set by apply methods, consumed by Apply
}

func newView() *View {
	return &View{
		Nodes:       map[string]*stratav1.Node{},
		Deployments: map[string]*stratav1.Deployment{},
		Workers:     map[string]*stratav1.Worker{},
		Brains:      map[string]*stratav1.BrainMember{},
		Decisions:   map[DecisionKey]*stratav1.PlannerDecision{},
	}
}

func (v *View) clone() *View {
	return &View{
		Index:          v.Index,
		Nodes:          maps.Clone(v.Nodes),
		Deployments:    maps.Clone(v.Deployments),
		Workers:        maps.Clone(v.Workers),
		Brains:         maps.Clone(v.Brains),
		Decisions:      maps.Clone(v.Decisions),
		NextWorkerSeq:  v.NextWorkerSeq,
		PlacementIndex: v.PlacementIndex,
	}
}

// FSM implements raft.FSM over the brain's tables.
type FSM struct {
	log *slog.Logger

	mu      sync.RWMutex
	state   *View
	changed chan struct{} // closed and replaced by every Apply and Restore
}

var _ raft.FSM = (*FSM)(nil)

// New returns an empty FSM.
func New(log *slog.Logger) *FSM {
	return &FSM{log: log, state: newView(), changed: make(chan struct{})}
}

// View returns a consistent copy of the current tables.
func (f *FSM) View() *View {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.clone()
}

// Read calls fn with the live tables under the read lock, for queries that
// need a few entries and would waste a full View. fn must not keep or
// modify anything it is given.
func (f *FSM) Read(fn func(v *View)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// Changed returns a channel closed at the next change of state, and the
// index of the state it was taken at. Watchers read the state, then wait on
// the channel, so no change between the read and the wait is missed.
func (f *FSM) Changed() (<-chan struct{}, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed, f.state.Index
}

// Index is the Raft index of the last applied entry.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Index
}

// Apply implements raft.FSM. It returns the command's result: an error, or
// the value documented on each apply method.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	t, cmd, err := Decode(l.Data)
	if err != nil {
		// Every replica fails the same entry the same way, so the state stays
		// identical; the leader's caller sees the error.
		f.log.Error("raft log entry not applied", "index", l.Index, "error", err)
		f.bump(l.Index)
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.placementChanged = false
	res := f.apply(t, cmd)
	f.state.Index = l.Index
	if f.state.placementChanged {
		f.state.PlacementIndex = l.Index
	}
	f.signalLocked()
	return res
}

func (f *FSM) bump(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.Index = index
	f.signalLocked()
}

// signalLocked wakes everyone waiting on Changed; the caller holds f.mu.
func (f *FSM) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *FSM) apply(t CommandType, cmd proto.Message) any {
	s := f.state
	switch c := cmd.(type) {
	case *stratav1.RegisterNodeCommand:
		return s.registerNode(c)
	case *stratav1.HeartbeatBatchCommand:
		return s.heartbeat(c)
	case *stratav1.MarkNodesDownCommand:
		return s.markDown(c)
	case *stratav1.DrainNodeCommand:
		return s.drain(c)
	case *stratav1.UpsertDeploymentCommand:
		return s.upsertDeployment(c)
	case *stratav1.DeleteDeploymentCommand:
		return s.deleteDeployment(c)
	case *stratav1.ApplyPlanCommand:
		return s.applyPlan(c)
	case *stratav1.SetBrainMemberCommand:
		if c.GetMember().GetId() == "" {
			return fmt.Errorf("brain member without id: %w", ErrConflict)
		}
		s.Brains[c.GetMember().GetId()] = c.GetMember()
		return nil
	case *stratav1.RemoveBrainMemberCommand:
		delete(s.Brains, c.GetId())
		return nil
	case *stratav1.RecordPlannerDecisionCommand:
		d := c.GetDecision()
		if _, ok := s.Deployments[d.GetDeployment()]; !ok {
			return fmt.Errorf("planner decision for deployment %q: %w", d.GetDeployment(), ErrNotFound)
		}
		s.Decisions[DecisionKey{d.GetDeployment(), d.GetRole()}] = d
		s.placementChanged = true
		return nil
	default:
		return fmt.Errorf("%s has no apply: %w", t, ErrUnknownCommand)
	}
}

// Snapshot implements raft.FSM. The tables are shallow-copied under the
// lock; the messages are immutable, so Persist can marshal them while Apply
// carries on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{view: f.View()}, nil
}

// Restore implements raft.FSM: it replaces the whole state.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	v, err := DecodeSnapshot(b)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = v
	f.signalLocked()
	return nil
}

// DecodeSnapshot parses the bytes Persist wrote.
func DecodeSnapshot(b []byte) (*View, error) {
	var snap stratav1.FSMSnapshot
	if err := proto.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	v := newView()
	for _, n := range snap.GetNodes() {
		v.Nodes[n.GetId()] = n
	}
	for _, d := range snap.GetDeployments() {
		v.Deployments[d.GetSpec().GetName()] = d
	}
	for _, w := range snap.GetWorkers() {
		v.Workers[w.GetId()] = w
	}
	for _, b := range snap.GetBrains() {
		v.Brains[b.GetId()] = b
	}
	for _, d := range snap.GetPlannerDecisions() {
		v.Decisions[DecisionKey{d.GetDeployment(), d.GetRole()}] = d
	}
	v.NextWorkerSeq = snap.GetNextWorkerSeq()
	v.Index = snap.GetIndex()
	v.PlacementIndex = v.Index
	return v, nil
}

type snapshot struct{ view *View }

// Persist implements raft.FSMSnapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	b, err := EncodeSnapshot(s.view)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() {}

// EncodeSnapshot serialises a view with every table sorted by key, so equal
// states give equal bytes.
func EncodeSnapshot(v *View) ([]byte, error) {
	snap := &stratav1.FSMSnapshot{
		Nodes:         sortedValues(v.Nodes),
		Deployments:   sortedValues(v.Deployments),
		Workers:       sortedValues(v.Workers),
		Brains:        sortedValues(v.Brains),
		NextWorkerSeq: v.NextWorkerSeq,
		Index:         v.Index,
	}
	keys := slices.SortedFunc(maps.Keys(v.Decisions), func(a, b DecisionKey) int {
		return cmp.Or(cmp.Compare(a.Deployment, b.Deployment), cmp.Compare(a.Role, b.Role))
	})
	for _, k := range keys {
		snap.PlannerDecisions = append(snap.PlannerDecisions, v.Decisions[k])
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(snap)
}

func sortedValues[V any](m map[string]V) []V {
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}
