package kvevents

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// trtBlockJSON is one stored block as trtllm-serve serializes it.
func trtBlockJSON(hash string, level int, tokens []uint32) string {
	ts := make([]string, len(tokens))
	for i, t := range tokens {
		ts[i] = fmt.Sprintf(`{"type":"unique_token","token_id":%d,"token_extra_id":0}`, t)
	}
	return fmt.Sprintf(`{"type":"stored_block","block_hash":%s,"tokens":[%s],"cache_level":%d,"priority":35}`,
		hash, strings.Join(ts, ","), level)
}

func TestDecodeTRTLLM(t *testing.T) {
	a, b, c := toks(0, 4), toks(4, 4), toks(8, 4)
	tests := []struct {
		name string
		body string
		want []EngineEvent
	}{
		{
			name: "created, stored, removed, updated",
			body: `[
 {"event_id":0,"window_size":4,"data":{"type":"created","num_blocks_per_cache_level":[128,64]}},
 {"event_id":1,"window_size":4,"data":{"type":"stored","parent_hash":null,"blocks":[` +
				trtBlockJSON("18446744073709551615", 0, a) + `,` + trtBlockJSON("2", 0, b) + `]}},
 {"event_id":2,"window_size":4,"attention_dp_rank":0,"data":{"type":"removed","block_hashes":[2, 18446744073709551615]}},
 {"event_id":3,"window_size":4,"data":{"type":"updated","block_hash":2,"cache_level":{"old_value":0,"new_value":1},"priority":{"old_value":35,"new_value":0}}}
]`,
			want: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{IntHash(^uint64(0)), IntHash(2)}, Tokens: append(append([]uint32{}, a...), b...),
					BlockSize: 4, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Removed, Hashes: []EngineHash{IntHash(2), IntHash(^uint64(0))}},
			},
		},
		{
			name: "a stored event across cache levels splits into chained runs",
			body: `[{"event_id":1,"data":{"type":"stored","parent_hash":-1,"blocks":[` +
				trtBlockJSON("10", 0, a) + `,` + trtBlockJSON("11", 1, b) + `,` + trtBlockJSON("12", 1, c) + `]}}]`,
			want: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{IntHash(10)}, Parent: IntHash(^uint64(0)), HasParent: true, Tokens: a,
					BlockSize: 4, Medium: stratav1.Medium_MEDIUM_GPU},
				{Kind: Stored, Hashes: []EngineHash{IntHash(11), IntHash(12)}, Parent: IntHash(10), HasParent: true,
					Tokens: append(append([]uint32{}, b...), c...), BlockSize: 4, Medium: stratav1.Medium_MEDIUM_CPU},
			},
		},
		{
			name: "lora id, no cache level, unknown keys and types",
			body: `[{"event_id":1,"data":{"type":"stored","parent_hash":null,"future":{"x":[1]},"blocks":[` +
				`{"block_hash":5,"tokens":[{"token_id":1},{"token_id":2}],"lora_id":7}]}},` +
				`{"event_id":2,"data":{"type":"moved","block_hashes":"whatever"}}, {"data":{}}]`,
			want: []EngineEvent{
				{Kind: Stored, Hashes: []EngineHash{IntHash(5)}, Tokens: []uint32{1, 2}, BlockSize: 2,
					LoraID: 7, HasLoraID: true, Medium: stratav1.Medium_MEDIUM_GPU},
			},
		},
		{name: "empty list", body: `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeTRTLLM([]byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeTRTLLM: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeTRTLLMErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", `[{`, "unexpected end"},
		{"not a list", `{"data":{}}`, "cannot unmarshal"},
		{"no data", `[{"event_id":1}]`, `no "data"`},
		{"type not a string", `[{"data":{"type":1}}]`, "cannot unmarshal"},
		{"float hash", `[{"data":{"type":"removed","block_hashes":[1.5]}}]`, "not a 64-bit integer"},
		{"hash too large", `[{"data":{"type":"removed","block_hashes":[18446744073709551616]}}]`, "not a 64-bit integer"},
		{"bad parent", `[{"data":{"type":"stored","parent_hash":"x","blocks":[]}}]`, "stored"},
		{"negative token", `[{"data":{"type":"stored","blocks":[{"block_hash":1,"tokens":[{"token_id":-1}]}]}}]`, "token 0"},
		{"token without id", `[{"data":{"type":"stored","blocks":[{"block_hash":1,"tokens":[{}]}]}}]`, "token 0"},
		{"blocks not a list", `[{"data":{"type":"stored","blocks":{}}}]`, "stored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeTRTLLM([]byte(tt.body))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func FuzzDecodeTRTLLM(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzDecodeTRTLLM.
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := DecodeTRTLLM(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		tr := NewTranslator(16)
		for _, ev := range events {
			if ev.Kind == Stored && len(ev.Tokens) != len(ev.Hashes)*ev.BlockSize {
				t.Fatalf("stored run of %d hashes, %d tokens, block size %d", len(ev.Hashes), len(ev.Tokens), ev.BlockSize)
			}
			tr.Apply(nil, ev)
		}
		tr.Snapshot()
	})
}
