package client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// MaxEventBytes bounds one server-sent event: far above any real chunk,
// low enough that a stream without line breaks cannot exhaust memory.
const MaxEventBytes = 1 << 20

// eventReader reads the data of server-sent events (the WHATWG
// EventSource format OpenAI streams use): "data:" lines, joined with
// newlines when an event has several, up to a blank line. Comments (":")
// and other fields (event, id, retry) are skipped. Lines end in LF or CRLF.
type eventReader struct {
	r    *bufio.Reader
	data []byte
	line []byte
}

// readers recycles the buffers of finished streams: a fresh 16 KiB
// buffer per request was most of the load generator's garbage.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

func newEventReader(r io.Reader) *eventReader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return &eventReader{r: br}
}

// release returns the buffer; the reader must not be used after.
func (e *eventReader) release() {
	e.r.Reset(nil)
	readers.Put(e.r)
	e.r = nil
}

var errEventTooLong = fmt.Errorf("server-sent event longer than %d bytes", MaxEventBytes)

// next returns the data of the next event. At the end of the input it
// returns io.EOF, after the last event if that one lacked its blank line.
// The slice is valid until the next call.
func (e *eventReader) next() ([]byte, error) {
	e.data = e.data[:0]
	have := false
	for {
		line, err := e.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && have {
				return e.data, nil
			}
			return nil, err
		}
		if len(line) == 0 {
			if have {
				return e.data, nil
			}
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		if string(field) != "data" {
			continue // a comment (empty field) or a field OpenAI streams do not use
		}
		if have {
			e.data = append(e.data, '\n')
		}
		if len(e.data)+len(value) > MaxEventBytes {
			return nil, errEventTooLong
		}
		e.data = append(e.data, value...)
		have = true
	}
}

// readLine returns the next line without its terminator; the slice is
// valid until the next call.
func (e *eventReader) readLine() ([]byte, error) {
	line, err := e.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		e.line = append(e.line[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(e.line) > MaxEventBytes {
				return nil, errEventTooLong
			}
			line, err = e.r.ReadSlice('\n')
			e.line = append(e.line, line...)
		}
		line = e.line
		if len(line) > MaxEventBytes {
			return nil, errEventTooLong
		}
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			// The last line of the input lacks its LF.
			return bytes.TrimSuffix(line, []byte("\r")), nil
		}
		return nil, err
	}
	line = line[:len(line)-1]
	return bytes.TrimSuffix(line, []byte("\r")), nil
}
