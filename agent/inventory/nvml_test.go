//go:build cgo

package inventory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// Link ends in a machine description besides local GPU indices.
const (
	toSwitch = -1 // an active link to an NVSwitch
	inactive = -2 // a link that is down
)

// machine describes a node for the NVML mock.
type machine struct {
	n int
	// links[i] are the ends of device i's links, one entry per link.
	links map[int][]int
	// noNVLink devices answer every NVLink query with ERROR_NOT_SUPPORTED.
	noNVLink map[int]bool
	// fail makes device i's call named by the key return the value.
	fail map[string]nvml.Return
}

func busOf(i int) string { return fmt.Sprintf("00000000:%02X:00.0", 0x18+i) }

func pciInfo(bus string) nvml.PciInfo {
	var p nvml.PciInfo
	for k, c := range []byte(bus) {
		p.BusId[k] = int8(c)
	}
	return p
}

func (m machine) failure(i int, call string) nvml.Return {
	if r, ok := m.fail[fmt.Sprintf("%d/%s", i, call)]; ok {
		return r
	}
	return nvml.SUCCESS
}

func (m machine) device(i int) *mock.Device {
	links := m.links[i]
	return &mock.Device{
		GetUUIDFunc: func() (string, nvml.Return) {
			return fmt.Sprintf("GPU-%d", i), m.failure(i, "uuid")
		},
		GetNameFunc: func() (string, nvml.Return) { return "NVIDIA H100 80GB HBM3", nvml.SUCCESS },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: 80 << 30}, nvml.SUCCESS
		},
		GetPciInfoFunc: func() (nvml.PciInfo, nvml.Return) { return pciInfo(busOf(i)), nvml.SUCCESS },
		GetNvLinkStateFunc: func(link int) (nvml.EnableState, nvml.Return) {
			if r := m.failure(i, "nvlink"); r != nvml.SUCCESS {
				return 0, r
			}
			switch {
			case m.noNVLink[i]:
				return 0, nvml.ERROR_NOT_SUPPORTED
			case link >= len(links):
				return 0, nvml.ERROR_INVALID_ARGUMENT
			case links[link] == inactive:
				return nvml.FEATURE_DISABLED, nvml.SUCCESS
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		},
		GetNvLinkRemotePciInfoFunc: func(link int) (nvml.PciInfo, nvml.Return) {
			if links[link] == toSwitch {
				return pciInfo("00000000:C5:00.0"), nvml.SUCCESS
			}
			// The remote end in the legacy 4-digit-domain, lower-case form.
			return pciInfo(strings.ToLower(busOf(links[link])[4:])), nvml.SUCCESS
		},
		GetNvLinkRemoteDeviceTypeFunc: func(link int) (nvml.IntNvLinkDeviceType, nvml.Return) {
			if links[link] == toSwitch {
				return nvml.NVLINK_DEVICE_TYPE_SWITCH, nvml.SUCCESS
			}
			return nvml.NVLINK_DEVICE_TYPE_GPU, nvml.SUCCESS
		},
	}
}

// lib returns the mock library and a pointer to its Init/Shutdown balance.
func (m machine) lib(initRet nvml.Return) (*mock.Interface, *int) {
	open := 0
	devs := make([]*mock.Device, m.n)
	for i := range devs {
		devs[i] = m.device(i)
	}
	return &mock.Interface{
		InitFunc: func() nvml.Return {
			if initRet == nvml.SUCCESS {
				open++
			}
			return initRet
		},
		ShutdownFunc:       func() nvml.Return { open--; return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return m.n, nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if r := m.failure(i, "handle"); r != nvml.SUCCESS {
				return nil, r
			}
			return devs[i], nvml.SUCCESS
		},
	}, &open
}

// mesh links every GPU in each group to every other in it, twice (as NVLink
// bundles do), and adds down links up to 18 per GPU.
func mesh(groups ...[]int) map[int][]int {
	links := make(map[int][]int)
	for _, g := range groups {
		for _, i := range g {
			for _, j := range g {
				if i != j {
					links[i] = append(links[i], j, j)
				}
			}
			for len(links[i]) < 18 {
				links[i] = append(links[i], inactive)
			}
		}
	}
	return links
}

func uuids(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, fmt.Sprintf("GPU-%d", i))
	}
	return out
}

func others(group []int, self int) []string {
	return uuids(slices.DeleteFunc(slices.Clone(group), func(j int) bool { return j == self })...)
}

func TestNVML(t *testing.T) {
	all8 := []int{0, 1, 2, 3, 4, 5, 6, 7}
	lo, hi := []int{0, 1, 2, 3}, []int{4, 5, 6, 7}
	switchLinks := make(map[int][]int)
	for i := range 8 {
		switchLinks[i] = slices.Repeat([]int{toSwitch}, 18)
	}

	tests := []struct {
		name    string
		m       machine
		initRet nvml.Return
		// peers[i] are GPU i's expected peers; nil entries mean none.
		peers   map[int][]string
		wantN   int
		wantErr []string // substrings of the error
		wantIs  nvml.Return
	}{
		{
			name:  "full mesh of 8",
			m:     machine{n: 8, links: mesh(all8)},
			wantN: 8,
			peers: func() map[int][]string {
				p := map[int][]string{}
				for _, i := range all8 {
					p[i] = others(all8, i)
				}
				return p
			}(),
		},
		{
			name:  "4+4 split",
			m:     machine{n: 8, links: mesh(lo, hi)},
			wantN: 8,
			peers: func() map[int][]string {
				p := map[int][]string{}
				for _, g := range [][]int{lo, hi} {
					for _, i := range g {
						p[i] = others(g, i)
					}
				}
				return p
			}(),
		},
		{
			name:  "NVSwitch fabric of 8",
			m:     machine{n: 8, links: switchLinks},
			wantN: 8,
			peers: func() map[int][]string {
				p := map[int][]string{}
				for _, i := range all8 {
					p[i] = others(all8, i)
				}
				return p
			}(),
		},
		{
			name:  "NVLink not supported",
			m:     machine{n: 2, noNVLink: map[int]bool{0: true, 1: true}},
			wantN: 2,
		},
		{
			name:  "one PCIe GPU beside a linked pair",
			m:     machine{n: 3, links: mesh([]int{0, 1}), noNVLink: map[int]bool{2: true}},
			wantN: 3,
			peers: map[int][]string{0: uuids(1), 1: uuids(0)},
		},
		{name: "no driver library", m: machine{n: 8}, initRet: nvml.ERROR_LIBRARY_NOT_FOUND},
		{name: "driver not loaded", m: machine{n: 8}, initRet: nvml.ERROR_DRIVER_NOT_LOADED},
		{
			name:    "uuid fails on device 3",
			m:       machine{n: 8, links: mesh(all8), fail: map[string]nvml.Return{"3/uuid": nvml.ERROR_GPU_IS_LOST}},
			wantErr: []string{"device 3", "uuid"},
			wantIs:  nvml.ERROR_GPU_IS_LOST,
		},
		{
			name:    "handle fails on device 5",
			m:       machine{n: 8, links: mesh(all8), fail: map[string]nvml.Return{"5/handle": nvml.ERROR_NO_PERMISSION}},
			wantErr: []string{"device 5", "handle"},
			wantIs:  nvml.ERROR_NO_PERMISSION,
		},
		{
			name:    "nvlink query fails on device 6",
			m:       machine{n: 8, links: mesh(all8), fail: map[string]nvml.Return{"6/nvlink": nvml.ERROR_UNKNOWN}},
			wantErr: []string{"device 6", "nvlink 0"},
			wantIs:  nvml.ERROR_UNKNOWN,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lib, open := tt.m.lib(tt.initRet)
			inv, err := newNVML(nil, lib).Inventory(t.Context())
			if *open != 0 {
				t.Errorf("Init/Shutdown unbalanced: %d", *open)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, want one containing %q", tt.wantErr)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if !errors.Is(err, tt.wantIs) {
					t.Errorf("error %q is not %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Inventory: %v", err)
			}
			if got := len(inv.GetGpus()); got != tt.wantN {
				t.Fatalf("got %d GPUs, want %d", got, tt.wantN)
			}
			for i, g := range inv.GetGpus() {
				if g.GetUuid() != fmt.Sprintf("GPU-%d", i) || g.GetIndex() != uint32(i) ||
					g.GetModel() != "NVIDIA H100 80GB HBM3" || g.GetMemoryBytes() != 80<<30 {
					t.Errorf("GPU %d = %v", i, g)
				}
				if !slices.Equal(g.GetNvlinkPeers(), tt.peers[i]) {
					t.Errorf("GPU %d peers = %v, want %v", i, g.GetNvlinkPeers(), tt.peers[i])
				}
			}
		})
	}
}

func TestNVMLUnavailableLogsOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	lib, _ := machine{}.lib(nvml.ERROR_DRIVER_NOT_LOADED)
	src := newNVML(log, lib)
	for range 3 {
		inv, err := src.Inventory(context.Background())
		if err != nil || len(inv.GetGpus()) != 0 {
			t.Fatalf("Inventory = %v, %v; want no GPUs and no error", inv, err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("logged %d lines, want 1:\n%s", n, &buf)
	}
	if !strings.Contains(buf.String(), "level=INFO") || !strings.Contains(buf.String(), "ERROR_DRIVER_NOT_LOADED") {
		t.Errorf("log does not say why at info:\n%s", &buf)
	}
}

func TestBusID(t *testing.T) {
	tests := []struct {
		in   nvml.PciInfo
		want string
	}{
		{pciInfo("00000000:18:00.0"), "00000000:18:00.0"},
		{pciInfo("0000:18:00.0"), "00000000:18:00.0"},
		{pciInfo("00000001:AB:1F.1"), "00000001:ab:1f.1"},
		{nvml.PciInfo{Domain: 2, Bus: 0x3b, Device: 4}, "00000002:3b:04.0"},
	}
	for _, tt := range tests {
		if got := busID(tt.in); got != tt.want {
			t.Errorf("busID(%v) = %q, want %q", tt.in.BusId, got, tt.want)
		}
	}
}
