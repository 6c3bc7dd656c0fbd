//go:build cgo

package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// NVML is a Source of the node's NVIDIA GPUs, read through the driver's NVML
// library. When NVML cannot be initialised (no driver, no libnvidia-ml) it
// reports zero GPUs and logs why once at info; it tries again on every call,
// so a driver loaded later is picked up.
type NVML struct {
	log    *slog.Logger
	lib    nvml.Interface
	absent reasonLogger
}

var _ Source = (*NVML)(nil)

// NewNVML returns an NVML source using the system's libnvidia-ml. A nil log
// discards.
func NewNVML(log *slog.Logger) *NVML {
	return newNVML(log, nvml.New())
}

func newNVML(log *slog.Logger, lib nvml.Interface) *NVML {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NVML{log: log, lib: lib}
}

// gpuDevice is one GPU while its links are being resolved.
type gpuDevice struct {
	dev nvml.Device
	gpu *stratav1.GPU
}

// Inventory reports the GPUs; only Gpus is set. An error names the device
// index it concerns and wraps the nvml.Return.
func (n *NVML) Inventory(ctx context.Context) (*stratav1.Inventory, error) {
	if ret := n.lib.Init(); ret != nvml.SUCCESS {
		n.absent.log(n.log, "NVML init: "+ret.Error())
		return &stratav1.Inventory{}, nil
	}
	defer func() {
		if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
			n.log.Warn("NVML shutdown", "error", ret.Error())
		}
	}()

	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml device count: %w", ret)
	}
	devs := make([]gpuDevice, 0, count)
	byBus := make(map[string]int, count) // normalised PCI bus id → index
	for i := range count {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := n.device(i)
		if err != nil {
			return nil, fmt.Errorf("nvml device %d: %w", i, err)
		}
		pci, ret := d.dev.GetPciInfo()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml device %d: pci info: %w", i, ret)
		}
		byBus[busID(pci)] = i
		devs = append(devs, d)
	}

	// Second pass, once every local bus id is known: resolve links.
	peers := make([]map[int]bool, len(devs))
	var switched []int // GPUs with an NVLink to an NVSwitch
	for i, d := range devs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, sw, err := links(d.dev, i, byBus)
		if err != nil {
			return nil, fmt.Errorf("nvml device %d: %w", i, err)
		}
		peers[i] = p
		if sw {
			switched = append(switched, i)
		}
	}
	// On NVSwitch systems (HGX A100/H100/B200) a GPU's links end at switches,
	// not at other GPUs, and every GPU on the fabric reaches every other.
	for _, i := range switched {
		for _, j := range switched {
			if i != j {
				peers[i][j] = true
			}
		}
	}

	gpus := make([]*stratav1.GPU, len(devs))
	for i, d := range devs {
		idx := make([]int, 0, len(peers[i]))
		for j := range peers[i] {
			idx = append(idx, j)
		}
		slices.Sort(idx)
		for _, j := range idx {
			d.gpu.NvlinkPeers = append(d.gpu.NvlinkPeers, devs[j].gpu.Uuid)
		}
		gpus[i] = d.gpu
	}
	return &stratav1.Inventory{Gpus: gpus}, nil
}

func (n *NVML) device(i int) (gpuDevice, error) {
	dev, ret := n.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return gpuDevice{}, fmt.Errorf("handle: %w", ret)
	}
	uuid, ret := dev.GetUUID()
	if ret != nvml.SUCCESS {
		return gpuDevice{}, fmt.Errorf("uuid: %w", ret)
	}
	name, ret := dev.GetName()
	if ret != nvml.SUCCESS {
		return gpuDevice{}, fmt.Errorf("name: %w", ret)
	}
	var total uint64
	switch m, ret := dev.GetMemoryInfo(); ret {
	case nvml.SUCCESS:
		total = m.Total
	case nvml.ERROR_NOT_SUPPORTED:
		// Unified-memory parts (GB10) have no dedicated framebuffer to report.
	default:
		return gpuDevice{}, fmt.Errorf("memory info: %w", ret)
	}
	return gpuDevice{dev: dev, gpu: &stratav1.GPU{
		Uuid:        uuid,
		Index:       uint32(i),
		Model:       name,
		MemoryBytes: total,
	}}, nil
}

// links returns the local GPUs (by index) that device self has an active
// NVLink to, and whether any active link ends at an NVSwitch.
func links(dev nvml.Device, self int, byBus map[string]int) (map[int]bool, bool, error) {
	peers := make(map[int]bool)
	switched := false
	for link := range nvml.NVLINK_MAX_LINKS {
		state, ret := dev.GetNvLinkState(link)
		switch ret {
		case nvml.SUCCESS:
		case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_INVALID_ARGUMENT:
			// No NVLink on this device, or past the links it has.
			continue
		default:
			return nil, false, fmt.Errorf("nvlink %d state: %w", link, ret)
		}
		if state != nvml.FEATURE_ENABLED {
			continue
		}
		remote, ret := dev.GetNvLinkRemotePciInfo(link)
		if ret == nvml.ERROR_NOT_SUPPORTED {
			continue
		}
		if ret != nvml.SUCCESS {
			return nil, false, fmt.Errorf("nvlink %d remote pci info: %w", link, ret)
		}
		if j, ok := byBus[busID(remote)]; ok {
			if j != self {
				peers[j] = true
			}
			continue
		}
		// Not a local GPU: an NVSwitch, or a CPU (IBM NPU) we do not count.
		// Drivers too old to say are treated as "not a switch".
		if t, ret := dev.GetNvLinkRemoteDeviceType(link); ret == nvml.SUCCESS && t == nvml.NVLINK_DEVICE_TYPE_SWITCH {
			switched = true
		}
	}
	return peers, switched, nil
}

// busID is a PCI address in one canonical form, "dddddddd:bb:dd.f", so that
// the 8-digit domain NVML reports for a device and a 4-digit or differently
// cased one for a link's remote end compare equal.
func busID(p nvml.PciInfo) string {
	b := make([]byte, 0, len(p.BusId))
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	s := string(b)
	var domain, bus, dev, fn uint32
	if _, err := fmt.Sscanf(s, "%x:%x:%x.%x", &domain, &bus, &dev, &fn); err == nil {
		return fmt.Sprintf("%08x:%02x:%02x.%x", domain, bus, dev, fn)
	}
	if s != "" {
		return strings.ToLower(s)
	}
	return fmt.Sprintf("%08x:%02x:%02x.0", p.Domain, p.Bus, p.Device)
}
