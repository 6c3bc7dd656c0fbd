// Small templates that each exercise one Jinja feature chat templates use
// (whitespace control above all), rendered with a chat request like any
// chat template. Only features on which the reference renders as Python's
// Jinja2 does are listed: it does not normalize "\r\n" in templates, its
// {% continue %} ends the loop, its lstrip/rstrip ignore their argument;
// the Go tests cover those against Jinja2's documented behaviour.

const hi = { messages: [{ role: "system", content: "S" }, { role: "user", content: "Hi there" }, { role: "assistant", content: "Hello" }] };
const tool = {
  messages: [{ role: "user", content: "q" }],
  tools: [{ type: "function", function: { name: "f", description: "d <&>", parameters: { type: "object", properties: { b: { type: "string" }, a: { type: "integer" } }, required: ["b"] } } }],
};

const cases = [
  // Whitespace control: markers, lstrip_blocks, trim_blocks, and tags side by side.
  ["trim markers", "A  {{- 'x' -}}  B  {%- if true -%}  C  {%- endif -%}  D"],
  ["trim after expression", "<|system|>Effort: {{ 'max' | capitalize }}{%- if true -%}!{%- endif -%}"],
  ["trim before expression", "{%- if true -%}{{ ' x ' }}{%- endif %} y"],
  ["lstrip blocks", "line\n    {% if true %}\n    kept\n    {% endif %}\nend"],
  ["lstrip after text", "text {% if true %}x{% endif %} more"],
  ["trim blocks newline", "{% for m in messages %}\n{{ m.role }}\n{% endfor %}\n"],
  ["comment whitespace", "a\n  {# comment #}\nb {#- trimmed -#} c"],
  ["expression does not lstrip", "x\n    {{ 'y' }}\n    z"],
  ["trailing newline dropped", "{{ messages | length }}\n"],
  ["two trailing newlines", "{{ messages | length }}\n\n"],
  ["indent in loop", "{%- for m in messages %}\n  - {{ m.role }}: {{ m.content }}\n{%- endfor %}"],
  ["nested blocks", "{% for m in messages %}{% if m.role == 'user' %}\n  U:{{ m.content }}\n{% elif m.role == 'assistant' %}\n  A:{{ m.content }}\n{% else %}\n  O\n{% endif %}{% endfor %}"],
  ["spaces between tags", "{{ 'a' }} {{ 'b' }}  {% if true %} c {% endif %}  d"],
  // Literals and escapes.
  ["string escapes", "{{ 'tab:\\t nl:\\n quote:\\' bs:\\\\' }}|{{ \"dq:\\\" end\" }}"],
  ["unicode literal", "{{ 'héllo 世界 😀' }}"],
  ["integers and floats", "{{ 1 + 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 10 - 3 * 2 }} {{ 7 / 2 }} {{ 1.5 + 1 }}"],
  // Statements.
  ["namespace", "{%- set ns = namespace(n=0, found=false) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.n }} {{ ns.found }}"],
  ["set and concat", "{% set x = 'a' + 'b' ~ 'c' %}{{ x }}{% set y = messages[0].content ~ '!' %}{{ y }}"],
  ["macro", "{% macro tag(name, v='d') %}<{{ name }}={{ v }}>{% endmacro %}{{ tag('a') }}{{ tag('b', 'x') }}{{ tag(v='y', name='c') }}"],
  ["loop variables", "{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ loop.index0 }}:{{ loop.first }}:{{ loop.last }}:{{ loop.revindex }} {% endfor %}"],
  ["loop over reversed", "{% for m in messages[::-1] %}{{ m.role }},{% endfor %}"],
  ["loop filter", "{% for m in messages if m.role != 'system' %}{{ m.role }}{% endfor %}"],
  ["loop else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}"],
  ["items loop", "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"],
  ["inline if", "{{ 'yes' if messages | length > 2 else 'no' }} {{ 'a' if false }}"],
  // Filters.
  ["filters on strings", "{{ ' Mixed Case ' | trim | lower }}|{{ 'abc' | upper }}|{{ 'hello world' | title }}|{{ 'x' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}"],
  ["filters on lists", "{{ messages | length }} {{ (messages | first).role }} {{ (messages | last).role }} {{ messages | map(attribute='role') | join(', ') }}"],
  ["selectattr", "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'equalto', 'user') | map(attribute='content') | join('|') }}"],
  ["default", "{{ undefined_var | default('dflt') }} {{ messages[0].missing | default('none') }}"],
  ["tojson", "{{ messages[1] | tojson }}"],
  ["tojson tools", "{% for t in tools %}{{ t | tojson }}{% endfor %}"],
  ["tojson indent", "{% for t in tools %}{{ t | tojson(indent=4) }}{% endfor %}"],
  ["tojson indent 2 nested", "{{ {'a': [1, {'b': none}], 'c': 'é\"\\n'} | tojson(indent=2) }}"],
  ["tojson separators", "{{ {'a': [1, 2], 'b': true} | tojson(separators=(',', ':')) }}"],
  ["tojson ensure_ascii", "{{ 'é 😀 ok' | tojson(ensure_ascii=true) }}"],
  ["tojson empty", "{{ [] | tojson }} {{ {} | tojson }} {{ [] | tojson(indent=2) }} {{ {} | tojson(indent=2) }}"],
  // Tests and operators.
  ["tests", "{{ messages is defined }} {{ nothing is defined }} {{ none is none }} {{ 'x' is string }} {{ 1 is number }} {{ messages is iterable }} {{ messages[0] is mapping }}"],
  ["in and not", "{{ 'user' in ['user', 'x'] }} {{ 'a' in 'cat' }} {{ 'k' not in {'k': 1} }} {{ not false and (true or false) }}"],
  ["comparisons", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 'a' == 'a' }} {{ 'a' != 'b' }} {{ messages | length >= 3 }}"],
  // String methods.
  ["string methods", "{{ ' x '.strip() }}|{{ '  a  '.lstrip() }}|{{ '  a  '.rstrip() }}|{{ 'a,b,c'.split(',') | join(' ') }}|{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith('lo') }}|{{ 'abc'.upper() }}|{{ 'a.b'.replace('.', '_') }}"],
  ["split think", "{%- set c = '<think>\\nr\\n</think>\\n\\nanswer' %}{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}"],
  ["slices", "{{ 'abcdef'[1:3] }} {{ 'abcdef'[-2:] }} {{ 'abcdef'[::2] }} {{ (messages[1:] | length) }} {{ messages[-1].role }}"],
  ["dict access", "{{ messages[0]['role'] }} {{ messages[0].role }} {{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 'z') }}"],
  ["raise_exception", "{% if messages | length > 1 %}{{ raise_exception('Only one message allowed') }}{% endif %}ok"],
  ["strftime_now", "Today: {{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d') }}"],
  ["bos eos", "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"],
  ["add_generation_prompt", "{% if add_generation_prompt %}GEN{% else %}NOGEN{% endif %}"],
  ["tools none", "{% if tools %}T{% else %}noT{% endif %} {{ tools is none }}"],
];

export const conformance = [];
for (const [name, template] of cases) {
  conformance.push({ name, template, request: name.startsWith("tojson tools") || name.startsWith("tojson indent") ? tool : hi });
  if (name === "add_generation_prompt" || name === "tools none") {
    conformance.push({ name: name + " (tools, no prompt)", template, request: { ...tool, add_generation_prompt: false } });
  }
}
