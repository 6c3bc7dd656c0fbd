package spec

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Marshal renders a valid spec in the YAML shape Parse reads, with every
// default spelled out, so that `strata ctl` can show a stored spec and an
// operator can edit and re-apply it: Parse(Marshal(s)) equals s.
//
// It refuses an invalid spec (the error wraps ErrInvalid) because the YAML
// shape cannot express every invalid proto, e.g. an aggregated spec with two
// pools, and a rendering that did not round-trip would mislead.
func Marshal(s *stratav1.DeploymentSpec) ([]byte, error) {
	if err := Validate(s); err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	mode := modeAggregated
	out := specYAML{
		Name:            s.Name,
		Model:           s.Model,
		ServedModelName: s.ServedModelName,
		Engine:          s.Engine,
		EngineArgs:      s.EngineArgs,
		Tokenizer:       s.Tokenizer,
		BlockSize:       ptr(s.BlockSize),
		Mode:            &mode,
		Routing:         s.Routing,
	}
	if s.Mode == stratav1.DeploymentMode_DEPLOYMENT_MODE_AGGREGATED {
		p := s.Pools[0]
		out.TensorParallelSize = ptr(p.TensorParallelSize)
		out.Replicas = replicasOut(p.Replicas)
	} else {
		mode = modeDisaggregated
		// Validate guarantees exactly a prefill then a decode pool.
		out.Pools = &poolsYAML{Prefill: poolOut(s.Pools[0]), Decode: poolOut(s.Pools[1])}
	}
	if s.Sla != nil {
		out.SLA = &slaYAML{TTFTMs: s.Sla.TtftMs, ITLMs: s.Sla.ItlMs}
	}

	var buf bytes.Buffer
	err := safeYAML(func() error {
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(&out); err != nil {
			return err
		}
		return enc.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("marshal deployment spec: %w", err)
	}
	return buf.Bytes(), nil
}

func ptr[T any](v T) *T { return &v }

func replicasOut(r *stratav1.Replicas) *replicasYAML {
	return &replicasYAML{Min: ptr(r.Min), Max: ptr(r.Max), Initial: ptr(r.Initial)}
}

func poolOut(p *stratav1.Pool) *poolYAML {
	return &poolYAML{
		TensorParallelSize: ptr(p.TensorParallelSize),
		Replicas:           replicasOut(p.Replicas),
		EngineArgs:         p.EngineArgs,
	}
}
