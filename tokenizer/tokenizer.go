// Package tokenizer defines the token interface shared by the simulator, the
// gateway and the agent. Strata identifies KV blocks by token ids, so every
// component that hashes a prompt must produce the same ids for the same text:
// they all go through this interface, backed either by the built-in
// byte-level tokenizer or by a model's Hugging Face tokenizer files.
package tokenizer

import "errors"

// ErrUnknownToken is returned by Decode for an id outside the vocabulary.
var ErrUnknownToken = errors.New("token id outside the vocabulary")

// Message is one chat message, as OpenAI's chat API carries it.
type Message struct {
	Role    string
	Content string
}

// Tokenizer turns text into token ids and back.
type Tokenizer interface {
	// Encode tokenizes text; addSpecial adds the model's BOS-style tokens.
	Encode(text string, addSpecial bool) []uint32
	// Decode renders ids as text; special tokens are skipped when skipSpecial.
	Decode(ids []uint32, skipSpecial bool) (string, error)
	// ApplyChatTemplate renders messages into the prompt text the model sees,
	// ending with the assistant's turn when addGenerationPrompt is set.
	ApplyChatTemplate(msgs []Message, addGenerationPrompt bool) (string, error)
	// EOS is the end-of-sequence token id.
	EOS() uint32
	// VocabSize is the number of ids Decode accepts.
	VocabSize() int
	// TextTokens lists ordinary token ids that decode to printable text on
	// their own: a simulator samples its output from them.
	TextTokens() []uint32
}
