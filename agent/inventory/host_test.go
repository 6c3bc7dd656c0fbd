package inventory

import (
	"slices"
	"testing"

	"github.com/shirou/gopsutil/v4/disk"
)

func TestHostThisMachine(t *testing.T) {
	inv, err := NewHost(nil).Inventory(t.Context())
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	if inv.GetHostname() == "" {
		t.Error("no hostname")
	}
	if inv.GetCpuCores() == 0 {
		t.Error("no CPUs")
	}
	if inv.GetMemoryBytes() == 0 {
		t.Error("no memory")
	}
	if len(inv.GetGpus()) != 0 {
		t.Errorf("host reported %d GPUs", len(inv.GetGpus()))
	}
	found := false
	for _, d := range inv.GetDisks() {
		if d.GetTotalBytes() > 0 {
			found = true
		}
		if d.GetFreeBytes() > d.GetTotalBytes() {
			t.Errorf("disk %s: free %d > total %d", d.GetPath(), d.GetFreeBytes(), d.GetTotalBytes())
		}
	}
	if !found {
		t.Errorf("no disk with space among %v", inv.GetDisks())
	}
}

func TestUsableDisks(t *testing.T) {
	p := func(dev, mnt, fs string, opts ...string) disk.PartitionStat {
		return disk.PartitionStat{Device: dev, Mountpoint: mnt, Fstype: fs, Opts: append([]string{"rw"}, opts...)}
	}
	ro := disk.PartitionStat{Device: "/dev/sdb1", Mountpoint: "/mnt/ro", Fstype: "ext4", Opts: []string{"ro"}}
	tests := []struct {
		name  string
		parts []disk.PartitionStat
		want  []string // mountpoints kept
	}{
		{
			name: "bare metal",
			parts: []disk.PartitionStat{
				p("/dev/nvme0n1p2", "/", "ext4"),
				p("proc", "/proc", "proc"),
				p("sysfs", "/sys", "sysfs"),
				p("tmpfs", "/dev/shm", "tmpfs"),
				p("/dev/nvme0n1p1", "/boot/efi", "vfat"),
				p("/dev/md0", "/raid", "xfs"),
				p("/dev/loop3", "/snap/core/1", "squashfs", "ro"),
				p("srv:/export", "/home", "nfs4"),
				ro,
			},
			want: []string{"/", "/raid"},
		},
		{
			name: "container with overlay root and a volume",
			parts: []disk.PartitionStat{
				p("overlay", "/", "overlay"),
				p("/dev/nvme1n1", "/var/lib/strata", "xfs"),
				p("/dev/nvme0n1p2", "/etc/hosts", "ext4", "bind"),
			},
			want: []string{"/", "/var/lib/strata"},
		},
		{
			name: "host with other containers' overlays",
			parts: []disk.PartitionStat{
				p("/dev/sda1", "/", "ext4"),
				p("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay"),
			},
			want: []string{"/"},
		},
		{
			name: "same device mounted twice",
			parts: []disk.PartitionStat{
				p("/dev/nvme1n1", "/data", "ext4"),
				p("/dev/nvme1n1", "/srv/data", "ext4"),
			},
			want: []string{"/data"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range usableDisks(tt.parts) {
				got = append(got, d.Mountpoint)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("usableDisks = %v, want %v", got, tt.want)
			}
		})
	}
}
