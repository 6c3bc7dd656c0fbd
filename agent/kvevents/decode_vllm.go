package kvevents

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// ErrMalformed wraps every decoding error, so callers can count bad payloads
// with errors.Is whatever the detail.
var ErrMalformed = errors.New("malformed KV event payload")

// DecodeVLLM decodes one vLLM KV event batch (the third frame of a live
// message): the msgpack array [ts, [events...], data_parallel_rank], or
// [ts, [events...]], or defensively a map with keys "ts", "events" and
// "data_parallel_rank". Events may be positional arrays (vLLM <= 0.23,
// ["BlockStored", block_hashes, parent_block_hash, ...]) or maps tagged by
// "type" (>= 0.24), in any mix. Block hashes may be msgpack integers or bin
// digests. Fields or array elements past the known ones are skipped, as are
// events of unknown types (counted in EngineBatch.Skipped). It never panics.
func DecodeVLLM(payload []byte) (EngineBatch, error) {
	return decodeBatch(payload, "data_parallel_rank")
}

// DecodeSGLang decodes one SGLang KV event batch. SGLang copied vLLM's
// format: the same envelope and event tags, so it shares the decoder. The
// differences are that the rank field is called attn_dp_rank (it matters
// only in the map form of the envelope) and that block hashes are signed
// int64 values (the first 8 bytes of a sha256), which arrive as negative
// msgpack integers half of the time; IntHash keeps them as two's complement.
// Replay replies never carry a topic frame, which Subscriber accepts either
// way.
func DecodeSGLang(payload []byte) (EngineBatch, error) {
	return decodeBatch(payload, "attn_dp_rank")
}

func decodeBatch(payload []byte, rankKey string) (EngineBatch, error) {
	d := newDecoder(payload)
	b, err := d.batch(rankKey)
	if err != nil {
		return EngineBatch{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return b, nil
}

// decoder walks a msgpack payload with msgpack's low-level calls, checking
// each code itself: vLLM's payloads mix integer and bin hashes, nil and
// absent fields, which a schema-driven decode would get wrong.
type decoder struct {
	r *bytes.Reader
	d *msgpack.Decoder
}

func newDecoder(payload []byte) *decoder {
	r := bytes.NewReader(payload)
	// A bytes.Reader is an io.ByteScanner, so msgpack reads from it
	// directly and r.Len() is exactly what is left to decode.
	return &decoder{r: r, d: msgpack.NewDecoder(r)}
}

func (d *decoder) peek() (byte, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return 0, fmt.Errorf("truncated: %w", err)
	}
	return c, nil
}

// null consumes a nil if one is next and reports whether it did.
func (d *decoder) null() (bool, error) {
	c, err := d.peek()
	if err != nil || c != msgpcode.Nil {
		return false, err
	}
	return true, d.d.DecodeNil()
}

// prealloc bounds what a decoder reserves on the word of a length header:
// beyond it, slices grow with the elements actually decoded, so a length
// that lies costs nothing.
const prealloc = 4096

// arrayLen reads an array header. A length larger than the bytes left is a
// lie (every element takes at least one byte) and is refused before anything
// is allocated for it.
func (d *decoder) arrayLen() (int, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if !msgpcode.IsFixedArray(c) && c != msgpcode.Array16 && c != msgpcode.Array32 {
		return 0, fmt.Errorf("want an array, got %s", describe(c))
	}
	n, err := d.d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n > d.r.Len() {
		return 0, fmt.Errorf("array of %d elements in %d bytes", n, d.r.Len())
	}
	return n, nil
}

func (d *decoder) mapLen() (int, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 {
		return 0, fmt.Errorf("want a map, got %s", describe(c))
	}
	n, err := d.d.DecodeMapLen()
	if err != nil {
		return 0, err
	}
	if n > d.r.Len()/2 {
		return 0, fmt.Errorf("map of %d entries in %d bytes", n, d.r.Len())
	}
	return n, nil
}

func (d *decoder) str() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsString(c) {
		return "", fmt.Errorf("want a string, got %s", describe(c))
	}
	return d.d.DecodeString()
}

// optStr reads a string or nil ("", false).
func (d *decoder) optStr() (string, bool, error) {
	if isNil, err := d.null(); err != nil || isNil {
		return "", false, err
	}
	s, err := d.str()
	return s, err == nil, err
}

func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64)
}

func isUnsigned(c byte) bool {
	return c <= msgpcode.PosFixedNumHigh || (c >= msgpcode.Uint8 && c <= msgpcode.Uint64)
}

// int reads any msgpack integer. Unsigned values above MaxInt64 are refused:
// no field read this way (sizes, ids, ranks) can be that large.
func (d *decoder) int() (int64, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if !isInt(c) {
		return 0, fmt.Errorf("want an integer, got %s", describe(c))
	}
	if isUnsigned(c) {
		u, err := d.d.DecodeUint64()
		if err == nil && u > math.MaxInt64 {
			err = fmt.Errorf("integer %d out of range", u)
		}
		return int64(u), err
	}
	return d.d.DecodeInt64()
}

// optInt reads an integer or nil (0, false).
func (d *decoder) optInt() (int64, bool, error) {
	if isNil, err := d.null(); err != nil || isNil {
		return 0, false, err
	}
	v, err := d.int()
	return v, err == nil, err
}

// hash reads a block hash: any msgpack integer (as its 64-bit two's
// complement) or a bin digest.
func (d *decoder) hash() (EngineHash, error) {
	c, err := d.peek()
	if err != nil {
		return EngineHash{}, err
	}
	switch {
	case isInt(c):
		// DecodeUint64 returns the bits of signed codes unchanged.
		v, err := d.d.DecodeUint64()
		return IntHash(v), err
	case msgpcode.IsBin(c):
		b, err := d.d.DecodeBytes()
		if err == nil && len(b) == 0 {
			err = errors.New("empty block hash")
		}
		return BytesHash(b), err
	default:
		return EngineHash{}, fmt.Errorf("block hash: want an integer or bin, got %s", describe(c))
	}
}

func (d *decoder) hashes() ([]EngineHash, error) {
	n, err := d.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("block hashes: %w", err)
	}
	out := make([]EngineHash, 0, min(n, prealloc))
	for i := range n {
		h, err := d.hash()
		if err != nil {
			return nil, fmt.Errorf("block hash %d: %w", i, err)
		}
		out = append(out, h)
	}
	return out, nil
}

func (d *decoder) tokens() ([]uint32, error) {
	n, err := d.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("token ids: %w", err)
	}
	out := make([]uint32, 0, min(n, prealloc))
	for i := range n {
		v, err := d.int()
		if err != nil {
			return nil, fmt.Errorf("token id %d: %w", i, err)
		}
		if v < 0 || v > math.MaxUint32 {
			return nil, fmt.Errorf("token id %d: %d out of range", i, v)
		}
		out = append(out, uint32(v))
	}
	return out, nil
}

// float reads a msgpack float, or an integer as a float.
func (d *decoder) float() (float64, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	switch {
	case c == msgpcode.Float || c == msgpcode.Double:
		return d.d.DecodeFloat64()
	case isInt(c):
		v, err := d.int()
		return float64(v), err
	default:
		return 0, fmt.Errorf("want a number, got %s", describe(c))
	}
}

// skip skips one value of any shape without recursion, so that no nesting
// depth in a hostile payload can exhaust the stack.
func (d *decoder) skip() error {
	for pending := 1; pending > 0; pending-- {
		c, err := d.peek()
		if err != nil {
			return err
		}
		switch {
		case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
			n, err := d.arrayLen()
			if err != nil {
				return err
			}
			pending += n
		case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
			n, err := d.mapLen()
			if err != nil {
				return err
			}
			pending += 2 * n
		default: // a scalar, string, bin or ext: msgpack skips it flat
			if err := d.d.Skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *decoder) batch(rankKey string) (EngineBatch, error) {
	c, err := d.peek()
	if err != nil {
		return EngineBatch{}, err
	}
	var b EngineBatch
	if msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32 {
		err = d.batchMap(&b, rankKey)
	} else {
		err = d.batchArray(&b)
	}
	if err != nil {
		return EngineBatch{}, err
	}
	if d.r.Len() != 0 {
		return EngineBatch{}, fmt.Errorf("%d bytes after the batch", d.r.Len())
	}
	return b, nil
}

func (d *decoder) batchArray(b *EngineBatch) error {
	n, err := d.arrayLen()
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if n < 2 {
		return fmt.Errorf("batch: want [ts, events, dp_rank], got %d elements", n)
	}
	if b.TS, err = d.float(); err != nil {
		return fmt.Errorf("batch ts: %w", err)
	}
	if err := d.events(b); err != nil {
		return err
	}
	if n >= 3 {
		if err := d.rank(b); err != nil {
			return err
		}
	}
	for range n - 3 {
		if err := d.skip(); err != nil {
			return fmt.Errorf("batch: %w", err)
		}
	}
	return nil
}

func (d *decoder) batchMap(b *EngineBatch, rankKey string) error {
	n, err := d.mapLen()
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	sawEvents := false
	for range n {
		k, err := d.str()
		if err != nil {
			return fmt.Errorf("batch key: %w", err)
		}
		switch k {
		case "ts":
			if b.TS, err = d.float(); err != nil {
				return fmt.Errorf("batch ts: %w", err)
			}
		case "events":
			sawEvents = true
			if err := d.events(b); err != nil {
				return err
			}
		case rankKey:
			if err := d.rank(b); err != nil {
				return err
			}
		default:
			if err := d.skip(); err != nil {
				return fmt.Errorf("batch %q: %w", k, err)
			}
		}
	}
	if !sawEvents {
		return errors.New(`batch: no "events"`)
	}
	return nil
}

func (d *decoder) rank(b *EngineBatch) error {
	r, ok, err := d.optInt()
	if err != nil {
		return fmt.Errorf("batch rank: %w", err)
	}
	if ok {
		if r < 0 || r > math.MaxInt32 {
			return fmt.Errorf("batch rank %d out of range", r)
		}
		b.DPRank = int(r)
	}
	return nil
}

func (d *decoder) events(b *EngineBatch) error {
	n, err := d.arrayLen()
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	b.Events = make([]EngineEvent, 0, min(n, prealloc))
	for i := range n {
		ev, known, err := d.event()
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if !known {
			b.Skipped++
			continue
		}
		b.Events = append(b.Events, ev)
	}
	return nil
}

// Event tags as vLLM's msgspec writes them.
const (
	tagStored  = "BlockStored"
	tagRemoved = "BlockRemoved"
	tagCleared = "AllBlocksCleared"
)

// positional lists, per tag, the field names of the array encoding in
// order; elements past the list are skipped.
func positional(tag string) ([]string, bool) {
	switch tag {
	case tagStored:
		return []string{"block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium", "lora_name"}, true
	case tagRemoved:
		return []string{"block_hashes", "medium"}, true
	case tagCleared:
		return nil, true
	default:
		return nil, false
	}
}

// rawEvent collects an event's fields in either encoding before its tag
// (which a map may carry anywhere) decides what they mean.
type rawEvent struct {
	tag       string
	hashes    []EngineHash
	hasHashes bool
	parent    EngineHash
	hasParent bool
	tokens    []uint32
	blockSize int64
	loraID    int64
	hasLoraID bool
	loraName  string
	medium    string
	hasMedium bool
}

// event decodes one event; known is false for an unknown tag.
func (d *decoder) event() (ev EngineEvent, known bool, err error) {
	c, err := d.peek()
	if err != nil {
		return EngineEvent{}, false, err
	}
	var raw rawEvent
	if msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32 {
		known, err = d.eventMap(&raw)
	} else {
		known, err = d.eventArray(&raw)
	}
	if err != nil || !known {
		return EngineEvent{}, known, err
	}
	ev, err = raw.engineEvent()
	return ev, err == nil, err
}

func (d *decoder) eventArray(raw *rawEvent) (bool, error) {
	n, err := d.arrayLen()
	if err != nil {
		return false, err
	}
	if n == 0 {
		return false, errors.New("empty event array")
	}
	if raw.tag, err = d.str(); err != nil {
		return false, fmt.Errorf("event tag: %w", err)
	}
	fields, known := positional(raw.tag)
	for i := 1; i < n; i++ {
		if !known || i > len(fields) {
			if err := d.skip(); err != nil {
				return false, err
			}
			continue
		}
		if err := d.field(raw, fields[i-1]); err != nil {
			return false, err
		}
	}
	return known, nil
}

// eventMap decodes a map event. msgspec writes "type" first, but the
// decoder does not rely on it: it finds the tag in a first pass, so that the
// fields of an unknown type, whatever their shape, are skipped and not
// misread as the fields of a known one.
func (d *decoder) eventMap(raw *rawEvent) (bool, error) {
	start := d.r.Size() - int64(d.r.Len())
	n, err := d.mapLen()
	if err != nil {
		return false, err
	}
	for range n {
		k, err := d.str()
		if err != nil {
			return false, fmt.Errorf("event key: %w", err)
		}
		if k != "type" {
			if err := d.skip(); err != nil {
				return false, fmt.Errorf("%s: %w", k, err)
			}
			continue
		}
		if raw.tag, err = d.str(); err != nil {
			return false, fmt.Errorf("event type: %w", err)
		}
	}
	if raw.tag == "" {
		return false, errors.New(`event map without "type"`)
	}
	if _, known := positional(raw.tag); !known {
		return false, nil
	}
	if _, err := d.r.Seek(start, io.SeekStart); err != nil {
		return false, err
	}
	if _, err := d.mapLen(); err != nil {
		return false, err
	}
	for range n {
		k, err := d.str()
		if err != nil {
			return false, fmt.Errorf("event key: %w", err)
		}
		if k == "type" {
			err = d.skip()
		} else {
			err = d.field(raw, k)
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// field decodes one named field into raw; unknown names are skipped. The
// names are the same in both encodings and for every tag.
func (d *decoder) field(raw *rawEvent, name string) error {
	var err error
	switch name {
	case "block_hashes":
		raw.hashes, err = d.hashes()
		raw.hasHashes = err == nil
	case "parent_block_hash":
		var isNil bool
		if isNil, err = d.null(); err == nil && !isNil {
			raw.parent, err = d.hash()
			raw.hasParent = err == nil
		}
	case "token_ids":
		raw.tokens, err = d.tokens()
	case "block_size":
		raw.blockSize, _, err = d.optInt()
	case "lora_id":
		raw.loraID, raw.hasLoraID, err = d.optInt()
	case "medium":
		raw.medium, raw.hasMedium, err = d.optStr()
	case "lora_name":
		raw.loraName, _, err = d.optStr()
	default:
		err = d.skip()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// engineEvent interprets the fields of an event whose tag is known.
func (raw *rawEvent) engineEvent() (EngineEvent, error) {
	if raw.tag == tagCleared {
		return EngineEvent{Kind: Cleared}, nil
	}
	if !raw.hasHashes {
		return EngineEvent{}, fmt.Errorf("%s without block_hashes", raw.tag)
	}
	// vLLM sends None for the GPU, its own cache.
	medium := stratav1.Medium_MEDIUM_GPU
	if raw.hasMedium {
		medium = parseMedium(raw.medium)
	}
	if raw.tag == tagRemoved {
		return EngineEvent{Kind: Removed, Hashes: raw.hashes, Medium: medium}, nil
	}
	// BlockStored.
	if raw.blockSize < 0 || raw.blockSize > math.MaxInt32 {
		return EngineEvent{}, fmt.Errorf("block_size %d out of range", raw.blockSize)
	}
	return EngineEvent{
		Kind:      Stored,
		Hashes:    raw.hashes,
		Parent:    raw.parent,
		HasParent: raw.hasParent,
		Tokens:    raw.tokens,
		BlockSize: int(raw.blockSize),
		LoraID:    raw.loraID,
		HasLoraID: raw.hasLoraID,
		LoraName:  raw.loraName,
		Medium:    medium,
	}, nil
}

// describe names a msgpack code for error messages.
func describe(c byte) string {
	switch {
	case c == msgpcode.Nil:
		return "nil"
	case c == msgpcode.True || c == msgpcode.False:
		return "bool"
	case isInt(c):
		return "integer"
	case c == msgpcode.Float || c == msgpcode.Double:
		return "float"
	case msgpcode.IsString(c):
		return "string"
	case msgpcode.IsBin(c):
		return "bin"
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		return "array"
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		return "map"
	case msgpcode.IsExt(c):
		return "ext"
	default:
		return fmt.Sprintf("code 0x%02x", c)
	}
}
