// Package batch runs the items of a store's batch call side by side.
package batch

import (
	"sync"
	"sync/atomic"
)

// Each calls fn(i) for every i in [0, n), at most parallel at a time, and
// returns when all have returned. One item, or parallel ≤ 1, runs inline.
func Each(n, parallel int, fn func(i int)) {
	if n <= 1 || parallel <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
