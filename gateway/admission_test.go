package gateway

import "testing"

func TestAdmissionOrder(t *testing.T) {
	a := newAdmission(4)
	low := a.enqueue("m", 0)
	high := a.enqueue("m", 5)
	low2 := a.enqueue("m", 0)
	other := a.enqueue("n", 0)
	if a.enqueue("m", 9) != nil {
		t.Fatal("queue over its bound")
	}
	for _, step := range []struct {
		head *waiter
		gone *waiter
	}{{high, high}, {low, low}, {low2, low2}} {
		if !a.isHead(step.head) || !a.isHead(other) {
			t.Fatalf("head of m is not the one expected (priority %d seq %d)", step.head.priority, step.head.seq)
		}
		a.remove(step.gone)
	}
	if a.busy("m") || !a.busy("n") || a.depth() != 1 {
		t.Fatalf("busy m %v, n %v, depth %d", a.busy("m"), a.busy("n"), a.depth())
	}
}
