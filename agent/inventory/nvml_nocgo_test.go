//go:build !cgo

package inventory

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestNVMLWithoutCgo(t *testing.T) {
	var buf bytes.Buffer
	src := NewNVML(slog.New(slog.NewTextHandler(&buf, nil)))
	for range 2 {
		inv, err := src.Inventory(t.Context())
		if err != nil || len(inv.GetGpus()) != 0 {
			t.Fatalf("Inventory = %v, %v; want no GPUs and no error", inv, err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), "cgo") {
		t.Errorf("want one line naming cgo, got:\n%s", &buf)
	}
}
