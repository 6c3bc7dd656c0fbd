package chattemplate

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/ardanlabs/jinja"
)

// strFilter is the filter prepare wraps around every {{ }} expression: Jinja2
// writes a value as Python's str() does (None as "None", True, lists and
// dicts as their repr), which the engine does not for all values.
const strFilter = "strata_str"

func strFilterFn(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.NewString(""), nil
	}
	if args[0].IsString() {
		return args[0], nil
	}
	return jinja.NewString(pyStr(args[0])), nil
}

// trimFilter replaces Jinja2's trim: soft_str(value).strip(chars).
const trimFilter = "strata_trim"

func trimFilterFn(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.NewString(""), nil
	}
	s := pyStr(args[0])
	chars, ok := kwargs["chars"]
	if len(args) > 1 {
		chars, ok = args[1], true
	}
	if !ok || chars.IsNone() || chars.IsUndefined() {
		return jinja.NewString(strings.TrimFunc(s, pyIsSpace)), nil
	}
	if !chars.IsString() {
		return jinja.Undefined(), fmt.Errorf("trim: chars must be a string")
	}
	return jinja.NewString(strings.Trim(s, chars.AsString())), nil
}

// pyStr is Python's str() of a value; Undefined is "" as in Jinja2.
func pyStr(v jinja.Value) string {
	switch {
	case v.IsUndefined():
		return ""
	case v.IsString():
		return v.AsString()
	}
	var b strings.Builder
	writeRepr(&b, v, 0)
	return b.String()
}

// writeRepr writes Python's repr() of v.
func writeRepr(b *strings.Builder, v jinja.Value, depth int) {
	if depth > 100 {
		b.WriteString("...")
		return
	}
	switch {
	case v.IsUndefined(), v.IsNone():
		b.WriteString("None")
	case v.IsBool():
		if v.AsBool() {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case v.IsInt():
		b.WriteString(strconv.FormatInt(v.AsInt(), 10))
	case v.IsFloat():
		b.WriteString(pyFloatRepr(v.AsFloat()))
	case v.IsString():
		writeStringRepr(b, v.AsString())
	case v.IsList():
		b.WriteByte('[')
		for i, item := range v.AsList().Items {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, item, depth+1)
		}
		b.WriteByte(']')
	case v.IsDict():
		d := v.AsDict()
		b.WriteByte('{')
		for i, k := range d.Keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writeStringRepr(b, k)
			b.WriteString(": ")
			writeRepr(b, d.Data[k], depth+1)
		}
		b.WriteByte('}')
	default:
		b.WriteString(v.String())
	}
}

// writeStringRepr is Python's repr() of a str: single quotes unless the
// string has one and no double quote, backslash escapes for the quote, the
// backslash, \t \n \r, and \xNN, \uNNNN, \UNNNNNNNN for what is not
// printable.
func writeStringRepr(b *strings.Builder, s string) {
	quote := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == rune(quote) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < ' ' || r == 0x7F:
			fmt.Fprintf(b, `\x%02x`, r)
		case r < 0x7F || pyIsPrintable(r):
			b.WriteRune(r)
		case r <= 0xFF:
			fmt.Fprintf(b, `\x%02x`, r)
		case r <= 0xFFFF:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			fmt.Fprintf(b, `\U%08x`, r)
		}
	}
	b.WriteByte(quote)
}

// pyIsPrintable is Python's str.isprintable for one character: not a control,
// format, surrogate, private-use, unassigned or separator character, the
// space excepted.
func pyIsPrintable(r rune) bool {
	if r == ' ' {
		return true
	}
	if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Cs, unicode.Co, unicode.Zl, unicode.Zp, unicode.Zs) {
		return false
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S)
}
