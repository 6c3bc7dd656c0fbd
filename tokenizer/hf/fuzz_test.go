package hf

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
	"golang.org/x/text/unicode/norm"
)

// roundTrip is what decode(encode(s)) gives back for valid UTF-8 s, by what
// each tokenizer loses: Qwen3 normalizes to NFC (its added tokens begin and
// end with characters NFC leaves alone, so segment-wise NFC is NFC); Llama
// 3.1 is lossless; Llama 2 writes spaces as ▁ (so a ▁ in the text comes
// back as a space) and prefixes every run between added tokens with one, of
// which the decoder strips only the first: ok is false where that applies.
func roundTrip(name string, tok *Tokenizer, s string) (want string, ok bool) {
	switch name {
	case "qwen3":
		return norm.NFC.String(s), true
	case "llama3_1":
		return s, true
	case "llama2":
		if strings.Contains(s, "▁") {
			return "", false
		}
		for _, a := range tok.added {
			if strings.Contains(s, a.Content) {
				return "", false
			}
		}
		return s, true
	}
	return "", false
}

// FuzzEncode: encoding never panics, yields ids Decode accepts, with the
// post-processor's tokens around them with addSpecial; and decoding gives
// back the text where the tokenizer is lossless.
func FuzzEncode(f *testing.F) {
	for i, c := range loadCorpus(f) {
		if i%23 == 0 {
			f.Add(uint8(i), c.input(f))
		}
	}
	toks := make([]*Tokenizer, len(realTokenizers))
	for i, name := range realTokenizers {
		toks[i] = testTokenizer(f, name)
	}
	f.Fuzz(func(t *testing.T, which uint8, s string) {
		i := int(which) % len(toks)
		tok, name := toks[i], realTokenizers[i]
		ids := tok.Encode(s, false)
		for _, id := range ids {
			if int(id) >= tok.VocabSize() {
				t.Fatalf("%s: id %d beyond the vocabulary", name, id)
			}
		}
		if got, want := tok.Encode(s, true), slices.Concat(tok.post.prefix, ids, tok.post.suffix); !slices.Equal(got, want) {
			t.Fatalf("%s: with special tokens %v, want %v", name, got, want)
		}
		text, err := tok.Decode(ids, false)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !utf8.ValidString(text) {
			t.Fatalf("%s: decoded text is not UTF-8: %q", name, text)
		}
		if !utf8.ValidString(s) {
			return
		}
		if want, ok := roundTrip(name, tok, s); ok && text != want {
			t.Fatalf("%s: decode(encode(%q)) = %q, want %q", name, s, text, want)
		}
	})
}

// FuzzScanner holds the hand-written pre-tokenizer scanner equal to
// regexp2 running the pattern it replaces.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{"Hello world", "it's  \n\n  x", "a\u0085b", "'ſt 12345", "\t\r\n !!?? 😀日本"} {
		f.Add(uint8(0), s)
	}
	res := make([]*regexp2.Regexp, len(scannerPatterns))
	for i, p := range scannerPatterns {
		res[i] = regexp2.MustCompile(p, regexp2.Multiline)
	}
	f.Fuzz(func(t *testing.T, which uint8, s string) {
		i := int(which) % len(scannerPatterns)
		s = toValidUTF8(s) // the scanner runs after that
		sc, _ := scannerFor(scannerPatterns[i])
		if got, want := scannerSplits(sc, s), regexSplits(t, res[i], s); !slices.Equal(got, want) {
			t.Fatalf("pattern %d on %q:\nscanner %v\nregexp2 %v", i, s, got, want)
		}
	})
}

// FuzzToValidUTF8: the result is UTF-8, valid input is kept, and each
// replacement stands for at least one byte.
func FuzzToValidUTF8(f *testing.F) {
	for _, s := range []string{"abc", "\xff", "\xe2\x82(", "\xed\xa0\x80", "a\xf0\x9f\x98"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := toValidUTF8(s)
		switch {
		case !utf8.ValidString(got):
			t.Fatalf("toValidUTF8(%q) = %q is not UTF-8", s, got)
		case utf8.ValidString(s) && got != s:
			t.Fatalf("valid %q changed to %q", s, got)
		case strings.Count(got, "\uFFFD")-strings.Count(s, "\uFFFD") > len(s):
			t.Fatalf("more replacements than bytes in %q", s)
		case toValidUTF8(got) != got:
			t.Fatalf("not idempotent on %q", s)
		}
	})
}

// FuzzLoad: a garbled tokenizer.json is rejected with an error, never a
// panic; whatever loads encodes and decodes without one.
func FuzzLoad(f *testing.F) {
	f.Add(tinyBPE(f, "abc ", []string{"a b", "ab c"}, map[string]string{
		"normalizer":     `{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "}]}`,
		"pre_tokenizer":  `{"type":"Split","pattern":{"Regex":"\\s+(?!\\S)|\\S+"},"behavior":"Isolated"}`,
		"post_processor": `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<s>":{"id":"<s>","ids":[9],"tokens":["<s>"]}}}`,
		"decoder":        `{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Metaspace","replacement":"▁","prepend_scheme":"always"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}`,
		"added_tokens":   `[{"id":9,"content":"<s>","special":true},{"id":10,"content":"x","normalized":true,"lstrip":true,"rstrip":true,"single_word":true}]`,
	}))
	f.Add(tinyBPE(f, "ab", nil, map[string]string{"pre_tokenizer": `{"type":"ByteLevel","add_prefix_space":true}`, "decoder": `{"type":"ByteLevel"}`}))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := New(Files{Tokenizer: data})
		if err != nil {
			return
		}
		ids := tok.Encode("ab c<s>x \xff", true)
		_, _ = tok.Decode(ids, true)
		_, _ = tok.Decode([]uint32{0, 1, 2, 9, 10, 1 << 30}, false)
	})
}
