package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/strata-llm/strata/tokenizer"
)

// tinyBPE builds a tokenizer.json around a small vocabulary: the tokens
// given (each character of a string without spaces is one, a string with
// spaces is a list of tokens), the merges ("a b") and their results, and
// the other components as JSON ("model" adds fields to the model).
func tinyBPE(t testing.TB, vocabSpec string, merges []string, components map[string]string) []byte {
	t.Helper()
	vocab := map[string]int{}
	add := func(tok string) {
		if _, ok := vocab[tok]; !ok {
			vocab[tok] = len(vocab)
		}
	}
	if strings.Contains(vocabSpec, " ") && strings.HasPrefix(vocabSpec, "list:") {
		for _, tok := range strings.Fields(strings.TrimPrefix(vocabSpec, "list:")) {
			add(tok)
		}
	} else {
		for _, r := range vocabSpec {
			add(string(r))
		}
	}
	prefix := ""
	if v, ok := components["model"]; ok && strings.Contains(v, "continuing_subword_prefix") {
		prefix = "##"
	}
	for _, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		add(a)
		add(b)
		add(a + strings.TrimPrefix(b, prefix))
	}
	model := map[string]any{"type": "BPE", "vocab": vocab, "merges": merges}
	if v, ok := components["model"]; ok {
		var extra map[string]any
		if err := json.Unmarshal([]byte(v), &extra); err != nil {
			t.Fatal(err)
		}
		for mk, mv := range extra {
			model[mk] = mv
		}
	}
	doc := map[string]any{"version": "1.0", "model": model, "added_tokens": []any{}}
	for k, v := range components {
		if k == "model" {
			continue
		}
		var raw any
		if err := json.Unmarshal([]byte(v), &raw); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		doc[k] = raw
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustNew(t testing.TB, tj []byte) *Tokenizer {
	t.Helper()
	tok, err := New(Files{Tokenizer: tj})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokens encodes text and returns the token strings.
func tokens(t testing.TB, tok *Tokenizer, text string) []string {
	t.Helper()
	var out []string
	for _, id := range tok.Encode(text, false) {
		if i, ok := tok.addedByID[id]; ok {
			out = append(out, tok.added[i].Content)
			continue
		}
		s, _ := tok.model.token(id)
		out = append(out, s)
	}
	return out
}

func TestPreTokenizers(t *testing.T) {
	const chars = "abcdefghijklmnopqrstuvwxyz ▁.,!?0123456789٣½-'"
	tests := []struct {
		name string
		pre  string
		text string
		want []string
	}{
		{"split isolated", `{"type":"Split","pattern":{"String":"-"},"behavior":"Isolated"}`, "a-b--c", []string{"a", "-", "b", "-", "-", "c"}},
		{"split removed", `{"type":"Split","pattern":{"String":"-"},"behavior":"Removed"}`, "a-b--c", []string{"a", "b", "c"}},
		{"split merged with previous", `{"type":"Split","pattern":{"String":"-"},"behavior":"MergedWithPrevious"}`, "a-b--c-", []string{"a-", "b-", "-", "c-"}},
		{"split merged with next", `{"type":"Split","pattern":{"String":"-"},"behavior":"MergedWithNext"}`, "-a-b--c", []string{"-a", "-b", "-", "-c"}},
		{"split contiguous", `{"type":"Split","pattern":{"String":"-"},"behavior":"Contiguous"}`, "a-b--c", []string{"a", "-", "b", "--", "c"}},
		{"split invert", `{"type":"Split","pattern":{"Regex":"[a-z]+"},"behavior":"Removed","invert":true}`, "ab, cd!", []string{"ab", "cd"}},
		{"split invert isolated", `{"type":"Split","pattern":{"Regex":"[a-z]+"},"behavior":"Isolated","invert":true}`, "ab, cd!", []string{"ab", ", ", "cd", "!"}},
		{"split regex lookahead", `{"type":"Split","pattern":{"Regex":"\\s+(?!\\S)|\\s+|\\S+"},"behavior":"Isolated"}`, "a   b", []string{"a", "  ", " ", "b"}},
		// Digits takes Unicode numbers (Rust's char::is_numeric), not
		// only ASCII digits.
		{"digits individual", `{"type":"Digits","individual_digits":true}`, "a12٣½b", []string{"a", "1", "2", "٣", "½", "b"}},
		{"digits contiguous", `{"type":"Digits","individual_digits":false}`, "a12٣½b", []string{"a", "12٣½", "b"}},
		{"whitespace split", `{"type":"WhitespaceSplit"}`, " a  b\tc ", []string{"a", "b", "c"}},
		{"punctuation", `{"type":"Punctuation","behavior":"Isolated"}`, "a,b!!c", []string{"a", ",", "b", "!", "!", "c"}},
		{"punctuation contiguous", `{"type":"Punctuation","behavior":"Contiguous"}`, "a,b!!c", []string{"a", ",", "b", "!!", "c"}},
		{"metaspace always", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}`, "a b  c", []string{"▁a", "▁b", "▁", "▁c"}},
		{"metaspace no split", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`, "a b", []string{"▁a▁b"}},
		{"metaspace never", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"never","split":false}`, "a b", []string{"a▁b"}},
		{"metaspace legacy add_prefix_space", `{"type":"Metaspace","replacement":"▁","add_prefix_space":false}`, "a b", []string{"a", "▁b"}},
		// "first" prefixes only the piece at the start of the input.
		{"metaspace first in sequence", `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"String":"-"},"behavior":"Removed"},{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}]}`, "a-b", []string{"▁a", "b"}},
		{"sequence", `{"type":"Sequence","pretokenizers":[{"type":"WhitespaceSplit"},{"type":"Digits","individual_digits":true}]}`, "a1 22", []string{"a", "1", "2", "2"}},
		{"byte level add prefix space", `{"type":"ByteLevel","add_prefix_space":true,"use_regex":false}`, "ab", []string{" ab"}},
		{"byte level regex", `{"type":"ByteLevel","add_prefix_space":false}`, "Hi there's  2", []string{"Hi", " there", "'s", " ", " 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := newPreTokenizer(json.RawMessage(tt.pre))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			spec.pre.preTokenize(piece{text: tt.text, first: true}, func(p piece) { got = append(got, p.text) })
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if spec.byteLevel {
				return
			}
			// The same pieces reach the model.
			tok := mustNew(t, tinyBPE(t, chars, nil, map[string]string{"pre_tokenizer": tt.pre}))
			if ids := tok.Encode(tt.text, false); len(ids) != len([]rune(strings.Join(got, ""))) {
				t.Fatalf("Encode = %v for pieces %q", ids, got)
			}
		})
	}
}

// With merges, the pieces tell where merging may not cross.
func TestMetaspaceSplitKeepsMergesInPieces(t *testing.T) {
	merges := []string{"▁ ▁", "▁ a", "a ▁"}
	split := mustNew(t, tinyBPE(t, "a▁ ", merges, map[string]string{"pre_tokenizer": `{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}`}))
	if got, want := tokens(t, split, "a  a"), []string{"▁a", "▁", "▁a"}; !slices.Equal(got, want) {
		t.Fatalf("split: got %q, want %q", got, want)
	}
	whole := mustNew(t, tinyBPE(t, "a▁ ", merges, map[string]string{"pre_tokenizer": `{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":false}`}))
	if got, want := tokens(t, whole, "a  a"), []string{"▁a", "▁▁", "a"}; !slices.Equal(got, want) {
		t.Fatalf("no split: got %q, want %q", got, want)
	}
}

func TestNormalizers(t *testing.T) {
	tests := []struct {
		name, norm, text, want string
	}{
		// Rust's char::to_lowercase has no context: a final Σ is σ; İ
		// lowercases to i + combining dot above.
		{"lowercase", `{"type":"Lowercase"}`, "ΣΊΣ İ ABC", "σίσ i\u0307 abc"},
		{"nfc", `{"type":"NFC"}`, "e\u0301", "é"},
		{"nfd", `{"type":"NFD"}`, "é", "e\u0301"},
		{"nfkc", `{"type":"NFKC"}`, "ﬁ①", "fi1"},
		{"nfkd", `{"type":"NFKD"}`, "é", "e\u0301"},
		{"strip accents", `{"type":"Sequence","normalizers":[{"type":"NFD"},{"type":"StripAccents"}]}`, "éa\u0301", "ea"},
		{"strip", `{"type":"Strip","strip_left":true,"strip_right":true}`, " \t a b \u3000", "a b"},
		{"strip left", `{"type":"Strip","strip_left":true,"strip_right":false}`, "  a ", "a "},
		{"prepend", `{"type":"Prepend","prepend":"▁"}`, "ab", "▁ab"},
		{"replace string", `{"type":"Replace","pattern":{"String":" "},"content":"▁"}`, "a b  c", "a▁b▁▁c"},
		{"replace regex", `{"type":"Replace","pattern":{"Regex":"\\s+"},"content":"-"}`, "a \t\n b", "a-b"},
		{"replace empty pattern", `{"type":"Replace","pattern":{"String":""},"content":"x"}`, "ab", "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := newNormalizer(json.RawMessage(tt.norm))
			if err != nil {
				t.Fatal(err)
			}
			if got := n.normalize(tt.text); got != tt.want {
				t.Fatalf("normalize(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
	// Prepend leaves an empty string empty.
	if got := prepend("▁").normalize(""); got != "" {
		t.Fatalf("prepend of empty = %q", got)
	}
}

func TestDecoders(t *testing.T) {
	tests := []struct {
		name   string
		dec    string
		tokens []string
		want   string
	}{
		// tokenizers drops every ▁ of the first token (not only a
		// leading one) when the prepend scheme is not "never".
		{"metaspace first token", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"always"}`, []string{"▁▁Hey", "▁▁friend"}, "Hey  friend"},
		{"metaspace never", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"never"}`, []string{"▁Hey", "▁friend"}, " Hey friend"},
		{"byte fallback", `{"type":"ByteFallback"}`, []string{"a", "<0xE2>", "<0x82>", "<0xAC>", "b"}, "a€b"},
		// An invalid run is one U+FFFD per byte (tokenizers), not per
		// maximal subpart.
		{"byte fallback invalid", `{"type":"ByteFallback"}`, []string{"<0xE2>", "<0x82>", "x", "<0xFF>"}, "\uFFFD\uFFFDx\uFFFD"},
		{"byte fallback lookalike", `{"type":"ByteFallback"}`, []string{"<0xZZ>", "<0x41"}, "<0xZZ><0x41"},
		{"fuse", `{"type":"Fuse"}`, []string{"a", "b"}, "ab"},
		{"strip", `{"type":"Sequence","decoders":[{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":1}]}`, []string{"  a", "b  "}, " ab "},
		{"strip all", `{"type":"Strip","content":" ","start":3,"stop":3}`, []string{"  "}, ""},
		{"replace", `{"type":"Replace","pattern":{"String":"▁"},"content":" "}`, []string{"▁a", "▁b"}, " a b"},
		{"replace regex", `{"type":"Replace","pattern":{"Regex":"[0-9]+"},"content":"#"}`, []string{"a12", "3b"}, "a##b"},
		{"byte level", `{"type":"ByteLevel"}`, []string{"Hello", "Ġworld", "Ċ"}, "Hello world\n"},
		// A token outside the byte-level alphabet gives its own bytes;
		// bytes that are not UTF-8 become U+FFFD per maximal subpart.
		{"byte level outside alphabet", `{"type":"ByteLevel"}`, []string{"<|x|>", "ä¸"}, "<|x|>\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := newDecoder(json.RawMessage(tt.dec))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(d.decodeChain(tt.tokens), ""); got != tt.want {
				t.Fatalf("decode(%q) = %q, want %q", tt.tokens, got, tt.want)
			}
		})
	}
}

func TestBPEModel(t *testing.T) {
	tests := []struct {
		name   string
		vocab  string
		merges []string
		model  string
		text   string
		want   []string
	}{
		{"merge order by rank", "abc", []string{"b c", "a b"}, `{}`, "abc", []string{"a", "bc"}},
		{"leftmost of equal pairs", "a", []string{"a a"}, `{}`, "aaa", []string{"aa", "a"}},
		{"merged tokens merge", "ab", []string{"a b", "ab ab"}, `{}`, "abab", []string{"abab"}},
		{"unknown skipped without unk", "ab", nil, `{}`, "axb", []string{"a", "b"}},
		{"unknown token", "list:a b <unk>", nil, `{"unk_token":"<unk>"}`, "axyb", []string{"a", "<unk>", "<unk>", "b"}},
		{"fused unknowns", "list:a b <unk>", nil, `{"unk_token":"<unk>","fuse_unk":true}`, "axyb", []string{"a", "<unk>", "b"}},
		{"byte fallback", "list:a b <0xC3> <0xA9>", nil, `{"byte_fallback":true}`, "aéb", []string{"a", "<0xC3>", "<0xA9>", "b"}},
		{"byte fallback missing byte uses unk", "list:a b <0xC3> <unk>", nil, `{"byte_fallback":true,"unk_token":"<unk>"}`, "aé", []string{"a", "<unk>"}},
		{"continuing subword prefix", "list:a ##b ##c ab abc", []string{"a ##b", "ab ##c"}, `{"continuing_subword_prefix":"##"}`, "abc", []string{"abc"}},
		{"end of word suffix", "list:a b c</w> bc</w>", []string{"b c</w>"}, `{"end_of_word_suffix":"</w>"}`, "abc", []string{"a", "bc</w>"}},
		{"ignore merges", "abc", []string{"a b"}, `{"ignore_merges":true}`, "ab", []string{"ab"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mustNew(t, tinyBPE(t, tt.vocab, tt.merges, map[string]string{"model": tt.model}))
			if got := tokens(t, tok, tt.text); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// Both merges, the heap-based one and the scan for short words, must agree
// with the plain definition of BPE (merge the lowest-ranked pair, leftmost
// first) on real words, whatever their length.
func TestMergeMatchesDefinition(t *testing.T) {
	tok := testTokenizer(t, "qwen3")
	m := tok.model
	naive := func(word string) []uint32 {
		syms := m.symbols(nil, word)
		ids := make([]uint32, len(syms))
		for i, s := range syms {
			ids[i] = s.id
		}
		for {
			best, bestRank, bestID := -1, uint64(1<<63), uint32(0)
			for i := 0; i+1 < len(ids); i++ {
				if v, ok := m.merges.get(uint64(ids[i])<<32 | uint64(ids[i+1])); ok && v>>32 < bestRank {
					best, bestRank, bestID = i, v>>32, uint32(v)
				}
			}
			if best < 0 {
				return ids
			}
			ids = append(ids[:best], append([]uint32{bestID}, ids[best+2:]...)...)
		}
	}
	words := 0
	for _, c := range loadCorpus(t) {
		sc, _ := scannerFor(patternQwen)
		text := toValidUTF8(c.input(t))
		sc.findAll(text, func(start, end int) {
			w := text[start:end]
			want := naive(w)
			if got := m.merge(nil, w); !slices.Equal(got, want) {
				t.Fatalf("merge(%q) = %v, want %v", w, got, want)
			}
			if len(want) == 0 {
				return
			}
			for name, merge := range map[string]func([]uint32, *mergeScratch) []uint32{"heap": m.mergeHeap, "short": m.mergeShort} {
				sc := &mergeScratch{syms: m.symbols(nil, w)}
				if got := merge(nil, sc); !slices.Equal(got, want) {
					t.Fatalf("%s merge of %q = %v, want %v", name, w, got, want)
				}
			}
			words++
		})
	}
	t.Logf("%d words", words)
}

// Cutting SentencePiece words before ▁ (splitAtMarker) must not change the
// tokens.
func TestSplitAtMarker(t *testing.T) {
	tok := testTokenizer(t, "llama2")
	if !tok.model.splitAtMarker {
		t.Fatal("Llama 2's vocabulary should allow cutting at ▁")
	}
	other, err := New(testFiles(t, "llama2"))
	if err != nil {
		t.Fatal(err)
	}
	whole := other.model
	whole.splitAtMarker = false
	for _, c := range loadCorpus(t) {
		text := tok.norm.normalize(toValidUTF8(c.input(t)))
		if got, want := tok.model.encode(nil, text), whole.encode(nil, text); !slices.Equal(got, want) {
			t.Fatalf("%q: cut %v, whole %v", text, got, want)
		}
	}
}

func TestAddedTokens(t *testing.T) {
	const chars = "abcdefghijklmnopqrstuvwxyz <>|_ABC"
	added := func(tokens ...map[string]any) string {
		b, _ := json.Marshal(tokens)
		return string(b)
	}
	tok := func(id int, content string, flags ...string) map[string]any {
		m := map[string]any{"id": id, "content": content, "special": true, "normalized": false}
		for _, f := range flags {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v == "true"
		}
		return m
	}
	tests := []struct {
		name  string
		added string
		norm  string
		text  string
		want  []string
	}{
		{"longest at leftmost", added(tok(100, "<a>"), tok(101, "<a><b>")), "", "x<a><b>y<a>", []string{"x", "<a><b>", "y", "<a>"}},
		{"lstrip", added(tok(100, "<a>", "lstrip=true")), "", "x  <a> y", []string{"x", "<a>", " ", "y"}},
		{"rstrip", added(tok(100, "<a>", "rstrip=true")), "", "x <a>  y", []string{"x", " ", "<a>", "y"}},
		{"single word", added(tok(100, "ab", "single_word=true")), "", "ab xaby ab", []string{"ab", " ", "x", "a", "b", "y", " ", "ab"}},
		// Raw (normalized=false) tokens are matched before the normalizer
		// and only there: a normalized piece that spells one is text.
		{"raw before normalization", added(tok(100, "<a>")), `{"type":"Lowercase"}`, "<A><a>", []string{"<", "a", ">", "<a>"}},
		// Normalized tokens are matched in the normalized text, as their
		// normalized form.
		{"normalized token", added(tok(100, "ABC", "normalized=true", "special=false")), `{"type":"Lowercase"}`, "xABCabc", []string{"x", "ABC", "ABC"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comps := map[string]string{"added_tokens": tt.added}
			if tt.norm != "" {
				comps["normalizer"] = tt.norm
			}
			tk := mustNew(t, tinyBPE(t, chars, nil, comps))
			if got := tokens(t, tk, tt.text); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPostProcessors(t *testing.T) {
	const chars = "abc"
	addedJSON := `[{"id":10,"content":"<s>","special":true},{"id":11,"content":"</s>","special":true},{"id":12,"content":"<x>","special":true}]`
	tests := []struct {
		name string
		post string
		want []uint32
	}{
		{"none", `null`, []uint32{0}},
		{"byte level", `{"type":"ByteLevel"}`, []uint32{0}},
		{"template", `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],"special_tokens":{"<s>":{"id":"<s>","ids":[10],"tokens":["<s>"]},"</s>":{"id":"</s>","ids":[11],"tokens":["</s>"]}}}`, []uint32{10, 0, 11}},
		{"sequence", `{"type":"Sequence","processors":[{"type":"ByteLevel"},{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<x>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<x>":{"id":"<x>","ids":[12,12],"tokens":["<x>","<x>"]}}}]}`, []uint32{12, 12, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := mustNew(t, tinyBPE(t, chars, nil, map[string]string{"post_processor": tt.post, "added_tokens": addedJSON}))
			if got := tk.Encode("a", true); !slices.Equal(got, tt.want) {
				t.Fatalf("Encode(a, true) = %v, want %v", got, tt.want)
			}
			if got := tk.Encode("a", false); !slices.Equal(got, []uint32{0}) {
				t.Fatalf("Encode(a, false) = %v", got)
			}
		})
	}
}

// Unsupported components fail at load time, naming the component.
func TestUnsupportedComponents(t *testing.T) {
	tests := []struct {
		name, field, value, wantInErr string
	}{
		{"model", "model", `{"type":"Unigram","vocab":[["a",0.0]]}`, `model: type "Unigram"`},
		{"normalizer", "normalizer", `{"type":"BertNormalizer"}`, `normalizer: type "BertNormalizer"`},
		{"nested normalizer", "normalizer", `{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Precompiled","precompiled_charsmap":""}]}`, `normalizer: Sequence[1]: type "Precompiled"`},
		{"pre-tokenizer", "pre_tokenizer", `{"type":"BertPreTokenizer"}`, `pre_tokenizer: type "BertPreTokenizer"`},
		{"step after byte level", "pre_tokenizer", `{"type":"Sequence","pretokenizers":[{"type":"ByteLevel"},{"type":"Digits"}]}`, `pre_tokenizer: Sequence[1]: a step after ByteLevel`},
		{"split behavior", "pre_tokenizer", `{"type":"Split","pattern":{"String":"-"},"behavior":"Sideways"}`, `behavior "Sideways"`},
		{"post-processor", "post_processor", `{"type":"RobertaProcessing"}`, `post_processor: type "RobertaProcessing"`},
		{"decoder", "decoder", `{"type":"WordPiece"}`, `decoder: type "WordPiece"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc map[string]json.RawMessage
			if err := json.Unmarshal(tinyBPE(t, "ab", nil, nil), &doc); err != nil {
				t.Fatal(err)
			}
			doc[tt.field] = json.RawMessage(tt.value)
			tj, _ := json.Marshal(doc)
			_, err := New(Files{Tokenizer: tj})
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Fatalf("err = %v, want ErrUnsupported naming %q", err, tt.wantInErr)
			}
		})
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	good := string(tinyBPE(t, "ab", []string{"a b"}, nil))
	for _, tt := range []struct{ name, tj, cfg string }{
		{"not json", `{`, ``},
		{"no model", `{"model":null}`, ``},
		{"merge of unknown tokens", strings.Replace(good, `"merges":["a b"]`, `"merges":["a z"]`, 1), ``},
		{"merge with three parts", strings.Replace(good, `"merges":["a b"]`, `"merges":["a b c"]`, 1), ``},
		{"huge id", strings.Replace(good, `"a":0`, `"a":99999999`, 1), ``},
		{"shared id", strings.Replace(good, `"b":1`, `"b":0`, 1), ``},
		{"dropout", strings.Replace(good, `"type":"BPE"`, `"type":"BPE","dropout":0.1`, 1), ``},
		{"unk not in vocab", strings.Replace(good, `"type":"BPE"`, `"type":"BPE","unk_token":"<unk>"`, 1), ``},
		{"bad config", good, `{"chat_template": 3}`},
		{"bad special token", good, `{"eos_token": 3}`},
		{"bad template", good, `{"chat_template": "{% if %}"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(Files{Tokenizer: []byte(tt.tj), Config: []byte(tt.cfg)}); err == nil {
				t.Fatal("loaded")
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tj := tinyBPE(t, "abc<>/s", nil, map[string]string{
		"added_tokens": `[{"id":20,"content":"<s>","special":true},{"id":21,"content":"</s>","special":true}]`,
	})
	t.Run("named templates", func(t *testing.T) {
		cfg := `{"eos_token":"</s>","chat_template":[{"name":"default","template":"D{{ messages[0].content }}"},{"name":"tool_use","template":"T{{ tools | length }}"}]}`
		tok, err := New(Files{Tokenizer: tj, Config: []byte(cfg)})
		if err != nil {
			t.Fatal(err)
		}
		req := tokenizer.Chat([]tokenizer.Message{{Role: "user", Content: "x"}}, false)
		if got, err := tok.ApplyChatTemplate(req); err != nil || got != "Dx" {
			t.Fatalf("default = %q, %v", got, err)
		}
		req.Tools = []map[string]any{{"type": "function", "function": map[string]any{"name": "f"}}}
		if got, err := tok.ApplyChatTemplate(req); err != nil || got != "T1" {
			t.Fatalf("tool_use = %q, %v", got, err)
		}
		if tok.EOS() != 21 {
			t.Fatalf("EOS = %d", tok.EOS())
		}
	})
	t.Run("template files and special tokens map win", func(t *testing.T) {
		tok, err := New(Files{
			Tokenizer:        tj,
			Config:           []byte(`{"eos_token":"</s>","bos_token":"x","chat_template":"config"}`),
			SpecialTokensMap: []byte(`{"bos_token":{"content":"<s>","lstrip":false}}`),
			ChatTemplates:    map[string]string{"default": "{{ bos_token }}file"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := tok.ApplyChatTemplate(tokenizer.ChatRequest{}); err != nil || got != "<s>file" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("no template", func(t *testing.T) {
		tok := mustNew(t, tj)
		if _, err := tok.ApplyChatTemplate(tokenizer.ChatRequest{}); err == nil {
			t.Fatal("rendered without a template")
		}
		if tok.EOS() != ^uint32(0) {
			t.Fatalf("EOS without eos_token = %d", tok.EOS())
		}
	})
	t.Run("added tokens from the config", func(t *testing.T) {
		tok, err := New(Files{Tokenizer: tj, Config: []byte(`{"added_tokens_decoder":{"20":{"content":"<s>","special":true},"30":{"content":"<new>","special":true,"normalized":false}}}`)})
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Encode("a<new>", false); !slices.Equal(got, []uint32{0, 30}) {
			t.Fatalf("Encode = %v", got)
		}
		if tok.VocabSize() != 31 {
			t.Fatalf("VocabSize = %d", tok.VocabSize())
		}
	})
	t.Run("llama tokenizer class rebuilds the post-processor", func(t *testing.T) {
		tok, err := New(Files{Tokenizer: tj, Config: []byte(`{"tokenizer_class":"LlamaTokenizer","bos_token":"<s>","eos_token":"</s>","add_eos_token":true}`)})
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Encode("a", true); !slices.Equal(got, []uint32{20, 0, 21}) {
			t.Fatalf("Encode = %v", got)
		}
	})
}

func TestDecodeErrorsAndSpecials(t *testing.T) {
	tok := testTokenizer(t, "qwen3")
	if _, err := tok.Decode([]uint32{9707, uint32(tok.VocabSize())}, false); !errors.Is(err, tokenizer.ErrUnknownToken) {
		t.Fatalf("err = %v", err)
	}
	im := tok.Encode("<|im_start|>hi<|im_end|>", false)
	if got, _ := tok.Decode(im, true); got != "hi" {
		t.Fatalf("skip special = %q", got)
	}
	if got, _ := tok.Decode(im, false); got != "<|im_start|>hi<|im_end|>" {
		t.Fatalf("keep special = %q", got)
	}
	// </think> is an added token but not special: it is kept.
	if got, _ := tok.Decode(tok.Encode("</think>", false), true); got != "</think>" {
		t.Fatalf("non-special added token = %q", got)
	}
}

func TestTextTokens(t *testing.T) {
	for _, name := range realTokenizers {
		tok := testTokenizer(t, name)
		ids := tok.TextTokens()
		if len(ids) < 100 {
			t.Fatalf("%s: only %d text tokens", name, len(ids))
		}
		for _, id := range ids {
			s, err := tok.Decode([]uint32{id}, true)
			if err != nil || !textWord.MatchString(s) {
				t.Fatalf("%s: text token %d decodes to %q, %v", name, id, s, err)
			}
		}
	}
}

func TestToValidUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"\xff", "\uFFFD"},
		{"\xe2\x82", "\uFFFD"},                 // a truncated sequence is one subpart
		{"\xe2\x82(", "\uFFFD("},               // …even before another character
		{"\xc0\xaf", "\uFFFD\uFFFD"},           // overlong: C0 is never a lead byte
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // a surrogate: A0 cannot follow ED
		{"\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xf0\x9f\x98", "\uFFFD"},
		{"a\xf0\x9f\x98\x80\xffb", "a😀\uFFFDb"},
		{"\xe0\xa0", "\uFFFD"},
		{"\xe0\x80", "\uFFFD\uFFFD"},
	}
	for _, tt := range tests {
		if got := toValidUTF8(tt.in); got != tt.want {
			t.Errorf("toValidUTF8(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Concurrent encoding shares the word cache; -race checks it.
func TestConcurrentEncode(t *testing.T) {
	tok := testTokenizer(t, "qwen3")
	corpus := loadCorpus(t)
	want := make([][]uint32, len(corpus))
	for i, c := range corpus {
		want[i] = tok.Encode(c.input(t), false)
	}
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i := w; i < len(corpus); i += 4 {
				if got := tok.Encode(corpus[i].input(t), false); !slices.Equal(got, want[i]) {
					errs <- fmt.Errorf("case %d differs under concurrency", i)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestSegmentCache(t *testing.T) {
	files := testFiles(t, "qwen3")
	off, err := New(files, WithSegmentCache(0))
	if err != nil {
		t.Fatal(err)
	}
	small, err := New(files, WithSegmentCache(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	corpus := loadCorpus(t)
	for round := range 2 { // the second round hits (or finds evicted)
		for _, c := range corpus {
			in := c.input(t)
			if got, want := small.Encode(in, false), off.Encode(in, false); !slices.Equal(got, want) {
				t.Fatalf("round %d %q: cached %v, uncached %v", round, in, got, want)
			}
		}
	}
	hits, misses := small.SegmentCacheStats()
	if hits == 0 || misses == 0 {
		t.Fatalf("hits %d misses %d", hits, misses)
	}
	if small.segments.cur > small.segments.max {
		t.Fatalf("cache holds %d bytes, bound %d", small.segments.cur, small.segments.max)
	}
	if h, m := off.SegmentCacheStats(); h+m != 0 {
		t.Fatal("disabled cache counted")
	}
}
