package record

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/strata-llm/strata/tiers"
)

var key = tiers.Key{Scope: tiers.ScopeOf("m"), Hash: 0x1234}

func encode(k tiers.Key, payload []byte) []byte {
	return append(AppendHeader(nil, k, payload), payload...)
}

func TestRoundTrip(t *testing.T) {
	for _, p := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("kv"), 5000), bytes.Repeat([]byte("k"), 3*readChunk+5)} {
		rec := encode(key, p)
		got, err := Read(bytes.NewReader(rec), int64(len(rec)), key)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("Read(encode(%d bytes)) = %d bytes, %v", len(p), len(got), err)
		}
	}
}

func TestRejects(t *testing.T) {
	good := encode(key, []byte("payload"))
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short header":   good[:HeaderSize-1],
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"magic":          mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"header bit":     mutate(func(b []byte) []byte { b[20] ^= 1; return b }),
		"payload bit":    mutate(func(b []byte) []byte { b[HeaderSize] ^= 0x80; return b }),
		"other key":      encode(tiers.Key{Scope: key.Scope, Hash: key.Hash + 1}, []byte("payload")),
	} {
		if _, err := Read(bytes.NewReader(b), int64(len(b)), key); !errors.Is(err, tiers.ErrCorrupt) {
			t.Errorf("%s: Read: %v, want ErrCorrupt", name, err)
		}
	}
}

func TestReaderReadsTheRecord(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	want := encode(key, payload)
	r := NewReader(key, payload)
	if r.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", r.Size(), len(want))
	}
	got, err := io.ReadAll(io.LimitReader(r, r.Size()+10))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	// Seek back and read through small buffers (a client retrying).
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	small := make([]byte, 7)
	for {
		n, err := r.Read(small)
		buf.Write(small[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("re-read after seek differs")
	}
	sec := io.NewSectionReader(r, 30, 20)
	part, _ := io.ReadAll(sec)
	if !bytes.Equal(part, want[30:50]) {
		t.Fatal("ReadAt across the header's end differs")
	}
}

// FuzzDecode feeds the record reader arbitrary bytes, as a torn or tampered file
// would: it must never panic, and what it accepts must be exactly a record
// the encoder would write.
func FuzzDecode(f *testing.F) {
	f.Add(encode(key, []byte("hello kv")))
	f.Add(encode(key, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, herr := DecodeHeader(b)
		payload, err := Read(bytes.NewReader(b), int64(len(b)), key)
		if err != nil {
			if !errors.Is(err, tiers.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if herr != nil || h.Key != key || h.Length != int64(len(payload)) {
			t.Fatalf("Read accepted what DecodeHeader did not: %v %+v", herr, h)
		}
		if !bytes.Equal(encode(key, payload), b) {
			t.Fatal("accepted bytes differ from the encoding of their payload")
		}
	})
}
