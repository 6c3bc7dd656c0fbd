package kvhash

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/zeebo/xxh3"
)

// reference is DESIGN.md's definition written out naively.
func reference(tokens []uint32, bs int, lora string) []uint64 {
	seed := uint64(1337)
	if lora != "" {
		seed += xxh3.HashString(lora)
	}
	var out []uint64
	for i := 0; (i+1)*bs <= len(tokens); i++ {
		var b []byte
		for _, t := range tokens[i*bs : (i+1)*bs] {
			b = binary.LittleEndian.AppendUint32(b, t)
		}
		local := xxh3.HashSeed(b, seed)
		if i == 0 {
			out = append(out, local)
			continue
		}
		c := binary.LittleEndian.AppendUint64(nil, out[i-1])
		c = binary.LittleEndian.AppendUint64(c, local)
		out = append(out, xxh3.HashSeed(c, 1337))
	}
	return out
}

func tokens(n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(i*7919) % 128256
	}
	return out
}

func TestPromptMatchesDefinition(t *testing.T) {
	tests := []struct {
		name string
		n    int
		bs   int
		lora string
		want int
	}{
		{"empty", 0, 16, "", 0},
		{"partial block only", 15, 16, "", 0},
		{"one block", 16, 16, "", 1},
		{"partial tail ignored", 16*5 + 3, 16, "", 5},
		{"lora", 64, 16, "sql-adapter", 4},
		{"block size 32", 100, 32, "", 3},
		{"bad block size", 100, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Prompt(tokens(tt.n), tt.bs, tt.lora)
			if len(got) != tt.want {
				t.Fatalf("%d hashes, want %d", len(got), tt.want)
			}
			if tt.bs > 0 && !slices.Equal(got, reference(tokens(tt.n), tt.bs, tt.lora)) {
				t.Fatal("differs from the DESIGN.md definition")
			}
		})
	}
	if slices.Equal(Prompt(tokens(32), 16, ""), Prompt(tokens(32), 16, "a")) {
		t.Fatal("a LoRA adapter must change the hashes")
	}
}

// TestSequenceContinuesChain: hashing a prompt in runs (as engines report
// newly stored blocks) gives the same hashes as hashing it whole.
func TestSequenceContinuesChain(t *testing.T) {
	all := tokens(16 * 10)
	whole := Prompt(all, 16, "")
	var h Hasher
	first := h.Sequence(nil, all[:16*4], 16, "", 0, false)
	rest := h.Sequence(nil, all[16*4:], 16, "", first[len(first)-1], true)
	if !slices.Equal(append(first, rest...), whole) {
		t.Fatal("chained runs differ from the whole prompt")
	}
}

func BenchmarkPrompt128Blocks(b *testing.B) {
	toks := tokens(128 * 16)
	var h Hasher
	dst := make([]uint64, 0, 128)
	b.SetBytes(int64(4 * len(toks)))
	for b.Loop() {
		dst = h.Sequence(dst[:0], toks, 16, "", 0, false)
	}
}
