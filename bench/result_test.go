package bench_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/strata-llm/strata/bench"
	"github.com/strata-llm/strata/bench/metrics"
)

func sampleResult() *bench.Result {
	res := metrics.Aggregate([]metrics.Record{{
		Sent: true, SentAt: time.Millisecond, Done: 9 * time.Millisecond, Chunks: []time.Duration{2 * time.Millisecond, 5 * time.Millisecond},
		PromptTokens: 20, CachedTokens: 16, HasCached: true, OutputTokens: 2, Worker: "w0",
	}}, metrics.Options{})
	res.SchemaVersion = bench.SchemaVersion
	res.CommandLine = []string{"strata", "bench"}
	return res
}

// The result file is protojson with proto field names, every field
// present, and reads back to the same message.
func TestResultFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "result.json")
	res := sampleResult()
	if err := bench.WriteResultFile(path, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"cached_token_fraction": 0.8`, `"ttft_ms": {`, `"p99":`, `"p50":`, `"time_series": [`, `"requests_per_second": [`, `"schema_version": 1`, `"errors": {}`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("result file lacks %s", key)
		}
	}
	back, err := bench.ReadResultFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, res) {
		t.Fatal("the result read back differs")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestUnmarshalResultErrors(t *testing.T) {
	for name, in := range map[string]string{
		"garbage":        `{not json`,
		"array":          `[]`,
		"no version":     `{"cached_token_fraction": 0.5}`,
		"newer version":  `{"schema_version": 99}`,
		"wrong type":     `{"schema_version": 1, "requests_sent": "many"}`,
		"negative count": `{"schema_version": 1, "requests_sent": -1}`,
	} {
		if _, err := bench.UnmarshalResult([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Fields a newer strata added are ignored.
	if _, err := bench.UnmarshalResult([]byte(`{"schema_version": 1, "from_the_future": {"x": 1}}`)); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
	if _, err := bench.ReadResultFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("a missing file read")
	}
}

func FuzzUnmarshalResult(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := bench.UnmarshalResult(data)
		if err != nil {
			return
		}
		if _, err := bench.MarshalResult(res); err != nil {
			t.Fatalf("accepted a result it cannot write back: %v", err)
		}
	})
}
