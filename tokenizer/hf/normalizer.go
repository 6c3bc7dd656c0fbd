package hf

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// A normalizer rewrites text before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

func newNormalizer(raw json.RawMessage) (normalizer, error) {
	typ, err := componentType(raw)
	if err != nil || typ == "" {
		return nil, err
	}
	switch typ {
	case "NFC":
		return unicodeForm{norm.NFC}, nil
	case "NFD":
		return unicodeForm{norm.NFD}, nil
	case "NFKC":
		return unicodeForm{norm.NFKC}, nil
	case "NFKD":
		return unicodeForm{norm.NFKD}, nil
	case "Lowercase":
		return lowercase{}, nil
	case "StripAccents":
		return stripAccents{}, nil
	case "Strip":
		var c struct {
			Left  *bool `json:"strip_left"`
			Right *bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Strip", err)
		}
		// tokenizers' defaults are true for both.
		return strip{left: c.Left == nil || *c.Left, right: c.Right == nil || *c.Right}, nil
	case "Prepend":
		var c struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Prepend", err)
		}
		return prepend(c.Prepend), nil
	case "Replace":
		var c struct {
			Pattern json.RawMessage `json:"pattern"`
			Content string          `json:"content"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Replace", err)
		}
		p, err := newPattern(c.Pattern)
		if err != nil {
			return nil, errIn("Replace", err)
		}
		return replace{pattern: p, content: c.Content}, nil
	case "Sequence":
		seq, err := sequenceOf(raw, "normalizers", newNormalizer)
		return sequenceNormalizer(seq), err
	}
	return nil, unsupported(typ)
}

type unicodeForm struct{ form norm.Form }

func (u unicodeForm) normalize(s string) string {
	if isASCII(s) {
		return s
	}
	return u.form.String(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// lowercase is Rust's char::to_lowercase: Unicode's full lowercase mapping
// without context, so İ becomes "i̇" and Σ is always σ.
type lowercase struct{}

func (lowercase) normalize(s string) string {
	return strings.Map(unicode.ToLower, strings.ReplaceAll(s, "İ", "i\u0307"))
}

// stripAccents removes combining marks (apply NFD first to strip accents
// from precomposed letters).
type stripAccents struct{}

func (stripAccents) normalize(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.M, r) {
			return -1
		}
		return r
	}, s)
}

type strip struct{ left, right bool }

func (st strip) normalize(s string) string {
	if st.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if st.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

// prepend adds its text in front of any non-empty string.
type prepend string

func (p prepend) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

type replace struct {
	pattern pattern
	content string
}

func (r replace) normalize(s string) string { return replaceAll(r.pattern, s, r.content) }

type sequenceNormalizer []normalizer

func (seq sequenceNormalizer) normalize(s string) string {
	for _, n := range seq {
		s = n.normalize(s)
	}
	return s
}

// sequenceOf builds the components a Sequence lists in field, leaving out
// null ones.
func sequenceOf[T comparable](raw json.RawMessage, field string, build func(json.RawMessage) (T, error)) ([]T, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, errIn("Sequence", err)
	}
	var items []json.RawMessage
	if list, ok := c[field]; ok {
		if err := json.Unmarshal(list, &items); err != nil {
			return nil, errIn("Sequence", err)
		}
	}
	var out []T
	var none T
	for i, item := range items {
		v, err := build(item)
		if err != nil {
			return nil, errIn(fmt.Sprintf("Sequence[%d]", i), err)
		}
		if v != none {
			out = append(out, v)
		}
	}
	return out, nil
}
