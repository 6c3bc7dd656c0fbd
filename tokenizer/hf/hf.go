// Package hf is a pure-Go implementation of Hugging Face tokenizers: it loads
// a model's tokenizer.json and tokenizer_config.json and encodes, decodes and
// renders chat templates exactly as the engine serving the model does
// (vLLM, through transformers and the Rust tokenizers library), so that
// Strata hashes the same token ids the engine caches.
//
// Supported: BPE models, byte-level (GPT-2, Llama 3, Qwen) and
// SentencePiece-style with byte fallback (Llama 2, Mistral); normalizers NFC,
// NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Prepend, Replace and
// Sequence; pre-tokenizers Split, ByteLevel, Metaspace, Digits,
// WhitespaceSplit, Punctuation and Sequence; post-processors
// TemplateProcessing, ByteLevel and Sequence; decoders ByteLevel,
// Metaspace, ByteFallback, Fuse, Strip, Replace and Sequence; added tokens
// with their single_word, lstrip, rstrip and normalized flags. Anything else
// fails at load time with an error that names the component and wraps
// ErrUnsupported. See docs/tokenizer.md.
package hf

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/strata-llm/strata/tokenizer"
	"github.com/strata-llm/strata/tokenizer/chattemplate"
)

// Tokenizer is a loaded Hugging Face tokenizer. It is safe for concurrent
// use.
type Tokenizer struct {
	norm  normalizer // nil: none
	pre   preTokenizer
	model *bpe
	post  template
	dec   decoder

	added     []addedToken
	addedByID map[uint32]int
	addedByTx map[string]int
	raw       *matcher // added tokens matched in the raw text
	normed    *matcher // added tokens matched in the normalized text

	segments   *segmentCache // nil: off
	vocabSize  int
	eos        uint32
	hasEOS     bool
	chat       *chattemplate.Template
	textTokens []uint32
	buffers    sync.Pool // *encodeBuffers
}

var _ tokenizer.Tokenizer = (*Tokenizer)(nil)

type encodeBuffers struct {
	spans, sub []tokenSpan
}

func (t *Tokenizer) setAddedTokens(added []addedToken) error {
	t.added = added
	t.addedByID = make(map[uint32]int, len(added))
	t.addedByTx = make(map[string]int, len(added))
	t.raw, t.normed = newMatcher(), newMatcher()
	t.vocabSize = len(t.model.idToToken)
	for i, a := range added {
		if a.ID >= maxVocabID {
			return fmt.Errorf("tokenizer.json: added token %q: id %d is over the limit of %d", a.Content, a.ID, maxVocabID)
		}
		if a.Content == "" {
			return fmt.Errorf("tokenizer.json: added token %d has no content", a.ID)
		}
		if _, dup := t.addedByID[a.ID]; !dup {
			t.addedByID[a.ID] = i
		}
		if _, dup := t.addedByTx[a.Content]; !dup {
			t.addedByTx[a.Content] = i
		}
		if a.normalized() && t.norm != nil {
			t.normed.add(t.norm.normalize(a.Content), i)
		} else if a.normalized() {
			t.normed.add(a.Content, i)
		} else {
			t.raw.add(a.Content, i)
		}
		t.vocabSize = max(t.vocabSize, int(a.ID)+1)
	}
	t.buffers.New = func() any { return new(encodeBuffers) }
	return nil
}

// TokenID returns the id of a token given as its text (an added token, or
// a token of the model's vocabulary as tokenizer.json writes it).
func (t *Tokenizer) TokenID(tok string) (uint32, bool) {
	if i, ok := t.addedByTx[tok]; ok {
		return t.added[i].ID, true
	}
	id, ok := t.model.vocab[tok]
	return id, ok
}

// Encode implements tokenizer.Tokenizer: added tokens are matched first,
// then the rest is normalized, pre-tokenized and run through the model, and
// with addSpecial the post-processor's tokens (such as BOS) are added.
// Invalid UTF-8 is first replaced with U+FFFD per maximal subpart, as Python
// and the browser decode bytes ("errors=replace").
func (t *Tokenizer) Encode(text string, addSpecial bool) []uint32 {
	text = toValidUTF8(text)
	ids := t.encode(make([]uint32, 0, len(text)/3+4), text)
	if addSpecial {
		ids = t.post.apply(ids)
	}
	return ids
}

func (t *Tokenizer) encode(ids []uint32, text string) []uint32 {
	buf := t.buffers.Get().(*encodeBuffers)
	defer t.buffers.Put(buf)
	buf.spans = t.raw.split(buf.spans[:0], text, t.added)
	for _, sp := range buf.spans {
		if sp.token >= 0 {
			ids = append(ids, t.added[sp.token].ID)
			continue
		}
		raw, first := text[sp.start:sp.end], sp.start == 0
		if t.segments != nil && len(raw) >= minCachedSegment {
			if cached, ok := t.segments.get(raw, first); ok {
				ids = append(ids, cached...)
				continue
			}
			start := len(ids)
			ids = t.encodeSegment(ids, raw, first, buf)
			t.segments.put(raw, first, ids[start:])
			continue
		}
		ids = t.encodeSegment(ids, raw, first, buf)
	}
	return ids
}

// encodeSegment encodes a run of text between raw added tokens: normalized,
// split on normalized added tokens, pre-tokenized, merged.
func (t *Tokenizer) encodeSegment(ids []uint32, seg string, first bool, buf *encodeBuffers) []uint32 {
	if t.norm != nil {
		seg = t.norm.normalize(seg)
	}
	if seg == "" {
		return ids
	}
	buf.sub = t.normed.split(buf.sub[:0], seg, t.added)
	for _, s2 := range buf.sub {
		if s2.token >= 0 {
			ids = append(ids, t.added[s2.token].ID)
			continue
		}
		if s2.end > s2.start {
			ids = t.encodePiece(ids, piece{text: seg[s2.start:s2.end], first: first && s2.start == 0}, buf)
		}
	}
	return ids
}

func (t *Tokenizer) encodePiece(ids []uint32, p piece, buf *encodeBuffers) []uint32 {
	if t.pre == nil {
		return t.model.encode(ids, p.text)
	}
	t.pre.preTokenize(p, func(q piece) { ids = t.model.encode(ids, q.text) })
	return ids
}

// Decode implements tokenizer.Tokenizer: each id's token (added tokens as
// their text) through the decoder, special tokens left out when skipSpecial.
// Unlike tokenizers, which drops them silently, an id outside the vocabulary
// is an error (tokenizer.ErrUnknownToken).
func (t *Tokenizer) Decode(ids []uint32, skipSpecial bool) (string, error) {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		if i, ok := t.addedByID[id]; ok {
			if !skipSpecial || !t.added[i].Special {
				tokens = append(tokens, t.added[i].Content)
			}
			continue
		}
		tok, ok := t.model.token(id)
		if !ok {
			return "", fmt.Errorf("decode id %d (vocabulary size %d): %w", id, t.vocabSize, tokenizer.ErrUnknownToken)
		}
		tokens = append(tokens, tok)
	}
	if t.dec == nil {
		return strings.Join(tokens, " "), nil
	}
	return strings.Join(t.dec.decodeChain(tokens), ""), nil
}

// ApplyChatTemplate implements tokenizer.Tokenizer with the model's chat
// template (see package chattemplate). The prompt it returns is to be
// encoded with addSpecial false, as vLLM does: templates write the BOS.
func (t *Tokenizer) ApplyChatTemplate(req tokenizer.ChatRequest) (string, error) {
	if t.chat == nil {
		return "", fmt.Errorf("the tokenizer has no chat template (tokenizer_config.json chat_template)")
	}
	return t.chat.Render(req)
}

// ChatTemplate is the model's chat template, nil if it has none.
func (t *Tokenizer) ChatTemplate() *chattemplate.Template { return t.chat }

// EOS implements tokenizer.Tokenizer: the id of tokenizer_config.json's
// eos_token, or ^uint32(0) when the model names none.
func (t *Tokenizer) EOS() uint32 {
	if !t.hasEOS {
		return ^uint32(0)
	}
	return t.eos
}

// VocabSize implements tokenizer.Tokenizer: one more than the largest id of
// the vocabulary and the added tokens.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TextTokens implements tokenizer.Tokenizer: up to 2048 of the lowest
// (most frequent) ids that decode to a lower-case word, with or without a
// leading space.
func (t *Tokenizer) TextTokens() []uint32 { return t.textTokens }

var textWord = regexp.MustCompile(`^ ?[a-z]{2,12}$`)

func (t *Tokenizer) findTextTokens() []uint32 {
	var ids []uint32
	for id := range uint32(len(t.model.idToToken)) {
		if _, added := t.addedByID[id]; added || !t.model.known[id] {
			continue
		}
		if s, err := t.Decode([]uint32{id}, true); err == nil && textWord.MatchString(s) {
			ids = append(ids, id)
			if len(ids) == 2048 {
				break
			}
		}
	}
	return ids
}
