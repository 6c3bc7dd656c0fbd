package hf

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A piece is a span of normalized text on its way to the model.
type piece struct {
	text string
	// first is set on the piece that begins at offset 0 of the input
	// (Metaspace's prepend_scheme "first" only prefixes that one).
	first bool
}

// A preTokenizer splits (or rewrites) a piece, passing each result to emit in
// order.
type preTokenizer interface {
	preTokenize(p piece, emit func(piece))
}

// preTokenizerSpec is what building the pre-tokenizer tells the model.
type preTokenizerSpec struct {
	pre preTokenizer
	// byteLevel is set when the last step is ByteLevel: the model then
	// reads each pre-token as raw bytes in the byte-level alphabet.
	byteLevel bool
}

func newPreTokenizer(raw json.RawMessage) (preTokenizerSpec, error) {
	typ, err := componentType(raw)
	if err != nil || typ == "" {
		return preTokenizerSpec{}, err
	}
	if typ == "Sequence" {
		var c struct {
			Steps []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return preTokenizerSpec{}, errIn("Sequence", err)
		}
		var seq sequencePre
		byteLevel := false
		for i, step := range c.Steps {
			if byteLevel {
				return preTokenizerSpec{}, errIn(fmt.Sprintf("Sequence[%d]", i), fmt.Errorf("a step after ByteLevel: %w", ErrUnsupported))
			}
			spec, err := newPreTokenizer(step)
			if err != nil {
				return preTokenizerSpec{}, errIn(fmt.Sprintf("Sequence[%d]", i), err)
			}
			if spec.pre != nil {
				seq = append(seq, spec.pre)
			}
			byteLevel = spec.byteLevel
		}
		switch len(seq) {
		case 0:
			return preTokenizerSpec{byteLevel: byteLevel}, nil
		case 1:
			return preTokenizerSpec{pre: seq[0], byteLevel: byteLevel}, nil
		}
		return preTokenizerSpec{pre: seq, byteLevel: byteLevel}, nil
	}
	pre, err := newPreTokenizerStep(typ, raw)
	if bl, ok := pre.(byteLevelPre); ok && !bl.addPrefixSpace && !bl.useRegex {
		// It only tells the model to read bytes.
		pre = nil
	}
	return preTokenizerSpec{pre: pre, byteLevel: typ == "ByteLevel"}, err
}

func newPreTokenizerStep(typ string, raw json.RawMessage) (preTokenizer, error) {
	switch typ {
	case "Split":
		var c struct {
			Pattern  json.RawMessage `json:"pattern"`
			Behavior string          `json:"behavior"`
			Invert   bool            `json:"invert"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Split", err)
		}
		p, err := newPattern(c.Pattern)
		if err != nil {
			return nil, errIn("Split", err)
		}
		b, err := parseBehavior(c.Behavior)
		if err != nil {
			return nil, errIn("Split", err)
		}
		return split{pattern: p, behavior: b, invert: c.Invert}, nil
	case "ByteLevel":
		var c struct {
			AddPrefixSpace bool  `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("ByteLevel", err)
		}
		bl := byteLevelPre{addPrefixSpace: c.AddPrefixSpace}
		if c.UseRegex == nil || *c.UseRegex {
			bl.regex, _ = scannerFor(patternGPT2)
			bl.useRegex = true
		}
		return bl, nil
	case "Metaspace":
		var c struct {
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
			Split          *bool   `json:"split"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Metaspace", err)
		}
		m, err := newMetaspace(c.Replacement, c.PrependScheme, c.AddPrefixSpace)
		if err != nil {
			return nil, errIn("Metaspace", err)
		}
		m.split = c.Split == nil || *c.Split
		return m, nil
	case "Digits":
		var c struct {
			Individual bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Digits", err)
		}
		b := contiguous
		if c.Individual {
			b = isolated
		}
		return split{pattern: charPattern(unicode.IsNumber), behavior: b}, nil
	case "WhitespaceSplit":
		return split{pattern: charPattern(unicode.IsSpace), behavior: removed}, nil
	case "Punctuation":
		var c struct {
			Behavior string `json:"behavior"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Punctuation", err)
		}
		b := isolated
		if c.Behavior != "" {
			var err error
			if b, err = parseBehavior(c.Behavior); err != nil {
				return nil, errIn("Punctuation", err)
			}
		}
		return split{pattern: charPattern(isPunctuation), behavior: b}, nil
	}
	return nil, unsupported(typ)
}

// isPunctuation is tokenizers' is_punc: ASCII punctuation (every graphic
// ASCII character that is not a letter or a digit) or Unicode category P.
func isPunctuation(r rune) bool {
	if r < utf8.RuneSelf {
		return r > ' ' && r < 0x7f && !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}
	return unicode.IsPunct(r)
}

// charPattern matches each character the function accepts, one match per
// character (tokenizers' Pattern for Fn(char) -> bool).
type charPattern func(rune) bool

func (f charPattern) findAll(s string, match func(start, end int)) {
	for i, r := range s {
		if f(r) {
			match(i, i+utf8.RuneLen(r))
		}
	}
}

// behavior is tokenizers' SplitDelimiterBehavior: what becomes of a match.
type behavior uint8

const (
	removed behavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

func parseBehavior(s string) (behavior, error) {
	switch s {
	case "Removed":
		return removed, nil
	case "Isolated":
		return isolated, nil
	case "MergedWithPrevious":
		return mergedWithPrevious, nil
	case "MergedWithNext":
		return mergedWithNext, nil
	case "Contiguous":
		return contiguous, nil
	}
	return 0, fmt.Errorf("behavior %q: %w", s, ErrUnsupported)
}

type split struct {
	pattern  pattern
	behavior behavior
	invert   bool
}

// span is a range of a piece's text and whether the pattern matched it.
type span struct {
	start, end int
	match      bool
}

func (sp split) preTokenize(p piece, emit func(piece)) {
	if sc, ok := sp.pattern.(scanner); ok && sp.behavior == isolated && !sp.invert {
		// The common case: every scanner match is a pre-token and the
		// scanner leaves no gaps.
		sc.findAll(p.text, func(start, end int) {
			emit(piece{text: p.text[start:end], first: p.first && start == 0})
		})
		return
	}
	// Matches and the gaps between them, as tokenizers' find_matches.
	var spans []span
	prev := 0
	sp.pattern.findAll(p.text, func(start, end int) {
		if start > prev {
			spans = append(spans, span{prev, start, sp.invert})
		}
		spans = append(spans, span{start, end, !sp.invert})
		prev = end
	})
	if prev < len(p.text) {
		spans = append(spans, span{prev, len(p.text), sp.invert})
	}
	for _, s := range mergeSpans(spans, sp.behavior) {
		if s.end > s.start {
			emit(piece{text: p.text[s.start:s.end], first: p.first && s.start == 0})
		}
	}
}

// mergeSpans applies a split behavior to the spans of a string, as
// tokenizers' NormalizedString::split does.
func mergeSpans(spans []span, b behavior) []span {
	out := spans[:0:0]
	switch b {
	case removed:
		for _, s := range spans {
			if !s.match {
				out = append(out, s)
			}
		}
	case isolated:
		out = spans
	case mergedWithPrevious:
		prevMatch := false
		for _, s := range spans {
			if s.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = s.end
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
	case mergedWithNext:
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			s := spans[i]
			if s.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = s.start
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	case contiguous:
		prevMatch := false
		for i, s := range spans {
			if i > 0 && s.match == prevMatch {
				out[len(out)-1].end = s.end
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
	}
	return out
}

// byteLevelPre is the ByteLevel pre-tokenizer. The conversion to the
// byte-level alphabet itself is left to the model, which works on raw bytes.
type byteLevelPre struct {
	addPrefixSpace bool
	useRegex       bool
	regex          scanner
}

func (bl byteLevelPre) preTokenize(p piece, emit func(piece)) {
	if bl.addPrefixSpace && !strings.HasPrefix(p.text, " ") {
		p.text = " " + p.text
	}
	if !bl.useRegex {
		emit(p)
		return
	}
	split{pattern: bl.regex, behavior: isolated}.preTokenize(p, emit)
}

// prependScheme is Metaspace's: when to put the replacement in front of a
// piece that does not start with it.
type prependScheme uint8

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

type metaspace struct {
	replacement rune
	strRep      string
	scheme      prependScheme
	split       bool
}

func newMetaspace(replacement string, scheme *string, addPrefixSpace *bool) (metaspace, error) {
	r, size := utf8.DecodeRuneInString(replacement)
	if size == 0 || size != len(replacement) {
		return metaspace{}, fmt.Errorf("replacement %q: want one character", replacement)
	}
	m := metaspace{replacement: r, strRep: replacement}
	switch {
	case scheme != nil:
		switch *scheme {
		case "always":
			m.scheme = prependAlways
		case "first":
			m.scheme = prependFirst
		case "never":
			m.scheme = prependNever
		default:
			return metaspace{}, fmt.Errorf("prepend_scheme %q: %w", *scheme, ErrUnsupported)
		}
	case addPrefixSpace != nil && !*addPrefixSpace:
		// Files older than prepend_scheme say add_prefix_space.
		m.scheme = prependNever
	}
	return m, nil
}

func (m metaspace) preTokenize(p piece, emit func(piece)) {
	text := strings.ReplaceAll(p.text, " ", m.strRep)
	if !strings.HasPrefix(text, m.strRep) &&
		(m.scheme == prependAlways || (m.scheme == prependFirst && p.first)) {
		text = m.strRep + text
	}
	p.text = text
	if !m.split {
		emit(p)
		return
	}
	split{pattern: stringPattern(m.strRep), behavior: mergedWithNext}.preTokenize(p, emit)
}

type sequencePre []preTokenizer

// preTokenize runs each piece through the steps depth first, which gives
// the order of tokenizers' step-by-step runs: every step acts on each piece
// alone.
func (seq sequencePre) preTokenize(p piece, emit func(piece)) {
	next := emit
	for i := len(seq) - 1; i >= 1; i-- {
		step, after := seq[i], next
		next = func(q piece) { step.preTokenize(q, after) }
	}
	seq[0].preTokenize(p, next)
}
