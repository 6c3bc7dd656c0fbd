package hf

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens: special tokens
// and other tokens matched in the text before anything else runs.
type addedToken struct {
	ID         uint32 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	// Normalized tokens are matched in the normalized text, the others
	// in the raw text; tokenizers defaults it to !special.
	Normalized *bool `json:"normalized"`
	Special    bool  `json:"special"`
}

func (t addedToken) normalized() bool {
	if t.Normalized == nil {
		return !t.Special
	}
	return *t.Normalized
}

// matcher finds added tokens in text: at the leftmost position where any
// token starts, the longest one (aho-corasick's LeftmostLongest, as
// tokenizers uses).
type matcher struct {
	root   *trieNode
	starts [256]bool // bytes a token can start with
	empty  bool
}

type trieNode struct {
	next  map[byte]*trieNode
	token int // index into the added tokens, -1 if no token ends here
}

func newMatcher() *matcher { return &matcher{root: &trieNode{token: -1}, empty: true} }

func (m *matcher) add(pattern string, token int) {
	if pattern == "" {
		return
	}
	n := m.root
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		child := n.next[c]
		if child == nil {
			if n.next == nil {
				n.next = map[byte]*trieNode{}
			}
			child = &trieNode{token: -1}
			n.next[c] = child
		}
		n = child
	}
	if n.token < 0 { // the first of duplicate patterns wins
		n.token = token
	}
	m.starts[pattern[0]] = true
	m.empty = false
}

// longestAt returns the longest token starting at s[i] and its end.
func (m *matcher) longestAt(s string, i int) (token, end int) {
	token = -1
	n := m.root
	for j := i; j < len(s); j++ {
		if n = n.next[s[j]]; n == nil {
			break
		}
		if n.token >= 0 {
			token, end = n.token, j+1
		}
	}
	return token, end
}

// tokenSpan is a run of text, or an added token (token >= 0).
type tokenSpan struct {
	start, end int
	token      int
}

// split cuts s into text and added tokens, with the tokens' single_word,
// lstrip and rstrip rules applied as tokenizers' AddedVocabulary does.
func (m *matcher) split(dst []tokenSpan, s string, tokens []addedToken) []tokenSpan {
	if m.empty {
		return append(dst, tokenSpan{0, len(s), -1})
	}
	last := 0 // end of the previous token
	for i := 0; i < len(s); i++ {
		if !m.starts[s[i]] {
			continue
		}
		tok, end := m.longestAt(s, i)
		if tok < 0 {
			continue
		}
		t := tokens[tok]
		start := i
		if t.SingleWord && (endsWithWordChar(s[:start]) || startsWithWordChar(s[end:])) {
			continue
		}
		if t.LStrip {
			start = max(last, len(strings.TrimRightFunc(s[:start], unicode.IsSpace)))
		}
		if t.RStrip {
			end = len(s) - len(strings.TrimLeftFunc(s[end:], unicode.IsSpace))
		}
		if start > last {
			dst = append(dst, tokenSpan{last, start, -1})
		}
		dst = append(dst, tokenSpan{start, end, tok})
		last = end
		i = end - 1
	}
	if last < len(s) {
		dst = append(dst, tokenSpan{last, len(s), -1})
	}
	return dst
}

func isWordChar(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.M, r) || unicode.Is(unicode.Pc, r)
}

func endsWithWordChar(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}
