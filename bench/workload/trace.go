package workload

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Trace formats.
const (
	// FormatMooncake is Mooncake's JSONL: one object per line with
	// timestamp (ms from the start), input_length, output_length and
	// hash_ids, the ids of the prompt's HashBlockSize-token blocks.
	FormatMooncake = "mooncake"
	// FormatAzure is the Azure LLM inference trace's CSV:
	// TIMESTAMP,ContextTokens,GeneratedTokens.
	FormatAzure = "azure"
)

// DefaultHashBlockSize is the block size of Mooncake's published traces.
const DefaultHashBlockSize = 512

// Limits on trace rows: far above any real trace, low enough that a
// corrupt file is an error rather than an allocation of gigabytes.
const (
	maxTraceLine   = 64 << 20
	maxTraceTokens = 1 << 24
	// maxTraceMillis (73 years) keeps every timestamp, in nanoseconds,
	// inside time.Duration.
	maxTraceMillis = float64(1<<62) / 1e6 / 2
)

// Trace replays a trace file at its own timestamps.
type Trace struct {
	File   string
	Format string
	// HashBlockSize is the tokens per Mooncake hash id (0: 512).
	HashBlockSize int
}

// Load reads the trace; seed draws the prompts of a format without prefix
// information (Azure). Mooncake prompts depend on the hash ids alone.
func (t Trace) Load(seed uint64) (*Workload, error) {
	f, err := os.Open(t.File)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	defer func() { _ = f.Close() }()
	var w *Workload
	switch t.Format {
	case FormatMooncake:
		bs := t.HashBlockSize
		if bs == 0 {
			bs = DefaultHashBlockSize
		}
		w, err = ReadMooncake(f, bs)
	case FormatAzure:
		w, err = ReadAzure(f, seed)
	default:
		return nil, fmt.Errorf("%w: trace format %q (want %s or %s)", ErrSpec, t.Format, FormatMooncake, FormatAzure)
	}
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", t.File, err)
	}
	return w, nil
}

// ErrTrace is wrapped by every error about a malformed trace.
var ErrTrace = errors.New("malformed trace")

// HashBlockSeed is the seed of the tokens of Mooncake hash id id: a fixed
// function of the id, so equal ids give identical blocks in every run.
func HashBlockSeed(id uint64) uint64 { return seedOf(domainMooncake, id) }

// ReadMooncake parses a Mooncake JSONL trace whose hash ids name blocks of
// blockSize tokens. Each hash id becomes a segment of blockSize tokens
// seeded by the id alone, the last truncated to input_length, so equal ids
// at equal positions give identical prefixes.
func ReadMooncake(r io.Reader, blockSize int) (*Workload, error) {
	if blockSize < 1 {
		return nil, fmt.Errorf("%w: hash block size %d", ErrSpec, blockSize)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxTraceLine)
	w := &Workload{Kind: KindTrace, Timed: true}
	var times []time.Duration
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var row struct {
			Timestamp    *float64 `json:"timestamp"`
			InputLength  *int64   `json:"input_length"`
			OutputLength *int64   `json:"output_length"`
			HashIDs      []int64  `json:"hash_ids"`
		}
		if err := json.Unmarshal(b, &row); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrTrace, line, err)
		}
		switch {
		case row.Timestamp == nil || row.InputLength == nil || row.OutputLength == nil:
			return nil, fmt.Errorf("%w: line %d: timestamp, input_length and output_length are required", ErrTrace, line)
		case !(*row.Timestamp >= 0 && *row.Timestamp < maxTraceMillis):
			return nil, fmt.Errorf("%w: line %d: timestamp %v must be a number of milliseconds in [0, %v)", ErrTrace, line, *row.Timestamp, maxTraceMillis)
		}
		in, out, err := lengths(*row.InputLength, *row.OutputLength)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrTrace, line, err)
		}
		if want := (in + blockSize - 1) / blockSize; len(row.HashIDs) != want {
			return nil, fmt.Errorf("%w: line %d: %d hash_ids for input_length %d: want ceil(%d/%d) = %d",
				ErrTrace, line, len(row.HashIDs), in, in, blockSize, want)
		}
		segs := make([]Segment, len(row.HashIDs))
		for i, id := range row.HashIDs {
			if id < 0 {
				return nil, fmt.Errorf("%w: line %d: negative hash id %d", ErrTrace, line, id)
			}
			segs[i] = Segment{Seed: HashBlockSeed(uint64(id)), Len: blockSize}
		}
		segs[len(segs)-1].Len = in - (len(segs)-1)*blockSize
		w.Items = append(w.Items, Item{Prompt: segs, OutputTokens: out})
		times = append(times, time.Duration(*row.Timestamp*float64(time.Millisecond)))
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: a line is longer than %d MiB", ErrTrace, maxTraceLine>>20)
		}
		return nil, err
	}
	return finishTrace(w, times)
}

// ReadAzure parses an Azure LLM inference trace (CSV with a header naming
// TIMESTAMP, ContextTokens and GeneratedTokens, in any order and case;
// other columns are ignored). The trace has no prefix information, so
// every prompt is distinct, drawn from seed.
func ReadAzure(r io.Reader, seed uint64) (*Workload, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrTrace)
		}
		return nil, fmt.Errorf("%w: header: %v", ErrTrace, err)
	}
	col := map[string]int{"timestamp": -1, "contexttokens": -1, "generatedtokens": -1}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, ok := col[h]; ok {
			col[h] = i
		}
	}
	for name, i := range col {
		if i < 0 {
			return nil, fmt.Errorf("%w: header %q has no %s column (want TIMESTAMP,ContextTokens,GeneratedTokens)", ErrTrace, strings.Join(header, ","), name)
		}
	}
	w := &Workload{Kind: KindTrace, Timed: true}
	var times []time.Duration
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTrace, err) // a csv.ParseError names its line
		}
		line, _ := cr.FieldPos(0)
		ts, err := parseAzureTime(rec[col["timestamp"]])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrTrace, line, err)
		}
		ctx, err1 := strconv.ParseInt(strings.TrimSpace(rec[col["contexttokens"]]), 10, 64)
		gen, err2 := strconv.ParseInt(strings.TrimSpace(rec[col["generatedtokens"]]), 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%w: line %d: token counts: %v", ErrTrace, line, err)
		}
		in, out, err := lengths(ctx, gen)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrTrace, line, err)
		}
		i := uint64(len(w.Items))
		w.Items = append(w.Items, Item{Prompt: []Segment{{Seed: seedOf(seed, domainAzure, i), Len: in}}, OutputTokens: out})
		times = append(times, ts)
	}
	return finishTrace(w, times)
}

// parseAzureTime reads "2023-11-16 18:17:03.9799600" (the published
// traces), RFC 3339, or a number of seconds, as time since the epoch (the
// years 1970 to 2200).
func parseAzureTime(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil && t.Year() >= 1970 && t.Year() < 2200 {
			return time.Duration(t.UnixNano()), nil
		}
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil && v >= 0 && v < maxTraceMillis/1e3 {
		return time.Duration(v * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("timestamp %q: want 2006-01-02 15:04:05.9999999 (1970 to 2200), RFC 3339 or seconds", s)
}

// lengths checks a row's token counts. An output of 0 tokens is sent as 1:
// the API needs max_tokens ≥ 1.
func lengths(in, out int64) (int, int, error) {
	switch {
	case in < 1 || in > maxTraceTokens:
		return 0, 0, fmt.Errorf("input length %d out of range [1, %d]", in, maxTraceTokens)
	case out < 0 || out > maxTraceTokens:
		return 0, 0, fmt.Errorf("output length %d out of range [0, %d]", out, maxTraceTokens)
	}
	return int(in), max(int(out), 1), nil
}

// finishTrace sets arrival times relative to the earliest row, orders rows
// by time (stably: rows at the same instant keep their file order) and
// numbers them.
func finishTrace(w *Workload, times []time.Duration) (*Workload, error) {
	if len(w.Items) == 0 {
		return nil, fmt.Errorf("%w: no requests", ErrTrace)
	}
	first, last := slices.Min(times), slices.Max(times)
	for i := range w.Items {
		w.Items[i].At = times[i] - first
	}
	slices.SortStableFunc(w.Items, func(a, b Item) int { return cmp.Compare(a.At, b.At) })
	for i := range w.Items {
		w.Items[i].Index = i
	}
	w.TraceSpan = last - first
	return w, nil
}
