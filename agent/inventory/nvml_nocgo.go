//go:build !cgo

package inventory

import (
	"context"
	"log/slog"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// NVML would read GPUs through the NVIDIA driver, but go-nvml needs cgo and
// this binary was built without it, so it reports zero GPUs and logs why
// once at info. Use --fake-gpus for development on such builds.
type NVML struct {
	log    *slog.Logger
	absent reasonLogger
}

var _ Source = (*NVML)(nil)

// NewNVML returns an NVML source that, without cgo, finds no GPUs. A nil
// log discards.
func NewNVML(log *slog.Logger) *NVML {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NVML{log: log}
}

// Inventory reports zero GPUs.
func (n *NVML) Inventory(ctx context.Context) (*stratav1.Inventory, error) {
	n.absent.log(n.log, "built without cgo: NVML is unavailable")
	return &stratav1.Inventory{}, nil
}
