package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/tidwall/gjson"
)

// maxEventBytes bounds one server-sent event from an engine: a chunk
// carries a token or a few (tool-call arguments can be longer), never
// megabytes.
const maxEventBytes = 4 << 20

var errEventTooLarge = errors.New("engine stream event over 4 MiB")

// sseReader reads the data of server-sent events, as engines stream OpenAI
// chunks: "data: <json>" lines, an empty line ending each event. Other
// fields (comments, event:, id:) are skipped.
type sseReader struct {
	r    *bufio.Reader
	data []byte
}

func newSSEReader(r io.Reader) *sseReader { return &sseReader{r: bufio.NewReaderSize(r, 32<<10)} }

// pending says whether more of the stream is already read in, so that a
// writer can flush once for a burst of events instead of once each.
func (s *sseReader) pending() bool { return s.r.Buffered() > 0 }

// next returns the next event's data (valid until the following call), or
// io.EOF at a clean end of stream, or io.ErrUnexpectedEOF for a stream cut
// inside an event.
func (s *sseReader) next() ([]byte, error) {
	s.data = s.data[:0]
	inEvent, hasData := false, false
	for {
		line, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather it whole, bounded.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				if len(long) > maxEventBytes {
					return nil, errEventTooLarge
				}
				line, err = s.r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if errors.Is(err, io.EOF) && (inEvent || len(line) > 0) {
				if len(bytes.TrimSpace(line)) == 0 && hasData {
					return s.data, nil // the last event lacked its blank line
				}
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if hasData {
				return s.data, nil
			}
			inEvent = false // an event without data (a comment) is not one
			continue
		}
		inEvent = true
		value, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if hasData {
			s.data = append(s.data, '\n')
		}
		hasData = true
		if len(s.data)+len(value) > maxEventBytes {
			return nil, errEventTooLarge
		}
		s.data = append(s.data, value...)
	}
}

// chunkInfo is what the gateway reads of a streamed chunk: enough to time
// tokens, keep the text for a migration and find the usage.
type chunkInfo struct {
	text         string // the first choice's new text (content, or completions' text)
	hasChoices   bool
	finishReason string
	usage        *usageInfo
	errStatus    int // an in-band error's status (0: none; 500 when it has none)
	errMessage   string
}

type usageInfo struct {
	PromptTokens, CompletionTokens, CachedTokens int
}

var chunkPaths = []string{"error", "choices.0.delta.content", "choices.0.text", "choices.0.finish_reason", "choices.#", "usage", "object", "message"}

// inspectChunk reads a chunk; a payload that is not a JSON object is an
// error.
func inspectChunk(payload []byte) (chunkInfo, error) {
	var ci chunkInfo
	if !gjson.ValidBytes(payload) || len(payload) == 0 || payload[0] != '{' {
		return ci, fmt.Errorf("engine stream chunk is not a JSON object: %.80q", payload)
	}
	r := gjson.GetManyBytes(payload, chunkPaths...)
	if e := r[0]; e.Exists() || r[6].String() == "error" {
		// {"error":{…}} (vLLM, llama.cpp) or {"object":"error",…}.
		ci.errStatus, ci.errMessage = 500, r[7].String()
		if e.Exists() {
			ci.errMessage = e.Get("message").String()
			if c := e.Get("code"); c.Type == gjson.Number && c.Int() >= 400 && c.Int() < 600 {
				ci.errStatus = int(c.Int())
			}
		}
		return ci, nil
	}
	if r[1].Type == gjson.String {
		ci.text = r[1].String()
	} else if r[2].Type == gjson.String {
		ci.text = r[2].String()
	}
	ci.finishReason = r[3].String()
	ci.hasChoices = r[4].Int() > 0
	if u := r[5]; u.IsObject() {
		ci.usage = &usageInfo{
			PromptTokens:     int(u.Get("prompt_tokens").Int()),
			CompletionTokens: int(u.Get("completion_tokens").Int()),
			CachedTokens:     int(u.Get("prompt_tokens_details.cached_tokens").Int()),
		}
	}
	return ci, nil
}
