package hf

import (
	"strings"
	"unicode/utf8"
)

// byteChar maps each byte to the printable character GPT-2's byte-level
// alphabet writes it as (bytes_to_unicode): printable Latin-1 bytes stand
// for themselves, the other 68 are shifted to U+0100 onwards.
var byteChar, charByte = func() ([256]rune, map[rune]byte) {
	var bc [256]rune
	cb := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			bc[b] = rune(b)
		} else {
			bc[b] = rune(256 + n)
			n++
		}
		cb[bc[b]] = byte(b)
	}
	return bc, cb
}()

// byteLevelToRaw converts a token written in the byte-level alphabet back to
// the bytes it stands for. ok is false if a character is outside the
// alphabet (such a token cannot come out of a byte-level pre-tokenizer).
func byteLevelToRaw(tok string) (raw string, ok bool) {
	var b strings.Builder
	b.Grow(len(tok))
	for _, r := range tok {
		c, ok := charByte[r]
		if !ok {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// rawToByteLevel writes raw bytes in the byte-level alphabet.
func rawToByteLevel(raw string) string {
	var b strings.Builder
	b.Grow(2 * len(raw))
	for i := 0; i < len(raw); i++ {
		b.WriteRune(byteChar[raw[i]])
	}
	return b.String()
}

// toValidUTF8 replaces each maximal ill-formed subsequence of s with U+FFFD,
// the Unicode "substitution of maximal subparts" that Rust's
// String::from_utf8_lossy, Python's errors="replace" and WHATWG's
// TextDecoder all apply (strings.ToValidUTF8 replaces whole runs instead,
// and utf8.DecodeRune reports each byte separately). Valid input is returned
// as is.
func toValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			b.WriteByte(c)
			i++
			continue
		}
		if r, n := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError || n > 1 {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		b.WriteRune(utf8.RuneError)
		i += maximalSubpart(s[i:])
	}
	return b.String()
}

// maximalSubpart is the length of the ill-formed sequence at the start of s
// (which does not begin with a valid character): a lead byte followed by as
// many continuation bytes as could still start a valid character (Table 3-7
// of the Unicode Standard), at least one byte.
func maximalSubpart(s string) int {
	c := s[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case 0xC2 <= c && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case 0xE1 <= c && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case 0xF1 <= c && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(s); n++ {
		if s[n] < lo || s[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}
