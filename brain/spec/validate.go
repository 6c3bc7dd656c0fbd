package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Limits a valid spec stays within. They are generous for real deployments
// and exist so that a typo (replicas: 10000, block_size: 16384) is caught at
// deploy time instead of by the placer or the engine.
const (
	defaultBlockSize          = 16
	maxBlockSize              = 1024
	maxTensorParallelSize     = 64
	maxReplicas               = 1024
	maxEngineArgs             = 256
	maxNameLen                = 63
	maxServedModelNameLen     = 256
	maxPathLen                = 4096 // model and tokenizer: ids or paths
	maxSLAMillis              = 600000
	defaultTensorParallelSize = 1
)

// engines are the engine kinds the agent has adapters for.
var engines = []string{"vllm", "sglang", "trtllm", "llamacpp", "sim"}

// RoutingPolicies are the routing policies gateways offer (a gateway test
// keeps this list equal to gateway.PolicyNames).
var RoutingPolicies = []string{"kv", "approx-kv", "least-loaded", "round-robin", "random", "session"}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ApplyDefaults fills the fields a spec may leave out, in place, so that the
// stored spec says explicitly what will run. It is idempotent and leaves a
// complete spec unchanged.
//
// Proto3 cannot tell an omitted number from 0, so here 0 means "default"
// only where 0 is never valid: block_size (16), a pool's
// tensor_parallel_size (1). A missing Replicas message becomes
// {min 1, max 1, initial 1}; a present one is taken as given (min and
// initial 0 are meaningful: scale to zero). Mode UNSPECIFIED becomes
// aggregated, and an aggregated spec without pools gets its one BOTH pool.
// Disaggregated pools are put in prefill, decode order. Parse applies the
// finer YAML defaults (which know whether a key was given) before this.
func ApplyDefaults(s *stratav1.DeploymentSpec) {
	if s == nil {
		return
	}
	if s.ServedModelName == "" {
		s.ServedModelName = s.Name
	}
	// vLLM's tokenizer is the model's unless named. A simulated engine's
	// model names nothing on disk: its default is the built-in byte-level
	// tokenizer, which an empty tokenizer means.
	if s.Tokenizer == "" && s.Engine != "sim" {
		s.Tokenizer = s.Model
	}
	if s.BlockSize == 0 {
		s.BlockSize = defaultBlockSize
	}
	if s.Mode == stratav1.DeploymentMode_DEPLOYMENT_MODE_UNSPECIFIED {
		s.Mode = stratav1.DeploymentMode_DEPLOYMENT_MODE_AGGREGATED
	}
	aggregated := s.Mode == stratav1.DeploymentMode_DEPLOYMENT_MODE_AGGREGATED
	if aggregated && len(s.Pools) == 0 {
		s.Pools = []*stratav1.Pool{{Role: stratav1.WorkerRole_WORKER_ROLE_BOTH}}
	}
	for _, p := range s.Pools {
		if p == nil {
			continue
		}
		if aggregated && p.Role == stratav1.WorkerRole_WORKER_ROLE_UNSPECIFIED {
			p.Role = stratav1.WorkerRole_WORKER_ROLE_BOTH
		}
		if p.TensorParallelSize == 0 {
			p.TensorParallelSize = defaultTensorParallelSize
		}
		if p.Replicas == nil {
			p.Replicas = &stratav1.Replicas{Min: 1, Max: 1, Initial: 1}
		}
	}
	if s.Mode == stratav1.DeploymentMode_DEPLOYMENT_MODE_DISAGGREGATED {
		slices.SortStableFunc(s.Pools, func(a, b *stratav1.Pool) int {
			return disaggOrder(a) - disaggOrder(b)
		})
	}
}

// disaggOrder ranks pools prefill, decode, anything else, missing.
func disaggOrder(p *stratav1.Pool) int {
	switch {
	case p == nil:
		return 3
	case p.Role == stratav1.WorkerRole_WORKER_ROLE_PREFILL:
		return 0
	case p.Role == stratav1.WorkerRole_WORKER_ROLE_DECODE:
		return 1
	}
	return 2
}

// Validate checks a complete spec (ApplyDefaults already applied), as it
// arrives over gRPC or out of Parse. It reports every problem, each with its
// field path (e.g. "pools[decode].replicas: min 3 > max 2"), joined into one
// error that wraps ErrInvalid; nil when the spec is valid.
func Validate(s *stratav1.DeploymentSpec) error {
	return invalid(validate(s))
}

func validate(s *stratav1.DeploymentSpec) []error {
	if s == nil {
		return []error{errorf("", "no spec")}
	}
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, errorf(path, format, args...))
	}

	switch {
	case s.Name == "":
		fail("name", "required")
	case len(s.Name) > maxNameLen:
		fail("name", "at most %d characters, got %d", maxNameLen, len(s.Name))
	case !dnsLabel.MatchString(s.Name):
		fail("name", "%q is not a DNS label (lower-case letters, digits and '-', starting and ending with a letter or digit)", s.Name)
	}

	checkPath := func(path, v string) {
		switch {
		case v == "":
			fail(path, "required")
		case len(v) > maxPathLen:
			fail(path, "at most %d bytes, got %d", maxPathLen, len(v))
		case !utf8.ValidString(v):
			fail(path, "must be valid UTF-8")
		case strings.IndexFunc(v, unicode.IsControl) >= 0:
			fail(path, "must not contain control characters")
		}
	}
	checkPath("model", s.Model)
	if s.Tokenizer != "" || s.Engine != "sim" {
		checkPath("tokenizer", s.Tokenizer)
	}

	switch n := utf8.RuneCountInString(s.ServedModelName); {
	case s.ServedModelName == "":
		fail("served_model_name", "required")
	case n > maxServedModelNameLen:
		fail("served_model_name", "at most %d characters, got %d", maxServedModelNameLen, n)
	case !utf8.ValidString(s.ServedModelName):
		fail("served_model_name", "must be valid UTF-8")
	case strings.IndexFunc(s.ServedModelName, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		fail("served_model_name", "%q must not contain whitespace or control characters", s.ServedModelName)
	}

	switch {
	case s.Engine == "":
		fail("engine", "required (one of %s)", strings.Join(engines, ", "))
	case !slices.Contains(engines, s.Engine):
		fail("engine", "unknown engine %q (want one of %s)", s.Engine, strings.Join(engines, ", "))
	}
	if s.Routing != "" && !slices.Contains(RoutingPolicies, s.Routing) {
		fail("routing", "unknown routing policy %q (want one of %s)", s.Routing, strings.Join(RoutingPolicies, ", "))
	}
	errs = append(errs, validateArgs("engine_args", s.EngineArgs)...)

	if s.BlockSize < 1 || s.BlockSize > maxBlockSize {
		fail("block_size", "must be between 1 and %d, got %d", maxBlockSize, s.BlockSize)
	}

	if s.Sla != nil {
		if s.Sla.TtftMs > maxSLAMillis {
			fail("sla.ttft_ms", "at most %d, got %d", maxSLAMillis, s.Sla.TtftMs)
		}
		if s.Sla.ItlMs > maxSLAMillis {
			fail("sla.itl_ms", "at most %d, got %d", maxSLAMillis, s.Sla.ItlMs)
		}
	}

	errs = append(errs, validatePools(s)...)
	return errs
}

func validateArgs(path string, args []string) []error {
	if len(args) > maxEngineArgs {
		return []error{errorf(path, "at most %d entries, got %d", maxEngineArgs, len(args))}
	}
	var errs []error
	for i, a := range args {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case a == "":
			errs = append(errs, errorf(p, "must not be empty"))
		case strings.IndexByte(a, 0) >= 0:
			errs = append(errs, errorf(p, "must not contain NUL bytes"))
		case !utf8.ValidString(a):
			errs = append(errs, errorf(p, "must be valid UTF-8"))
		}
	}
	return errs
}

func roleName(r stratav1.WorkerRole) string {
	return strings.TrimPrefix(strings.ToLower(r.String()), "worker_role_")
}

func validatePools(s *stratav1.DeploymentSpec) []error {
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, errorf(path, format, args...))
	}

	// Name a pool by its role when that is unambiguous, else by index.
	count := map[stratav1.WorkerRole]int{}
	for _, p := range s.Pools {
		if p != nil {
			count[p.Role]++
		}
	}
	name := func(i int, p *stratav1.Pool) string {
		switch p.Role {
		case stratav1.WorkerRole_WORKER_ROLE_BOTH, stratav1.WorkerRole_WORKER_ROLE_PREFILL, stratav1.WorkerRole_WORKER_ROLE_DECODE:
			if count[p.Role] == 1 {
				return fmt.Sprintf("pools[%s]", roleName(p.Role))
			}
		}
		return fmt.Sprintf("pools[%d]", i)
	}

	switch s.Mode {
	case stratav1.DeploymentMode_DEPLOYMENT_MODE_AGGREGATED:
		if len(s.Pools) != 1 {
			fail("pools", "aggregated mode needs exactly one pool (role both), got %d", len(s.Pools))
		}
		for i, p := range s.Pools {
			if p == nil {
				continue
			}
			if p.Role != stratav1.WorkerRole_WORKER_ROLE_BOTH {
				fail(name(i, p)+".role", "must be both in aggregated mode, got %s", roleName(p.Role))
			}
			if len(p.EngineArgs) > 0 {
				fail(name(i, p)+".engine_args", "must be empty in aggregated mode (use the top-level engine_args)")
			}
		}
	case stratav1.DeploymentMode_DEPLOYMENT_MODE_DISAGGREGATED:
		seen := map[stratav1.WorkerRole]bool{}
		for i, p := range s.Pools {
			if p == nil {
				continue
			}
			switch p.Role {
			case stratav1.WorkerRole_WORKER_ROLE_PREFILL, stratav1.WorkerRole_WORKER_ROLE_DECODE:
				if seen[p.Role] {
					fail(name(i, p)+".role", "duplicate role %s", roleName(p.Role))
				}
				seen[p.Role] = true
			default:
				fail(name(i, p)+".role", "must be prefill or decode in disaggregated mode, got %s", roleName(p.Role))
			}
		}
		for _, r := range []stratav1.WorkerRole{stratav1.WorkerRole_WORKER_ROLE_PREFILL, stratav1.WorkerRole_WORKER_ROLE_DECODE} {
			if !seen[r] {
				fail("pools", "disaggregated mode needs a %s pool", roleName(r))
			}
		}
		if len(s.Pools) == 2 && s.Pools[0] != nil && s.Pools[1] != nil &&
			s.Pools[0].Role == stratav1.WorkerRole_WORKER_ROLE_DECODE &&
			s.Pools[1].Role == stratav1.WorkerRole_WORKER_ROLE_PREFILL {
			fail("pools", "the prefill pool must come before the decode pool")
		}
	default:
		fail("mode", "must be aggregated or disaggregated, got %s", s.Mode)
	}

	for i, p := range s.Pools {
		if p == nil {
			fail(fmt.Sprintf("pools[%d]", i), "missing")
			continue
		}
		path := name(i, p)
		if p.TensorParallelSize < 1 || p.TensorParallelSize > maxTensorParallelSize {
			fail(path+".tensor_parallel_size", "must be between 1 and %d, got %d", maxTensorParallelSize, p.TensorParallelSize)
		}
		errs = append(errs, validateArgs(path+".engine_args", p.EngineArgs)...)
		r := p.Replicas
		rp := path + ".replicas"
		switch {
		case r == nil:
			fail(rp, "required")
		case r.Max < 1:
			fail(rp+".max", "must be at least 1, got %d", r.Max)
		case r.Min > r.Max:
			fail(rp, "min %d > max %d", r.Min, r.Max)
		case r.Initial < r.Min:
			fail(rp, "initial %d < min %d", r.Initial, r.Min)
		case r.Initial > r.Max:
			fail(rp, "initial %d > max %d", r.Initial, r.Max)
		}
		if r != nil && r.Max > maxReplicas {
			fail(rp+".max", "at most %d, got %d", maxReplicas, r.Max)
		}
	}
	return errs
}
