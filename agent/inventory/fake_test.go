package inventory

import (
	"fmt"
	"slices"
	"testing"
)

func TestFake(t *testing.T) {
	tests := []struct {
		n      int
		groups [][]int // expected fully linked groups, by index
		err    bool
	}{
		{n: -1},
		{n: 0},
		{n: 1, groups: [][]int{{0}}},
		{n: 4, groups: [][]int{{0, 1, 2, 3}}},
		{n: 8, groups: [][]int{{0, 1, 2, 3, 4, 5, 6, 7}}},
		{n: 12, groups: [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {8, 9, 10, 11}}},
		{n: 16, groups: [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {8, 9, 10, 11, 12, 13, 14, 15}}},
		{n: 64},
		{n: 65, err: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			inv, err := Fake("node-a", tt.n).Inventory(t.Context())
			if tt.err {
				if err == nil {
					t.Fatalf("Fake(%d): no error", tt.n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fake(%d): %v", tt.n, err)
			}
			gpus := inv.GetGpus()
			if want := max(tt.n, 0); len(gpus) != want {
				t.Fatalf("got %d GPUs, want %d", len(gpus), want)
			}
			index := make(map[string]int)
			for i, g := range gpus {
				if want := fmt.Sprintf("GPU-fake-node-a-%d", i); g.GetUuid() != want {
					t.Errorf("GPU %d uuid = %q, want %q", i, g.GetUuid(), want)
				}
				if g.GetIndex() != uint32(i) || g.GetModel() != FakeGPUModel || g.GetMemoryBytes() != 80<<30 {
					t.Errorf("GPU %d = %v", i, g)
				}
				index[g.GetUuid()] = i
			}
			for i, g := range gpus {
				board := i / 8
				if len(g.GetNvlinkPeers()) != min(8, len(gpus)-board*8)-1 {
					t.Errorf("GPU %d has %d peers", i, len(g.GetNvlinkPeers()))
				}
				for _, p := range g.GetNvlinkPeers() {
					j, ok := index[p]
					switch {
					case !ok:
						t.Errorf("GPU %d peer %q is not a GPU of the node", i, p)
					case j == i:
						t.Errorf("GPU %d links to itself", i)
					case j/8 != board:
						t.Errorf("GPU %d links across boards to %d", i, j)
					case !slices.Contains(gpus[j].GetNvlinkPeers(), g.GetUuid()):
						t.Errorf("link %d→%d is not symmetric", i, j)
					}
				}
			}
			for _, group := range tt.groups {
				for _, i := range group {
					for _, j := range group {
						if i != j && !slices.Contains(gpus[i].GetNvlinkPeers(), gpus[j].GetUuid()) {
							t.Errorf("GPU %d not linked to %d", i, j)
						}
					}
				}
			}
		})
	}
}

func TestFakeDeterministicPerNode(t *testing.T) {
	ctx := t.Context()
	a1, _ := Fake("a", 4).Inventory(ctx)
	a2, _ := Fake("a", 4).Inventory(ctx)
	b, _ := Fake("b", 4).Inventory(ctx)
	for i := range 4 {
		if a1.Gpus[i].Uuid != a2.Gpus[i].Uuid {
			t.Errorf("GPU %d uuid not deterministic: %q vs %q", i, a1.Gpus[i].Uuid, a2.Gpus[i].Uuid)
		}
		if a1.Gpus[i].Uuid == b.Gpus[i].Uuid {
			t.Errorf("GPU %d uuid %q shared by nodes a and b", i, b.Gpus[i].Uuid)
		}
	}
}
