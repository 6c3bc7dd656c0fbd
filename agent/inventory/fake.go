package inventory

import (
	"context"
	"fmt"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

const (
	// MaxFakeGPUs is the most simulated GPUs one node may report.
	MaxFakeGPUs = 64
	// FakeGPUModel is the model name of every simulated GPU.
	FakeGPUModel = "Strata Simulated GPU"
	// FakeGPUMemory is the memory of every simulated GPU: 80 GiB.
	FakeGPUMemory uint64 = 80 << 30
	// fakeBoardSize is how many simulated GPUs share one NVLink domain, as on
	// an HGX board.
	fakeBoardSize = 8
)

// FakeGPUs is a Source of simulated GPUs for development and tests.
type FakeGPUs struct {
	nodeID string
	n      int
}

var _ Source = (*FakeGPUs)(nil)

// Fake returns n simulated GPUs for node nodeID. UUIDs are
// "GPU-fake-<nodeID>-<index>", so they are stable across restarts and differ
// between fake nodes sharing a host. GPUs are laid out like HGX boards:
// consecutive groups of up to 8 are fully NVLinked and there are no links
// between groups (16 GPUs are two boards of 8). n <= 0 means none; n above
// [MaxFakeGPUs] makes Inventory fail.
func Fake(nodeID string, n int) *FakeGPUs {
	return &FakeGPUs{nodeID: nodeID, n: n}
}

// Inventory reports the simulated GPUs; only Gpus is set.
func (f *FakeGPUs) Inventory(ctx context.Context) (*stratav1.Inventory, error) {
	if f.n > MaxFakeGPUs {
		return nil, fmt.Errorf("fake gpus: %d requested, at most %d", f.n, MaxFakeGPUs)
	}
	n := max(f.n, 0)
	uuids := make([]string, n)
	for i := range n {
		uuids[i] = fmt.Sprintf("GPU-fake-%s-%d", f.nodeID, i)
	}
	gpus := make([]*stratav1.GPU, n)
	for i := range n {
		board := i / fakeBoardSize * fakeBoardSize
		var peers []string
		for j := board; j < min(board+fakeBoardSize, n); j++ {
			if j != i {
				peers = append(peers, uuids[j])
			}
		}
		gpus[i] = &stratav1.GPU{
			Uuid:        uuids[i],
			Index:       uint32(i),
			Model:       FakeGPUModel,
			MemoryBytes: FakeGPUMemory,
			NvlinkPeers: peers,
		}
	}
	return &stratav1.Inventory{Gpus: gpus}, nil
}
