package chattemplate

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Chat templates are written for Python's Jinja2 as Hugging Face configures
// it (trim_blocks and lstrip_blocks on, keep_trailing_newline off) and are
// run here by github.com/ardanlabs/jinja. prepare rewrites a template so
// that the engine renders exactly what Jinja2 renders where v1.8.0 of the
// engine differs:
//
//   - Whitespace control. The engine applies a tag's trim marker or block
//     default to the nearest text segment even across other tags
//     ("{{ x }}{%- endif %}" eats the space before "{{ x }}"). prepare
//     applies Jinja2's rules itself, removes the markers, and writes text so
//     that the engine's own block defaults have nothing left to trim.
//   - String literals, which Jinja2 unescapes as Python does (\r, \xNN,
//     \uNNNN…) and the engine only partly: prepare writes them with the
//     characters themselves.
//   - The tojson filter, which Hugging Face replaces with json.dumps and
//     the engine implements differently (indent, key order, escapes),
//     and the string and trim filters (which write None as "" and lists
//     without Python's escapes): prepare points them at ours (pyjson.go,
//     pystr.go).
//   - Output: Jinja2 writes {{ x }} as Python's str(x) (None, True, lists
//     and dicts as Python writes them); prepare pipes every expression
//     through a filter that does (pystr.go).
//
// The lexer follows Jinja2's: tags end outside string literals and brackets,
// comments at the first "#}", raw blocks are literal.

// tojsonFilter is the name the tojson filter is renamed to.
const tojsonFilter = "strata_tojson"

// replacedFilters are the filters prepare points at implementations of
// ours, which follow Jinja2 (and Hugging Face's tojson) where the engine's
// do not: string and trim write any value as Python's str() first.
var replacedFilters = map[string]string{
	"tojson": tojsonFilter,
	"string": strFilter,
	"trim":   trimFilter,
}

type segKind uint8

const (
	segText segKind = iota
	segVar
	segBlock
	segComment
	segRawBegin
	segRawText
	segRawEnd
)

type segment struct {
	kind segKind
	// text is the text of a text segment, the body of a tag.
	text string
	// lmark and rmark are the whitespace-control markers ('-', '+' or 0)
	// after the tag's opener and before its closer.
	lmark, rmark byte
	// lineStart: the text begins at the start of a line (template start, or
	// after a tag whose end consumed a newline), for lstrip_blocks.
	lineStart bool
}

// prepared is a template ready for the engine, and the statements content
// format detection reads.
type prepared struct {
	source     string
	statements [][]token // bodies of {% for %} and {% set %} tags, lexed
}

func prepare(src string) (prepared, error) {
	// Jinja2 reads "\r\n" and "\r" as "\n" and drops one trailing newline.
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	src = strings.TrimSuffix(src, "\n")
	segs, err := lex(src)
	if err != nil {
		return prepared{}, err
	}
	applyWhitespaceControl(segs)
	var out strings.Builder
	var p prepared
	for _, s := range segs {
		switch s.kind {
		case segText:
			writeText(&out, s.text)
		case segRawText:
			if s.text != "" {
				out.WriteString("{{ ")
				out.WriteString(stringLiteral(s.text))
				out.WriteString(" }}")
			}
		case segVar, segBlock:
			toks, err := lexExpr(s.text)
			if err != nil {
				return prepared{}, err
			}
			open, closer := "{{ ", " }}"
			if s.kind == segBlock {
				open, closer = "{% ", " %}"
				if sig := significant(toks); len(sig) > 0 && sig[0].kind == tokName && (sig[0].text == "for" || sig[0].text == "set") {
					p.statements = append(p.statements, toks)
				}
			}
			out.WriteString(open)
			if s.kind == segVar && len(significant(toks)) > 0 {
				// Jinja2 writes values with str(); see strFilter.
				out.WriteString("(")
				writeBody(&out, toks)
				out.WriteString(") | " + strFilter)
			} else {
				writeBody(&out, toks)
			}
			out.WriteString(closer)
		}
	}
	p.source = out.String()
	return p, nil
}

// lex splits a template into text and tags.
func lex(src string) ([]segment, error) {
	var segs []segment
	for i := 0; i < len(src); {
		j := nextOpener(src, i)
		if j > i {
			segs = append(segs, segment{kind: segText, text: src[i:j]})
		}
		if j == len(src) {
			break
		}
		kind := segVar
		switch src[j+1] {
		case '%':
			kind = segBlock
		case '#':
			kind = segComment
		}
		k := j + 2
		var lmark byte
		if k < len(src) && (src[k] == '-' || src[k] == '+') {
			lmark = src[k]
			k++
		}
		switch kind {
		case segComment:
			end := strings.Index(src[k:], "#}")
			if end < 0 {
				return nil, fmt.Errorf("comment at byte %d is not closed", j)
			}
			body := src[k : k+end]
			seg := segment{kind: segComment, lmark: lmark}
			if body != "" && (body[len(body)-1] == '-' || body[len(body)-1] == '+') {
				seg.rmark = body[len(body)-1]
			}
			segs = append(segs, seg)
			i = k + end + 2
		default:
			bodyEnd, next, rmark, err := tagEnd(src, k, kind)
			if err != nil {
				return nil, fmt.Errorf("tag at byte %d: %w", j, err)
			}
			body := src[k:bodyEnd]
			if kind == segBlock && strings.TrimSpace(body) == "raw" {
				rawSegs, after, err := lexRaw(src, next)
				if err != nil {
					return nil, fmt.Errorf("raw block at byte %d: %w", j, err)
				}
				segs = append(segs, segment{kind: segRawBegin, lmark: lmark, rmark: rmark})
				segs = append(segs, rawSegs...)
				i = after
				continue
			}
			segs = append(segs, segment{kind: kind, text: body, lmark: lmark, rmark: rmark})
			i = next
		}
	}
	return segs, nil
}

// nextOpener returns the position of the next "{{", "{%" or "{#" at or
// after i, or len(src).
func nextOpener(src string, i int) int {
	for {
		k := strings.IndexByte(src[i:], '{')
		if k < 0 || i+k+1 >= len(src) {
			return len(src)
		}
		if c := src[i+k+1]; c == '{' || c == '%' || c == '#' {
			return i + k
		}
		i += k + 1
	}
}

// tagEnd finds the closer of a {{ }} or {% %} tag whose body starts at k:
// the first "}}" or "%}" outside string literals and brackets. It returns
// where the body ends (before a '-' or '+' marker), where the text after the
// tag starts, and the marker.
func tagEnd(src string, k int, kind segKind) (bodyEnd, next int, rmark byte, err error) {
	closer := byte('}')
	if kind == segBlock {
		closer = '%'
	}
	depth := 0
	for i := k; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '\'' || c == '"':
			end, err := stringEnd(src, i)
			if err != nil {
				return 0, 0, 0, err
			}
			i = end - 1
		case depth == 0 && (c == '-' || c == '+') && i+2 < len(src) && src[i+1] == closer && src[i+2] == '}':
			return i, i + 3, c, nil
		case depth == 0 && c == closer && i+1 < len(src) && src[i+1] == '}':
			return i, i + 2, 0, nil
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth = max(0, depth-1)
		}
	}
	return 0, 0, 0, fmt.Errorf("not closed")
}

// stringEnd returns the position after the string literal starting at i.
func stringEnd(src string, i int) (int, error) {
	q := src[i]
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			j++
		case q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("string literal at byte %d is not closed", i)
}

// lexRaw reads a raw block's content up to {% endraw %}.
func lexRaw(src string, i int) ([]segment, int, error) {
	for j := i; ; {
		k := strings.Index(src[j:], "{%")
		if k < 0 {
			return nil, 0, fmt.Errorf("no {%% endraw %%}")
		}
		start := j + k
		p := start + 2
		var lmark byte
		if p < len(src) && (src[p] == '-' || src[p] == '+') {
			lmark = src[p]
			p++
		}
		rest := strings.TrimLeft(src[p:], " \t\n")
		if !strings.HasPrefix(rest, "endraw") {
			j = start + 2
			continue
		}
		q := len(src) - len(rest) + len("endraw")
		q += len(src[q:]) - len(strings.TrimLeft(src[q:], " \t\n"))
		var rmark byte
		if q < len(src) && (src[q] == '-' || src[q] == '+') {
			rmark = src[q]
			q++
		}
		if !strings.HasPrefix(src[q:], "%}") {
			j = start + 2
			continue
		}
		return []segment{
			{kind: segRawText, text: src[i:start]},
			{kind: segRawEnd, lmark: lmark, rmark: rmark},
		}, q + 2, nil
	}
}

// pyIsSpace is Python's str.isspace, which Jinja2's stripping uses: Unicode
// White_Space plus the information separators U+001C..U+001F.
func pyIsSpace(r rune) bool { return unicode.IsSpace(r) || (0x1C <= r && r <= 0x1F) }

// applyWhitespaceControl trims text segments as Jinja2's lexer does with
// trim_blocks and lstrip_blocks.
func applyWhitespaceControl(segs []segment) {
	lineStart := true // the template's start is a line start
	for i := range segs {
		s := &segs[i]
		if s.kind == segText || s.kind == segRawText {
			s.lineStart = lineStart
			continue
		}
		// The text before the tag: a '-' strips all its trailing
		// whitespace; else lstrip_blocks strips a block's indentation.
		if i > 0 && (segs[i-1].kind == segText || segs[i-1].kind == segRawText) {
			prev := &segs[i-1]
			switch {
			case s.lmark == '-':
				prev.text = strings.TrimRightFunc(prev.text, pyIsSpace)
			case s.lmark != '+' && s.kind != segVar:
				lpos := strings.LastIndexByte(prev.text, '\n') + 1
				tail := prev.text[lpos:]
				if (lpos > 0 || prev.lineStart) && tail != "" && strings.TrimLeftFunc(tail, pyIsSpace) == "" {
					prev.text = prev.text[:lpos]
				}
			}
		}
		// The text after the tag: a '-' strips all its leading whitespace;
		// else trim_blocks removes the newline ending a block (not a raw
		// block's opening tag).
		lineStart = false
		if i+1 < len(segs) && (segs[i+1].kind == segText || segs[i+1].kind == segRawText) {
			next := &segs[i+1]
			switch {
			case s.rmark == '-':
				trimmed := strings.TrimLeftFunc(next.text, pyIsSpace)
				lineStart = strings.HasSuffix(next.text[:len(next.text)-len(trimmed)], "\n")
				next.text = trimmed
			case s.rmark != '+' && s.kind != segVar && s.kind != segRawBegin && strings.HasPrefix(next.text, "\n"):
				next.text = next.text[1:]
				lineStart = true
			}
		}
	}
}

// writeText writes template text so that the engine's own block trimming
// finds nothing to trim: a leading newline and trailing spaces or tabs are
// written as string expressions. So is a trailing "{", which trimming may
// have put right before the next tag's "{".
func writeText(out *strings.Builder, text string) {
	if strings.HasPrefix(text, "\n") {
		out.WriteString(`{{ "\n" }}`)
		text = text[1:]
	}
	body := strings.TrimRight(text, " \t{")
	out.WriteString(body)
	if tail := text[len(body):]; tail != "" {
		out.WriteString("{{ ")
		out.WriteString(stringLiteral(tail))
		out.WriteString(" }}")
	}
}

// stringLiteral writes s as a string literal the engine reads back as s.
func stringLiteral(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Expression tokens, as far as prepare and content format detection need
// them.
type tokKind uint8

const (
	tokName tokKind = iota
	tokString
	tokNumber
	tokOp // operators and brackets, one or two characters
	tokSpace
)

type token struct {
	kind tokKind
	text string // for a string: the decoded value
}

func isNameRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

// lexExpr splits a tag body into tokens.
func lexExpr(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			j := i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n') {
				j++
			}
			toks = append(toks, token{kind: tokSpace, text: s[i:j]})
			i = j
		case c == '\'' || c == '"':
			end, err := stringEnd(s, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokString, text: unescapePython(s[i+1 : end-1])})
			i = end
		case '0' <= c && c <= '9':
			j := i
			for j < len(s) && (isNameRune(rune(s[j])) || s[j] == '.') {
				j++
			}
			toks = append(toks, token{kind: tokNumber, text: s[i:j]})
			i = j
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if isNameRune(r) {
				j := i
				for j < len(s) {
					r, size := utf8.DecodeRuneInString(s[j:])
					if !isNameRune(r) {
						break
					}
					j += size
				}
				toks = append(toks, token{kind: tokName, text: s[i:j]})
				i = j
				continue
			}
			n := size
			if i+1 < len(s) {
				switch s[i : i+2] {
				case "**", "//", "==", "!=", "<=", ">=":
					n = 2
				}
			}
			toks = append(toks, token{kind: tokOp, text: s[i : i+n]})
			i += n
		}
	}
	return toks, nil
}

// writeBody writes a tag body back: string literals re-encoded, the
// replaced filters renamed, "}}" split so that it cannot end the tag early.
func writeBody(out *strings.Builder, toks []token) {
	lastSignificant := ""
	for i, t := range toks {
		switch t.kind {
		case tokString:
			out.WriteString(stringLiteral(t.text))
		case tokName:
			if to, ok := replacedFilters[t.text]; ok && lastSignificant == "|" {
				out.WriteString(to)
			} else {
				out.WriteString(t.text)
			}
		case tokOp:
			out.WriteString(t.text)
			if t.text == "}" && i+1 < len(toks) && toks[i+1].kind == tokOp && toks[i+1].text == "}" {
				out.WriteByte(' ')
			}
		default:
			out.WriteString(t.text)
		}
		if t.kind != tokSpace {
			lastSignificant = t.text
			if t.kind == tokString {
				lastSignificant = `"`
			}
		}
	}
}

// unescapePython decodes a string literal's escapes as Jinja2 does (Python's
// unicode-escape codec): an unknown escape stays as written.
func unescapePython(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case '\n':
			// A backslash-newline continues the line.
		case '\\', '\'', '"':
			b.WriteByte(c)
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'x', 'u', 'U':
			n := 2
			switch c {
			case 'u':
				n = 4
			case 'U':
				n = 8
			}
			if i+1+n <= len(s) {
				if v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32); err == nil && v <= unicode.MaxRune {
					b.WriteRune(rune(v))
					i += n
					continue
				}
			}
			// Python rejects a short escape; keep it as written.
			b.WriteByte('\\')
			b.WriteByte(c)
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && '0' <= s[j] && s[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint(s[i:j], 8, 32)
			b.WriteRune(rune(v))
			i = j - 1
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}
