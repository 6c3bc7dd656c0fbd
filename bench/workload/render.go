package workload

import (
	"fmt"
	"math/rand/v2"
)

// Format is how prompts go on the wire.
type Format string

const (
	// FormatTokens sends token-id arrays to /v1/completions, so prompt
	// lengths are exact whatever the engine's tokenizer.
	FormatTokens Format = "tokens"
	// FormatText sends text: the only form chat accepts.
	FormatText Format = "text"
)

// Token ids of a token-id prompt default to printable ASCII: with the
// byte-level tokenizer of `strata sim` (ids 0–259) they decode to text, and
// in byte-level BPE vocabularies (GPT-2, Llama 3, Qwen) the low ids are
// single characters too.
const (
	DefaultTokenIDMin = 32
	DefaultTokenIDMax = 126
)

// Renderer turns segments into token ids or text. It is safe for
// concurrent use.
type Renderer struct {
	minID, span uint32
	// text holds what each of the tokenizer's text tokens decodes to.
	text []string
}

// Vocabulary is the part of a tokenizer (tokenizer.Tokenizer) that text
// prompts are drawn from.
type Vocabulary interface {
	// TextTokens are ids that decode to printable text on their own.
	TextTokens() []uint32
	Decode(ids []uint32, skipSpecial bool) (string, error)
}

// NewRenderer renders token ids uniformly from [minID, maxID] and text from
// the tokenizer's text tokens, so a text segment of n tokens is n tokens
// that each decode to text on their own (exactly n tokens with the
// byte-level tokenizer).
func NewRenderer(tok Vocabulary, minID, maxID uint32) (*Renderer, error) {
	if maxID < minID {
		return nil, fmt.Errorf("%w: token id range %d-%d is empty", ErrSpec, minID, maxID)
	}
	r := &Renderer{minID: minID, span: maxID - minID + 1}
	for _, id := range tok.TextTokens() {
		s, err := tok.Decode([]uint32{id}, true)
		if err != nil {
			return nil, fmt.Errorf("tokenizer text token %d: %w", id, err)
		}
		if s != "" {
			r.text = append(r.text, s)
		}
	}
	if len(r.text) == 0 {
		return nil, fmt.Errorf("tokenizer has no text tokens to render text prompts from")
	}
	return r, nil
}

// AppendTokens appends the token ids of segs to dst.
func (r *Renderer) AppendTokens(dst []uint32, segs ...Segment) []uint32 {
	for _, s := range segs {
		var g rand.PCG
		g.Seed(s.Seed, streamTokens)
		for range s.Len {
			dst = append(dst, r.minID+pick(&g, r.span))
		}
	}
	return dst
}

// AppendText appends the text of segs to dst.
func (r *Renderer) AppendText(dst []byte, segs ...Segment) []byte {
	n := uint32(len(r.text))
	for _, s := range segs {
		var g rand.PCG
		g.Seed(s.Seed, streamText)
		for range s.Len {
			dst = append(dst, r.text[pick(&g, n)]...)
		}
	}
	return dst
}

// pick maps a 64-bit draw onto [0, n) by multiplication (Lemire), which is
// as uniform as needed here and deterministic across platforms.
func pick(g *rand.PCG, n uint32) uint32 {
	return uint32((g.Uint64() >> 32) * uint64(n) >> 32)
}

// The second PCG seed word separates the token and text streams of a
// segment, and the seed domains below separate the uses of a run's seed.
const (
	streamTokens = 0x746f6b656e73 // "tokens"
	streamText   = 0x74657874     // "text"

	domainSynthetic = 0x73796e74 + iota
	domainLengths
	domainPrefix
	domainSuffix
	domainPrefixChoice
	domainSystem
	domainUser
	domainMooncake
	domainAzure
)

// seedOf derives a seed from parts with the splitmix64 finaliser, a
// bijective mix with full avalanche.
func seedOf(parts ...uint64) uint64 {
	h := uint64(0x243f6a8885a308d3)
	for _, p := range parts {
		h = splitmix(h ^ p)
	}
	return h
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
