package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dlclark/regexp2/v2"
)

// A pattern finds the non-overlapping matches of a Split pre-tokenizer or a
// Replace normalizer/decoder in a string, left to right, as byte ranges.
type pattern interface {
	findAll(s string, match func(start, end int))
}

// patternJSON is tokenizers' Pattern: {"String": "…"} or {"Regex": "…"}.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func newPattern(raw json.RawMessage) (pattern, error) {
	var p patternJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("pattern: %w", err)
	}
	switch {
	case p.String != nil && p.Regex == nil:
		return stringPattern(*p.String), nil
	case p.Regex != nil && p.String == nil:
		return compileRegex(*p.Regex)
	}
	return nil, fmt.Errorf("pattern %s: want {\"String\": …} or {\"Regex\": …}", raw)
}

// stringPattern matches a literal; the empty string matches nothing, as in
// tokenizers.
type stringPattern string

func (p stringPattern) findAll(s string, match func(start, end int)) {
	if p == "" {
		return
	}
	for off := 0; ; {
		i := strings.Index(s[off:], string(p))
		if i < 0 {
			return
		}
		match(off+i, off+i+len(p))
		off += i + len(p)
	}
}

// regexPattern is a regular expression with lookaround, run by regexp2
// (.NET semantics, which agree with the Oniguruma engine of tokenizers on
// what tokenizer patterns use: \s is White_Space, \p{…} are Unicode general
// categories, ^ and $ match at line breaks). The common GPT-2, cl100k and
// Qwen pre-tokenizer patterns skip it for a hand-written scanner.
type regexPattern struct {
	re *regexp2.Regexp
}

func compileRegex(expr string) (pattern, error) {
	if sc, ok := scannerFor(expr); ok {
		return sc, nil
	}
	re, err := regexp2.Compile(expr, regexp2.Multiline, regexp2.OptionMaxBacktrackingStackSize(-1))
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", expr, err)
	}
	return regexPattern{re: re}, nil
}

func (p regexPattern) findAll(s string, match func(start, end int)) {
	// Without a timeout or a backtracking limit (see compileRegex) regexp2
	// has no way to fail on a valid string.
	idx, err := p.re.FindAllStringIndex(s, -1)
	if err != nil {
		panic(fmt.Sprintf("hf: regex %q failed: %v", p.re.String(), err))
	}
	for _, m := range idx {
		match(m[0], m[1])
	}
}

// replaceAll replaces every match of p in s with content.
func replaceAll(p pattern, s, content string) string {
	var b strings.Builder
	last, matched := 0, false
	p.findAll(s, func(start, end int) {
		if !matched {
			b.Grow(len(s))
			matched = true
		}
		b.WriteString(s[last:start])
		b.WriteString(content)
		last = end
	})
	if !matched {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}
