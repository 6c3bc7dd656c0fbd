package chattemplate

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-llm/strata/tokenizer"
)

func newTemplate(t testing.TB, src string) *Template {
	t.Helper()
	tmpl, err := New(Config{
		Templates:     map[string]string{DefaultName: src},
		SpecialTokens: map[string]any{"bos_token": "<s>", "eos_token": "</s>"},
		Now:           func() time.Time { return fixedTime },
	})
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// request decodes an OpenAI request body as the gateway and the sim do.
func request(t testing.TB, body string) tokenizer.ChatRequest {
	t.Helper()
	var req tokenizer.ChatRequest
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Fatal(err)
	}
	return req
}

const oneMessage = `{"messages":[{"role":"user","content":"hi"}]}`

// Jinja2 behaviour the golden reference does not share, from Jinja2's
// documentation and source: each case says what Python renders.
func TestJinja2Semantics(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"newlines normalized", "{% if true %}\r\nA\r\n{% endif %}\r\nB\rC", "A\nB\nC"},
		{"one trailing newline dropped", "x\n", "x"},
		{"continue and break", "{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% if x == 3 %}{% break %}{% endif %}{% endfor %}", "13"},
		{"strip with characters", "{{ 'xxaxx'.lstrip('x') }}|{{ 'xxaxx'.rstrip('x') }}|{{ 'xxaxx'.strip('x') }}", "axx|xxa|a"},
		{"str of values", "{{ none }}|{{ true }}|{{ [1, 'a', none, false, {'k': 'v'}] }}|{{ 1.0 }}|{{ 7 / 2 }}", "None|True|[1, 'a', None, False, {'k': 'v'}]|1.0|3.5"},
		{"repr of strings", `{{ ["it's", 'say "hi"', 'tab\t', 'nl\n', 'é', '\u200b'] }}`, `["it's", 'say "hi"', 'tab\t', 'nl\n', 'é', '\u200b']`},
		{"string filter", "{{ none | string }}|{{ [1] | string }}|{{ x | string }}", "None|[1]|"},
		{"trim filter", "{{ none | trim }}|{{ '  a  ' | trim }}|{{ 'xax' | trim('x') }}", "None|a|a"},
		{"undefined prints nothing", "[{{ nothing }}]", "[]"},
		{"plus marker keeps indentation", "x\n    {%+ if true %}y{% endif %}", "x\n    y"},
		{"plus marker keeps newline", "{% if true +%}\ny{% endif %}", "\ny"},
		{"raw block", "{% raw %}{{ x }} {% y %}{% endraw %}!", "{{ x }} {% y %}!"},
		{"comment whitespace", "a\n  {# c #}\nb", "a\nb"},
		{"trim marker on comment", "a  {#- c -#}  b", "ab"},
		{"string escapes", `{{ '\x41\u00e9\r\\' }}|{{ "q\"q" }}`, "Aé\r\\|q\"q"},
		{"braces in expressions", "{{ {'a': {'b': 1}}['a']['b'] }}", "1"},
		{"brace before tag", "{\n  {%- if true %}x{% endif %}}", "{x}"},
		{"trim across expression", "A {{- 'x' }}{%- if true %} y{% endif %}", "Ax y"},
		{"lstrip only at line start", "a {% if true %}b{% endif %}", "a b"},
		{"lstrip after trimmed newline", "{% if true %}\n    {% if true %}x{% endif %}{% endif %}", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newTemplate(t, tt.src).Render(request(t, oneMessage))
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
}

func TestToJSON(t *testing.T) {
	tests := []struct {
		name, src, body, want string
	}{
		{"key order and numbers", "{{ tools[0].function.parameters | tojson }}",
			`{"messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"z":1,"a":1.0,"m":[1e16,2.5e-7,-0,1E2,12345678901234567890]}}}]}`,
			`{"z": 1, "a": 1.0, "m": [1e+16, 2.5e-07, 0, 100.0, 1.2345678901234567e+19]}`},
		{"indent", "{{ {'a': [1, {}], 'b': []} | tojson(indent=2) }}", oneMessage, "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}"},
		{"indent string", "{{ [1] | tojson(indent='\\t') }}", oneMessage, "[\n\t1\n]"},
		{"separators", "{{ {'a': 1, 'b': [2]} | tojson(separators=(',', ':')) }}", oneMessage, `{"a":1,"b":[2]}`},
		{"sort keys", "{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}", oneMessage, `{"a": 2, "b": 1}`},
		{"ensure ascii", "{{ 'é😀\\u2028<&>' | tojson(ensure_ascii=true) }}", oneMessage, `"\u00e9\ud83d\ude00\u2028<&>"`},
		{"no html or line separator escapes", "{{ '<&>\\u2028\\x7f' | tojson }}", oneMessage, "\"<&>\u2028\x7f\""},
		{"control characters", "{{ '\\x00\\x1f\\n\\t\\b\\f' | tojson }}", oneMessage, `"\u0000\u001f\n\t\b\f"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newTemplate(t, tt.src).Render(request(t, tt.body))
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
	if _, err := newTemplate(t, "{{ nothing | tojson }}").Render(request(t, oneMessage)); err == nil {
		t.Fatal("tojson of Undefined rendered (json.dumps raises)")
	}
}

func TestStrftime(t *testing.T) {
	at := time.Date(2024, 3, 5, 14, 7, 9, 0, time.UTC)
	tests := map[string]string{
		"%d %b %Y":          "05 Mar 2024",
		"%-d %B %Y":         "5 March 2024",
		"%Y-%m-%d %H:%M:%S": "2024-03-05 14:07:09",
		"%a %A %j %I%p %e":  "Tue Tuesday 065 02PM  5",
		"%y %% %q":          "24 % %q",
	}
	for format, want := range tests {
		if got := strftime(at, format); got != want {
			t.Errorf("strftime(%q) = %q, want %q", format, got, want)
		}
	}
	got, err := newTemplate(t, "{{ strftime_now('%d %b %Y') }}").Render(request(t, oneMessage))
	if err != nil || got != "26 Jul 2024" {
		t.Fatalf("strftime_now = %q, %v", got, err)
	}
}

func TestContentFormatDetection(t *testing.T) {
	tests := []struct {
		name, src string
		want      ContentFormat
	}{
		{"string", "{% for m in messages %}{{ m.content }}{% endfor %}", FormatString},
		{"loop over content", "{% for m in messages %}{% for c in m.content %}{{ c.text }}{% endfor %}{% endfor %}", FormatOpenAI},
		{"subscript", "{% for m in messages %}{% for c in m['content'] %}{% endfor %}{% endfor %}", FormatOpenAI},
		{"through assignments", "{% set msgs = messages[1:] %}{% set more = msgs | list %}{% for m in more %}{% for c in m.content | reverse %}{% endfor %}{% endfor %}", FormatOpenAI},
		{"loop filter", "{% for m in messages if m.role != 'system' %}{% for c in m.content %}{% endfor %}{% endfor %}", FormatOpenAI},
		{"content of a message by index is not a loop variable", "{% for c in messages[0].content %}{% endfor %}", FormatString},
		// vLLM's detection asserts plain-name targets and answers
		// "string" when a matching one is not.
		{"namespace target", "{% set ns = namespace() %}{% set ns.m = messages %}{% for m in messages %}{% for c in m.content %}{% endfor %}{% endfor %}", FormatString},
		{"tuple loop target", "{% for i, m in messages %}{% endfor %}{% for m in messages %}{% for c in m.content %}{% endfor %}{% endfor %}", FormatString},
		{"conditional is not an access", "{% set msgs = messages if true else [] %}{% for m in msgs %}{% for c in m.content %}{% endfor %}{% endfor %}", FormatString},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := newTemplate(t, tt.src).ContentFormat(DefaultName); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestConversation(t *testing.T) {
	const dump = "{% for m in messages %}{{ m | tojson }}\n{% endfor %}"
	const parts = "{% for m in messages %}{% for c in m.content %}{{ c | tojson }}{% endfor %}\n{% endfor %}"
	tests := []struct {
		name, src, body, want string
	}{
		{"string content", dump,
			`{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"extra":1},{"role":"assistant","content":null}]}`,
			"{\"role\": \"user\", \"content\": \"a\\nb\"}\n{\"role\": \"assistant\", \"content\": \"\"}\n"},
		{"openai content", parts,
			`{"messages":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"text","text":"b"},{"type":"input_text","text":"c"}]},{"role":"assistant","content":null}]}`,
			// trim_blocks eats the newline after the inner endfor.
			"{\"type\": \"text\", \"text\": \"a\"}{\"type\": \"text\", \"text\": \"b\"}{\"type\": \"text\", \"text\": \"c\"}"},
		{"tool calls with parsed arguments", dump,
			`{"messages":[{"role":"assistant","content":"","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{\"z\": 1, \"a\": [true]}"}},{"id":"2","type":"function","function":{"name":"g","arguments":""}},{"id":"3","type":"function","function":{"name":"h","arguments":null}}]}]}`,
			"{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"1\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"z\": 1, \"a\": [true]}}}, {\"id\": \"2\", \"type\": \"function\", \"function\": {\"name\": \"g\", \"arguments\": {}}}, {\"id\": \"3\", \"type\": \"function\", \"function\": {\"name\": \"h\", \"arguments\": {}}}]}\n"},
		{"reasoning", dump,
			`{"messages":[{"role":"assistant","content":"a","reasoning_content":"r"},{"role":"assistant","content":"b","reasoning":"","reasoning_content":"s"},{"role":"user","content":"c","reasoning_content":"ignored"}]}`,
			"{\"role\": \"assistant\", \"content\": \"a\", \"reasoning\": \"r\", \"reasoning_content\": \"r\"}\n{\"role\": \"assistant\", \"content\": \"b\", \"reasoning\": \"s\", \"reasoning_content\": \"s\"}\n{\"role\": \"user\", \"content\": \"c\"}\n"},
		{"tool call id and name", dump,
			`{"messages":[{"role":"tool","content":"r","tool_call_id":"7","name":"f"},{"role":"user","content":"u","tool_call_id":"x","name":3}]}`,
			"{\"role\": \"tool\", \"content\": \"r\", \"tool_call_id\": \"7\", \"name\": \"f\"}\n{\"role\": \"user\", \"content\": \"u\"}\n"},
		{"tools as vLLM dumps them", "{{ tools | tojson }}",
			`{"messages":[],"tools":[{"function":{"parameters":{"b":1,"a":2},"strict":true,"name":"f"},"type":"function"},{"type":"function","function":{"name":"g"}}]}`,
			`[{"type": "function", "function": {"name": "f", "description": null, "parameters": {"b": 1, "a": 2}, "strict": true}}, {"type": "function", "function": {"name": "g", "description": null, "parameters": null}}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newTemplate(t, tt.src).Render(request(t, tt.body))
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	tmpl := newTemplate(t, "{% for m in messages %}{{ m.content }}{% endfor %}{% if messages | length > 3 %}{{ raise_exception('too many: ' ~ messages | length) }}{% endif %}")
	tests := []struct {
		name, body string
		is         error
	}{
		{"raise_exception", `{"messages":[{"role":"user","content":"1"},{"role":"user","content":"2"},{"role":"user","content":"3"},{"role":"user","content":"4"}]}`, ErrRaised},
		{"image part", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, tokenizer.ErrUnsupportedContent},
		{"no role", `{"messages":[{"content":"x"}]}`, nil},
		{"bad arguments", `{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{not json"}}]}]}`, nil},
		{"non-function tool", `{"messages":[],"tools":[{"type":"code_interpreter"}]}`, nil},
		{"generation prompt and continuation", `{"messages":[{"role":"assistant","content":"x"}],"add_generation_prompt":true,"continue_final_message":true}`, nil},
		{"forbidden kwarg", `{"messages":[],"chat_template_kwargs":{"chat_template":"x"}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tmpl.Render(request(t, tt.body))
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestKwargsAndSelection(t *testing.T) {
	tmpl := newTemplate(t, "{{ add_generation_prompt }} {{ enable_thinking }} {{ bos_token }} {{ tools is none }}")
	got, err := tmpl.Render(request(t, `{"messages":[],"chat_template_kwargs":{"add_generation_prompt":false,"enable_thinking":false,"bos_token":"B"}}`))
	if err != nil || got != "False False B True" {
		t.Fatalf("got %q, %v", got, err)
	}
	two, err := New(Config{Templates: map[string]string{DefaultName: "D", ToolUseName: "T"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := two.Render(request(t, `{"messages":[]}`)); got != "D" {
		t.Fatalf("without tools: %q", got)
	}
	if got, _ := two.Render(request(t, `{"messages":[],"tools":[]}`)); got != "T" {
		t.Fatalf("with tools: %q", got)
	}
	only, err := New(Config{Templates: map[string]string{ToolUseName: "T"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := only.Render(request(t, `{"messages":[]}`)); err == nil {
		t.Fatal("rendered with no default template")
	}
}

func TestContinueFinalMessage(t *testing.T) {
	tmpl := newTemplate(t, "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}")
	tests := []struct{ final, want string }{
		{"Once upon", "<user>hi</user><assistant>Once upon"},
		{"Once upon  ", "<user>hi</user><assistant>Once upon"}, // the template trimmed it
	}
	for _, tt := range tests {
		body, _ := json.Marshal(map[string]any{
			"messages":               []any{map[string]any{"role": "user", "content": "hi"}, map[string]any{"role": "assistant", "content": tt.final}},
			"add_generation_prompt":  false,
			"continue_final_message": true,
		})
		got, err := tmpl.Render(request(t, string(body)))
		if err != nil || got != tt.want {
			t.Fatalf("final %q: got %q, %v; want %q", tt.final, got, err, tt.want)
		}
	}
}

func TestConcurrentRender(t *testing.T) {
	tmpl := newTemplate(t, "{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", i) + `"}]}`
			for range 100 {
				if got, err := tmpl.Render(request(t, body)); err != nil || got != "user:"+strings.Repeat("x", i)+";" {
					t.Errorf("got %q, %v", got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestCompileErrors(t *testing.T) {
	for _, src := range []string{"{% if x %}", "{{ x ", "{# open", "{% raw %}x", "{{ 'unterminated }}", "{% for %}{% endfor %}"} {
		if _, err := New(Config{Templates: map[string]string{DefaultName: src}}); err == nil {
			t.Errorf("compiled %q", src)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("no templates accepted")
	}
}
