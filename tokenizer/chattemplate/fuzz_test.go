package chattemplate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-llm/strata/tokenizer"
)

// FuzzTemplate: any template source compiles or fails with an error, and a
// compiled one renders a request or fails with an error, never a panic.
func FuzzTemplate(f *testing.F) {
	_, cases := readGolden(f, filepath.Join("testdata", "golden", "conformance.jsonl"))
	for _, c := range cases {
		f.Add(c.Template)
	}
	f.Add("{%- for m in messages -%}{{ m.content | trim }}{% raw %}{{{% endraw %}{%+ if x +%}\n{% endif %}{% endfor %}")
	req := request(f, `{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"u"}]},{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}],"tools":[{"type":"function","function":{"name":"f"}}]}`)
	f.Fuzz(func(t *testing.T, src string) {
		tmpl, err := New(Config{Templates: map[string]string{DefaultName: src}, SpecialTokens: map[string]any{"bos_token": "<s>"}})
		if err != nil {
			return
		}
		_, _ = tmpl.Render(req)
	})
}

// FuzzRender: any request body either fails to decode or renders (or fails
// to render) with a real template, never panicking.
func FuzzRender(f *testing.F) {
	_, cases := readGolden(f, filepath.Join("testdata", "golden", "Qwen3-8B-Q8_0.jsonl"))
	for i, c := range cases {
		if i%5 == 0 {
			f.Add([]byte(c.Request))
		}
	}
	hdr, _ := readGolden(f, filepath.Join("testdata", "golden", "Qwen3-8B-Q8_0.jsonl"))
	src := moduleFile(f, hdr.Template)
	tmpl, err := New(Config{Templates: map[string]string{DefaultName: src}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req tokenizer.ChatRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		_, _ = tmpl.Render(req)
	})
}

// moduleFile reads a file of a module in the module cache
// (module@version/path, as the golden headers name templates).
func moduleFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goModCache(t), filepath.FromSlash(path)))
	if err != nil {
		t.Fatalf("%v (the template comes from the Jinja module's testdata)", err)
	}
	return string(b)
}
