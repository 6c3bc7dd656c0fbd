package sim_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/strata-llm/strata/sim"
	"github.com/strata-llm/strata/sim/kvevents"
)

// These tests read the sim's KV events the way an agent would, with a ZMQ
// socket and a generic msgpack decode, and check them against the requests
// that caused them.

const eventsConfig = `{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:0","replay_endpoint":"tcp://*:0","topic":"kv"}`

func local(ep string) string { return strings.Replace(ep, "*", "127.0.0.1", 1) }

func dial(t *testing.T, sock zmq4.Socket, ep string) zmq4.Socket {
	t.Helper()
	if err := sock.Dial(local(ep)); err != nil {
		t.Fatalf("dial %s: %v", ep, err)
	}
	t.Cleanup(func() { _ = sock.Close() })
	return sock
}

// decodedEvent is one event as a map, whatever its encoding on the wire.
type decodedEvent map[string]any

func decodeBatch(t *testing.T, payload []byte) []decodedEvent {
	t.Helper()
	var batch []any
	if err := msgpack.Unmarshal(payload, &batch); err != nil {
		t.Fatalf("batch is not msgpack: %v", err)
	}
	if len(batch) != 3 {
		t.Fatalf("batch has %d elements, want [ts, events, dp_rank]", len(batch))
	}
	if _, ok := batch[0].(float64); !ok {
		t.Fatalf("ts is %T, want float64", batch[0])
	}
	var out []decodedEvent
	for _, raw := range batch[1].([]any) {
		switch ev := raw.(type) {
		case map[string]any:
			out = append(out, ev)
		case []any: // positional form: name the fields
			names := map[string][]string{
				"BlockStored":      {"block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium", "lora_name"},
				"BlockRemoved":     {"block_hashes", "medium"},
				"AllBlocksCleared": {},
			}[ev[0].(string)]
			m := decodedEvent{"type": ev[0]}
			for i, v := range ev[1:] {
				m[names[i]] = v
			}
			out = append(out, m)
		default:
			t.Fatalf("event is %T", raw)
		}
	}
	return out
}

func asUint64s(t *testing.T, v any) []uint64 {
	t.Helper()
	var out []uint64
	for _, x := range v.([]any) {
		switch n := x.(type) {
		case uint64:
			out = append(out, n)
		case uint8:
			out = append(out, uint64(n))
		case uint16:
			out = append(out, uint64(n))
		case uint32:
			out = append(out, uint64(n))
		case int8:
			out = append(out, uint64(n))
		default:
			t.Fatalf("integer field holds %T", x)
		}
	}
	return out
}

func TestKVEventsMatchRequests(t *testing.T) {
	for _, encoding := range []string{"map", "array"} {
		t.Run(encoding, func(t *testing.T) {
			s := sim.TestSim(t, func(o *sim.Options) {
				o.KVEventsConfig = eventsConfig
				if encoding == "array" {
					o.EventEncoding = kvevents.EncodingArray
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sub := dial(t, zmq4.NewSub(ctx), s.Publisher.Endpoint())
			if err := sub.SetOption(zmq4.OptionSubscribe, "kv"); err != nil {
				t.Fatal(err)
			}
			// A SUB socket misses what is published before its
			// subscription reaches the publisher, so send distinct prompts
			// until one batch arrives live.
			live := make(chan zmq4.Msg, 64)
			go func() {
				for {
					m, err := sub.Recv()
					if err != nil {
						return
					}
					live <- m
				}
			}()
			var msg zmq4.Msg
			var prompt []int
			for attempt := 0; msg.Frames == nil; attempt++ {
				prompt = make([]int, 40) // two full blocks of 16 and 8 spare
				for i := range prompt {
					prompt[i] = 97 + (attempt+i)%26
				}
				post(t, s.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":%s,"max_tokens":1}`, ints(prompt)))
				select {
				case msg = <-live:
				case <-time.After(200 * time.Millisecond):
				case <-ctx.Done():
					t.Fatal("no live KV event batch")
				}
			}
			if len(msg.Frames) != 3 || string(msg.Frames[0]) != "kv" || len(msg.Frames[1]) != 8 {
				t.Fatalf("frames %q: want [topic, seq8, payload]", msg.Frames)
			}
			events := decodeBatch(t, msg.Frames[2])
			if len(events) != 1 || events[0]["type"] != "BlockStored" {
				t.Fatalf("events %v: want one BlockStored", events)
			}
			ev := events[0]
			hashes := asUint64s(t, ev["block_hashes"])
			toks := asUint64s(t, ev["token_ids"])
			want := make([]uint64, 32)
			for i := range want {
				want[i] = uint64(prompt[i])
			}
			if len(hashes) != 2 || !slices.Equal(toks, want) || ev["parent_block_hash"] != nil ||
				ev["medium"] != "GPU" || fmt.Sprint(ev["block_size"]) != "16" {
				t.Fatalf("BlockStored %v does not match the prompt's two full blocks", ev)
			}

			// The same prompt again is a cache hit: nothing new is stored.
			// A reset then clears everything, and replay from the live
			// batch's sequence returns it and the clear, then the end marker.
			post(t, s.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":%s,"max_tokens":1}`, ints(prompt)))
			resp, _ := post(t, s.URL()+"/reset_prefix_cache", ``)
			if resp.StatusCode != 200 {
				t.Fatalf("reset_prefix_cache: %d", resp.StatusCode)
			}
			var cleared []decodedEvent
			select {
			case m := <-live:
				cleared = decodeBatch(t, m.Frames[2])
			case <-ctx.Done():
				t.Fatal("no batch after reset")
			}
			if len(cleared) != 1 || cleared[0]["type"] != "AllBlocksCleared" {
				t.Fatalf("after reset got %v, want AllBlocksCleared", cleared)
			}

			dealer := dial(t, zmq4.NewDealer(ctx), s.Publisher.ReplayEndpoint())
			start := binary.BigEndian.Uint64(msg.Frames[1])
			if err := dealer.Send(zmq4.NewMsgFrom([]byte{}, binary.BigEndian.AppendUint64(nil, start))); err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for {
				m, err := dealer.Recv()
				if err != nil {
					t.Fatalf("replay: %v", err)
				}
				f := m.Frames
				if len(f[len(f)-1]) == 0 {
					break // end marker
				}
				seqs = append(seqs, binary.BigEndian.Uint64(f[len(f)-2]))
			}
			if len(seqs) != 2 || seqs[0] != start || seqs[1] != start+1 {
				t.Fatalf("replayed seqs %v, want [%d %d]", seqs, start, start+1)
			}
		})
	}
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(s, ",") + "]"
}
