// Package inventory reports what a GPU node has — its GPUs with their
// NVLink topology, CPUs, memory and local disks — so that the agent can
// describe the node in its Register call and the brain can place workers on
// it. Placement keys on GPU UUIDs (they are also what CUDA_VISIBLE_DEVICES
// carries) and prefers tensor-parallel gangs whose GPUs are all NVLinked, so
// those are the facts gathered here.
//
// Each kind of fact comes from a [Source]: [Host] (gopsutil), [NVML] (the
// NVIDIA driver) and [FakeGPUs] (simulated GPUs for development and tests).
// [New] composes them the way the agent needs. A node without a GPU driver,
// or a binary built without cgo, reports zero GPUs rather than failing, so
// the agent still runs on laptops and CPU-only CI machines.
package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Source reports some or all of a node's inventory. GPU sources fill only
// Gpus; the host source fills everything else.
type Source interface {
	Inventory(ctx context.Context) (*stratav1.Inventory, error)
}

// New returns the Source the agent registers with: host facts plus the GPUs
// NVML finds, or, when fakeGPUs > 0, fakeGPUs simulated GPUs instead of NVML
// (see [Fake]). nodeID makes fake GPU UUIDs unique per node; when empty the
// hostname is used. A nil log discards.
func New(log *slog.Logger, nodeID string, fakeGPUs int) Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "inventory")
	var gpus Source
	if fakeGPUs > 0 {
		if nodeID == "" {
			nodeID, _ = os.Hostname()
		}
		gpus = Fake(nodeID, fakeGPUs)
	} else {
		gpus = NewNVML(log)
	}
	return &composite{host: NewHost(log), gpus: gpus}
}

// composite is host facts from one Source and GPUs from another.
type composite struct {
	host Source
	gpus Source
}

var _ Source = (*composite)(nil)

func (c *composite) Inventory(ctx context.Context) (*stratav1.Inventory, error) {
	inv, err := c.host.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: host: %w", err)
	}
	g, err := c.gpus.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: gpus: %w", err)
	}
	inv.Gpus = g.GetGpus()
	return inv, nil
}

// reasonLogger logs why there are no GPUs once, not on every Inventory call
// (the agent re-registers), and again only if the reason changes.
type reasonLogger struct {
	mu   sync.Mutex
	last string
}

func (r *reasonLogger) log(log *slog.Logger, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reason == r.last {
		return
	}
	r.last = reason
	log.Info("no GPUs reported", "reason", reason)
}
