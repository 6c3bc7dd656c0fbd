package chattemplate

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-llm/strata/tokenizer"
)

// fixedTime is the goldens' clock (scripts/tokenizers/goldens.mjs).
var fixedTime = time.Date(2024, 7, 26, 9, 30, 0, 0, time.UTC)

type goldenHeader struct {
	Template  string         `json:"template"`
	Reference string         `json:"reference"`
	Special   map[string]any `json:"special"`
	Format    ContentFormat  `json:"format"`
}

type goldenCase struct {
	I        int             `json:"i"`
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Request  json.RawMessage `json:"request"`
	Text     *string         `json:"text"`
	Error    string          `json:"error"`
}

var modCache = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	return strings.TrimSpace(string(out)), err
})

// goModCache is the module cache the templates of the Jinja module's
// testdata are read from.
func goModCache(t testing.TB) string {
	t.Helper()
	dir, err := modCache()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	return dir
}

func readGolden(t testing.TB, path string) (goldenHeader, []goldenCase) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	var hdr goldenHeader
	var cases []goldenCase
	for first := true; sc.Scan(); first = false {
		if first {
			if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var c goldenCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return hdr, cases
}

// referenceLimitation reports why the reference's failure says nothing of
// what Jinja2 renders: "lacks" for a feature it lacks (an unknown test or
// filter, a filter it cannot apply to None or a list, which Jinja2 writes
// with str() first); "lenient" for a None in a string operation, which
// Jinja2 rejects too (TypeError) and the engine used here renders as "".
func referenceLimitation(msg string) string {
	switch {
	case strings.HasPrefix(msg, "Unknown"), strings.HasPrefix(msg, "Cannot apply filter"):
		return "lacks"
	case strings.HasPrefix(msg, "Cannot perform operation on null values"):
		return "lenient"
	}
	return ""
}

// checkCases renders each golden request with tmpl and compares.
func checkCases(t *testing.T, tmpl func(goldenCase) *Template, cases []goldenCase) {
	exact, limited := 0, map[string]int{}
	for _, c := range cases {
		var req tokenizer.ChatRequest
		if err := json.Unmarshal(c.Request, &req); err != nil {
			t.Fatalf("case %d: %v", c.I, err)
		}
		got, err := tmpl(c).Render(req)
		switch {
		case c.Error != "" && referenceLimitation(c.Error) != "":
			limited[referenceLimitation(c.Error)]++
		case c.Error != "":
			if err == nil {
				t.Errorf("case %d %s: reference failed (%s), rendered %q", c.I, c.Name, c.Error, got)
				continue
			}
			exact++
		case err != nil:
			t.Errorf("case %d %s: %v\nwant %q", c.I, c.Name, err, *c.Text)
		case got != *c.Text:
			t.Errorf("case %d %s:\n got  %q\n want %q", c.I, c.Name, got, *c.Text)
		default:
			exact++
		}
	}
	t.Logf("%d of %d cases exact; not comparable (reference failed): %v", exact, len(cases), limited)
}

// TestGoldenTemplates renders chat templates of many models (the Jinja
// engine's own testdata) as the reference does.
func TestGoldenTemplates(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		if name == "conformance" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			hdr, cases := readGolden(t, path)
			src := moduleFile(t, hdr.Template)
			tmpl, err := New(Config{Templates: map[string]string{DefaultName: src}, SpecialTokens: hdr.Special, Now: func() time.Time { return fixedTime }})
			if err != nil {
				t.Fatal(err)
			}
			if f, _ := tmpl.ContentFormat(DefaultName); f != hdr.Format {
				t.Errorf("content format %s, vLLM's detection (reference) says %s", f, hdr.Format)
			}
			checkCases(t, func(goldenCase) *Template { return tmpl }, cases)
		})
	}
}

// TestGoldenConformance renders small templates that each exercise one
// Jinja feature.
func TestGoldenConformance(t *testing.T) {
	hdr, cases := readGolden(t, filepath.Join("testdata", "golden", "conformance.jsonl"))
	checkCases(t, func(c goldenCase) *Template {
		tmpl, err := New(Config{Templates: map[string]string{DefaultName: c.Template}, SpecialTokens: hdr.Special, Now: func() time.Time { return fixedTime }})
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		return tmpl
	}, cases)
}
