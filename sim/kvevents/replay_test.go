package kvevents

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
)

func be64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func TestParseReplayRequest(t *testing.T) {
	id := []byte("client-1")
	tests := []struct {
		name    string
		frames  [][]byte
		want    replayRequest
		wantErr bool
	}{
		{"REQ or delimited DEALER (vLLM)", [][]byte{id, {}, be64(42)}, replayRequest{id: id, delimited: true, start: 42}, false},
		{"bare DEALER (ENGINES.md)", [][]byte{id, be64(7)}, replayRequest{id: id, start: 7}, false},
		{"start above 2^63", [][]byte{id, {}, endSeq}, replayRequest{id: id, delimited: true, start: 1<<64 - 1}, false},
		{"identity only", [][]byte{id}, replayRequest{}, true},
		{"no frames", nil, replayRequest{}, true},
		{"too many frames", [][]byte{id, {}, be64(1), {}}, replayRequest{}, true},
		{"short sequence", [][]byte{id, {}, {0, 0, 0, 1}}, replayRequest{}, true},
		{"long sequence", [][]byte{id, {}, make([]byte, 9)}, replayRequest{}, true},
		{"empty sequence", [][]byte{id, {}}, replayRequest{}, true},
		{"non-empty delimiter", [][]byte{id, {1}, be64(1)}, replayRequest{}, true},
		{"empty identity", [][]byte{{}, be64(1)}, replayRequest{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseReplayRequest(tc.frames)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestReplayFraming pins the ROUTER messages vLLM sends: identity, empty
// delimiter, then [seq, payload] (or [topic, seq, payload] from 0.26), and an
// end marker whose sequence is eight 0xff bytes and whose last frame is empty.
func TestReplayFraming(t *testing.T) {
	id := []byte("c")
	e := entry{seq: 3, payload: []byte("p")}
	topic := []byte("kv")
	seq3 := be64(3)
	tests := []struct {
		name      string
		req       replayRequest
		withTopic bool
		batch     [][]byte
		end       [][]byte
	}{
		{"vLLM < 0.26", replayRequest{id: id, delimited: true}, false,
			[][]byte{id, {}, seq3, []byte("p")}, [][]byte{id, {}, endSeq, {}}},
		{"vLLM >= 0.26", replayRequest{id: id, delimited: true}, true,
			[][]byte{id, {}, topic, seq3, []byte("p")}, [][]byte{id, {}, {}, endSeq, {}}},
		{"bare DEALER", replayRequest{id: id}, false,
			[][]byte{id, seq3, []byte("p")}, [][]byte{id, endSeq, {}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.req.reply(replyFrames(tc.withTopic, topic, e)...); !reflect.DeepEqual(got, tc.batch) {
				t.Errorf("batch reply = %q, want %q", got, tc.batch)
			}
			if got := tc.req.reply(endFrames(tc.withTopic)...); !reflect.DeepEqual(got, tc.end) {
				t.Errorf("end reply = %q, want %q", got, tc.end)
			}
		})
	}
}

func TestRing(t *testing.T) {
	seqs := func(es []entry) []uint64 {
		var out []uint64
		for _, e := range es {
			out = append(out, e.seq)
		}
		return out
	}
	r := ring{max: 3}
	if got := r.since(0); got != nil {
		t.Errorf("empty ring: %v", got)
	}
	for _, s := range []uint64{0, 1, 2, 4, 5} { // 3 was dropped: a gap
		r.add(entry{seq: s})
	}
	for start, want := range map[uint64][]uint64{
		0: {2, 4, 5}, 3: {4, 5}, 5: {5}, 6: nil, 1<<64 - 1: nil,
	} {
		if got := seqs(r.since(start)); !reflect.DeepEqual(got, want) {
			t.Errorf("since(%d) = %v, want %v", start, got, want)
		}
	}

	zero := ring{max: 0}
	zero.add(entry{seq: 1})
	if got := zero.since(0); got != nil {
		t.Errorf("buffer_steps 0 kept %v", got)
	}
}

// FuzzReplayRequest feeds arbitrary ROUTER messages to the request parser:
// it must never panic, and whatever it accepts must be answerable.
func FuzzReplayRequest(f *testing.F) {
	f.Add([]byte("id"), []byte{}, be64(0), uint8(3))
	f.Add([]byte("id"), be64(9), []byte(nil), uint8(2))
	f.Add([]byte{}, []byte{}, []byte{}, uint8(0))
	f.Add([]byte("id"), []byte{0}, endSeq, uint8(3))
	f.Fuzz(func(t *testing.T, a, b, c []byte, n uint8) {
		frames := [][]byte{a, b, c, []byte("extra")}[:n%5]
		req, err := parseReplayRequest(frames)
		if err != nil {
			return
		}
		if !bytes.Equal(req.id, a) || len(req.id) == 0 {
			t.Fatalf("identity %q, want %q", req.id, a)
		}
		seq := frames[len(frames)-1]
		if len(seq) != 8 || req.start != binary.BigEndian.Uint64(seq) {
			t.Fatalf("start %d from %x", req.start, seq)
		}
		if req.delimited != (len(frames) == 3) {
			t.Fatalf("delimited = %v for %d frames", req.delimited, len(frames))
		}
		for _, withTopic := range []bool{false, true} {
			msg := req.reply(endFrames(withTopic)...)
			if !bytes.Equal(msg[0], a) || len(msg[len(msg)-1]) != 0 {
				t.Fatalf("end marker %q", msg)
			}
		}
	})
}
