package kvindex

import (
	"math/bits"
	"slices"
)

// evictSample is how many entries one eviction round looks at.
const evictSample = 64

// evict brings both maps of the model under max entries, dropping the
// least recently stored. Exact LRU would cost a list node per block (16+
// bytes, and pointer chasing on every store); instead, like Redis, each
// round samples entries (Go map iteration starts at a random place) and
// drops those at or below the sample's median age, which approximates LRU
// well at a fraction of the memory. Caller holds m.mu.
func (m *model) evict(max int, met *Metrics) {
	for len(m.index) > max {
		var ages []uint32
		for _, i := range m.index {
			ages = append(ages, m.slots[i-1].touched)
			if len(ages) == evictSample {
				break
			}
		}
		cut := median(ages)
		for _, si := range m.index {
			if len(m.index) <= max {
				break
			}
			if m.slots[si-1].touched > cut {
				continue
			}
			hs := m.holdersAt(si - 1)
			for i := range hs.len() {
				r := hs.at(i)
				if w := m.workers[r.worker]; w != nil {
					for mask := r.mask; mask != 0; mask &= mask - 1 {
						w.entries[bits.TrailingZeros8(mask)]--
					}
				}
			}
			m.freeSlot(si - 1)
			met.evictions.Inc()
		}
	}
	for len(m.remote) > max {
		var ages []uint32
		for _, t := range m.remote {
			ages = append(ages, t)
			if len(ages) == evictSample {
				break
			}
		}
		cut := median(ages)
		for h, t := range m.remote {
			if len(m.remote) <= max {
				break
			}
			if t <= cut {
				delete(m.remote, h)
				met.evictions.Inc()
			}
		}
	}
}

func median(xs []uint32) uint32 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
