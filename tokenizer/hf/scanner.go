package hf

import (
	"unicode"
	"unicode/utf8"
)

// The pre-tokenizer patterns of nearly every byte-level BPE model are one of
// three regular expressions. They need lookahead (\s+(?!\S)), which Go's
// regexp lacks, and a backtracking engine runs them at a few MB/s; the
// scanner below matches them directly, one left-to-right pass over the
// runes. TestScannerMatchesRegex and FuzzScanner hold it equal to regexp2
// running the pattern itself.
const (
	// patternCL100K is cl100k_base's pattern, used by Llama 3.
	patternCL100K = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// patternQwen is Qwen2's (also Qwen2.5's and Qwen3's): cl100k with
	// single digits.
	patternQwen = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// patternGPT2 is GPT-2's, which the ByteLevel pre-tokenizer applies
	// when use_regex is set.
	patternGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// scanner matches one of the patterns above.
type scanner struct {
	// gpt2 selects GPT-2's alternatives; otherwise cl100k's with up to
	// maxDigits digits per number.
	gpt2      bool
	maxDigits int
}

func scannerFor(expr string) (scanner, bool) {
	switch expr {
	case patternCL100K:
		return scanner{maxDigits: 3}, true
	case patternQwen:
		return scanner{maxDigits: 1}, true
	case patternGPT2:
		return scanner{gpt2: true}, true
	}
	return scanner{}, false
}

// Character classes of the patterns: \p{L}, \p{N}, \s (Unicode White_Space,
// as in Oniguruma and regexp2) and everything else.
const (
	classOther = iota
	classLetter
	classNumber
	classSpace
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for c := range utf8.RuneSelf {
		t[c] = runeClassSlow(rune(c))
	}
	return t
}()

func runeClassSlow(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

// at decodes the rune at s[i] and its class; width 0 at the end of s.
func at(s string, i int) (r rune, width int, class uint8) {
	if i >= len(s) {
		return -1, 0, classOther
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1, asciiClass[c]
	}
	r, width = utf8.DecodeRuneInString(s[i:])
	return r, width, runeClassSlow(r)
}

// run returns the end of the run of class c starting at i, taking at most
// limit runes (limit < 0: no limit).
func run(s string, i int, c uint8, limit int) int {
	for n := 0; i < len(s) && n != limit; n++ {
		_, w, cl := at(s, i)
		if cl != c {
			break
		}
		i += w
	}
	return i
}

// crlfRun is the end of a run of [\r\n] from i.
func crlfRun(s string, i int) int {
	for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

func (sc scanner) findAll(s string, match func(start, end int)) {
	for i := 0; i < len(s); {
		end := sc.matchAt(s, i)
		match(i, end)
		i = end
	}
}

// matchAt returns the end of the pattern's match at i. Every position
// matches: the last alternatives take any run of whitespace and any other
// character class.
func (sc scanner) matchAt(s string, i int) int {
	r, w, c := at(s, i)
	if r == '\'' {
		if n := sc.contraction(s, i+1); n > 0 {
			return i + 1 + n
		}
	}
	if sc.gpt2 {
		return sc.matchGPT2(s, i, r, c)
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c == classLetter {
		return run(s, i, classLetter, -1)
	}
	if r != '\r' && r != '\n' && c != classNumber {
		if _, _, c2 := at(s, i+w); c2 == classLetter {
			return run(s, i+w, classLetter, -1)
		}
	}
	// \p{N}{1,maxDigits}
	if c == classNumber {
		return run(s, i, classNumber, sc.maxDigits)
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	if r == ' ' {
		if _, _, c2 := at(s, i+1); c2 == classOther && i+1 < len(s) {
			return crlfRun(s, run(s, i+1, classOther, -1))
		}
	}
	if c == classOther {
		return crlfRun(s, run(s, i, classOther, -1))
	}
	// c == classSpace. \s*[\r\n]+ ends after the run's last line break.
	j, lastBreak := i, -1
	for j < len(s) {
		r, w, c := at(s, j)
		if c != classSpace {
			break
		}
		if r == '\r' || r == '\n' {
			lastBreak = j
		}
		j += w
	}
	if lastBreak >= 0 {
		return lastBreak + 1
	}
	return spaceRunEnd(s, i, j)
}

// spaceRunEnd applies \s+(?!\S)|\s+ to the whitespace run [i, j): at the
// end of the input it takes the whole run; before a non-space it leaves the
// last whitespace character to prefix the next word, if the run has more
// than one.
func spaceRunEnd(s string, i, j int) int {
	if j == len(s) {
		return j
	}
	_, last := utf8.DecodeLastRuneInString(s[i:j])
	if j-last > i {
		return j - last
	}
	return j
}

// matchGPT2 is GPT-2's pattern after the contractions.
func (sc scanner) matchGPT2(s string, i int, r rune, c uint8) int {
	from := i
	if r == ' ' {
		if _, _, c2 := at(s, i+1); c2 != classSpace && i+1 < len(s) {
			// " ?X+" for the class of the character after the space.
			from, c = i+1, c2
		}
	}
	switch c {
	case classLetter, classNumber, classOther:
		return run(s, from, c, -1)
	}
	return spaceRunEnd(s, i, run(s, i, classSpace, -1))
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d after the apostrophe at s[i-1]
// and returns its length (0: none). cl100k's are case-insensitive with
// Unicode case folding, under which U+017F (ſ) is an s.
func (sc scanner) contraction(s string, i int) int {
	r1, w1, _ := at(s, i)
	switch sc.fold(r1) {
	case 's', 't', 'm', 'd':
		return w1
	case 'r', 'v':
		if r2, w2, _ := at(s, i+w1); sc.fold(r2) == 'e' {
			return w1 + w2
		}
	case 'l':
		if r2, w2, _ := at(s, i+w1); sc.fold(r2) == 'l' {
			return w1 + w2
		}
	}
	return 0
}

// fold maps a character to the ASCII letter it matches in the contraction
// alternatives, if any.
func (sc scanner) fold(r rune) rune {
	switch {
	case sc.gpt2 || ('a' <= r && r <= 'z'):
		return r
	case 'A' <= r && r <= 'Z':
		return r + 'a' - 'A'
	case r == 'ſ':
		return 's'
	}
	return r
}
