package hf

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dlclark/regexp2/v2"
)

// scannerPatterns are the patterns the scanner replaces.
var scannerPatterns = []string{patternCL100K, patternQwen, patternGPT2}

func regexSplits(t testing.TB, re *regexp2.Regexp, s string) [][2]int {
	t.Helper()
	idx, err := re.FindAllStringIndex(s, -1)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][2]int, len(idx))
	for i, m := range idx {
		out[i] = [2]int{m[0], m[1]}
	}
	return out
}

func scannerSplits(sc scanner, s string) [][2]int {
	out := [][2]int{}
	sc.findAll(s, func(start, end int) { out = append(out, [2]int{start, end}) })
	return out
}

// scannerAlphabet mixes every class the patterns tell apart: letters with
// case, contractions, digits of several kinds, line breaks of all kinds,
// Unicode spaces, punctuation, marks and astral characters.
var scannerAlphabet = []string{
	"a", "Z", "é", "ß", "ſ", "K", "日", "ا", "\u0301", "'", "s", "S", "t", "T", "re", "RE", "vE", "ll", "Ll", "m", "d", "D",
	"0", "7", "٣", "½", "Ⅻ", "²", " ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\u0085", "\u00a0", "\u2028", "\u2029",
	"\u3000", "\u200b", "\ufeff", "!", "?", ".", ",", "-", "_", "(", ")", "<|", "|>", "😀", "𝔘", "\U0001F3FD", "\x00", "\x1c",
}

func randomText(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(scannerAlphabet[rng.IntN(len(scannerAlphabet))])
	}
	return b.String()
}

func TestScannerMatchesRegex(t *testing.T) {
	for _, expr := range scannerPatterns {
		sc, ok := scannerFor(expr)
		if !ok {
			t.Fatalf("no scanner for %q", expr)
		}
		re := regexp2.MustCompile(expr, regexp2.Multiline)
		rng := rand.New(rand.NewPCG(1, uint64(len(expr))))
		for i := range 20000 {
			s := randomText(rng, 1+i%40)
			if got, want := scannerSplits(sc, s), regexSplits(t, re, s); !slices.Equal(got, want) {
				t.Fatalf("pattern %q on %q:\nscanner %v\nregexp2 %v", expr, s, got, want)
			}
		}
	}
}
