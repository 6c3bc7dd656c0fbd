package kvindex

import (
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// tally is one worker's running match during a Score walk.
type tally struct {
	worker uint32
	counts [4]uint32 // GPU, CPU, disk, remote
}

var tallyPool = sync.Pool{New: func() any { s := make([]tally, 0, 64); return &s }}

// Match is one worker's answer to a Score: its leading blocks per tier.
type Match struct {
	WorkerID               string
	GPU, CPU, Disk, Remote uint32
}

// Score returns, for every worker of the model that holds at least the
// first block (locally, or through the remote tier), how many leading
// blocks of hashes it has per tier. Workers not in the answer match
// nothing. lora is not needed: an adapter changes the hashes themselves.
func (x *Index) Score(modelName string, hashes []uint64) []*stratav1.WorkerScore {
	matches := x.ScoreInto(nil, modelName, hashes)
	out := make([]*stratav1.WorkerScore, len(matches))
	vals := make([]stratav1.WorkerScore, len(matches))
	for i, mt := range matches {
		v := &vals[i]
		v.WorkerId, v.Gpu, v.Cpu, v.Disk, v.Remote = mt.WorkerID, mt.GPU, mt.CPU, mt.Disk, mt.Remote
		out[i] = v
	}
	return out
}

// ScoreInto is Score appending to dst, allocating nothing when dst has room:
// for callers on every request's path that reuse their buffer (allocation
// churn is what wakes the collector, and its sweeping lands in the tail).
func (x *Index) ScoreInto(dst []Match, modelName string, hashes []uint64) []Match {
	m := x.model(modelName)
	if m == nil || len(hashes) == 0 {
		return dst
	}
	timer := x.metrics.scoreStart()
	defer timer()

	alivep := tallyPool.Get().(*[]tally)
	donep := tallyPool.Get().(*[]tally)
	alive, done := (*alivep)[:0], (*donep)[:0]
	defer func() {
		*alivep, *donep = alive[:0], done[:0]
		tallyPool.Put(alivep)
		tallyPool.Put(donep)
	}()

	m.mu.RLock()
	defer m.mu.RUnlock()
	hasRemote, clock := len(m.remote) > 0, m.clock
	var cur uint32 // slot+1 of the previous block, 0 when it had none
	for i, h := range hashes {
		// Follow the previous block's link when it leads to this hash: no
		// map probe, and usually the next slot in memory.
		if cur != 0 {
			if nx := m.slots[cur-1].next; nx != 0 && m.slots[nx-1].hash == h && m.slots[nx-1].first.mask != 0 {
				cur = nx
			} else {
				cur = m.index[h]
			}
		} else {
			cur = m.index[h]
		}
		local := cur != 0
		var hs holders
		if local {
			hs = m.holdersAt(cur - 1)
			// A block queries keep matching is worth keeping: eviction
			// goes by this age. Atomic because readers share the lock;
			// loaded first so that a hot prefix's cache lines are not
			// written by every query.
			if t := &m.slots[cur-1].touched; atomic.LoadUint32(t) != clock {
				atomic.StoreUint32(t, clock)
			}
		}
		// The remote map is consulted only when the local holders do not
		// continue every alive worker: most queries never touch it.
		remote, remoteKnown := false, false
		isRemote := func() bool {
			if !remoteKnown {
				_, remote = m.remote[h]
				remoteKnown = true
			}
			return remote
		}
		if !local && (!hasRemote || !isRemote()) {
			break
		}
		if i == 0 {
			alive = m.start(alive, &hs, local, hasRemote && isRemote())
			continue
		}
		// Merge the sorted alive list with the block's sorted holders.
		n, j, k := hs.len(), 0, 0
		for _, t := range alive {
			for j < n && hs.at(j).worker < t.worker {
				j++
			}
			if j < n && hs.at(j).worker == t.worker {
				t.counts[bits.TrailingZeros8(hs.at(j).mask)]++
			} else if hasRemote && isRemote() {
				t.counts[3]++
			} else {
				done = append(done, t)
				continue
			}
			alive[k] = t
			k++
		}
		alive = alive[:k]
		if len(alive) == 0 {
			break
		}
	}
	for _, list := range [][]tally{alive, done} {
		for _, t := range list {
			if w := m.workers[t.worker]; w != nil {
				dst = append(dst, Match{WorkerID: w.id, GPU: t.counts[0], CPU: t.counts[1], Disk: t.counts[2], Remote: t.counts[3]})
			}
		}
	}
	return dst
}

// start is the alive list after the first block: its holders, or every
// worker of the model when the block is on the shared remote tier.
func (m *model) start(alive []tally, hs *holders, local, remote bool) []tally {
	if remote {
		for num := range m.workers {
			alive = append(alive, tally{worker: num})
		}
		slices.SortFunc(alive, func(a, b tally) int { return int(a.worker) - int(b.worker) })
		j, n := 0, hs.len()
		for i := range alive {
			for j < n && hs.at(j).worker < alive[i].worker {
				j++
			}
			if local && j < n && hs.at(j).worker == alive[i].worker {
				alive[i].counts[bits.TrailingZeros8(hs.at(j).mask)]++
			} else {
				alive[i].counts[3]++
			}
		}
		return alive
	}
	for i := range hs.len() {
		r := hs.at(i)
		t := tally{worker: r.worker}
		t.counts[bits.TrailingZeros8(r.mask)]++
		alive = append(alive, t)
	}
	return alive
}
