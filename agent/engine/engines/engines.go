// Package engines maps a deployment's engine kind to its adapter.
//
// It is separate from package engine because it imports every adapter, and
// the adapters import engine: keeping the registry here avoids the cycle and
// lets code that only needs the interface (tests, the KV event ingester)
// depend on engine alone.
package engines

import (
	"errors"
	"fmt"
	"strings"

	"github.com/strata-llm/strata/agent/engine"
	"github.com/strata-llm/strata/agent/engine/llamacpp"
	"github.com/strata-llm/strata/agent/engine/sglang"
	"github.com/strata-llm/strata/agent/engine/sim"
	"github.com/strata-llm/strata/agent/engine/trtllm"
	"github.com/strata-llm/strata/agent/engine/vllm"
)

// ErrUnknownKind is wrapped by Lookup for a kind no adapter serves.
var ErrUnknownKind = errors.New("unknown engine kind")

// Kinds are the engine kinds Lookup knows, sorted.
func Kinds() []string {
	return []string{llamacpp.Kind, sglang.Kind, sim.Kind, trtllm.Kind, vllm.Kind}
}

// Lookup returns the adapter of an engine kind (DeploymentSpec.engine).
// Kinds are matched exactly: the brain validates specs, so a kind in another
// case is a bug to surface, not to guess at.
func Lookup(kind string) (engine.Adapter, error) {
	switch kind {
	case vllm.Kind:
		return vllm.New(), nil
	case sglang.Kind:
		return sglang.New(), nil
	case trtllm.Kind:
		return trtllm.New(), nil
	case llamacpp.Kind:
		return llamacpp.New(), nil
	case sim.Kind:
		return sim.New(), nil
	}
	return nil, fmt.Errorf("%w %q: want one of %s", ErrUnknownKind, kind, strings.Join(Kinds(), ", "))
}
