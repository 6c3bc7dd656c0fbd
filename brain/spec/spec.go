// Package spec parses, defaults and validates Strata deployment specs.
//
// A deployment spec reaches the brain two ways: as a YAML file an operator
// wrote (`strata ctl deploy -f`), and as a stratav1.DeploymentSpec over gRPC.
// Both paths end in the same proto, the same defaults (ApplyDefaults) and the
// same checks (Validate), so that what the brain commits to its Raft log is
// always complete and valid, whoever sent it. Marshal renders a spec back into
// the YAML shape, so that a stored spec can be shown and re-applied.
//
// The YAML shape is deliberately strict: an unknown or misspelt key, a value
// of the wrong type or a fractional number is rejected with its line rather
// than ignored, because a silently dropped "replicas" or a "block_size: 16.5"
// read as 16 would only surface later as a wrongly sized deployment.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// ErrInvalid is wrapped by every error Parse, Validate and Marshal return
// for a bad spec, so that callers (the brain's gRPC handlers, strata ctl)
// can tell "the operator's spec is wrong" from an internal failure with
// errors.Is and answer InvalidArgument.
var ErrInvalid = errors.New("invalid deployment spec")

// MaxSize is the largest YAML input Parse accepts. A real spec is well under
// a kilobyte; the cap bounds the memory and time an accidental or hostile
// input (a huge file, a deeply nested or alias-heavy document) can cost.
const MaxSize = 1 << 20

// specYAML is the documented YAML shape of a deployment spec. Pointer fields
// distinguish "not given" (default applies) from an explicit value.
type specYAML struct {
	Name               string        `yaml:"name"`
	Model              string        `yaml:"model"`
	ServedModelName    string        `yaml:"served_model_name,omitempty"`
	Engine             string        `yaml:"engine"`
	EngineArgs         []string      `yaml:"engine_args,flow,omitempty"`
	Tokenizer          string        `yaml:"tokenizer,omitempty"`
	BlockSize          *uint32       `yaml:"block_size,omitempty"`
	TensorParallelSize *uint32       `yaml:"tensor_parallel_size,omitempty"`
	Mode               *string       `yaml:"mode,omitempty"`
	Replicas           *replicasYAML `yaml:"replicas,flow,omitempty"`
	Pools              *poolsYAML    `yaml:"pools,omitempty"`
	SLA                *slaYAML      `yaml:"sla,flow,omitempty"`
	Routing            string        `yaml:"routing,omitempty"`
}

type replicasYAML struct {
	Min     *uint32 `yaml:"min,omitempty"`
	Max     *uint32 `yaml:"max,omitempty"`
	Initial *uint32 `yaml:"initial,omitempty"`
}

type poolsYAML struct {
	Prefill *poolYAML `yaml:"prefill,omitempty"`
	Decode  *poolYAML `yaml:"decode,omitempty"`
}

type poolYAML struct {
	TensorParallelSize *uint32       `yaml:"tensor_parallel_size,omitempty"`
	Replicas           *replicasYAML `yaml:"replicas,flow,omitempty"`
	EngineArgs         []string      `yaml:"engine_args,flow,omitempty"`
}

type slaYAML struct {
	TTFTMs uint32 `yaml:"ttft_ms,omitempty"`
	ITLMs  uint32 `yaml:"itl_ms,omitempty"`
}

const (
	modeAggregated    = "aggregated"
	modeDisaggregated = "disaggregated"
)

// fieldError is one problem with a spec: where (YAML line when known, field
// path) and what.
type fieldError struct {
	line int
	path string
	msg  string
}

func (e *fieldError) Error() string {
	var b strings.Builder
	if e.line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.line)
	}
	if e.path != "" {
		b.WriteString(e.path)
		b.WriteString(": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

func errorf(path, format string, args ...any) *fieldError {
	return &fieldError{path: path, msg: fmt.Sprintf(format, args...)}
}

// invalid joins problems under ErrInvalid; nil when there are none.
func invalid(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// Parse parses one YAML document in the documented shape into a
// DeploymentSpec, applies the defaults and validates it. Every error wraps
// ErrInvalid and says, where it can, the line and the field at fault; all
// problems found are reported together.
func Parse(data []byte) (*stratav1.DeploymentSpec, error) {
	if len(data) > MaxSize {
		return nil, invalid([]error{fmt.Errorf("input is %d bytes, more than the %d byte limit", len(data), MaxSize)})
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, invalid([]error{errors.New("empty input")})
	}
	root, err := parseDocument(data)
	if err != nil {
		return nil, invalid([]error{err})
	}

	w := &walker{lines: map[string]int{}}
	w.structValue(root, reflect.TypeFor[specYAML](), "")
	if len(w.errs) > 0 {
		return nil, invalid(w.errs)
	}

	// The walk checked keys, kinds and ranges with friendly messages; the
	// strict decoder still rejects, with its line, anything the walk missed.
	var raw specYAML
	if err := safeYAML(func() error {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		return dec.Decode(&raw)
	}); err != nil {
		return nil, invalid(yamlErrors(err))
	}

	s, errs := raw.toProto(w.lines)
	ApplyDefaults(s)
	for _, e := range validate(s) {
		// Re-address the problem in YAML terms: pools[decode].replicas is
		// pools.decode.replicas in the file, pools[both].replicas is the
		// top-level replicas.
		if fe, ok := e.(*fieldError); ok {
			fe.path = yamlPath(fe.path)
			fe.line = lookupLine(w.lines, fe.path)
		}
		errs = append(errs, e)
	}
	if err := invalid(errs); err != nil {
		return nil, err
	}
	return s, nil
}

// parseDocument returns the top-level mapping of the single document in data.
func parseDocument(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	var extra yaml.Node
	var firstErr, secondErr error
	if err := safeYAML(func() error {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		firstErr = dec.Decode(&doc)
		if firstErr == nil {
			secondErr = dec.Decode(&extra)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	switch {
	case errors.Is(firstErr, io.EOF):
		return nil, errors.New("no YAML document in input (only comments or directives)")
	case firstErr != nil:
		return nil, cleanYAMLError(firstErr)
	case secondErr == nil:
		return nil, fmt.Errorf("line %d: a second YAML document starts here; a spec file holds exactly one document", extra.Line)
	case !errors.Is(secondErr, io.EOF):
		return nil, cleanYAMLError(secondErr)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("no YAML document in input")
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return nil, errors.New("the document is empty")
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the top level must be a mapping of spec fields, got %s", root.Line, describe(root))
	}
	return doc.Content[0], nil
}

// safeYAML runs a yaml.v3 call and turns a panic inside the library into an
// error: a malformed spec must never take the brain or strata ctl down.
func safeYAML(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML library failed on this input: %v", r)
		}
	}()
	return f()
}

func cleanYAMLError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// yamlErrors splits a yaml.v3 decoding error into one error per problem
// (each already says "line N: ...").
func yamlErrors(err error) []error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []error{cleanYAMLError(err)}
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		errs = append(errs, errors.New(msg))
	}
	return errs
}

// maxWalkErrors bounds how many problems the key walk reports, so that a
// large garbage document gives a readable error instead of a huge one.
const maxWalkErrors = 20

// walker checks a document against the YAML shape before decoding it:
// unknown and duplicate keys, and values of the wrong kind, each with its
// line and field path. It records the line of every key it accepts so that
// later errors can point into the file.
//
// It descends only where the shape has a nested struct, which bounds its
// work by the (small, fixed) depth of the shape, whatever aliases the
// document uses.
type walker struct {
	errs  []error
	lines map[string]int
	// walked holds the mappings already checked against a type: a mapping
	// reached again through an alias or a merge is not walked again, which
	// keeps the walk linear in the document however aliases fan out.
	walked map[walkKey]bool
}

type walkKey struct {
	n *yaml.Node
	t reflect.Type
}

func (w *walker) fail(line int, path, format string, args ...any) {
	if len(w.errs) == maxWalkErrors {
		w.errs = append(w.errs, errors.New("too many problems, stopping"))
	}
	if len(w.errs) > maxWalkErrors {
		return
	}
	w.errs = append(w.errs, &fieldError{line: line, path: path, msg: fmt.Sprintf(format, args...)})
}

func (w *walker) structValue(n *yaml.Node, t reflect.Type, path string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		w.fail(n.Line, path, "want a mapping, got %s", describe(n))
		return
	}
	w.mapping(n, t, path)
}

// mapping checks the keys of n (and of any mappings merged into it with
// "<<") against the yaml tags of struct type t.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	key := walkKey{n, t}
	if w.walked[key] {
		return
	}
	if w.walked == nil {
		w.walked = map[walkKey]bool{}
	}
	w.walked[key] = true
	fields := yamlFields(t)
	seen := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.fail(k.Line, path, "keys must be plain strings, got %s", describe(k))
			return
		}
		name := k.Value
		f, ok := fields[name]
		if !ok {
			w.fail(k.Line, "", "unknown field %s%s%s", quoteKey(name), inPath(path), suggest(name, fields))
			return
		}
		if first, dup := seen[name]; dup {
			w.fail(k.Line, join(path, name), "given twice (first at line %d)", first)
			return
		}
		seen[name] = k.Line
		p := join(path, name)
		if _, ok := w.lines[p]; !ok {
			w.lines[p] = k.Line
		}
		w.value(v, f.Type, p)
	}
	for _, m := range merges {
		m = resolve(m)
		switch m.Kind {
		case yaml.MappingNode:
			w.mapping(m, t, path)
		case yaml.SequenceNode:
			for _, e := range m.Content {
				e = resolve(e)
				if e.Kind != yaml.MappingNode {
					w.fail(e.Line, path, "a merge (<<) needs mappings, got %s", describe(e))
					return
				}
				w.mapping(e, t, path)
			}
		default:
			w.fail(m.Line, path, "a merge (<<) needs a mapping, got %s", describe(m))
		}
	}
}

func (w *walker) value(n *yaml.Node, t reflect.Type, path string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		w.structValue(n, t, path)
	case reflect.Uint32:
		var u uint32
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || safeYAML(func() error { return n.Decode(&u) }) != nil {
			w.fail(n.Line, path, "want a whole number from 0 to %d, got %s", uint32(math.MaxUint32), describe(n))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n.Line, path, "want a list of strings, got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			if e = resolve(e); e.Kind != yaml.ScalarNode {
				w.fail(e.Line, fmt.Sprintf("%s[%d]", path, i), "want a string, got %s", describe(e))
				return
			}
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.fail(n.Line, path, "want a string, got %s", describe(n))
		}
	}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's kind and, for a scalar, its (shortened) value.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if r := []rune(v); len(r) > 24 {
		v = string(r[:21]) + "..."
	}
	kind := map[string]string{
		"!!str": "string", "!!int": "integer", "!!float": "number", "!!bool": "boolean",
		"!!null": "null", "!!timestamp": "timestamp", "!!binary": "binary",
	}[n.ShortTag()]
	if kind == "" {
		kind = n.ShortTag()
	}
	return fmt.Sprintf("%s %s", kind, strconv.Quote(v))
}

func quoteKey(k string) string {
	if r := []rune(k); len(r) > 64 {
		k = string(r[:61]) + "..."
	}
	return strconv.Quote(k)
}

func inPath(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// yamlFields maps the yaml keys of struct type t to their fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fields[name] = f
	}
	return fields
}

// suggest offers the known key closest to a misspelt one.
func suggest(name string, fields map[string]reflect.StructField) string {
	if len(name) > 64 {
		return ""
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	best, bestDist := "", 3
	for _, k := range keys {
		if d := editDistance(strings.ToLower(name), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return " (known: " + strings.Join(keys, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// toProto maps the YAML shape onto the proto. It applies the defaults that
// need to know whether a YAML key was given (replicas), and reports the
// problems only the YAML shape can have (mode and pools/replicas placement,
// explicit zeros that the proto would read as "use the default").
func (r *specYAML) toProto(lines map[string]int) (*stratav1.DeploymentSpec, []error) {
	var errs []error
	fail := func(path, format string, args ...any) {
		e := errorf(path, format, args...)
		e.line = lookupLine(lines, path)
		errs = append(errs, e)
	}
	positive := func(p *uint32, path string) uint32 {
		if p == nil {
			return 0
		}
		if *p == 0 {
			fail(path, "must be at least 1, got 0 (leave it out for the default)")
		}
		return *p
	}

	s := &stratav1.DeploymentSpec{
		Name:            r.Name,
		Model:           r.Model,
		ServedModelName: r.ServedModelName,
		Engine:          r.Engine,
		EngineArgs:      r.EngineArgs,
		Tokenizer:       r.Tokenizer,
		BlockSize:       positive(r.BlockSize, "block_size"),
		Routing:         r.Routing,
	}
	if r.SLA != nil {
		s.Sla = &stratav1.SLA{TtftMs: r.SLA.TTFTMs, ItlMs: r.SLA.ITLMs}
	}
	tp := positive(r.TensorParallelSize, "tensor_parallel_size")

	mode := modeAggregated
	if r.Mode != nil {
		mode = *r.Mode
	}
	switch mode {
	case modeAggregated:
		s.Mode = stratav1.DeploymentMode_DEPLOYMENT_MODE_AGGREGATED
		if r.Pools != nil {
			fail("pools", "not allowed in aggregated mode (set mode: disaggregated for prefill and decode pools)")
		}
		s.Pools = []*stratav1.Pool{{
			Role:               stratav1.WorkerRole_WORKER_ROLE_BOTH,
			TensorParallelSize: tp,
			Replicas:           r.Replicas.toProto(),
		}}
	case modeDisaggregated:
		s.Mode = stratav1.DeploymentMode_DEPLOYMENT_MODE_DISAGGREGATED
		if r.Replicas != nil {
			fail("replicas", "not allowed in disaggregated mode; put replicas under pools.prefill and pools.decode")
		}
		if r.Pools == nil {
			fail("pools", "disaggregated mode needs pools.prefill and pools.decode")
			break
		}
		for _, p := range []struct {
			name string
			role stratav1.WorkerRole
			pool *poolYAML
		}{
			{"prefill", stratav1.WorkerRole_WORKER_ROLE_PREFILL, r.Pools.Prefill},
			{"decode", stratav1.WorkerRole_WORKER_ROLE_DECODE, r.Pools.Decode},
		} {
			path := "pools." + p.name
			if p.pool == nil {
				fail(path, "required in disaggregated mode")
				continue
			}
			pool := &stratav1.Pool{
				Role:               p.role,
				TensorParallelSize: positive(p.pool.TensorParallelSize, path+".tensor_parallel_size"),
				Replicas:           p.pool.Replicas.toProto(),
				EngineArgs:         p.pool.EngineArgs,
			}
			if p.pool.TensorParallelSize == nil {
				// Inherited from the top level: point errors there.
				pool.TensorParallelSize = tp
				if l, ok := lines["tensor_parallel_size"]; ok {
					lines[path+".tensor_parallel_size"] = l
				}
			}
			s.Pools = append(s.Pools, pool)
		}
	default:
		fail("mode", "unknown mode %s (want %s or %s)", strconv.Quote(mode), modeAggregated, modeDisaggregated)
	}
	return s, errs
}

// toProto applies the YAML replica defaults: min 1 unless given (0 means
// scale to zero), initial = min unless given, max = max(min, initial)
// unless given.
func (r *replicasYAML) toProto() *stratav1.Replicas {
	if r == nil {
		return &stratav1.Replicas{Min: 1, Max: 1, Initial: 1}
	}
	out := &stratav1.Replicas{Min: 1}
	if r.Min != nil {
		out.Min = *r.Min
	}
	out.Initial = out.Min
	if r.Initial != nil {
		out.Initial = *r.Initial
	}
	out.Max = max(out.Min, out.Initial)
	if r.Max != nil {
		out.Max = *r.Max
	}
	return out
}

// yamlPath turns a proto field path into the YAML one: pools[prefill].x is
// pools.prefill.x, and the single aggregated pool's fields are top-level.
func yamlPath(p string) string {
	for _, role := range []string{"prefill", "decode"} {
		if rest, ok := strings.CutPrefix(p, "pools["+role+"]"); ok {
			return "pools." + role + rest
		}
	}
	if rest, ok := strings.CutPrefix(p, "pools[both]."); ok {
		return rest
	}
	return p
}

// lookupLine finds the line of the longest recorded prefix of a YAML path
// ("replicas.max" falls back to "replicas"; "engine_args[2]" to
// "engine_args"); 0 when none was recorded.
func lookupLine(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}
