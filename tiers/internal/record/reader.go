package record

import (
	"errors"
	"io"

	"github.com/strata-llm/strata/tiers"
)

// Reader reads a record, header then payload, without copying the payload
// into a new buffer. It is an io.ReadSeeker and io.ReaderAt, which lets an
// object store client send it in one request and rewind it to retry.
type Reader struct {
	header  [HeaderSize]byte
	payload []byte
	off     int64
}

// NewReader frames payload under key.
func NewReader(key tiers.Key, payload []byte) *Reader {
	r := &Reader{payload: payload}
	AppendHeader(r.header[:0], key, payload)
	return r
}

// Size is the record's length in bytes.
func (r *Reader) Size() int64 { return HeaderSize + int64(len(r.payload)) }

// ReadAt implements io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("record: negative offset")
	}
	n := 0
	if off < HeaderSize {
		n = copy(p, r.header[off:])
	}
	if n < len(p) {
		if po := off + int64(n) - HeaderSize; po < int64(len(r.payload)) {
			n += copy(p[n:], r.payload[po:])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.Size() {
		return 0, io.EOF
	}
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.Size()
	default:
		return 0, errors.New("record: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("record: negative position")
	}
	r.off = offset
	return offset, nil
}
