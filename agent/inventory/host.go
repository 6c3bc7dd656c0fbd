package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Host is a Source of the node's own facts: hostname, logical CPUs, memory
// and the local disks the NVMe KV tier could use. It reports no GPUs.
type Host struct {
	log *slog.Logger
}

var _ Source = (*Host)(nil)

// NewHost returns a Host source. A nil log discards.
func NewHost(log *slog.Logger) *Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Host{log: log}
}

// Inventory reports everything but Gpus.
func (h *Host) Inventory(ctx context.Context) (*stratav1.Inventory, error) {
	// gopsutil's host.Info also reads os.Hostname, but probes much else
	// (boot time, virtualisation) that can fail in containers.
	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	cores, err := cpu.CountsWithContext(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("cpu count: %w", err)
	}
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	disks, err := h.disks(ctx)
	if err != nil {
		return nil, err
	}
	return &stratav1.Inventory{
		Hostname:    hostname,
		CpuCores:    uint32(cores),
		MemoryBytes: vm.Total,
		Disks:       disks,
	}, nil
}

func (h *Host) disks(ctx context.Context) ([]*stratav1.Disk, error) {
	parts, err := disk.PartitionsWithContext(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("disk partitions: %w", err)
	}
	var disks []*stratav1.Disk
	for _, p := range usableDisks(parts) {
		u, err := disk.UsageWithContext(ctx, p.Mountpoint)
		if err != nil {
			// A mount we may not stat (permissions, a dead device) is not
			// one the KV tier could use either.
			h.log.Debug("skipping disk", "path", p.Mountpoint, "error", err)
			continue
		}
		if u.Total == 0 {
			continue
		}
		// Free is what an unprivileged writer may use (f_bavail), which is
		// what the KV tier would get.
		disks = append(disks, &stratav1.Disk{Path: p.Mountpoint, TotalBytes: u.Total, FreeBytes: u.Free})
	}
	slices.SortFunc(disks, func(a, b *stratav1.Disk) int { return strings.Compare(a.Path, b.Path) })
	return disks, nil
}

// localFS are the filesystem types that count as disks: local,
// block-device-backed filesystems that an NVMe KV tier could live on.
// Everything else is left out: pseudo filesystems (proc, sysfs, cgroup,
// devtmpfs, ...), tmpfs (it is RAM, which the DRAM tier already accounts
// for), read-only images (squashfs, iso9660), the EFI partition (vfat),
// and network filesystems (nfs, cephfs, lustre), which are not local NVMe.
var localFS = map[string]bool{
	"ext2": true, "ext3": true, "ext4": true,
	"xfs": true, "btrfs": true, "zfs": true, "f2fs": true, "bcachefs": true,
}

// usableDisks keeps the mounts that count as disks, in mount order: a
// read-write mount of a [localFS] filesystem, or an overlay mounted at "/"
// (the agent runs in a container whose root is the only writable disk; other
// overlays are other containers' roots and are skipped). Bind mounts (Docker's
// /etc/hosts and the like) and further mounts of an already kept device are
// skipped so that no space is counted twice.
func usableDisks(parts []disk.PartitionStat) []disk.PartitionStat {
	var keep []disk.PartitionStat
	seen := make(map[string]bool)
	for _, p := range parts {
		if !localFS[p.Fstype] && (p.Fstype != "overlay" || p.Mountpoint != "/") {
			continue
		}
		if slices.Contains(p.Opts, "ro") || slices.Contains(p.Opts, "bind") {
			continue
		}
		if seen[p.Device] {
			continue
		}
		seen[p.Device] = true
		keep = append(keep, p)
	}
	return keep
}
