package kvbm

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tiers"
)

// Workers is the agent's side of reporting: which workers it runs, and
// where their KV events go.
type Workers interface {
	// ServedModel is the served model name of a worker the agent runs,
	// false for a worker it does not (or does not yet) run.
	ServedModel(workerID string) (string, bool)
	// Publish adds tier events to a worker's KV event stream (in order with
	// the engine's own events; see kvevents.Subscriber.Inject).
	Publish(workerID string, events []*stratav1.KVEvent)
	// Resync makes every worker send a snapshot (after the tiers' event
	// queue overflowed and events were lost).
	Resync()
}

// scopeInfo is one registered KV layout.
type scopeInfo struct {
	scope     tiers.Scope
	model     string
	blockSize uint32
	layout    string
	tpRank    uint32
	tpSize    uint32
	// blockBytes is the size every block must have, 0 for any.
	blockBytes uint64
	// workers are the workers whose connectors opened the scope.
	workers map[string]bool
}

// reported says whether the scope's tier changes go to the brain: rank 0
// only, so that a tensor-parallel worker's block counts once.
func (s *scopeInfo) reported() bool { return s.tpRank == 0 }

// scopeName is what a scope hashes: everything that changes a block's
// bytes, spelled the same on every node.
func scopeName(model string, blockSize uint32, layout string, tpRank, tpSize uint32) string {
	return strings.Join([]string{
		model, "bs" + strconv.FormatUint(uint64(blockSize), 10), layout,
		"tp" + strconv.FormatUint(uint64(tpRank), 10) + "/" + strconv.FormatUint(uint64(max(tpSize, 1)), 10),
	}, "|")
}

// registry maps scopes to the workers that opened them, and turns the
// hierarchy's tier events into those workers' KV events.
//
// Why per worker: the brain's index keeps CPU and disk blocks per worker
// (the cost function credits them to the worker that would onboard them),
// and every worker on this node whose connector opened a scope can onboard
// its blocks, so each such worker is told. The remote tier is one set per
// model in the brain, whoever reports it; it is reported under the same
// workers, which is harmless (a set) and keeps one rule for every medium.
type registry struct {
	workers Workers
	blocks  func() map[tiers.Medium][]tiers.Key

	mu     sync.RWMutex
	scopes map[tiers.Scope]*scopeInfo
}

func newRegistry(w Workers, blocks func() map[tiers.Medium][]tiers.Key) *registry {
	return &registry{workers: w, blocks: blocks, scopes: map[tiers.Scope]*scopeInfo{}}
}

// open registers req's layout for its worker and returns the scope. The
// worker's existing blocks of the scope are reported at once: they may
// have been stored before (by another worker, before an agent restart).
func (r *registry) open(req *stratav1.OpenKVScopeRequest) (*scopeInfo, error) {
	if req.GetTpSize() > 0 && req.GetTpRank() >= req.GetTpSize() {
		return nil, fmt.Errorf("tp_rank %d of tp_size %d", req.GetTpRank(), req.GetTpSize())
	}
	scope := tiers.ScopeOf(scopeName(req.GetModel(), req.GetBlockSize(), req.GetLayout(), req.GetTpRank(), req.GetTpSize()))
	r.mu.Lock()
	si := r.scopes[scope]
	switch {
	case si == nil:
		si = &scopeInfo{
			scope: scope, model: req.GetModel(), blockSize: req.GetBlockSize(), layout: req.GetLayout(),
			tpRank: req.GetTpRank(), tpSize: max(req.GetTpSize(), 1), blockBytes: req.GetBlockBytes(), workers: map[string]bool{},
		}
		r.scopes[scope] = si
	case si.blockBytes != req.GetBlockBytes():
		r.mu.Unlock()
		return nil, fmt.Errorf("block_bytes %d: the scope was opened with %d (same layout, same block size)", req.GetBlockBytes(), si.blockBytes)
	}
	fresh := !si.workers[req.GetWorkerId()]
	si.workers[req.GetWorkerId()] = true
	r.mu.Unlock()
	if fresh && si.reported() {
		// Registered first, listed second: an event the dispatcher dropped
		// before the registration is in the listing; one it delivers after
		// the listing only repeats what the listing said, or is newer.
		if events := r.tierEvents(si, r.blocks()); len(events) > 0 {
			r.workers.Publish(req.GetWorkerId(), events)
		}
	}
	return si, nil
}

// lookup is a registered scope, nil for one never opened.
func (r *registry) lookup(scope uint64) *scopeInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.scopes[tiers.Scope(scope)]
}

// forget drops a worker from every scope (it left the node). Its blocks
// stay in the tiers for the other workers of the model.
func (r *registry) forget(workerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, si := range r.scopes {
		delete(si.workers, workerID)
	}
}

// reportedWorkers is, per reported scope, the workers to tell. The
// caller may not modify the result.
func (r *registry) reportedWorkers() map[tiers.Scope][]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[tiers.Scope][]string, len(r.scopes))
	for s, si := range r.scopes {
		if si.reported() && len(si.workers) > 0 {
			out[s] = slices.Sorted(maps.Keys(si.workers))
		}
	}
	return out
}

// onEvent is the hierarchy's OnEvent: each event's keys, grouped by scope,
// become a BlockStored or BlockRemoved for every worker of the scope.
// Keys of scopes no connector opened are nobody's to report (yet): a
// connector that opens their scope later gets them from the listing.
func (r *registry) onEvent(ev tiers.Event) {
	if ev.Type == tiers.Overflow {
		r.workers.Resync()
		return
	}
	targets := r.reportedWorkers()
	if len(targets) == 0 {
		return
	}
	byScope := map[tiers.Scope][]uint64{}
	var order []tiers.Scope
	for _, k := range ev.Keys {
		if targets[k.Scope] == nil {
			continue
		}
		if _, ok := byScope[k.Scope]; !ok {
			order = append(order, k.Scope)
		}
		byScope[k.Scope] = append(byScope[k.Scope], k.Hash)
	}
	medium := stratav1.Medium(ev.Medium)
	for _, s := range order {
		si := r.lookup(uint64(s))
		var e *stratav1.KVEvent
		if ev.Type == tiers.Stored {
			e = storedEvent(byScope[s], medium, si.blockSize)
		} else {
			e = &stratav1.KVEvent{Event: &stratav1.KVEvent_Removed{Removed: &stratav1.BlockRemoved{SeqHashes: byScope[s], Medium: medium}}}
		}
		for _, w := range targets[s] {
			r.workers.Publish(w, []*stratav1.KVEvent{e})
		}
	}
}

func storedEvent(hashes []uint64, medium stratav1.Medium, blockSize uint32) *stratav1.KVEvent {
	// No parent: tier blocks arrive in any order, and the index needs
	// none (it only uses parents to link runs for a faster walk).
	return &stratav1.KVEvent{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{
		SeqHashes: hashes, Medium: medium, BlockSize: blockSize,
	}}}
}

// tierEvents is the scope's blocks, per medium, as BlockStored events.
func (r *registry) tierEvents(si *scopeInfo, all map[tiers.Medium][]tiers.Key) []*stratav1.KVEvent {
	var out []*stratav1.KVEvent
	for _, m := range []tiers.Medium{tiers.CPU, tiers.Disk, tiers.Remote} {
		var hashes []uint64
		for _, k := range all[m] {
			if k.Scope == si.scope {
				hashes = append(hashes, k.Hash)
			}
		}
		if len(hashes) > 0 {
			slices.Sort(hashes) // deterministic snapshots
			out = append(out, storedEvent(hashes, stratav1.Medium(m), si.blockSize))
		}
	}
	return out
}

// workerBlocks is everything a worker can onboard from the tiers, as
// BlockStored events: the kvevents.TierBlocks of its event stream.
func (r *registry) workerBlocks(workerID string) []*stratav1.KVEvent {
	r.mu.RLock()
	var mine []*scopeInfo
	for _, si := range r.scopes {
		if si.reported() && si.workers[workerID] {
			mine = append(mine, si)
		}
	}
	r.mu.RUnlock()
	if len(mine) == 0 {
		return nil
	}
	slices.SortFunc(mine, func(a, b *scopeInfo) int { return cmp.Compare(a.scope, b.scope) })
	all := r.blocks()
	var out []*stratav1.KVEvent
	for _, si := range mine {
		out = append(out, r.tierEvents(si, all)...)
	}
	return out
}

// scopeView is a registered scope in GET /v1/kv.
type scopeView struct {
	Scope      string   `json:"scope"`
	Model      string   `json:"model"`
	BlockSize  uint32   `json:"block_size"`
	Layout     string   `json:"layout,omitempty"`
	TPRank     uint32   `json:"tp_rank"`
	TPSize     uint32   `json:"tp_size"`
	BlockBytes uint64   `json:"block_bytes,omitempty"`
	Workers    []string `json:"workers"`
}

func (r *registry) views() []scopeView {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]scopeView, 0, len(r.scopes))
	for _, si := range r.scopes {
		out = append(out, scopeView{
			Scope: fmt.Sprintf("%016x", uint64(si.scope)), Model: si.model, BlockSize: si.blockSize, Layout: si.layout,
			TPRank: si.tpRank, TPSize: si.tpSize, BlockBytes: si.blockBytes, Workers: slices.Sorted(maps.Keys(si.workers)),
		})
	}
	slices.SortFunc(out, func(a, b scopeView) int { return strings.Compare(a.Scope, b.Scope) })
	return out
}
