package inventory

import (
	"context"
	"errors"
	"strings"
	"testing"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

func TestNewFake(t *testing.T) {
	tests := []struct {
		name  string
		fake  int
		wantN int // -1: whatever NVML finds on this machine
		err   bool
	}{
		{name: "fake replaces NVML", fake: 16, wantN: 16},
		{name: "no fakes uses NVML", fake: 0, wantN: -1},
		{name: "too many fakes", fake: MaxFakeGPUs + 1, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := New(nil, "node-1", tt.fake).Inventory(t.Context())
			if tt.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Inventory: %v", err)
			}
			if inv.GetHostname() == "" || inv.GetCpuCores() == 0 || inv.GetMemoryBytes() == 0 {
				t.Errorf("host facts missing: %v", inv)
			}
			if tt.wantN >= 0 && len(inv.GetGpus()) != tt.wantN {
				t.Errorf("got %d GPUs, want %d", len(inv.GetGpus()), tt.wantN)
			}
			if tt.fake > 0 && !strings.HasPrefix(inv.GetGpus()[0].GetUuid(), "GPU-fake-node-1-") {
				t.Errorf("uuid %q does not name the node", inv.GetGpus()[0].GetUuid())
			}
		})
	}
}

type failing struct{ err error }

func (f failing) Inventory(context.Context) (*stratav1.Inventory, error) { return nil, f.err }

func TestCompositeWrapsErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		c    *composite
		want string
	}{
		{"host", &composite{host: failing{boom}, gpus: Fake("n", 1)}, "inventory: host: boom"},
		{"gpus", &composite{host: NewHost(nil), gpus: failing{boom}}, "inventory: gpus: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Inventory(t.Context())
			if !errors.Is(err, boom) || err.Error() != tt.want {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}
