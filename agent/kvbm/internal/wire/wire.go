// Package wire encodes and decodes the two messages of the block API that
// carry block bytes — strata.v1.PutKVBlocksRequest and
// strata.v1.GetKVBlocksResponse (proto/strata/v1/kvbm.proto) — without
// copying the bytes the way the generated code must: the generated
// unmarshaller copies a bytes field out of the received buffer, and the
// marshaller copies it into the one it sends. Here a message's Data
// aliases the buffer it travels in: on the sending side the caller's block
// (gRPC writes it from there), on the receiving side the buffer gRPC
// assembled the message in, referenced until Release.
//
// The wire format is exactly the generated messages' (the same field
// numbers and types; a decoder accepts any valid encoding, skips unknown
// fields and keeps the last of a repeated scalar, as proto.Unmarshal does;
// FuzzDecode checks it against proto.Unmarshal), so a connector written
// against kvbm.proto in any language talks to these. Codec is a gRPC codec
// that uses them for the Put and Get types and the standard protobuf codec
// for everything else.
package wire

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec protoCodec is
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Put is a PutKVBlocksRequest.
type Put struct {
	Scope, SeqHash, Size, Offset uint64
	Data                         []byte

	buf mem.Buffer // what Data aliases, when decoded
}

// Release lets go of the buffer a decoded Put's Data aliases; Data must
// not be used afterwards.
func (p *Put) Release() {
	if p.buf != nil {
		p.buf.Free()
		p.buf, p.Data = nil, nil
	}
}

// Get is a GetKVBlocksResponse.
type Get struct {
	Index        uint32
	SeqHash      uint64
	Status       int32 // stratav1.KVBlockStatus
	Medium       int32 // stratav1.Medium
	Size, Offset uint64
	Data         []byte
}

// Field numbers, as in kvbm.proto.
const (
	putScope, putSeqHash, putSize, putOffset, putData              = 1, 2, 3, 4, 5
	getIndex, getSeqHash, getStatus, getMedium, getSize, getOffset = 1, 2, 3, 4, 5, 6
	getData                                                        = 7
)

// AppendPutHeader appends everything of p but its data's bytes: the data
// field's tag and length come last, so the encoding is the header followed
// by p.Data.
func AppendPutHeader(b []byte, p *Put) []byte {
	b = appendFixed(b, putScope, p.Scope)
	b = appendFixed(b, putSeqHash, p.SeqHash)
	b = appendVarint(b, putSize, p.Size)
	b = appendVarint(b, putOffset, p.Offset)
	return appendDataHeader(b, putData, len(p.Data))
}

// AppendGetHeader is AppendPutHeader for a Get.
func AppendGetHeader(b []byte, g *Get) []byte {
	b = appendVarint(b, getIndex, uint64(g.Index))
	b = appendFixed(b, getSeqHash, g.SeqHash)
	b = appendVarint(b, getStatus, uint64(int64(g.Status)))
	b = appendVarint(b, getMedium, uint64(int64(g.Medium)))
	b = appendVarint(b, getSize, g.Size)
	b = appendVarint(b, getOffset, g.Offset)
	return appendDataHeader(b, getData, len(g.Data))
}

// proto3 leaves zero values out.
func appendFixed(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendDataHeader(b []byte, num protowire.Number, n int) []byte {
	if n == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.BytesType), uint64(n))
}

// ErrDecode wraps every decoding failure.
var ErrDecode = errors.New("wire: malformed message")

// DecodePut decodes b into p; p.Data aliases b.
func DecodePut(b []byte, p *Put) error {
	*p = Put{}
	return decode(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) {
		switch {
		case num == putScope && typ == protowire.Fixed64Type:
			p.Scope = v
		case num == putSeqHash && typ == protowire.Fixed64Type:
			p.SeqHash = v
		case num == putSize && typ == protowire.VarintType:
			p.Size = v
		case num == putOffset && typ == protowire.VarintType:
			p.Offset = v
		case num == putData && typ == protowire.BytesType:
			p.Data = data
		}
	})
}

// DecodeGet decodes b into g; g.Data aliases b.
func DecodeGet(b []byte, g *Get) error {
	*g = Get{}
	return decode(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) {
		switch {
		case num == getIndex && typ == protowire.VarintType:
			g.Index = uint32(v)
		case num == getSeqHash && typ == protowire.Fixed64Type:
			g.SeqHash = v
		case num == getStatus && typ == protowire.VarintType:
			g.Status = int32(v)
		case num == getMedium && typ == protowire.VarintType:
			g.Medium = int32(v)
		case num == getSize && typ == protowire.VarintType:
			g.Size = v
		case num == getOffset && typ == protowire.VarintType:
			g.Offset = v
		case num == getData && typ == protowire.BytesType:
			g.Data = data
		}
	})
}

// decode walks b's fields, calling set with each scalar's value (varint or
// fixed64) or bytes field's data. A field of another number, or of a known
// number with another wire type, is skipped, as the generated code keeps
// it among the unknown fields; later occurrences overwrite earlier ones.
func decode(b []byte, set func(num protowire.Number, typ protowire.Type, v uint64, data []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: tag: %v", ErrDecode, protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return fmt.Errorf("%w: field number %d out of range", ErrDecode, num)
		}
		b = b[n:]
		var v uint64
		var data []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
			if n >= 0 && len(data) == 0 {
				data = nil // as the generated code: an empty bytes field is nil
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrDecode, num, protowire.ParseError(n))
		}
		b = b[n:]
		set(num, typ, v, data)
	}
	return nil
}

// Codec is the block API's gRPC codec: *Put and *Get without copying
// their data, every other message with the standard protobuf codec. Its
// name is "proto": on the wire it is the standard codec.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

var protoCodec = encoding.GetCodecV2("proto")

// Name is "proto".
func (Codec) Name() string { return "proto" }

// Marshal encodes v. The data of a Put or Get is not copied: it must not
// change until gRPC has sent it (for the API's callers, until the call
// returns).
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	var header []byte
	var data []byte
	switch m := v.(type) {
	case *Put:
		header, data = AppendPutHeader(make([]byte, 0, 48), m), m.Data
	case *Get:
		header, data = AppendGetHeader(make([]byte, 0, 56), m), m.Data
	default:
		if _, ok := v.(proto.Message); !ok {
			return nil, fmt.Errorf("wire: cannot marshal %T", v)
		}
		return protoCodec.Marshal(v)
	}
	out := mem.BufferSlice{mem.SliceBuffer(header)}
	if len(data) > 0 {
		out = append(out, mem.SliceBuffer(data))
	}
	return out, nil
}

// Unmarshal decodes data into v. A Put keeps a reference to the received
// buffer until its Release; a Get's data is copied once, into a buffer of
// its own that the caller keeps.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *Put:
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		if err := DecodePut(buf.ReadOnlyData(), m); err != nil {
			buf.Free()
			return err
		}
		m.buf = buf
		return nil
	case *Get:
		return DecodeGet(data.Materialize(), m)
	}
	return protoCodec.Unmarshal(data, v)
}
