package kvbm

import (
	"encoding/binary"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-llm/strata/agent/kvbm/internal/wire"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// FuzzAssembler feeds the put-stream assembler arbitrary messages (the
// input is a series of 2-byte little-endian lengths, each followed by a
// protobuf PutKVBlocksRequest): it never panics, every framing violation
// is a *framingError, and every block it hands over is whole.
func FuzzAssembler(f *testing.F) {
	enc := func(msgs ...*stratav1.PutKVBlocksRequest) []byte {
		var out []byte
		for _, m := range msgs {
			b, _ := proto.Marshal(m)
			out = binary.LittleEndian.AppendUint16(out, uint16(len(b)))
			out = append(out, b...)
		}
		return out
	}
	f.Add(enc(&stratav1.PutKVBlocksRequest{Scope: 7, SeqHash: 1, Size: 4, Data: []byte("abcd")}))
	f.Add(enc(
		&stratav1.PutKVBlocksRequest{Scope: 7, SeqHash: 1, Size: 6, Data: []byte("abc")},
		&stratav1.PutKVBlocksRequest{Scope: 7, SeqHash: 1, Size: 6, Offset: 3, Data: []byte("def")},
		&stratav1.PutKVBlocksRequest{Scope: 7, SeqHash: 2, Size: 2, Data: []byte("gh")},
	))
	f.Add(enc(&stratav1.PutKVBlocksRequest{Scope: 7, SeqHash: 1, Size: 1 << 40, Data: []byte("x")}))
	f.Add(enc(&stratav1.PutKVBlocksRequest{Scope: 8, SeqHash: 1, Size: 1, Data: []byte("x")}))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, blockBytes := range []uint64{0, 3} {
			si := &scopeInfo{scope: 7, blockBytes: blockBytes}
			a := newAssembler(si, Limits{MaxChunkBytes: 8, MaxBlockBytes: 64})
			rest := in
			var err error
			for len(rest) >= 2 && err == nil {
				n := int(binary.LittleEndian.Uint16(rest))
				rest = rest[2:]
				if n > len(rest) {
					break
				}
				m := &stratav1.PutKVBlocksRequest{}
				if proto.Unmarshal(rest[:n], m) != nil {
					break
				}
				rest = rest[n:]
				_, err = a.add(&wire.Put{Scope: m.Scope, SeqHash: m.SeqHash, Size: m.Size, Offset: m.Offset, Data: m.Data})
			}
			if err == nil {
				err = a.finish()
			}
			var fe *framingError
			if err != nil && !errors.As(err, &fe) {
				t.Fatalf("error %v is not a framing error", err)
			}
			for _, b := range a.take() {
				if len(b.Data) == 0 || uint64(len(b.Data)) > 64 || (blockBytes > 0 && uint64(len(b.Data)) != blockBytes) {
					t.Fatalf("handed over a block of %d bytes (scope size %d)", len(b.Data), blockBytes)
				}
			}
		}
	})
}
