package chattemplate

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/ardanlabs/jinja"
)

// tojson is the filter Hugging Face installs in place of Jinja2's:
//
//	def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
//	    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
//	                      separators=separators, sort_keys=sort_keys)
//
// so the output is Python's json.dumps: ", " and ": " separators (",", ": "
// when indented), no HTML escaping, keys in insertion order, Python's float
// repr.
func tojson(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.Undefined(), errors.New("tojson: no value")
	}
	params := []string{"ensure_ascii", "indent", "separators", "sort_keys"}
	opt := map[string]jinja.Value{}
	for i, a := range args[1:] {
		if i >= len(params) {
			return jinja.Undefined(), fmt.Errorf("tojson: takes at most %d arguments", len(params))
		}
		opt[params[i]] = a
	}
	for k, v := range kwargs {
		if !slices.Contains(params, k) {
			return jinja.Undefined(), fmt.Errorf("tojson: unexpected keyword argument %q", k)
		}
		if _, dup := opt[k]; dup {
			return jinja.Undefined(), fmt.Errorf("tojson: got multiple values for %q", k)
		}
		opt[k] = v
	}
	e := jsonEncoder{itemSep: ", ", keySep: ": "}
	if v, ok := opt["ensure_ascii"]; ok {
		e.ascii = v.IsTruthy()
	}
	if v, ok := opt["sort_keys"]; ok {
		e.sortKeys = v.IsTruthy()
	}
	if v, ok := opt["indent"]; ok && !v.IsNone() {
		switch {
		case v.IsInt():
			e.indent, e.indented = strings.Repeat(" ", int(max(0, min(v.AsInt(), 1<<10)))), true
		case v.IsString():
			e.indent, e.indented = v.AsString(), true
		default:
			return jinja.Undefined(), errors.New("tojson: indent must be an integer or a string")
		}
		e.itemSep = ","
	}
	if v, ok := opt["separators"]; ok && !v.IsNone() {
		if !v.IsList() || v.AsList().Len() != 2 || !v.AsList().Get(0).IsString() || !v.AsList().Get(1).IsString() {
			return jinja.Undefined(), errors.New("tojson: separators must be two strings")
		}
		e.itemSep, e.keySep = v.AsList().Get(0).AsString(), v.AsList().Get(1).AsString()
	}
	var b strings.Builder
	if err := e.encode(&b, args[0], 0); err != nil {
		return jinja.Undefined(), fmt.Errorf("tojson: %w", err)
	}
	return jinja.NewString(b.String()), nil
}

type jsonEncoder struct {
	ascii, sortKeys, indented bool
	indent                    string
	itemSep, keySep           string
}

func (e *jsonEncoder) newline(b *strings.Builder, depth int) {
	b.WriteByte('\n')
	for range depth {
		b.WriteString(e.indent)
	}
}

func (e *jsonEncoder) encode(b *strings.Builder, v jinja.Value, depth int) error {
	if depth > 1000 {
		return errors.New("nested too deeply")
	}
	switch {
	case v.IsNone():
		b.WriteString("null")
	case v.IsBool():
		b.WriteString(strconv.FormatBool(v.AsBool()))
	case v.IsInt():
		b.WriteString(strconv.FormatInt(v.AsInt(), 10))
	case v.IsFloat():
		b.WriteString(pyFloatJSON(v.AsFloat()))
	case v.IsString():
		writePyJSONString(b, v.AsString(), e.ascii)
	case v.IsList():
		items := v.AsList().Items
		if len(items) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, item := range items {
			if i > 0 {
				b.WriteString(e.itemSep)
			}
			if e.indented {
				e.newline(b, depth+1)
			}
			if err := e.encode(b, item, depth+1); err != nil {
				return err
			}
		}
		if e.indented {
			e.newline(b, depth)
		}
		b.WriteByte(']')
	case v.IsDict():
		d := v.AsDict()
		if d.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := d.Keys
		if e.sortKeys {
			keys = slices.Sorted(slices.Values(keys))
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(e.itemSep)
			}
			if e.indented {
				e.newline(b, depth+1)
			}
			writePyJSONString(b, k, e.ascii)
			b.WriteString(e.keySep)
			if err := e.encode(b, d.Data[k], depth+1); err != nil {
				return err
			}
		}
		if e.indented {
			e.newline(b, depth)
		}
		b.WriteByte('}')
	case v.IsUndefined():
		return errors.New("object of type Undefined is not JSON serializable")
	default:
		return fmt.Errorf("object %s is not JSON serializable", v.String())
	}
	return nil
}

// writePyJSONString quotes s as json.dumps does: the short escapes, \u00XX
// for other control characters, and with ensure_ascii \uXXXX (surrogate
// pairs above U+FFFF) for everything beyond ASCII.
func writePyJSONString(b *strings.Builder, s string, ascii bool) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20 || (ascii && r >= 0x80 && r < 0x10000):
				b.WriteString(`\u`)
				b.WriteByte(hex[r>>12&0xF])
				b.WriteByte(hex[r>>8&0xF])
				b.WriteByte(hex[r>>4&0xF])
				b.WriteByte(hex[r&0xF])
			case ascii && r >= 0x10000:
				r1, r2 := utf16.EncodeRune(r)
				for _, u := range []rune{r1, r2} {
					b.WriteString(`\u`)
					b.WriteByte(hex[u>>12&0xF])
					b.WriteByte(hex[u>>8&0xF])
					b.WriteByte(hex[u>>4&0xF])
					b.WriteByte(hex[u&0xF])
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// pyFloatJSON is json.dumps of a float: Python's repr, with NaN and the
// infinities as JavaScript names.
func pyFloatJSON(f float64) string {
	switch s := pyFloatRepr(f); s {
	case "nan":
		return "NaN"
	case "inf":
		return "Infinity"
	case "-inf":
		return "-Infinity"
	default:
		return s
	}
}

// pyFloatRepr is Python's repr of a float: the shortest digits that read
// back as f, positional notation with at least one fractional digit when
// the exponent is in [-4, 16), scientific otherwise ("1e-05", "1e+16").
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	sci := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, expStr, _ := strings.Cut(sci, "e")
	exp, _ := strconv.Atoi(expStr)
	if -4 <= exp && exp < 16 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		return s
	}
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	return fmt.Sprintf("%se%s%02d", mant, sign, exp)
}
