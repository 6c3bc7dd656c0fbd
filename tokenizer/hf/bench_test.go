package hf

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/strata-llm/strata/tokenizer"
)

// The benchmark corpora come with every Go installation, so they are the
// same on every machine with the same Go version: English prose (Newton's
// Opticks, Project Gutenberg) and Go source (net/http without its tests).
func benchCorpus(b *testing.B, name string) string {
	b.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Skip(err)
	}
	root := strings.TrimSpace(string(out))
	switch name {
	case "english":
		data, err := os.ReadFile(filepath.Join(root, "src", "testdata", "Isaac.Newton-Opticks.txt"))
		if err != nil {
			b.Skip(err)
		}
		return string(data)
	case "code":
		files, err := filepath.Glob(filepath.Join(root, "src", "net", "http", "*.go"))
		if err != nil || len(files) == 0 {
			b.Skip("no Go sources in GOROOT")
		}
		sort.Strings(files)
		var sb strings.Builder
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			sb.Write(data)
		}
		return sb.String()
	}
	b.Fatalf("no corpus %q", name)
	return ""
}

// nodeReference runs scripts/tokenizers/bench.mjs once per tokenizer and
// corpus: the reference's throughput, measured on the same machine in the
// same run. It returns 0 when node or the reference is not installed
// (`make tokenizer-goldens` installs it).
var nodeResults sync.Map

func nodeReference(b *testing.B, tokenizer, corpusName, corpus string) float64 {
	key := tokenizer + "/" + corpusName
	if v, ok := nodeResults.Load(key); ok {
		return v.(float64)
	}
	_, file, _, _ := runtime.Caller(0)
	scripts := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "tokenizers")
	if _, err := os.Stat(filepath.Join(scripts, "node_modules", "@huggingface", "tokenizers")); err != nil {
		b.Logf("no node reference (run `make tokenizer-goldens` to install it): %v", err)
		nodeResults.Store(key, 0.0)
		return 0
	}
	tmp := filepath.Join(b.TempDir(), "corpus.txt")
	if err := os.WriteFile(tmp, []byte(corpus), 0o600); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("node", filepath.Join(scripts, "bench.mjs"), filepath.Join(cacheDir(), tokenizer), tmp, "3").Output()
	if err != nil {
		b.Fatalf("node reference: %v", err)
	}
	var res struct {
		MBPerS float64 `json:"mb_per_s"`
		Tokens int     `json:"tokens"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("node reference output %q: %v", out, err)
	}
	nodeResults.Store(key, res.MBPerS)
	return res.MBPerS
}

var benchTokenizers sync.Map

// benchTokenizer is a tokenizer without the segment cache: the benchmarks
// encode one text over and over, which the segment cache would answer
// without tokenizing.
func benchTokenizer(b *testing.B, name string) *Tokenizer {
	if t, ok := benchTokenizers.Load(name); ok {
		return t.(*Tokenizer)
	}
	t, err := New(testFiles(b, name), WithSegmentCache(0))
	if err != nil {
		b.Fatal(err)
	}
	benchTokenizers.Store(name, t)
	return t
}

// BenchmarkEncode is single-threaded encoding throughput (MB/s, from
// SetBytes) on English and code, with the node reference's throughput in
// the same run (node-MB/s) and the ratio (x-node).
func BenchmarkEncode(b *testing.B) {
	for _, tok := range realTokenizers {
		for _, corpusName := range []string{"english", "code"} {
			b.Run(tok+"/"+corpusName, func(b *testing.B) {
				t := benchTokenizer(b, tok)
				corpus := benchCorpus(b, corpusName)
				ref := nodeReference(b, tok, corpusName, corpus)
				tokens := len(t.Encode(corpus, false)) // warms the word cache
				b.SetBytes(int64(len(corpus)))
				b.ResetTimer()
				for b.Loop() {
					t.Encode(corpus, false)
				}
				b.StopTimer()
				mbs := float64(len(corpus)) * float64(b.N) / b.Elapsed().Seconds() / 1e6
				b.ReportMetric(float64(tokens), "tokens/op")
				if ref > 0 {
					b.ReportMetric(ref, "node-MB/s")
					b.ReportMetric(mbs/ref, "x-node")
				}
			})
		}
	}
}

// BenchmarkEncode32K encodes a prompt of 32,768 tokens of English: warm,
// its words in the word cache as in steady state, and cold, the cache
// emptied before each encoding (every word merged from its bytes).
func BenchmarkEncode32K(b *testing.B) {
	for _, tok := range realTokenizers {
		for _, cold := range []bool{false, true} {
			name := tok + "/warm"
			if cold {
				name = tok + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				t := benchTokenizer(b, tok)
				prompt := promptOfTokens(b, t, benchCorpus(b, "english"), 32768)
				b.SetBytes(int64(len(prompt)))
				b.ResetTimer()
				for b.Loop() {
					if cold {
						b.StopTimer()
						t.model.cache.clear()
						b.StartTimer()
					}
					t.Encode(prompt, true)
				}
			})
		}
	}
}

// promptOfTokens is the shortest prefix of text, at a line break, that
// encodes to at least n tokens.
func promptOfTokens(b *testing.B, t *Tokenizer, text string, n int) string {
	b.Helper()
	lines := strings.SplitAfter(strings.Repeat(text, 2), "\n")
	end, estimate := 0, 0
	for end < len(lines) {
		estimate += len(t.Encode(lines[end], false))
		end++
		if estimate >= n {
			prompt := strings.Join(lines[:end], "")
			if len(t.Encode(prompt, false)) >= n {
				return prompt
			}
		}
	}
	b.Fatalf("corpus too short for %d tokens", n)
	return ""
}

func BenchmarkLoad(b *testing.B) {
	for _, tok := range realTokenizers {
		b.Run(tok, func(b *testing.B) {
			f := testFiles(b, tok)
			for b.Loop() {
				if _, err := New(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChatPrefix renders and encodes chat requests that share a long
// system prompt with tool definitions (about 6,000 tokens) and differ in
// the user's message, with the segment cache and without: the effect of
// the cache on prompts whose prefix repeats.
func BenchmarkChatPrefix(b *testing.B) {
	english := benchCorpus(b, "english")
	paragraphs := strings.Split(english, "\n\n")
	system := strings.Join(paragraphs[100:160], "\n\n")
	tools := `[{"type":"function","function":{"name":"search","description":"Search the library catalogue","parameters":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"integer"}},"required":["query"]}}}]`
	var questions []string
	for _, p := range paragraphs[200:] {
		if len(p) > 80 && len(p) < 600 {
			questions = append(questions, p)
		}
	}
	for _, cacheBytes := range []int{DefaultSegmentCacheBytes, 0} {
		name := "cache"
		if cacheBytes == 0 {
			name = "nocache"
		}
		b.Run(name, func(b *testing.B) {
			tok, err := New(testFiles(b, "qwen3"), WithSegmentCache(cacheBytes))
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]tokenizer.ChatRequest, len(questions))
			for i, q := range questions {
				body, _ := json.Marshal(map[string]any{"messages": []any{
					map[string]any{"role": "system", "content": system},
					map[string]any{"role": "user", "content": q},
				}})
				body = []byte(strings.Replace(string(body), `{"messages"`, `{"tools":`+tools+`,"messages"`, 1))
				if err := json.Unmarshal(body, &reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
			prompt, _ := tok.ApplyChatTemplate(reqs[0])
			tokens := len(tok.Encode(prompt, false))
			// Warm the word cache on every question, as in steady state.
			for _, r := range reqs {
				p, _ := tok.ApplyChatTemplate(r)
				tok.Encode(p, false)
			}
			h0, m0 := tok.SegmentCacheStats()
			i := 0
			b.ResetTimer()
			for b.Loop() {
				// Every user message is new, as in real traffic.
				r := reqs[i%len(reqs)]
				r.Messages[1]["content"] = questions[i%len(questions)] + " #" + strconv.Itoa(i)
				p, err := tok.ApplyChatTemplate(r)
				if err != nil {
					b.Fatal(err)
				}
				tok.Encode(p, false)
				i++
			}
			b.StopTimer()
			b.ReportMetric(float64(tokens), "tokens/op")
			if h, m := tok.SegmentCacheStats(); h+m > h0+m0 {
				b.ReportMetric(float64(h-h0)/float64(h+m-h0-m0), "hit-rate")
			}
		})
	}
}
