package command

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench"
)

func TestParseGoodput(t *testing.T) {
	slo, err := parseGoodput([]string{"ttft:500", "TPOT:12.5", "e2el:3000"})
	if err != nil || slo != (bench.SLO{TTFT: 500 * time.Millisecond, TPOT: 12500 * time.Microsecond, E2E: 3 * time.Second}) {
		t.Fatalf("%+v %v", slo, err)
	}
	for _, bad := range []string{"ttft", "ttft:", "ttft:-1", "ttft:0", "ttft:inf", "itl:5", "ttft=5"} {
		if _, err := parseGoodput([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseRange(t *testing.T) {
	if lo, hi, err := parseRange("1000-30000"); err != nil || lo != 1000 || hi != 30000 {
		t.Fatalf("%d %d %v", lo, hi, err)
	}
	for _, bad := range []string{"5", "a-b", "9-3", "-1-5", "0-99999999999"} {
		if _, _, err := parseRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRedact(t *testing.T) {
	in := []string{"strata", "bench", "--api-key", "sk-secret", "--api-key=sk-other", "--header", "Authorization: Bearer sk-h",
		"--header=X-Api-Key=sk-k", "--header", "X-Strata-Routing=kv", "--url", "u"}
	got := redact(in)
	if strings.Contains(strings.Join(got, " "), "sk-") || !slices.Equal(got[8:], in[8:]) || in[3] != "sk-secret" {
		t.Fatalf("%q (input %q)", got, in)
	}
}

func TestParseHeaders(t *testing.T) {
	h, err := parseHeaders([]string{"X-Strata-Routing=round-robin", "X-Note: a=b", "x-note=c:d"})
	if err != nil || h.Get("X-Strata-Routing") != "round-robin" || !slices.Equal(h.Values("X-Note"), []string{"a=b", "c:d"}) {
		t.Fatalf("%v %v", h, err)
	}
	for _, bad := range []string{"novalue", "=v", "bad name=v", "X-A=line\nbreak"} {
		if _, err := parseHeaders([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := &progressBar{w: &b}
	p.draw(bench.Progress{Elapsed: time.Second, Total: 100, Sent: 60, Succeeded: 48, Failed: 2, InFlight: 10, OutputTokens: 1000})
	p.draw(bench.Progress{Elapsed: 2 * time.Second, Total: 100, Sent: 100, Succeeded: 98, Failed: 2, OutputTokens: 3000, Finished: true})
	lines := strings.Split(b.String(), "\r\033[K")
	if len(lines) != 3 || !strings.Contains(lines[1], " 50% 50/100 done · 2 failed · 10 in flight · 1000 tok/s") ||
		!strings.Contains(lines[2], "100% 100/100") || !strings.Contains(lines[2], "2000 tok/s") || !strings.HasSuffix(lines[2], "\n") {
		t.Fatalf("%q", b.String())
	}
}

func TestFormatFromName(t *testing.T) {
	for name, want := range map[string]string{"a/trace.jsonl": "mooncake", "x.CSV": "azure", "x.txt": ""} {
		if got := formatFromName(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
