// Package bytelevel is the dependency-free default tokenizer: one token per
// UTF-8 byte, plus a few special tokens above 255. It needs no model files,
// so a simulator, a gateway and a test can agree on token ids out of the box.
package bytelevel

import (
	"errors"
	"fmt"
	"strings"

	"github.com/strata-llm/strata/tokenizer"
)

// Special token ids, placed after the 256 byte tokens.
const (
	BOS uint32 = 256 + iota
	EOS
	StartOfTurn
	EndOfTurn
	vocabSize
)

var specialText = map[uint32]string{
	BOS:         "<|begin_of_text|>",
	EOS:         "<|end_of_text|>",
	StartOfTurn: "<|im_start|>",
	EndOfTurn:   "<|im_end|>",
}

// Tokenizer is the byte-level tokenizer. The zero value is ready to use.
type Tokenizer struct{}

var _ tokenizer.Tokenizer = Tokenizer{}

// textTokens are the ids a simulated model samples from: lower-case letters
// weighted with spaces so that output reads as words.
var textTokens = func() []uint32 {
	var ids []uint32
	for c := 'a'; c <= 'z'; c++ {
		ids = append(ids, uint32(c))
	}
	for range 5 {
		ids = append(ids, ' ')
	}
	return ids
}()

// Encode implements tokenizer.Tokenizer. Special-token text in the input is
// recognised, as Hugging Face tokenizers do for added tokens.
func (Tokenizer) Encode(text string, addSpecial bool) []uint32 {
	ids := make([]uint32, 0, len(text)+1)
	if addSpecial {
		ids = append(ids, BOS)
	}
	for len(text) > 0 {
		if text[0] == '<' {
			if id, n := matchSpecial(text); n > 0 {
				ids = append(ids, id)
				text = text[n:]
				continue
			}
		}
		ids = append(ids, uint32(text[0]))
		text = text[1:]
	}
	return ids
}

func matchSpecial(text string) (uint32, int) {
	for id, s := range specialText {
		if strings.HasPrefix(text, s) {
			return id, len(s)
		}
	}
	return 0, 0
}

// Decode implements tokenizer.Tokenizer.
func (Tokenizer) Decode(ids []uint32, skipSpecial bool) (string, error) {
	var b strings.Builder
	b.Grow(len(ids))
	for _, id := range ids {
		switch {
		case id < 256:
			b.WriteByte(byte(id))
		case id < vocabSize:
			if !skipSpecial {
				b.WriteString(specialText[id])
			}
		default:
			return "", fmt.Errorf("decode id %d (vocabulary size %d): %w", id, vocabSize, tokenizer.ErrUnknownToken)
		}
	}
	return b.String(), nil
}

// ApplyChatTemplate renders a ChatML-style prompt:
// <|im_start|>role\ncontent<|im_end|>\n per message. Content parts are joined
// with "\n", as vLLM does for a template that expects a string; tools and
// template kwargs have no place in this template and are ignored.
func (Tokenizer) ApplyChatTemplate(req tokenizer.ChatRequest) (string, error) {
	if req.AddGenerationPrompt && req.ContinueFinalMessage {
		return "", errors.New("add_generation_prompt and continue_final_message cannot both be set")
	}
	var b strings.Builder
	for i, m := range req.Messages {
		role, text, err := tokenizer.MessageText(m)
		if err != nil {
			return "", fmt.Errorf("message %d: %w", i, err)
		}
		b.WriteString(specialText[StartOfTurn])
		b.WriteString(role)
		b.WriteByte('\n')
		b.WriteString(text)
		if req.ContinueFinalMessage && i == len(req.Messages)-1 {
			break
		}
		b.WriteString(specialText[EndOfTurn])
		b.WriteByte('\n')
	}
	if req.AddGenerationPrompt {
		b.WriteString(specialText[StartOfTurn])
		b.WriteString("assistant\n")
	}
	return b.String(), nil
}

// EOS implements tokenizer.Tokenizer.
func (Tokenizer) EOS() uint32 { return EOS }

// VocabSize implements tokenizer.Tokenizer.
func (Tokenizer) VocabSize() int { return int(vocabSize) }

// TextTokens implements tokenizer.Tokenizer.
func (Tokenizer) TextTokens() []uint32 { return textTokens }
