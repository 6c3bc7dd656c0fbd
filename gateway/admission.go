package gateway

import (
	"container/heap"
	"sync"
)

// admission orders the requests waiting for a worker that is not busy:
// per model, higher priority first, then arrival. Only the head of a
// model's queue tries to route; when it goes (routed, timed out, or gave
// up), the next one becomes head. The total is bounded.
type admission struct {
	max int

	mu      sync.Mutex
	seq     uint64
	total   int
	byModel map[string]*waitHeap
}

type waiter struct {
	priority int
	seq      uint64
	index    int
	model    string
}

func newAdmission(max int) *admission {
	return &admission{max: max, byModel: map[string]*waitHeap{}}
}

// busy says whether requests for the model are already waiting, so that a
// new one must wait behind them.
func (a *admission) busy(model string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.byModel[model]
	return q != nil && q.Len() > 0
}

// enqueue adds a waiter, or returns nil when the queue is full.
func (a *admission) enqueue(model string, priority int) *waiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.total >= a.max {
		return nil
	}
	a.seq++
	w := &waiter{priority: priority, seq: a.seq, model: model}
	q := a.byModel[model]
	if q == nil {
		q = &waitHeap{}
		a.byModel[model] = q
	}
	heap.Push(q, w)
	a.total++
	return w
}

func (a *admission) isHead(w *waiter) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.byModel[w.model]
	return q != nil && q.Len() > 0 && (*q)[0] == w
}

func (a *admission) remove(w *waiter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.byModel[w.model]
	heap.Remove(q, w.index)
	a.total--
	if q.Len() == 0 {
		delete(a.byModel, w.model)
	}
}

func (a *admission) depth() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// waitHeap is a heap of waiters: higher priority, then earlier arrival.
type waitHeap []*waiter

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority > h[j].priority
	}
	return h[i].seq < h[j].seq
}
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waitHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return w
}
