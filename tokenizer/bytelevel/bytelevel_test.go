package bytelevel

import (
	"errors"
	"slices"
	"testing"

	"github.com/strata-llm/strata/tokenizer"
)

func TestEncodeDecode(t *testing.T) {
	tests := []struct {
		name       string
		text       string
		addSpecial bool
		want       []uint32
		skipped    string // Decode(ids, skipSpecial=true)
	}{
		{name: "ascii", text: "hi", want: []uint32{'h', 'i'}, skipped: "hi"},
		{name: "bos", text: "a", addSpecial: true, want: []uint32{BOS, 'a'}, skipped: "a"},
		{name: "utf8 bytes", text: "é", want: []uint32{0xc3, 0xa9}, skipped: "é"},
		{name: "special text matched", text: "<|im_end|>x", want: []uint32{EndOfTurn, 'x'}, skipped: "x"},
		{name: "partial special is bytes", text: "<|im", want: []uint32{'<', '|', 'i', 'm'}, skipped: "<|im"},
		{name: "empty", text: "", want: []uint32{}, skipped: ""},
	}
	var tok Tokenizer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids := tok.Encode(tt.text, tt.addSpecial)
			if !slices.Equal(ids, tt.want) {
				t.Fatalf("Encode(%q) = %v, want %v", tt.text, ids, tt.want)
			}
			got, err := tok.Decode(ids, true)
			if err != nil || got != tt.skipped {
				t.Fatalf("Decode(skip) = %q, %v; want %q", got, err, tt.skipped)
			}
			full, err := tok.Decode(ids, false)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Compare(tok.Encode(full, false), ids) != 0 {
				t.Fatalf("Encode(Decode(ids)) != ids for %v (decoded %q)", ids, full)
			}
		})
	}
}

func TestDecodeUnknownID(t *testing.T) {
	_, err := Tokenizer{}.Decode([]uint32{'a', vocabSize}, false)
	if !errors.Is(err, tokenizer.ErrUnknownToken) {
		t.Fatalf("err = %v, want ErrUnknownToken", err)
	}
}

func TestApplyChatTemplate(t *testing.T) {
	var tok Tokenizer
	tests := []struct {
		name    string
		req     tokenizer.ChatRequest
		want    string
		wantErr error
	}{
		{
			name: "messages",
			req:  tokenizer.Chat([]tokenizer.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}, true),
			want: "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
		},
		{
			name: "text parts joined with newlines",
			req: tokenizer.ChatRequest{Messages: []map[string]any{{"role": "user", "content": []any{
				map[string]any{"type": "text", "text": "a"}, map[string]any{"type": "text", "text": "b"},
			}}}},
			want: "<|im_start|>user\na\nb<|im_end|>\n",
		},
		{
			name: "continue final message",
			req: tokenizer.ChatRequest{ContinueFinalMessage: true, Messages: []map[string]any{
				{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel"},
			}},
			want: "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHel",
		},
		{
			name:    "image part",
			req:     tokenizer.ChatRequest{Messages: []map[string]any{{"role": "user", "content": []any{map[string]any{"type": "image_url"}}}}},
			wantErr: tokenizer.ErrUnsupportedContent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tok.ApplyChatTemplate(tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
	for _, bad := range []tokenizer.ChatRequest{
		{Messages: []map[string]any{{"content": "x"}}},
		{Messages: []map[string]any{{"role": "user", "content": 3}}},
		{AddGenerationPrompt: true, ContinueFinalMessage: true},
	} {
		if _, err := tok.ApplyChatTemplate(bad); err == nil {
			t.Fatalf("accepted %+v", bad)
		}
	}
}

func TestTextTokensDecodeToText(t *testing.T) {
	var tok Tokenizer
	for _, id := range tok.TextTokens() {
		if s, err := tok.Decode([]uint32{id}, true); err != nil || s == "" {
			t.Fatalf("text token %d decodes to %q, %v", id, s, err)
		}
	}
	if tok.EOS() != EOS || tok.VocabSize() != int(vocabSize) {
		t.Fatal("EOS or VocabSize wrong")
	}
}
