package tiers

// frequency is the filter in front of the disk: a count-min sketch of how
// often each key was put or asked for recently (the TinyLFU admission
// idea). It remembers keys the tiers no longer hold, so a block that keeps
// coming back is recognised even after it was dropped, in a fixed few
// hundred KiB whatever the number of keys. Counts are estimates that can
// only err high (by collisions); every sampleSize increments all counters
// halve, so the counts describe the recent past, not all time.
type frequency struct {
	rows       [frequencyRows][]uint8
	mask       uint64
	additions  int
	sampleSize int
}

const frequencyRows = 4

// newFrequency sizes the sketch to about width counters a row, a power of
// two; width should be a few times the number of blocks the tiers hold.
func newFrequency(width int) *frequency {
	w := 1
	for w < width {
		w <<= 1
	}
	f := &frequency{mask: uint64(w - 1), sampleSize: 10 * w}
	for i := range f.rows {
		f.rows[i] = make([]uint8, w)
	}
	return f
}

// index is key's counter in row i: one 64-bit mix per row of the key's two
// halves (the hash is uniform already; the scope separates models).
func (f *frequency) index(k Key, i int) uint64 {
	x := k.Hash ^ uint64(k.Scope)*0x9e3779b97f4a7c15 ^ uint64(i+1)*0xbf58476d1ce4e5b9
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	x ^= x >> 29
	return x & f.mask
}

// add counts one access of k. Conservative update: only the counters at
// the current minimum grow, which keeps the over-estimates small.
func (f *frequency) add(k Key) {
	est := f.estimate(k)
	if est == 255 {
		return
	}
	for i := range f.rows {
		if c := &f.rows[i][f.index(k, i)]; *c == est {
			*c++
		}
	}
	f.additions++
	if f.additions >= f.sampleSize {
		f.age()
	}
}

// estimate is k's count: the least of its counters.
func (f *frequency) estimate(k Key) uint8 {
	est := uint8(255)
	for i := range f.rows {
		est = min(est, f.rows[i][f.index(k, i)])
	}
	return est
}

// age halves every counter, forgetting the old past.
func (f *frequency) age() {
	for i := range f.rows {
		for j := range f.rows[i] {
			f.rows[i][j] >>= 1
		}
	}
	f.additions /= 2
}
