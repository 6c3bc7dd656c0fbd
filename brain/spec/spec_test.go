package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

const (
	agg    = stratav1.DeploymentMode_DEPLOYMENT_MODE_AGGREGATED
	disagg = stratav1.DeploymentMode_DEPLOYMENT_MODE_DISAGGREGATED
	both   = stratav1.WorkerRole_WORKER_ROLE_BOTH
	pre    = stratav1.WorkerRole_WORKER_ROLE_PREFILL
	dec    = stratav1.WorkerRole_WORKER_ROLE_DECODE
)

// The documented examples.
const aggregatedDoc = `name: llama-8b
model: meta-llama/Llama-3.1-8B-Instruct
served_model_name: llama-8b-chat
engine: vllm            # vllm | sglang | trtllm | llamacpp | sim
engine_args: ["--max-num-seqs", "256"]
tokenizer: /models/llama-3.1-8b
block_size: 32
tensor_parallel_size: 2
mode: aggregated        # or disaggregated
replicas: {min: 1, max: 8, initial: 2}
sla: {ttft_ms: 500, itl_ms: 50}
`

const disaggregatedDoc = `name: llama-70b
model: meta-llama/Llama-3.1-70B-Instruct
engine: sglang
engine_args: [--trust-remote-code]
tensor_parallel_size: 4
mode: disaggregated
pools:
  prefill: {tensor_parallel_size: 2, replicas: {min: 1, max: 4, initial: 1}, engine_args: [--chunked-prefill-size, "8192"]}
  decode:  {replicas: {min: 2, max: 8}}
`

// minimal is the smallest valid spec; tests append to it.
const minimal = "name: tiny\nmodel: Qwen/Qwen2.5-0.5B\nengine: sim\n"

func mustParse(t *testing.T, doc string) *stratav1.DeploymentSpec {
	t.Helper()
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v\ninput:\n%s", err, doc)
	}
	return s
}

func TestParseAggregated(t *testing.T) {
	s := mustParse(t, aggregatedDoc)
	want := &stratav1.DeploymentSpec{
		Name:            "llama-8b",
		Model:           "meta-llama/Llama-3.1-8B-Instruct",
		ServedModelName: "llama-8b-chat",
		Engine:          "vllm",
		EngineArgs:      []string{"--max-num-seqs", "256"},
		Tokenizer:       "/models/llama-3.1-8b",
		BlockSize:       32,
		Mode:            agg,
		Pools: []*stratav1.Pool{{
			Role:               both,
			TensorParallelSize: 2,
			Replicas:           &stratav1.Replicas{Min: 1, Max: 8, Initial: 2},
		}},
		Sla: &stratav1.SLA{TtftMs: 500, ItlMs: 50},
	}
	if !proto.Equal(s, want) {
		t.Fatalf("got  %v\nwant %v", s, want)
	}
}

func TestParseDefaults(t *testing.T) {
	s := mustParse(t, minimal)
	checks := []struct {
		field     string
		got, want any
	}{
		{"name", s.Name, "tiny"},
		{"model", s.Model, "Qwen/Qwen2.5-0.5B"},
		{"served_model_name", s.ServedModelName, "tiny"},
		{"engine", s.Engine, "sim"},
		{"engine_args", len(s.EngineArgs), 0},
		{"tokenizer (a sim's is byte-level)", s.Tokenizer, ""},
		{"block_size", s.BlockSize, uint32(16)},
		{"mode", s.Mode, agg},
		{"len(pools)", len(s.Pools), 1},
		{"pools[0].role", s.Pools[0].Role, both},
		{"pools[0].tensor_parallel_size", s.Pools[0].TensorParallelSize, uint32(1)},
		{"pools[0].replicas.min", s.Pools[0].Replicas.Min, uint32(1)},
		{"pools[0].replicas.max", s.Pools[0].Replicas.Max, uint32(1)},
		{"pools[0].replicas.initial", s.Pools[0].Replicas.Initial, uint32(1)},
		{"len(pools[0].engine_args)", len(s.Pools[0].EngineArgs), 0},
		{"sla", s.Sla == nil, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestParseRouting(t *testing.T) {
	if s := mustParse(t, minimal+"routing: round-robin\n"); s.Routing != "round-robin" {
		t.Fatalf("routing %q", s.Routing)
	}
	if s := mustParse(t, minimal); s.Routing != "" {
		t.Fatalf("routing %q by default, want the gateway's", s.Routing)
	}
}

func TestParseDisaggregated(t *testing.T) {
	s := mustParse(t, disaggregatedDoc)
	checks := []struct {
		field     string
		got, want any
	}{
		{"served_model_name", s.ServedModelName, "llama-70b"},
		{"tokenizer", s.Tokenizer, "meta-llama/Llama-3.1-70B-Instruct"},
		{"block_size", s.BlockSize, uint32(16)},
		{"mode", s.Mode, disagg},
		{"engine_args", strings.Join(s.EngineArgs, " "), "--trust-remote-code"},
		{"len(pools)", len(s.Pools), 2},
		{"pools[0].role", s.Pools[0].Role, pre},
		{"pools[0].tensor_parallel_size", s.Pools[0].TensorParallelSize, uint32(2)},
		{"pools[0].replicas", s.Pools[0].Replicas.String(), (&stratav1.Replicas{Min: 1, Max: 4, Initial: 1}).String()},
		{"pools[0].engine_args", strings.Join(s.Pools[0].EngineArgs, " "), "--chunked-prefill-size 8192"},
		{"pools[1].role", s.Pools[1].Role, dec},
		// Inherited from the top-level tensor_parallel_size.
		{"pools[1].tensor_parallel_size", s.Pools[1].TensorParallelSize, uint32(4)},
		// initial defaults to min, max is given.
		{"pools[1].replicas", s.Pools[1].Replicas.String(), (&stratav1.Replicas{Min: 2, Max: 8, Initial: 2}).String()},
		{"len(pools[1].engine_args)", len(s.Pools[1].EngineArgs), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}

	// Without a top-level size, pools default to 1 each.
	s = mustParse(t, minimal+"mode: disaggregated\npools: {prefill: {}, decode: {}}\n")
	for i, p := range s.Pools {
		if p.TensorParallelSize != 1 || !proto.Equal(p.Replicas, &stratav1.Replicas{Min: 1, Max: 1, Initial: 1}) {
			t.Errorf("pools[%d] = %v, want tp 1 and replicas 1/1/1", i, p)
		}
	}
}

func TestReplicaDefaults(t *testing.T) {
	tests := []struct {
		yaml              string
		min, max, initial uint32
	}{
		{"", 1, 1, 1},
		{"replicas: {}", 1, 1, 1},
		{"replicas: ~", 1, 1, 1},
		{"replicas: {min: 2}", 2, 2, 2},
		{"replicas: {max: 8}", 1, 8, 1},
		{"replicas: {initial: 3}", 1, 3, 3},
		{"replicas: {min: 2, initial: 5}", 2, 5, 5},
		{"replicas: {min: 0, max: 4}", 0, 4, 0},             // scale to zero
		{"replicas: {min: 0, initial: 2}", 0, 2, 2},         // may scale to zero later
		{"replicas: {min: 1, max: 8, initial: 2}", 1, 8, 2}, // all given
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			s := mustParse(t, minimal+tt.yaml+"\n")
			want := &stratav1.Replicas{Min: tt.min, Max: tt.max, Initial: tt.initial}
			if got := s.Pools[0].Replicas; !proto.Equal(got, want) {
				t.Errorf("replicas = %v, want %v", got, want)
			}
		})
	}
}

// TestParseInvalid has a failing case for every rule; each asserts that the
// message names the field (and the line, where the YAML has one).
func TestParseInvalid(t *testing.T) {
	disaggPools := "mode: disaggregated\npools:\n  prefill: {}\n  decode: {}\n"
	longName := strings.Repeat("a", 64)
	manyArgs := "engine_args: [" + strings.Repeat("x, ", 256) + "x]\n"
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"name missing", "model: m\nengine: sim\n", []string{"name: required"}},
		{"name upper case", strings.Replace(minimal, "tiny", "Tiny", 1), []string{"line 1: name:", "DNS label"}},
		{"name leading dash", strings.Replace(minimal, "tiny", "-tiny", 1), []string{"line 1: name:", "DNS label"}},
		{"name trailing dash", strings.Replace(minimal, "tiny", "tiny-", 1), []string{"name:", "DNS label"}},
		{"name underscore", strings.Replace(minimal, "tiny", "ti_ny", 1), []string{"name:", "DNS label"}},
		{"name too long", strings.Replace(minimal, "tiny", longName, 1), []string{"name: at most 63"}},
		{"model missing", "name: x\nengine: sim\n", []string{"model: required"}},
		{"model control char", "name: x\nmodel: \"a\\nb\"\nengine: sim\n", []string{"line 2: model:", "control"}},
		{"model too long", "name: x\nengine: sim\nmodel: " + strings.Repeat("m", 4097) + "\n", []string{"line 3: model: at most 4096"}},
		{"tokenizer control char", minimal + "tokenizer: \"a\\tb\"\n", []string{"line 4: tokenizer:", "control"}},
		{"served_model_name whitespace", minimal + "served_model_name: my model\n", []string{"line 4: served_model_name:", "whitespace"}},
		{"served_model_name too long", minimal + "served_model_name: " + strings.Repeat("s", 257) + "\n", []string{"served_model_name: at most 256"}},
		{"engine missing", "name: x\nmodel: m\n", []string{"engine: required"}},
		{"engine unknown", "name: x\nmodel: m\nengine: vLLM\n", []string{"line 3: engine:", `"vLLM"`}},
		{"routing unknown", minimal + "routing: fastest\n", []string{"line 4: routing:", `"fastest"`, "round-robin"}},
		{"block_size zero", minimal + "block_size: 0\n", []string{"line 4: block_size:", "at least 1"}},
		{"block_size too big", minimal + "block_size: 2048\n", []string{"line 4: block_size:", "1024"}},
		{"tensor_parallel_size zero", minimal + "tensor_parallel_size: 0\n", []string{"line 4: tensor_parallel_size:", "at least 1"}},
		{"tensor_parallel_size too big", minimal + "tensor_parallel_size: 65\n", []string{"line 4: tensor_parallel_size:", "64"}},
		{"pool tensor_parallel_size too big", minimal + "mode: disaggregated\npools:\n  prefill: {}\n  decode: {tensor_parallel_size: 100}\n",
			[]string{"line 7: pools.decode.tensor_parallel_size:", "64"}},
		{"inherited tensor_parallel_size too big", minimal + "tensor_parallel_size: 80\n" + disaggPools,
			[]string{"line 4: pools.prefill.tensor_parallel_size", "line 4: pools.decode.tensor_parallel_size"}},
		{"replicas min > max", minimal + "replicas: {min: 3, max: 2}\n", []string{"line 4: replicas: min 3 > max 2"}},
		{"replicas initial < min", minimal + "replicas: {min: 3, initial: 1, max: 4}\n", []string{"replicas: initial 1 < min 3"}},
		{"replicas initial > max", minimal + "replicas: {initial: 5, max: 4}\n", []string{"replicas: initial 5 > max 4"}},
		{"replicas max zero", minimal + "replicas: {min: 0, max: 0}\n", []string{"line 4: replicas.max: must be at least 1"}},
		{"replicas all zero", minimal + "replicas: {min: 0}\n", []string{"replicas.max: must be at least 1"}},
		{"replicas max too big", minimal + "replicas: {max: 1025}\n", []string{"replicas.max: at most 1024"}},
		{"pool replicas", minimal + "mode: disaggregated\npools:\n  prefill: {}\n  decode:\n    replicas: {min: 3, max: 2}\n",
			[]string{"line 8: pools.decode.replicas: min 3 > max 2"}},
		{"engine_args empty entry", minimal + "engine_args: [a, \"\"]\n", []string{"line 4: engine_args[1]: must not be empty"}},
		{"engine_args NUL", minimal + "engine_args: [\"a\\0b\"]\n", []string{"engine_args[0]: must not contain NUL"}},
		{"engine_args too many", minimal + manyArgs, []string{"engine_args: at most 256 entries, got 257"}},
		{"pool engine_args empty entry", minimal + "mode: disaggregated\npools:\n  prefill: {engine_args: [\"\"]}\n  decode: {}\n",
			[]string{"line 6: pools.prefill.engine_args[0]: must not be empty"}},
		{"sla ttft too big", minimal + "sla: {ttft_ms: 600001}\n", []string{"line 4: sla.ttft_ms: at most 600000"}},
		{"sla itl too big", minimal + "sla:\n  itl_ms: 700000\n", []string{"line 5: sla.itl_ms: at most 600000"}},
		{"mode unknown", minimal + "mode: Aggregated\n", []string{"line 4: mode:", `"Aggregated"`}},
		{"mode empty", minimal + "mode: \"\"\n", []string{"line 4: mode:", "unknown mode"}},
		{"pools in aggregated mode", minimal + "pools: {prefill: {}, decode: {}}\n", []string{"line 4: pools: not allowed in aggregated mode"}},
		{"replicas in disaggregated mode", minimal + "replicas: {max: 2}\n" + disaggPools,
			[]string{"line 4: replicas: not allowed in disaggregated mode", "under pools"}},
		{"disaggregated without pools", minimal + "mode: disaggregated\n", []string{"pools:", "needs pools.prefill and pools.decode"}},
		{"disaggregated without decode", minimal + "mode: disaggregated\npools:\n  prefill: {}\n", []string{"pools.decode: required"}},
		{"disaggregated with null prefill", minimal + "mode: disaggregated\npools:\n  prefill:\n  decode: {}\n", []string{"line 6: pools.prefill: required"}},
		{"pool tensor_parallel_size zero", minimal + "mode: disaggregated\npools:\n  prefill: {tensor_parallel_size: 0}\n  decode: {}\n",
			[]string{"line 6: pools.prefill.tensor_parallel_size: must be at least 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded (%v), want error mentioning %q", s, tt.want)
			}
			if s != nil {
				t.Errorf("Parse returned a spec with its error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestParseAllProblems checks that every problem is reported, not just the
// first.
func TestParseAllProblems(t *testing.T) {
	doc := "name: Bad_Name\nmodel: m\nengine: tgi\nblock_size: 4096\nreplicas: {min: 3, max: 2}\nsla: {ttft_ms: 999999}\n"
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	for _, w := range []string{"line 1: name:", "line 3: engine:", "line 4: block_size:", "line 5: replicas: min 3 > max 2", "line 6: sla.ttft_ms:"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestParseUnknownField(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"top level", "name: x\nmodel: m\n# comment\n\nengine: vllm\nblock_size: 16\nenginee: vllm\n",
			[]string{`line 7: unknown field "enginee"`, `did you mean "engine"`}},
		{"in replicas", minimal + "replicas:\n  min: 1\n  maxx: 3\n", []string{`line 6: unknown field "maxx" in replicas`}},
		{"in pool", minimal + "mode: disaggregated\npools:\n  prefill: {}\n  decode:\n    replica: {min: 1}\n",
			[]string{`line 8: unknown field "replica" in pools.decode`}},
		{"pool role", minimal + "mode: disaggregated\npools:\n  both: {}\n", []string{`line 6: unknown field "both" in pools`}},
		{"in sla", minimal + "sla: {ttft: 5}\n", []string{`line 4: unknown field "ttft" in sla`}},
		{"no close match", minimal + "gpus: 8\n", []string{`line 4: unknown field "gpus"`, "known: block_size"}},
		{"in merged mapping", "base: &b {x: 1}\n", []string{`line 1: unknown field "base"`}},
		{"via merge", "defaults: &d {min: 1}\n", []string{`line 1: unknown field "defaults"`}},
		{"merged unknown", minimal + "replicas:\n  <<: {min: 1, bogus: 2}\n", []string{`line 5: unknown field "bogus" in replicas`}},
		{"duplicate key", minimal + "engine: vllm\n", []string{"line 4: engine: given twice (first at line 3)"}},
		{"non-string key", minimal + "[a]: 1\n", []string{"line 4:", "keys must be plain strings"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseWrongType(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"string for number", minimal + "block_size: sixteen\n", []string{"line 4: block_size: want a whole number", `"sixteen"`}},
		{"fraction", minimal + "block_size: 16.5\n", []string{"line 4: block_size: want a whole number", `"16.5"`}},
		{"negative", minimal + "tensor_parallel_size: -1\n", []string{"line 4: tensor_parallel_size: want a whole number", `"-1"`}},
		{"overflow", minimal + "block_size: 4294967296\n", []string{"line 4: block_size: want a whole number"}},
		{"bool for number", minimal + "replicas: {max: true}\n", []string{"line 4: replicas.max: want a whole number"}},
		{"number for mapping", minimal + "replicas: 3\n", []string{"line 4: replicas: want a mapping", `integer "3"`}},
		{"list for mapping", minimal + "sla: [1, 2]\n", []string{"line 4: sla: want a mapping, got a list"}},
		{"string for list", minimal + "engine_args: --foo\n", []string{"line 4: engine_args: want a list of strings"}},
		{"mapping for string", minimal + "tokenizer: {path: x}\n", []string{"line 4: tokenizer: want a string, got a mapping"}},
		{"list for string", "name: [a]\nmodel: m\nengine: sim\n", []string{"line 1: name: want a string, got a list"}},
		{"mapping in list", minimal + "engine_args:\n  - a\n  - {b: c}\n", []string{"line 6: engine_args[1]: want a string, got a mapping"}},
		{"list in pool list", minimal + "mode: disaggregated\npools:\n  prefill: {engine_args: [[x]]}\n  decode: {}\n",
			[]string{"line 6: pools.prefill.engine_args[0]: want a string, got a list"}},
		{"string for pools", minimal + "mode: disaggregated\npools: yes\n", []string{"line 5: pools: want a mapping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseDocumentShape(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"nil", "", "empty input"},
		{"whitespace", " \n\t\n", "empty input"},
		{"comments only", "# nothing here\n", "no YAML document"},
		{"document marker only", "---\n", "document is empty"},
		{"null", "~\n", "document is empty"},
		{"list", "- name: x\n", "line 1: the top level must be a mapping"},
		{"scalar", "llama\n", "top level must be a mapping of spec fields, got string"},
		{"two documents", minimal + "---\n" + minimal, "line 4: a second YAML document"},
		{"trailing empty document", minimal + "---\n", "second YAML document"},
		{"syntax error", "name: [x\n", "line 1:"},
		{"bad indentation", "name: x\n  model: m\n", "line 2:"},
		{"tab indentation", "replicas:\n\tmin: 1\n", "line 2:"},
		{"too large", minimal + "# " + strings.Repeat("x", MaxSize) + "\n", "byte limit"},
		{"undefined alias", "name: *a\n", "unknown anchor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestParseAnchors(t *testing.T) {
	// Anchors, aliases and merges are ordinary YAML and work.
	doc := minimal + `mode: disaggregated
pools:
  prefill:
    replicas: &r {min: 1, max: 4}
    engine_args: &args [--enforce-eager]
  decode:
    replicas:
      <<: *r
      initial: 2
    engine_args: *args
`
	s := mustParse(t, doc)
	if got, want := s.Pools[1].Replicas, (&stratav1.Replicas{Min: 1, Max: 4, Initial: 2}); !proto.Equal(got, want) {
		t.Errorf("decode replicas = %v, want %v", got, want)
	}
	if got := strings.Join(s.Pools[1].EngineArgs, " "); got != "--enforce-eager" {
		t.Errorf("decode engine_args = %q", got)
	}
}

// TestParseAliasBombs feeds exponential alias expansions. They must fail
// (or succeed) quickly rather than hang or exhaust memory; the test binary's
// timeout is the assertion for "quickly".
func TestParseAliasBombs(t *testing.T) {
	laughs := func(key string) string {
		var b strings.Builder
		b.WriteString(minimal)
		fmt.Fprintf(&b, "%s: &a0 [x, x, x, x, x, x, x, x, x, x]\n", key)
		for i := 1; i < 20; i++ {
			fmt.Fprintf(&b, "%s%d: &a%d [", key, i, i)
			for j := range 10 {
				if j > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "*a%d", i-1)
			}
			b.WriteString("]\n")
		}
		return b.String()
	}
	// Nested lists inside engine_args, where the shape allows a list.
	var inArgs strings.Builder
	inArgs.WriteString(minimal + "engine_args:\n  - &b0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 20; i++ {
		fmt.Fprintf(&inArgs, "  - &b%d [", i)
		for j := range 10 {
			if j > 0 {
				inArgs.WriteString(", ")
			}
			fmt.Fprintf(&inArgs, "*b%d", i-1)
		}
		inArgs.WriteString("]\n")
	}
	// Merges of merges: level i is a mapping that merges level i-1 (defined
	// inline with an anchor) ten times, so a naive expansion is 10^depth.
	merge := "{min: 1}"
	for i := range 9 {
		merge = fmt.Sprintf("{<<: [&m%d %s%s]}", i, merge, strings.Repeat(fmt.Sprintf(", *m%d", i), 9))
	}
	merges := minimal + "replicas: " + merge + "\n"

	tests := []struct{ name, doc, want string }{
		{"unknown key", laughs("lol"), `unknown field "lol"`},
		{"engine_args", inArgs.String(), "engine_args[0]: want a string, got a list"},
		{"merge fanout", merges, "excessive aliasing"}, // yaml.v3's alias ratio limit
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	valid := func() *stratav1.DeploymentSpec {
		s := mustParse(t, aggregatedDoc)
		return s
	}
	validDisagg := func() *stratav1.DeploymentSpec {
		return mustParse(t, disaggregatedDoc)
	}
	tests := []struct {
		name   string
		spec   func() *stratav1.DeploymentSpec
		want   []string
		wantOK bool
	}{
		{"valid aggregated", valid, nil, true},
		{"valid disaggregated", validDisagg, nil, true},
		{"nil spec", func() *stratav1.DeploymentSpec { return nil }, []string{"no spec"}, false},
		{"mode unspecified", func() *stratav1.DeploymentSpec { s := valid(); s.Mode = 0; return s }, []string{"mode: must be aggregated or disaggregated"}, false},
		{"mode out of range", func() *stratav1.DeploymentSpec { s := valid(); s.Mode = 9; return s }, []string{"mode:"}, false},
		{"tokenizer empty", func() *stratav1.DeploymentSpec { s := valid(); s.Tokenizer = ""; return s }, []string{"tokenizer: required"}, false},
		{"sim without a tokenizer: byte-level", func() *stratav1.DeploymentSpec { s := valid(); s.Engine, s.Tokenizer = "sim", ""; return s }, nil, true},
		{"served_model_name empty", func() *stratav1.DeploymentSpec { s := valid(); s.ServedModelName = ""; return s }, []string{"served_model_name: required"}, false},
		{"served_model_name invalid utf-8", func() *stratav1.DeploymentSpec { s := valid(); s.ServedModelName = "a\xffb"; return s }, []string{"served_model_name: must be valid UTF-8"}, false},
		{"model invalid utf-8", func() *stratav1.DeploymentSpec { s := valid(); s.Model = "\xff"; return s }, []string{"model: must be valid UTF-8"}, false},
		{"engine_args invalid utf-8", func() *stratav1.DeploymentSpec { s := valid(); s.EngineArgs = []string{"\xff"}; return s }, []string{"engine_args[0]: must be valid UTF-8"}, false},
		{"block_size zero", func() *stratav1.DeploymentSpec { s := valid(); s.BlockSize = 0; return s }, []string{"block_size: must be between 1 and 1024, got 0"}, false},
		{"aggregated two pools", func() *stratav1.DeploymentSpec {
			s := valid()
			s.Pools = append(s.Pools, proto.Clone(s.Pools[0]).(*stratav1.Pool))
			return s
		}, []string{"pools: aggregated mode needs exactly one pool", "got 2"}, false},
		{"aggregated no pools", func() *stratav1.DeploymentSpec { s := valid(); s.Pools = nil; return s }, []string{"pools: aggregated mode needs exactly one pool", "got 0"}, false},
		{"aggregated prefill role", func() *stratav1.DeploymentSpec { s := valid(); s.Pools[0].Role = pre; return s }, []string{"pools[prefill].role: must be both in aggregated mode"}, false},
		{"aggregated pool engine_args", func() *stratav1.DeploymentSpec { s := valid(); s.Pools[0].EngineArgs = []string{"--x"}; return s }, []string{"pools[both].engine_args: must be empty in aggregated mode"}, false},
		{"disaggregated duplicate role", func() *stratav1.DeploymentSpec { s := validDisagg(); s.Pools[0].Role = dec; return s }, []string{"pools[1].role: duplicate role decode", "needs a prefill pool"}, false},
		{"disaggregated both role", func() *stratav1.DeploymentSpec { s := validDisagg(); s.Pools[0].Role = both; return s }, []string{"pools[both].role: must be prefill or decode", "needs a prefill pool"}, false},
		{"disaggregated unspecified role", func() *stratav1.DeploymentSpec { s := validDisagg(); s.Pools[1].Role = 0; return s }, []string{"pools[1].role: must be prefill or decode", "needs a decode pool"}, false},
		{"disaggregated one pool", func() *stratav1.DeploymentSpec { s := validDisagg(); s.Pools = s.Pools[:1]; return s }, []string{"pools: disaggregated mode needs a decode pool"}, false},
		{"disaggregated order", func() *stratav1.DeploymentSpec {
			s := validDisagg()
			s.Pools[0], s.Pools[1] = s.Pools[1], s.Pools[0]
			return s
		}, []string{"pools: the prefill pool must come before the decode pool"}, false},
		{"nil pool", func() *stratav1.DeploymentSpec { s := validDisagg(); s.Pools[1] = nil; return s }, []string{"pools[1]: missing", "needs a decode pool"}, false},
		{"nil replicas", func() *stratav1.DeploymentSpec { s := validDisagg(); s.Pools[1].Replicas = nil; return s }, []string{"pools[decode].replicas: required"}, false},
		{"pool tensor_parallel_size zero", func() *stratav1.DeploymentSpec { s := validDisagg(); s.Pools[0].TensorParallelSize = 0; return s }, []string{"pools[prefill].tensor_parallel_size: must be between 1 and 64, got 0"}, false},
		{"decode replicas min > max", func() *stratav1.DeploymentSpec {
			s := validDisagg()
			s.Pools[1].Replicas = &stratav1.Replicas{Min: 3, Max: 2, Initial: 2}
			return s
		}, []string{"pools[decode].replicas: min 3 > max 2"}, false},
		{"pool engine_args too many", func() *stratav1.DeploymentSpec {
			s := validDisagg()
			s.Pools[0].EngineArgs = make([]string, 257)
			return s
		}, []string{"pools[prefill].engine_args: at most 256 entries"}, false},
		{"all problems at once", func() *stratav1.DeploymentSpec {
			return &stratav1.DeploymentSpec{Name: "UPPER", Engine: "x", Mode: agg, Pools: []*stratav1.Pool{{Role: both, Replicas: &stratav1.Replicas{Max: 1}}}}
		}, []string{"name:", "model: required", "served_model_name: required", "engine: unknown", "tokenizer: required", "block_size:", "pools[both].tensor_parallel_size:"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.spec())
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	ApplyDefaults(nil) // must not panic

	// A sparse spec as a gRPC client might send it.
	s := &stratav1.DeploymentSpec{Name: "m", Model: "org/model", Engine: "vllm"}
	ApplyDefaults(s)
	want := &stratav1.DeploymentSpec{
		Name: "m", Model: "org/model", ServedModelName: "m", Engine: "vllm", Tokenizer: "org/model",
		BlockSize: 16, Mode: agg,
		Pools: []*stratav1.Pool{{Role: both, TensorParallelSize: 1, Replicas: &stratav1.Replicas{Min: 1, Max: 1, Initial: 1}}},
	}
	if !proto.Equal(s, want) {
		t.Fatalf("got  %v\nwant %v", s, want)
	}
	if err := Validate(s); err != nil {
		t.Fatalf("Validate after ApplyDefaults: %v", err)
	}

	// Idempotent, and a complete spec is left alone.
	again := proto.Clone(s).(*stratav1.DeploymentSpec)
	ApplyDefaults(again)
	if !proto.Equal(again, s) {
		t.Errorf("second ApplyDefaults changed the spec: %v", again)
	}

	// Disaggregated pools are put in order; a present Replicas is kept as
	// given (min 0 and initial 0 mean scale to zero).
	d := &stratav1.DeploymentSpec{Name: "d", Model: "m", Engine: "sim", Mode: disagg, Pools: []*stratav1.Pool{
		{Role: dec, Replicas: &stratav1.Replicas{Min: 0, Max: 4, Initial: 0}},
		{Role: pre},
	}}
	ApplyDefaults(d)
	if d.Pools[0].Role != pre || d.Pools[1].Role != dec {
		t.Errorf("pools not in prefill, decode order: %v", d.Pools)
	}
	if got, want := d.Pools[1].Replicas, (&stratav1.Replicas{Min: 0, Max: 4, Initial: 0}); !proto.Equal(got, want) {
		t.Errorf("decode replicas = %v, want %v", got, want)
	}
	if err := Validate(d); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// A nil pool entry must not panic either.
	n := &stratav1.DeploymentSpec{Mode: disagg, Pools: []*stratav1.Pool{nil, {Role: dec}}}
	ApplyDefaults(n)
	if n.Pools[1] != nil {
		t.Errorf("nil pool not sorted last: %v", n.Pools)
	}
}

func TestMarshalShape(t *testing.T) {
	out, err := Marshal(mustParse(t, aggregatedDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := `name: llama-8b
model: meta-llama/Llama-3.1-8B-Instruct
served_model_name: llama-8b-chat
engine: vllm
engine_args: [--max-num-seqs, "256"]
tokenizer: /models/llama-3.1-8b
block_size: 32
tensor_parallel_size: 2
mode: aggregated
replicas: {min: 1, max: 8, initial: 2}
sla: {ttft_ms: 500, itl_ms: 50}
`
	if string(out) != want {
		t.Errorf("Marshal:\n%s\nwant:\n%s", out, want)
	}

	out, err = Marshal(mustParse(t, disaggregatedDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"mode: disaggregated\n", "pools:\n  prefill:\n    tensor_parallel_size: 2\n", "  decode:\n    tensor_parallel_size: 4\n    replicas: {min: 2, max: 8, initial: 2}\n"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("Marshal output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(string(out), "\nreplicas:") || strings.Contains(string(out), "\ntensor_parallel_size:") {
		t.Errorf("disaggregated output has top-level replicas or tensor_parallel_size:\n%s", out)
	}

	if _, err := Marshal(&stratav1.DeploymentSpec{Name: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Marshal(invalid) = %v, want ErrInvalid", err)
	}
	if _, err := Marshal(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Marshal(nil) = %v, want ErrInvalid", err)
	}
}

func TestRoundTrip(t *testing.T) {
	awkward := []string{
		"--max-num-seqs", "256", "true", "null", "~", "", "- x", "a: b", "#c", "'q'", `"dq"`, "multi\nline",
		" lead", "trail ", "tab\there", "{json: 1}", "[x]", "*ref", "&anchor", "!tag", "%dir", "@at", "`tick`",
		"ünïcödé", "日本語", "\u2028sep", "\u0085nel", "\\back", "0x1F", "1e3", ".inf", "<<", "---", "...", "\r\n",
	}
	var args []string
	for _, a := range awkward {
		if a != "" {
			args = append(args, a)
		}
	}
	specs := map[string]*stratav1.DeploymentSpec{
		"aggregated":    mustParse(t, aggregatedDoc),
		"disaggregated": mustParse(t, disaggregatedDoc),
		"minimal":       mustParse(t, minimal),
		"scale to zero": mustParse(t, minimal+"replicas: {min: 0, max: 3}\n"),
		"empty sla":     mustParse(t, minimal+"sla: {}\n"),
		"awkward strings": {
			Name: "0", Model: "./models/a b/#1", ServedModelName: "org/model:v1", Engine: "llamacpp",
			EngineArgs: args, Tokenizer: "true", BlockSize: 1024, Mode: disagg,
			Pools: []*stratav1.Pool{
				{Role: pre, TensorParallelSize: 64, Replicas: &stratav1.Replicas{Min: 0, Max: 1024, Initial: 1024}, EngineArgs: args},
				{Role: dec, TensorParallelSize: 1, Replicas: &stratav1.Replicas{Min: 0, Max: 1, Initial: 0}},
			},
			Sla: &stratav1.SLA{TtftMs: 600000},
		},
		"yaml-ish values": {
			Name: "null", Model: "~", ServedModelName: "yes", Engine: "trtllm", Tokenizer: "123",
			BlockSize: 1, Mode: agg,
			Pools: []*stratav1.Pool{{Role: both, TensorParallelSize: 8, Replicas: &stratav1.Replicas{Min: 2, Max: 2, Initial: 2}}},
		},
	}
	// Names and paths that a YAML resolver would read as something other
	// than a string if Marshal left them unquoted.
	for _, v := range []string{"2001-12-14", "2001-12-14t21-59-43", "0x1f", "0o17", "1e3", "1-0", "y", "n", "no", "off", "on", "nan", "inf", "123", "0", "null", "true"} {
		s := mustParse(t, minimal)
		s.Name, s.Model, s.ServedModelName, s.Tokenizer = v, v, v, v
		specs["scalar-like "+v] = s
	}
	for name, s := range specs {
		t.Run(name, func(t *testing.T) {
			if err := Validate(s); err != nil {
				t.Fatalf("test spec is invalid: %v", err)
			}
			roundTrip(t, s)
		})
	}
}

// roundTrip asserts Parse(Marshal(s)) equals s.
func roundTrip(t *testing.T, s *stratav1.DeploymentSpec) {
	t.Helper()
	out, err := Marshal(s)
	if err != nil {
		t.Fatalf("Marshal(%v): %v", s, err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal(s)): %v\nYAML:\n%s", err, out)
	}
	if !proto.Equal(back, s) {
		t.Fatalf("round trip changed the spec\n got: %v\nwant: %v\nYAML:\n%s", back, s, out)
	}
}

// TestFuzzCorpus checks that the checked-in seeds are corpus files and that
// the ones named valid_* still parse, so that the seeds keep covering the
// success path (round trip included) as the package changes.
func TestFuzzCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzParse/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed corpus: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
		body, ok2 := strings.CutSuffix(body, ")\n")
		if !ok || !ok2 {
			t.Errorf("%s is not a one-[]byte fuzz corpus file", f)
			continue
		}
		data, err := strconv.Unquote(body)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		s, err := Parse([]byte(data))
		if valid := strings.HasPrefix(filepath.Base(f), "valid_"); valid != (err == nil) {
			t.Errorf("%s: Parse error = %v, want valid = %v", f, err, valid)
			continue
		}
		if err == nil {
			roundTrip(t, s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(aggregatedDoc))
	f.Add([]byte(disaggregatedDoc))
	f.Add([]byte(minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if s != nil {
				t.Fatalf("Parse returned a spec with error %v", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := Validate(s); err != nil {
			t.Fatalf("Parse returned a spec that does not validate: %v\ninput: %q", err, data)
		}
		again := proto.Clone(s).(*stratav1.DeploymentSpec)
		ApplyDefaults(again)
		if !proto.Equal(again, s) {
			t.Fatalf("ApplyDefaults changed a parsed spec: %v -> %v", s, again)
		}
		roundTrip(t, s)
	})
}
