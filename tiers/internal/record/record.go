// Package record is the framing of a stored block, shared by the disk,
// S3 and Azure stores: a fixed header naming the key, the payload length
// and two CRC-32C checksums, then the payload. A reader verifies both sums
// and the key before it serves a byte, so a torn write, a flipped bit or a
// file renamed onto another key's name is detected, never served.
//
//	offset size field
//	0      4    magic "SKV1"
//	4      2    version (1), little-endian like every field
//	6      2    header length (40)
//	8      8    scope
//	16     8    hash
//	24     8    payload length
//	32     4    CRC-32C (Castagnoli) of the payload
//	36     4    CRC-32C of bytes 0..35
//	40     n    payload
package record

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/strata-llm/strata/tiers"
)

// HeaderSize is the length of the header before the payload.
const HeaderSize = 40

const (
	magic   = "SKV1"
	version = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is a decoded header.
type Header struct {
	Key    tiers.Key
	Length int64
	CRC    uint32
}

// AppendHeader appends the header of key's payload to dst.
func AppendHeader(dst []byte, key tiers.Key, payload []byte) []byte {
	var h [HeaderSize]byte
	copy(h[0:4], magic)
	binary.LittleEndian.PutUint16(h[4:], version)
	binary.LittleEndian.PutUint16(h[6:], HeaderSize)
	binary.LittleEndian.PutUint64(h[8:], uint64(key.Scope))
	binary.LittleEndian.PutUint64(h[16:], key.Hash)
	binary.LittleEndian.PutUint64(h[24:], uint64(len(payload)))
	binary.LittleEndian.PutUint32(h[32:], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(h[36:], crc32.Checksum(h[:36], castagnoli))
	return append(dst, h[:]...)
}

// DecodeHeader checks and decodes the header at the start of b. It does not
// look at the payload.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("record of %d bytes is shorter than its %d-byte header: %w", len(b), HeaderSize, tiers.ErrCorrupt)
	}
	if string(b[0:4]) != magic {
		return Header{}, fmt.Errorf("record magic %q, want %q: %w", b[0:4], magic, tiers.ErrCorrupt)
	}
	if sum, want := crc32.Checksum(b[:36], castagnoli), binary.LittleEndian.Uint32(b[36:]); sum != want {
		return Header{}, fmt.Errorf("record header checksum %08x, want %08x: %w", sum, want, tiers.ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != version {
		return Header{}, fmt.Errorf("record version %d, this build reads %d: %w", v, version, tiers.ErrCorrupt)
	}
	if n := binary.LittleEndian.Uint16(b[6:]); n != HeaderSize {
		return Header{}, fmt.Errorf("record header length %d, want %d: %w", n, HeaderSize, tiers.ErrCorrupt)
	}
	length := binary.LittleEndian.Uint64(b[24:])
	if length > tiers.MaxBlockSize {
		return Header{}, fmt.Errorf("record payload length %d exceeds %d: %w", length, tiers.MaxBlockSize, tiers.ErrCorrupt)
	}
	return Header{
		Key:    tiers.Key{Scope: tiers.Scope(binary.LittleEndian.Uint64(b[8:])), Hash: binary.LittleEndian.Uint64(b[16:])},
		Length: int64(length),
		CRC:    binary.LittleEndian.Uint32(b[32:]),
	}, nil
}

// readChunk is how much of a payload Read checksums at a time: small
// enough to still be in the CPU's cache when the checksum runs right after
// the copy, large enough to keep the reads few.
const readChunk = 256 << 10

// Read reads and checks a whole record from r, which holds size bytes
// (a file's or object's length): the header, the key it names (want), the
// length, and the payload's checksum; a failed check wraps ErrCorrupt. An
// error reading r (a dropped connection, an I/O error) is returned as it
// is: it says nothing about the stored bytes. The payload comes in a
// buffer of its own, each chunk checksummed as soon as it is read.
func Read(r io.Reader, size int64, want tiers.Key) ([]byte, error) {
	if size < HeaderSize {
		return nil, fmt.Errorf("record of %d bytes is shorter than its %d-byte header: %w", size, HeaderSize, tiers.ErrCorrupt)
	}
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, fmt.Errorf("read record header: %w", err)
	}
	h, err := DecodeHeader(hb[:])
	if err != nil {
		return nil, err
	}
	if h.Key != want {
		return nil, fmt.Errorf("record holds key %s, want %s: %w", h.Key, want, tiers.ErrCorrupt)
	}
	if size-HeaderSize != h.Length {
		return nil, fmt.Errorf("record payload is %d bytes, its header says %d: %w", size-HeaderSize, h.Length, tiers.ErrCorrupt)
	}
	payload := make([]byte, h.Length)
	var sum uint32
	for off := 0; off < len(payload); off += readChunk {
		chunk := payload[off:min(off+readChunk, len(payload))]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, fmt.Errorf("read record payload: %w", err)
		}
		sum = crc32.Update(sum, castagnoli, chunk)
	}
	if sum != h.CRC {
		return nil, fmt.Errorf("record payload checksum %08x, want %08x: %w", sum, h.CRC, tiers.ErrCorrupt)
	}
	return payload, nil
}
