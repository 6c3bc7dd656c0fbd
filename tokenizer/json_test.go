package tokenizer

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeJSON: the gjson fast path decodes exactly what encoding/json's
// decoder does, and fails where it fails.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"role":"user","content":"hi \u00e9 \n"}],"tools":[{"a":1,"b":1.0,"c":-0.5e3}],"x":null,"y":true}`,
		`{"a":1,"a":2,"b":[]}`, `[1,[2,[3,{}]]]`, `"\ud83d\ude00"`, `"\ud800"`, `"\u0000"`, " \t\n{}\r\n",
		`{"a":01}`, `{"a":1,}`, `[1 2]`, `"a` + "\x01" + `"`, "\"\xff\"", `{"a":"b"} x`, `-`, `1e`, `{"a"}`,
		strings.Repeat("[", 600) + strings.Repeat("]", 600), `{"k\"ey":"v\\"}`, `0`, `""`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ferr := DecodeJSON(data)
		slow, serr := decodeJSONSlow(data)
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("%q: fast error %v, encoding/json error %v", data, ferr, serr)
		}
		if ferr == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast %#v, encoding/json %#v", data, fast, slow)
		}
	})
}

// FuzzShallow holds shallow, which jumps from quote to quote, to the plain
// byte-by-byte definition.
func FuzzShallow(f *testing.F) {
	for _, s := range []string{
		`{"a":"\ud800"}`, `"\\ud800"`, `"\"\ud800"`, `["x\"y",{"z":"\D800"}]`, `"abc`, `"a\`, `"\u`, `"\ud`,
		`{"a":[1,2,{"b":"c"}]}`, strings.Repeat("[", 600), strings.Repeat(`["\n",`, 300), `"[[[["`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		if got, want := shallow(data), shallowByBytes(data); got != want {
			t.Fatalf("shallow(%q) = %v, byte by byte %v", data, got, want)
		}
	})
}

// shallowByBytes is shallow's definition: depth and escaped surrogates,
// one byte at a time.
func shallowByBytes(data string) bool {
	depth, inString := 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				if i+2 < len(data) && data[i+1] == 'u' && (data[i+2] == 'd' || data[i+2] == 'D') {
					return false
				}
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > maxJSONDepth {
				return false
			}
		case '}', ']':
			depth--
		}
	}
	return true
}

func TestDecodeJSONFastPath(t *testing.T) {
	data := []byte(`{"b":1,"a":[true,null,"x\u00e9"],"c":{"d":2.50}}`)
	if !shallow(string(data)) {
		t.Fatal("a plain document took the slow path")
	}
	v, err := DecodeJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	o := v.(*Object)
	if !reflect.DeepEqual(o.Keys, []string{"b", "a", "c"}) || o.Values["c"].(*Object).Values["d"] != json.Number("2.50") {
		t.Fatalf("decoded %#v", o)
	}
}
