package kvindex

import (
	"math/bits"
	"math/rand/v2"
	"slices"
)

// evictSample is how many entries one eviction round looks at.
const evictSample = 64

// evict brings both maps of the model under max entries, dropping the
// least recently touched: stored, or matched by a Score (remote blocks:
// stored, as Score only reads their map). Exact LRU would cost a list
// node per block (16+ bytes, and pointer chasing on every store); instead,
// like Redis, each round samples entries at random and drops those at
// least as old as the sample's median, which approximates LRU well at a
// fraction of the memory. Ages count
// store events back from the model's clock, so its wrapping is harmless.
// Once over max, it evicts down to a sixty-fourth below it, so that the
// sampling and the start of a map walk are paid once per many evictions,
// not once per store. Caller holds m.mu.
func (m *model) evict(max int, met *Metrics) {
	if len(m.index) > max {
		m.evictLocal(max-max/64, met)
	}
	if len(m.remote) > max {
		m.evictRemote(max-max/64, met)
	}
}

// evictLocal samples occupied slots of the slab at random for the age
// cut, then walks the slab from where the last walk stopped (a clock hand:
// memory read in order, unlike a walk of the map) dropping blocks at
// least that old.
func (m *model) evictLocal(max int, met *Metrics) {
	before := len(m.index)
	defer func() { met.evictions.Add(float64(before - len(m.index))) }()
	for len(m.index) > max {
		var sample [evictSample]uint32
		ages := sample[:0]
		for tries := 0; len(ages) < evictSample && tries < 4*evictSample; tries++ {
			if sl := &m.slots[rand.IntN(len(m.slots))]; sl.first.mask != 0 {
				ages = append(ages, m.clock-sl.touched)
			}
		}
		if len(ages) == 0 {
			ages = append(ages, 0)
		}
		cut := median(ages)
		for range len(m.slots) {
			if len(m.index) <= max {
				break
			}
			si := m.hand
			if m.hand++; int(m.hand) == len(m.slots) {
				m.hand = 0
			}
			sl := &m.slots[si]
			if sl.first.mask == 0 || m.clock-sl.touched < cut {
				continue
			}
			hs := m.holdersAt(si)
			for i := range hs.len() {
				r := hs.at(i)
				if w := m.workers[r.worker]; w != nil {
					for mask := r.mask; mask != 0; mask &= mask - 1 {
						w.entries[bits.TrailingZeros8(mask)]--
					}
				}
			}
			m.freeSlot(si)
		}
	}
}

// evictRemote is evictLocal for the remote map, which has no slab: it
// samples and walks the map (remote blocks are few next to local ones).
func (m *model) evictRemote(max int, met *Metrics) {
	before := len(m.remote)
	defer func() { met.evictions.Add(float64(before - len(m.remote))) }()
	for len(m.remote) > max {
		var sample [evictSample]uint32
		ages := sample[:0]
		for _, t := range m.remote {
			ages = append(ages, m.clock-t)
			if len(ages) == evictSample {
				break
			}
		}
		cut := median(ages)
		for h, t := range m.remote {
			if len(m.remote) <= max {
				break
			}
			if m.clock-t >= cut {
				delete(m.remote, h)
			}
		}
	}
}

func median(xs []uint32) uint32 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
