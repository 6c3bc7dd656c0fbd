// Command kvwatch prints the KV cache events that a vLLM-compatible engine
// (vLLM, or `strata sim`) publishes on ZeroMQ, one JSON line per batch, so a
// developer can watch them without Python, pyzmq or msgspec:
//
//	go run ./scripts/kvwatch                        # tcp://127.0.0.1:5557, every topic
//	go run ./scripts/kvwatch -endpoint tcp://host:5557 -topic kv-events
//
// Each live message is three frames: topic, an 8-byte big-endian sequence
// number and the msgpack batch [ts, [events...], dp_rank]. The batch is
// decoded generically (no schema), so both of vLLM's event encodings print;
// binary block hashes print as hex.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-zeromq/zmq4"
	"github.com/vmihailenco/msgpack/v5"
)

func main() {
	endpoint := flag.String("endpoint", "tcp://127.0.0.1:5557", "engine's KV event PUB endpoint to connect to")
	topic := flag.String("topic", "", "topic prefix to subscribe to (empty: all)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *endpoint, *topic); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "kvwatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, endpoint, topic string) error {
	sub := zmq4.NewSub(ctx)
	defer func() { _ = sub.Close() }()
	if err := sub.Dial(endpoint); err != nil {
		return fmt.Errorf("dial %s: %w", endpoint, err)
	}
	if err := sub.SetOption(zmq4.OptionSubscribe, topic); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	fmt.Fprintf(os.Stderr, "kvwatch: subscribed to %s (topic %q); waiting for events\n", endpoint, topic)
	out := json.NewEncoder(os.Stdout)
	for {
		msg, err := sub.Recv()
		if err != nil {
			return err
		}
		line, err := decode(msg.Frames)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kvwatch:", err)
			continue
		}
		if err := out.Encode(line); err != nil {
			return err
		}
	}
}

type batch struct {
	Topic string `json:"topic"`
	Seq   uint64 `json:"seq"`
	Batch any    `json:"batch"`
}

func decode(frames [][]byte) (batch, error) {
	if len(frames) != 3 || len(frames[1]) != 8 {
		return batch{}, fmt.Errorf("unexpected message: %d frames, want [topic, seq(8), payload]", len(frames))
	}
	v, err := msgpack.NewDecoder(bytes.NewReader(frames[2])).DecodeInterface()
	if err != nil {
		return batch{}, fmt.Errorf("seq %d: msgpack: %w", binary.BigEndian.Uint64(frames[1]), err)
	}
	return batch{Topic: string(frames[0]), Seq: binary.BigEndian.Uint64(frames[1]), Batch: jsonable(v)}, nil
}

// jsonable turns a generically decoded msgpack value into one encoding/json
// can print: maps with non-string keys get string keys, bytes become hex.
func jsonable(v any) any {
	switch x := v.(type) {
	case []byte:
		return hex.EncodeToString(x)
	case []any:
		for i := range x {
			x[i] = jsonable(x[i])
		}
		return x
	case map[string]any:
		for k := range x {
			x[k] = jsonable(x[k])
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	default:
		return v
	}
}
