package workload_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench/workload"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

func renderer(t *testing.T) *workload.Renderer {
	t.Helper()
	r, err := workload.NewRenderer(bytelevel.Tokenizer{}, workload.DefaultTokenIDMin, workload.DefaultTokenIDMax)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tokens(r *workload.Renderer, it workload.Item) []uint32 {
	return r.AppendTokens(nil, it.Prompt...)
}

var specs = map[string]workload.Spec{
	"synthetic": {Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 200, OutputLen: 50, RangeRatio: 0.5}},
	"prefix":    {Kind: workload.KindPrefix, Prefix: workload.Prefix{NumPrefixes: 5, PrefixLen: 256, SuffixLen: 32, OutputLen: 16}},
	"chat":      {Kind: workload.KindChat, Chat: workload.Chat{Users: 4, Rounds: 5, SystemLen: 64, UserLen: 32, OutputLen: 16}},
}

// The same spec and seed give the same requests, token for token; another
// seed gives other prompts.
func TestBuildIsDeterministic(t *testing.T) {
	r := renderer(t)
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			a, err := workload.Build(spec, 20, 7)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := workload.Build(spec, 20, 7)
			c, _ := workload.Build(spec, 20, 8)
			if !reflect.DeepEqual(a, b) {
				t.Fatal("two builds with one seed differ")
			}
			same := 0
			for i := range a.Items {
				ta := tokens(r, a.Items[i])
				if !slices.Equal(ta, tokens(r, b.Items[i])) {
					t.Fatalf("item %d renders differently with the same seed", i)
				}
				if slices.Equal(ta, tokens(r, c.Items[i])) {
					same++
				}
			}
			if same == len(a.Items) {
				t.Fatal("another seed gave the same prompts")
			}
		})
	}
}

func TestSyntheticLengths(t *testing.T) {
	w, err := workload.Build(specs["synthetic"], 5000, 1)
	if err != nil {
		t.Fatal(err)
	}
	var in, out float64
	seen := map[int]bool{}
	for _, it := range w.Items {
		n := it.PromptLen()
		if n < 100 || n > 300 || it.OutputTokens < 25 || it.OutputTokens > 75 {
			t.Fatalf("item %d: lengths %d/%d outside [100,300]/[25,75]", it.Index, n, it.OutputTokens)
		}
		in += float64(n)
		out += float64(it.OutputTokens)
		seen[n] = true
	}
	in, out = in/5000, out/5000
	if math.Abs(in-200) > 3 || math.Abs(out-50) > 1 {
		t.Fatalf("mean lengths %.1f/%.1f, want 200/50", in, out)
	}
	if !seen[100] || !seen[300] {
		t.Fatal("the extremes of the range are never drawn")
	}
	// Every prompt is distinct.
	r := renderer(t)
	if slices.Equal(tokens(r, w.Items[0])[:50], tokens(r, w.Items[1])[:50]) {
		t.Fatal("two synthetic prompts share their start")
	}
}

func TestPrefixRepetition(t *testing.T) {
	r := renderer(t)
	w, err := workload.Build(specs["prefix"], 200, 3)
	if err != nil {
		t.Fatal(err)
	}
	prefixes := map[string]int{}
	suffixes := map[string]bool{}
	for _, it := range w.Items {
		toks := tokens(r, it)
		if len(toks) != 288 || it.OutputTokens != 16 {
			t.Fatalf("item %d: %d tokens, %d out", it.Index, len(toks), it.OutputTokens)
		}
		prefixes[string(u32bytes(toks[:256]))]++
		suffixes[string(u32bytes(toks[256:]))] = true
	}
	if len(prefixes) != 5 {
		t.Fatalf("%d distinct prefixes, want 5", len(prefixes))
	}
	for p, n := range prefixes {
		if n < 20 {
			t.Fatalf("prefix %x… used %d times of 200: not uniform", p[:8], n)
		}
	}
	if len(suffixes) != 200 {
		t.Fatalf("%d distinct suffixes of 200", len(suffixes))
	}
}

func TestChatSessions(t *testing.T) {
	w, err := workload.Build(specs["chat"], 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Items) != 20 || len(w.System) != 1 || w.System[0].Len != 64 {
		t.Fatalf("%d items, system %v", len(w.Items), w.System)
	}
	for i, it := range w.Items {
		if it.Session != i%4+1 || it.Round != i/4 {
			t.Fatalf("item %d is session %d round %d, want %d/%d", i, it.Session, it.Round, i%4+1, i/4)
		}
	}
	if _, err := workload.Build(specs["chat"], 21, 1); !errors.Is(err, workload.ErrSpec) {
		t.Fatalf("21 requests of a 20-turn chat: %v", err)
	}
}

func TestSpecErrors(t *testing.T) {
	for name, spec := range map[string]workload.Spec{
		"unknown kind":       {Kind: "bogus"},
		"zero input":         {Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{OutputLen: 1}},
		"range ratio 1":      {Kind: workload.KindSynthetic, Synthetic: workload.Synthetic{InputLen: 1, OutputLen: 1, RangeRatio: 1}},
		"no prefixes":        {Kind: workload.KindPrefix, Prefix: workload.Prefix{PrefixLen: 1, OutputLen: 1}},
		"empty prompt":       {Kind: workload.KindPrefix, Prefix: workload.Prefix{NumPrefixes: 1, OutputLen: 1}},
		"no users":           {Kind: workload.KindChat, Chat: workload.Chat{Rounds: 1, UserLen: 1, OutputLen: 1}},
		"unknown trace":      {Kind: workload.KindTrace, Trace: workload.Trace{File: "x", Format: "csv"}},
		"missing trace":      {Kind: workload.KindTrace, Trace: workload.Trace{File: filepath.Join(t.TempDir(), "none"), Format: workload.FormatAzure}},
		"no output (chat)":   {Kind: workload.KindChat, Chat: workload.Chat{Users: 1, Rounds: 1, UserLen: 1}},
		"no output (prefix)": {Kind: workload.KindPrefix, Prefix: workload.Prefix{NumPrefixes: 1, PrefixLen: 1}},
	} {
		if _, err := workload.Build(spec, 10, 1); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRenderer(t *testing.T) {
	r, err := workload.NewRenderer(bytelevel.Tokenizer{}, 1000, 1009)
	if err != nil {
		t.Fatal(err)
	}
	seg := workload.Segment{Seed: 42, Len: 4000}
	ids := r.AppendTokens(nil, seg)
	counts := map[uint32]int{}
	for _, id := range ids {
		counts[id]++
	}
	if len(ids) != 4000 || len(counts) != 10 {
		t.Fatalf("%d ids over %d values, want 4000 over 10", len(ids), len(counts))
	}
	for id := range counts {
		if id < 1000 || id > 1009 {
			t.Fatalf("id %d outside [1000, 1009]", id)
		}
	}
	// A shorter segment with the same seed is a prefix of the longer one.
	if short := r.AppendTokens(nil, workload.Segment{Seed: 42, Len: 100}); !slices.Equal(short, ids[:100]) {
		t.Fatal("truncated segment is not a prefix")
	}
	// Text is the byte-level tokenizer's text tokens: one byte per token.
	text := string(r.AppendText(nil, workload.Segment{Seed: 42, Len: 500}))
	if len(text) != 500 || strings.Trim(text, "abcdefghijklmnopqrstuvwxyz ") != "" {
		t.Fatalf("text %q", text[:40])
	}
	if _, err := workload.NewRenderer(bytelevel.Tokenizer{}, 10, 9); err == nil {
		t.Fatal("empty id range accepted")
	}
}

func u32bytes(ids []uint32) []byte {
	b := make([]byte, 0, 4*len(ids))
	for _, id := range ids {
		b = append(b, byte(id), byte(id>>8), byte(id>>16), byte(id>>24))
	}
	return b
}

const mooncakeSample = `{"timestamp": 0, "input_length": 1100, "output_length": 6, "hash_ids": [0, 1, 2]}
{"timestamp": 40, "input_length": 1536, "output_length": 4, "hash_ids": [0, 1, 3]}

{"timestamp": 20.5, "input_length": 10, "output_length": 0, "hash_ids": [7], "extra": "ignored"}
`

// Equal hash ids at equal positions give identical token blocks, whatever
// the run's seed and the order of the file; the last block is cut to the
// input length.
func TestMooncakeHashIDs(t *testing.T) {
	w, err := workload.ReadMooncake(strings.NewReader(mooncakeSample), 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Items) != 3 || w.TraceSpan != 40*time.Millisecond {
		t.Fatalf("%d items over %v", len(w.Items), w.TraceSpan)
	}
	// Sorted by time: 0, 20.5 ms, 40 ms.
	a, short, b := w.Items[0], w.Items[1], w.Items[2]
	if a.At != 0 || short.At != 20500*time.Microsecond || b.At != 40*time.Millisecond || b.Index != 2 {
		t.Fatalf("times %v %v %v", a.At, short.At, b.At)
	}
	if short.OutputTokens != 1 {
		t.Fatalf("output 0 sent as %d, want 1", short.OutputTokens)
	}
	r := renderer(t)
	ta, tb := tokens(r, a), tokens(r, b)
	if len(ta) != 1100 || len(tb) != 1536 {
		t.Fatalf("lengths %d, %d", len(ta), len(tb))
	}
	if !slices.Equal(ta[:1024], tb[:1024]) {
		t.Fatal("shared hash ids 0, 1 do not give identical prefixes")
	}
	if slices.Equal(ta[1024:1100], tb[1024:1100]) {
		t.Fatal("hash ids 2 and 3 give the same block")
	}
	// Block 2 of a is block 2's first 76 tokens: the same as the id's block
	// rendered whole, and as in any other file.
	other, err := workload.ReadMooncake(strings.NewReader(`{"timestamp": 5, "input_length": 600, "output_length": 1, "hash_ids": [2, 9]}`), 512)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tokens(r, other.Items[0])[:76], ta[1024:]) {
		t.Fatal("hash id 2 renders differently in another trace")
	}
}

func TestMooncakeErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json":           "{",
		"missing field":      `{"timestamp": 0, "input_length": 5, "hash_ids": [1]}`,
		"too few hash ids":   `{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [1]}`,
		"too many hash ids":  `{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1, 2]}`,
		"negative hash id":   `{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [-1]}`,
		"negative timestamp": `{"timestamp": -1, "input_length": 5, "output_length": 1, "hash_ids": [1]}`,
		"zero input":         `{"timestamp": 0, "input_length": 0, "output_length": 1, "hash_ids": []}`,
		"huge input":         `{"timestamp": 0, "input_length": 99999999999, "output_length": 1, "hash_ids": [1]}`,
		"string length":      `{"timestamp": 0, "input_length": "5", "output_length": 1, "hash_ids": [1]}`,
		"empty file":         "\n\n",
		"array line":         `[1, 2]`,
	} {
		_, err := workload.ReadMooncake(strings.NewReader(in), 512)
		if !errors.Is(err, workload.ErrTrace) {
			t.Errorf("%s: %v, want ErrTrace", name, err)
		}
	}
	_, err := workload.ReadMooncake(strings.NewReader("\n"+`{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1, 2]}`), 512)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v does not name line 2", err)
	}
}

const azureSample = "TIMESTAMP,ContextTokens,GeneratedTokens\n" +
	"2023-11-16 18:17:03.9799600,4808,10\n" +
	"2023-11-16 18:17:04.0319600,3180,8\n" +
	"2023-11-16 18:17:05.9799600,110,0\n"

func TestAzure(t *testing.T) {
	w, err := workload.ReadAzure(strings.NewReader(azureSample), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Items) != 3 || w.Items[1].At != 52*time.Millisecond || w.TraceSpan != 2*time.Second {
		t.Fatalf("%d items, second at %v, span %v", len(w.Items), w.Items[1].At, w.TraceSpan)
	}
	if w.Items[0].PromptLen() != 4808 || w.Items[0].OutputTokens != 10 || w.Items[2].OutputTokens != 1 {
		t.Fatalf("lengths %d/%d, last output %d", w.Items[0].PromptLen(), w.Items[0].OutputTokens, w.Items[2].OutputTokens)
	}
	// Columns in another order and case, other columns, RFC 3339 and numbers.
	w, err = workload.ReadAzure(strings.NewReader("generatedtokens,extra,timestamp,contexttokens\n5,x,2024-05-01T00:00:01Z,7\n6,y,2024-05-01T00:00:00.5Z,8\n"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if w.Items[0].PromptLen() != 8 || w.Items[1].At != 500*time.Millisecond {
		t.Fatalf("reordered columns: %+v", w.Items)
	}
	for name, in := range map[string]string{
		"empty":       "",
		"no column":   "TIMESTAMP,ContextTokens\n1,2\n",
		"bad time":    "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n",
		"bad count":   "TIMESTAMP,ContextTokens,GeneratedTokens\n1,many,1\n",
		"short row":   "TIMESTAMP,ContextTokens,GeneratedTokens\n1,1\n",
		"header only": "TIMESTAMP,ContextTokens,GeneratedTokens\n",
		"zero input":  "TIMESTAMP,ContextTokens,GeneratedTokens\n1,0,1\n",
	} {
		if _, err := workload.ReadAzure(strings.NewReader(in), 1); !errors.Is(err, workload.ErrTrace) {
			t.Errorf("%s: %v, want ErrTrace", name, err)
		}
	}
}

// sharedData is a file of the workload data shared beside the checkout
// (../shared/data from the repository root).
func sharedData(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join("..", "..", "..", "shared", "data", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("shared workload data is absent (%v): this test replays ../shared/data/%s beside the repository", err, name)
	}
	return path
}

// The published Mooncake trace loads whole, with the statistics its README
// gives: 3,993 requests over 1,022 s, mean input 15,325 tokens, and 64.0 %
// of blocks reusable leading blocks with an infinite cache.
func TestSharedMooncakeTrace(t *testing.T) {
	path := sharedData(t, "mooncake_synthetic_trace.jsonl")
	w, err := workload.Build(workload.Spec{Kind: workload.KindTrace, Trace: workload.Trace{File: path, Format: workload.FormatMooncake}}, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Items) != 3993 || w.TraceSpan.Round(time.Second) != 1022*time.Second {
		t.Fatalf("%d requests over %v", len(w.Items), w.TraceSpan)
	}
	var in int
	seen := map[uint64]bool{}
	var blocks, reused int
	for _, it := range w.Items {
		in += it.PromptLen()
		leading := true
		for _, s := range it.Prompt {
			blocks++
			if leading && seen[s.Seed] {
				reused++
			} else {
				leading = false
			}
			seen[s.Seed] = true
		}
	}
	if mean := float64(in) / 3993; math.Abs(mean-15325) > 1 {
		t.Fatalf("mean input %.0f, want 15325", mean)
	}
	if f := float64(reused) / float64(blocks); math.Abs(f-0.640) > 0.0005 {
		t.Fatalf("reusable leading blocks %.4f, want 0.640", f)
	}
}

func TestSharedAzureTrace(t *testing.T) {
	path := sharedData(t, "azure_llm_code_trace.csv")
	w, err := workload.Build(workload.Spec{Kind: workload.KindTrace, Trace: workload.Trace{File: path, Format: workload.FormatAzure}}, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Items) != 8819 || w.TraceSpan < 55*time.Minute || w.TraceSpan > 65*time.Minute {
		t.Fatalf("%d requests over %v, want 8819 over about an hour", len(w.Items), w.TraceSpan)
	}
	if w.Items[0].PromptLen() != 4808 || w.Items[0].OutputTokens != 10 {
		t.Fatalf("first row %d/%d, want 4808/10", w.Items[0].PromptLen(), w.Items[0].OutputTokens)
	}
	cut, _ := workload.Build(workload.Spec{Kind: workload.KindTrace, Trace: workload.Trace{File: path, Format: workload.FormatAzure}}, 100, 1)
	if len(cut.Items) != 100 || cut.TraceRequests != 8819 {
		t.Fatalf("cut to %d of %d", len(cut.Items), cut.TraceRequests)
	}
}

func FuzzReadMooncake(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := workload.ReadMooncake(strings.NewReader(string(data)), 16)
		checkFuzzedTrace(t, w, err)
	})
}

func FuzzReadAzure(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := workload.ReadAzure(strings.NewReader(string(data)), 1)
		checkFuzzedTrace(t, w, err)
	})
}

// checkFuzzedTrace: a trace reader either says what is wrong with the file
// or returns requests that can be sent.
func checkFuzzedTrace(t *testing.T, w *workload.Workload, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, workload.ErrTrace) {
			t.Fatalf("error %v does not wrap ErrTrace", err)
		}
		return
	}
	for _, it := range w.Items {
		if it.PromptLen() < 1 || it.OutputTokens < 1 || it.At < 0 {
			t.Fatalf("accepted item %+v", it)
		}
	}
}
