// Package tokenizer defines the token interface shared by the simulator, the
// gateway and the agent. Strata identifies KV blocks by token ids, so every
// component that hashes a prompt must produce the same ids for the same text:
// they all go through this interface, backed either by the built-in
// byte-level tokenizer (package bytelevel) or by a model's Hugging Face
// tokenizer files (package hf).
package tokenizer

import "errors"

// ErrUnknownToken is returned by Decode for an id outside the vocabulary.
var ErrUnknownToken = errors.New("token id outside the vocabulary")

// ErrUnsupportedContent is returned by ApplyChatTemplate for message content
// a text tokenizer cannot render: image, audio, video or file parts.
var ErrUnsupportedContent = errors.New("unsupported message content")

// Tokenizer turns text into token ids and back. Implementations are safe for
// concurrent use.
type Tokenizer interface {
	// Encode tokenizes text; addSpecial adds the model's BOS-style tokens
	// (the post-processor's template), as Hugging Face's add_special_tokens.
	Encode(text string, addSpecial bool) []uint32
	// Decode renders ids as text; special tokens are skipped when skipSpecial.
	Decode(ids []uint32, skipSpecial bool) (string, error)
	// ApplyChatTemplate renders a chat request into the prompt text the
	// model sees, as vLLM's chat endpoint does before tokenizing it (with
	// addSpecial false: the template writes the BOS itself).
	ApplyChatTemplate(req ChatRequest) (string, error)
	// EOS is the end-of-sequence token id.
	EOS() uint32
	// VocabSize is the number of ids Decode accepts.
	VocabSize() int
	// TextTokens lists ordinary token ids that decode to printable text on
	// their own: a simulator samples its output from them.
	TextTokens() []uint32
}
