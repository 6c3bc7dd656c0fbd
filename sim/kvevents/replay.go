package kvevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// endSeq is vLLM's END_SEQ, (-1).to_bytes(8, "big", signed=True): the
// sequence frame of the message that ends a replay.
var endSeq = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// replayRequest is a decoded request from the ROUTER socket.
type replayRequest struct {
	id []byte // routing identity ZeroMQ put in front
	// delimited is set when the request carried the empty delimiter frame
	// (a REQ socket, or a DEALER sending ["", seq]) — the only form vLLM
	// accepts. Replies copy the request's envelope so both REQ sockets and
	// bare DEALERs can parse them.
	delimited bool
	start     uint64
}

// parseReplayRequest decodes the frames a ROUTER received. vLLM requires
// [identity, "", start_seq]; ENGINES.md describes a DEALER sending the
// start sequence alone, which reaches the ROUTER as [identity, start_seq], so
// that is accepted too. The sequence must be exactly 8 bytes, big-endian.
func parseReplayRequest(frames [][]byte) (replayRequest, error) {
	var req replayRequest
	var seq []byte
	switch len(frames) {
	case 2:
		req.id, seq = frames[0], frames[1]
	case 3:
		if len(frames[1]) != 0 {
			return replayRequest{}, fmt.Errorf("want an empty delimiter frame, got %d bytes", len(frames[1]))
		}
		req.id, req.delimited, seq = frames[0], true, frames[2]
	default:
		return replayRequest{}, fmt.Errorf("want 1 or 2 frames after the identity, got %d", len(frames)-1)
	}
	if len(req.id) == 0 {
		return replayRequest{}, errors.New("empty routing identity")
	}
	if len(seq) != 8 {
		return replayRequest{}, fmt.Errorf("start sequence must be 8 bytes, got %d", len(seq))
	}
	req.start = binary.BigEndian.Uint64(seq)
	return req, nil
}

// reply builds one ROUTER message for req: the identity (consumed by the
// ROUTER), the delimiter if the request had one, then the frames the client
// sees.
func (r replayRequest) reply(frames ...[]byte) [][]byte {
	out := make([][]byte, 0, len(frames)+2)
	out = append(out, r.id)
	if r.delimited {
		out = append(out, []byte{})
	}
	return append(out, frames...)
}

// replyFrames is what the client receives for one buffered batch: vLLM >=
// 0.26 repeats the live message ([topic, seq, payload]), older versions send
// [seq, payload].
func replyFrames(withTopic bool, topic []byte, e entry) [][]byte {
	if withTopic {
		return [][]byte{topic, seqBytes(e.seq), e.payload}
	}
	return [][]byte{seqBytes(e.seq), e.payload}
}

// endFrames marks the end of a replay. The last frame is empty and, when
// replies carry a topic, vLLM sends an empty topic rather than the real one.
func endFrames(withTopic bool) [][]byte {
	if withTopic {
		return [][]byte{{}, endSeq, {}}
	}
	return [][]byte{endSeq, {}}
}

func seqBytes(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// entry is one published batch as it went on the wire.
type entry struct {
	seq     uint64
	payload []byte // immutable once published; shared with replies
}

// ring keeps the last max published batches for replay, like vLLM's
// deque(maxlen=buffer_steps). It grows on demand so a large buffer_steps
// costs nothing until it is used.
type ring struct {
	mu    sync.Mutex
	max   int
	items []entry
	head  int // index of the oldest entry once the ring is full
}

func (r *ring) add(e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.max <= 0 {
		return
	}
	if len(r.items) < r.max {
		r.items = append(r.items, e)
		return
	}
	r.items[r.head] = e
	r.head = (r.head + 1) % r.max
}

// since returns, oldest first, the buffered batches with seq >= start.
func (r *ring) since(start uint64) []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []entry
	n := len(r.items)
	for i := range n {
		if e := r.items[(r.head+i)%n]; e.seq >= start {
			out = append(out, e)
		}
	}
	return out
}
