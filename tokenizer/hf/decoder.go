package hf

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A decoder turns tokens back into text, as tokenizers' decode_chain: each
// step maps the list of token strings to a new list, which is joined at the
// end.
type decoder interface {
	decodeChain(tokens []string) []string
}

func newDecoder(raw json.RawMessage) (decoder, error) {
	typ, err := componentType(raw)
	if err != nil || typ == "" {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var c struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Strip", err)
		}
		r, size := utf8.DecodeRuneInString(c.Content)
		if size == 0 || size != len(c.Content) || c.Start < 0 || c.Stop < 0 {
			return nil, errIn("Strip", fmt.Errorf("want one content character and non-negative start and stop, got %q, %d, %d", c.Content, c.Start, c.Stop))
		}
		return stripDecoder{content: r, start: c.Start, stop: c.Stop}, nil
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
		return replaceDecoder{pattern: p, content: c.Content}, nil
	case "Metaspace":
		var c struct {
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, errIn("Metaspace", err)
		}
		m, err := newMetaspace(c.Replacement, c.PrependScheme, c.AddPrefixSpace)
		if err != nil {
			return nil, errIn("Metaspace", err)
		}
		return metaspaceDecoder{replacement: m.replacement, stripFirst: m.scheme != prependNever}, nil
	case "Sequence":
		seq, err := sequenceOf(raw, "decoders", newDecoder)
		return sequenceDecoder(seq), err
	}
	return nil, unsupported(typ)
}

// byteLevelDecoder maps each character of the byte-level alphabet back to
// its byte (a token with a character outside the alphabet, such as an added
// token, contributes its UTF-8 bytes), then reads the bytes as UTF-8 with
// U+FFFD for what is ill-formed.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) []string {
	var b []byte
	for _, t := range tokens {
		b = appendByteLevel(b, t)
	}
	return []string{toValidUTF8(string(b))}
}

func appendByteLevel(b []byte, t string) []byte {
	start := len(b)
	for _, r := range t {
		c, ok := charByte[r]
		if !ok {
			return append(b[:start], t...)
		}
		b = append(b, c)
	}
	return b
}

// byteFallbackDecoder turns runs of <0xXX> tokens into the text their bytes
// spell; a run that is not UTF-8 becomes one U+FFFD per byte.
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(tokens []string) []string {
	out := make([]string, 0, len(tokens))
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, t := range tokens {
		if b, ok := fallbackByte(t); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

func fallbackByte(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(t[3:5], 16, 8)
	return byte(v), err == nil
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) []string {
	return []string{strings.Join(tokens, "")}
}

// stripDecoder removes up to start leading and stop trailing content
// characters from each token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (st stripDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		rs := []rune(t)
		lo, hi := 0, len(rs)
		for lo < st.start && lo < hi && rs[lo] == st.content {
			lo++
		}
		for n := 0; n < st.stop && hi > lo && rs[hi-1] == st.content; n++ {
			hi--
		}
		out[i] = string(rs[lo:hi])
	}
	return out
}

type replaceDecoder struct {
	pattern pattern
	content string
}

func (r replaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = replaceAll(r.pattern, t, r.content)
	}
	return out
}

// metaspaceDecoder turns the replacement character back into spaces. In the
// first token, with a prepend scheme, tokenizers drops the replacement
// characters instead (every one of them, not only a leading one).
type metaspaceDecoder struct {
	replacement rune
	stripFirst  bool
}

func (m metaspaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		with := " "
		if i == 0 && m.stripFirst {
			with = ""
		}
		out[i] = strings.ReplaceAll(t, string(m.replacement), with)
	}
	return out
}

type sequenceDecoder []decoder

func (seq sequenceDecoder) decodeChain(tokens []string) []string {
	for _, d := range seq {
		tokens = d.decodeChain(tokens)
	}
	return tokens
}
