package hf

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/strata-llm/strata/test/testutil"
)

// The real tokenizers the tests run against are fetched by `make
// tokenizer-data` into $STRATA_TOKENIZER_CACHE (default .cache/tokenizers
// at the repository root).
func cacheDir() string {
	if d := os.Getenv("STRATA_TOKENIZER_CACHE"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".cache", "tokenizers")
}

// fixedTime is the clock of the goldens' strftime_now.
var fixedTime = time.Date(2024, 7, 26, 9, 30, 0, 0, time.UTC)

// realTokenizers are the fetched tokenizers; variants.json derives the
// others from them.
var realTokenizers = []string{"qwen3", "llama3_1", "llama2"}

type variant struct {
	Name string                     `json:"name"`
	Base string                     `json:"base"`
	Set  map[string]json.RawMessage `json:"set"`
}

var loaded struct {
	sync.Mutex
	files map[string]Files
	toks  map[string]*Tokenizer
}

// testFiles returns the files of a real tokenizer or a variant.
func testFiles(t testing.TB, name string) Files {
	t.Helper()
	loaded.Lock()
	defer loaded.Unlock()
	if f, ok := loaded.files[name]; ok {
		return f
	}
	if loaded.files == nil {
		loaded.files, loaded.toks = map[string]Files{}, map[string]*Tokenizer{}
	}
	var f Files
	for _, real := range realTokenizers {
		if name != real {
			continue
		}
		dir := filepath.Join(cacheDir(), name)
		tj, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
		if err != nil {
			testutil.MissingDep(t, "tokenizer files in "+dir, "tokenizer-data")
		}
		cfg, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		f = Files{Tokenizer: tj, Config: cfg}
	}
	if f.Tokenizer == nil {
		var vs []variant
		readJSON(t, filepath.Join("testdata", "variants.json"), &vs)
		for _, v := range vs {
			if v.Name != name {
				continue
			}
			loaded.Unlock()
			base := testFiles(t, v.Base)
			loaded.Lock()
			var doc map[string]json.RawMessage
			if err := json.Unmarshal(base.Tokenizer, &doc); err != nil {
				t.Fatal(err)
			}
			for k, raw := range v.Set {
				doc[k] = raw
			}
			tj, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			f = Files{Tokenizer: tj, Config: base.Config}
		}
	}
	if f.Tokenizer == nil {
		t.Fatalf("no tokenizer %q", name)
	}
	loaded.files[name] = f
	return f
}

// testTokenizer loads a tokenizer once per test binary.
func testTokenizer(t testing.TB, name string) *Tokenizer {
	t.Helper()
	f := testFiles(t, name)
	loaded.Lock()
	defer loaded.Unlock()
	if tok, ok := loaded.toks[name]; ok {
		return tok
	}
	tok, err := New(f, WithClock(func() time.Time { return fixedTime }))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	loaded.toks[name] = tok
	return tok
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// readLines decodes a JSON-lines file, one value per line into fn.
func readLines(t testing.TB, path string, fn func(line []byte)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// corpusCase is a line of testdata/corpus.jsonl.
type corpusCase struct {
	Tag  string  `json:"tag"`
	Text *string `json:"text"`
	Hex  string  `json:"hex"`
}

// input is the case as Encode gets it: raw bytes for the invalid UTF-8 ones.
func (c corpusCase) input(t testing.TB) string {
	if c.Text != nil {
		return *c.Text
	}
	b, err := hex.DecodeString(c.Hex)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadCorpus(t testing.TB) []corpusCase {
	var cases []corpusCase
	readLines(t, filepath.Join("testdata", "corpus.jsonl"), func(line []byte) {
		var c corpusCase
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	})
	return cases
}
