package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench"
	"github.com/strata-llm/strata/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.KillStrayProcesses()
	testutil.CleanupBinary()
	os.Exit(code)
}

// simProcess is a `strata sim` process on a loopback port it chose itself
// (--port 0), read back from its start-up log line.
type simProcess struct {
	url string
	mu  sync.Mutex
	log bytes.Buffer
}

var servingAddr = regexp.MustCompile(`msg="strata sim serving" addr=(\S+)`)

func startSimProcess(t *testing.T, args ...string) *simProcess {
	t.Helper()
	cmd := exec.Command(testutil.StrataBinary(t), append([]string{"sim", "--host", "127.0.0.1", "--port", "0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &simProcess{}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if m := servingAddr.FindStringSubmatch(line); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	select {
	case addr, ok := <-found:
		if !ok {
			t.Fatalf("strata sim exited before serving:\n%s", p.logText())
		}
		p.url = "http://" + addr + "/v1"
	case <-time.After(30 * time.Second):
		t.Fatalf("strata sim did not start within 30 s:\n%s", p.logText())
	}
	return p
}

func (p *simProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// strataBench runs `strata bench args…` and returns its output.
func strataBench(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testutil.StrataBinary(t), append([]string{"bench"}, args...)...).CombinedOutput()
	return string(out), err
}

// sharedData is a file of the workload data beside the checkout
// (../shared/data from the repository root).
func sharedData(t *testing.T, name string) string {
	t.Helper()
	path, _ := filepath.Abs(filepath.Join("..", "..", "shared", "data", name))
	if _, err := os.Stat(path); err != nil {
		t.Skipf("shared workload data is absent (%v): this test replays ../shared/data/%s beside the repository", err, name)
	}
	return path
}

// `strata bench` against a `strata sim` process, as a user runs them:
// every workload kind and both shared traces, each for a second or two,
// with the result file, the HTML report and the comparison.
func TestCommandAgainstSimProcess(t *testing.T) {
	// Room for the Mooncake trace's long prompts (up to 56k tokens in its
	// first rows) and 1000× faster than the modelled GPU.
	p := startSimProcess(t, "--speedup", "1000", "--max-model-len", "262144", "--num-gpu-blocks-override", "65536")
	dir := t.TempDir()
	common := []string{"--url", p.url, "--seed", "3", "--goodput", "ttft:1000,tpot:100", "--bound-capacity-blocks", "65536"}
	for _, tc := range []struct {
		name string
		args []string
		want uint64 // requests that must succeed
		// trace is a shared data file to replay.
		trace string
	}{
		{"synthetic", []string{"--workload", "synthetic", "--input-len", "512", "--output-len", "32", "--range-ratio", "0.5", "--num-requests", "200", "--request-rate", "200"}, 200, ""},
		{"prefix", []string{"--workload", "prefix", "--num-prefixes", "4", "--prefix-len", "2048", "--suffix-len", "128", "--output-len", "32", "--num-requests", "200", "--request-rate", "200", "--burstiness", "0.5"}, 200, ""},
		{"chat", []string{"--workload", "chat", "--chat-users", "8", "--chat-rounds", "4", "--chat-system-len", "256", "--chat-user-len", "64", "--output-len", "32", "--request-rate", "50"}, 32, ""},
		{"mooncake", []string{"--num-requests", "150", "--speed", "25"}, 150, "mooncake_synthetic_trace.jsonl"},
		{"azure", []string{"--num-requests", "300", "--speed", "80", "--max-concurrency", "64"}, 300, "azure_llm_code_trace.csv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, common...), tc.args...)
			if tc.trace != "" {
				args = append(args, "--trace", sharedData(t, tc.trace))
			}
			out := filepath.Join(dir, tc.name+".json")
			html := filepath.Join(dir, tc.name+".html")
			resetPrefixCache(t, p.url)
			stdout, err := strataBench(t, append(args, "--output", out, "--report", html)...)
			if err != nil {
				t.Fatalf("strata bench: %v\n%s\nsim log:\n%s", err, stdout, p.logText())
			}
			if !strings.Contains(stdout, "Serving Benchmark Result") || strings.Contains(stdout, "\r") {
				t.Fatalf("summary (no progress bar without a terminal):\n%s", stdout)
			}
			res, err := bench.ReadResultFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if res.RequestsSucceeded != tc.want || res.RequestsFailed != 0 || res.RequestsOutputMismatch != 0 {
				t.Fatalf("%d succeeded, %d failed %v, %d output mismatches; want %d\n%s", res.RequestsSucceeded, res.RequestsFailed, res.ErrorExamples, res.RequestsOutputMismatch, tc.want, stdout)
			}
			if res.CachedTokenFraction > res.ReuseBounds.InfiniteHitFraction+1e-9 {
				t.Fatalf("cached %.4f above the infinite bound %.4f", res.CachedTokenFraction, res.ReuseBounds.InfiniteHitFraction)
			}
			if tc.name == "prefix" || tc.name == "mooncake" || tc.name == "chat" {
				if res.CachedTokenFraction <= 0 || res.ReuseBounds.InfiniteHitFraction <= 0 {
					t.Fatalf("no reuse: cached %.3f, bound %.3f", res.CachedTokenFraction, res.ReuseBounds.InfiniteHitFraction)
				}
			}
			if got := strings.Join(res.CommandLine[1:3], " "); got != "bench "+common[0] {
				t.Fatalf("command line %q", res.CommandLine)
			}
			page, err := os.ReadFile(html)
			if err != nil || bytes.Count(page, []byte("<svg")) < 6 {
				t.Fatalf("report: %v, %d plots", err, bytes.Count(page, []byte("<svg")))
			}
			t.Logf("%s: %d requests in %.2f s, TTFT p50 %.2f ms p99 %.2f ms, ITL p50 %.3f ms, %.0f tok/s, cached %.3f (bounds %.3f / %.3f), lag p99 %.2f ms",
				tc.name, res.RequestsSucceeded, res.DurationSeconds, res.TtftMs.P50, res.TtftMs.P99, res.ItlMs.P50,
				res.OutputTokenThroughputPerSecond, res.CachedTokenFraction, res.ReuseBounds.InfiniteHitFraction, res.ReuseBounds.PooledHitFraction, res.ScheduleLagMs.P99)
		})
	}

	t.Run("compare", func(t *testing.T) {
		a, b := filepath.Join(dir, "synthetic.json"), filepath.Join(dir, "prefix.json")
		for _, f := range []string{a, b} {
			if _, err := os.Stat(f); err != nil {
				t.Skip("a run above failed")
			}
		}
		html := filepath.Join(dir, "compare.html")
		out, err := strataBench(t, "compare", a, b, "--html", html)
		if err != nil || !strings.Contains(out, "synthetic.json") || !strings.Contains(out, "×)") {
			t.Fatalf("compare: %v\n%s", err, out)
		}
		if page, err := os.ReadFile(html); err != nil || !bytes.Contains(page, []byte(`data-plot="ttft-cdf"`)) {
			t.Fatalf("compare page: %v", err)
		}
		out, err = strataBench(t, "report", a, "--html", filepath.Join(dir, "again.html"))
		if err != nil || !strings.Contains(out, "Successful requests:") {
			t.Fatalf("report: %v\n%s", err, out)
		}
	})
}

// Mistakes on the command line are errors that say what is wrong, before
// anything is sent.
func TestCommandErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.jsonl")
	garbage := filepath.Join(t.TempDir(), "garbage.json")
	if err := os.WriteFile(garbage, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", "http://127.0.0.1:1/v1"}, "choose a workload"},
		{[]string{"--url", "http://127.0.0.1:1/v1", "--workload", "synthetic", "--trace", missing}, "exclude each other"},
		{[]string{"--url", "http://127.0.0.1:1/v1", "--trace", missing, "--model", "m"}, "no such file"},
		{[]string{"--url", "http://127.0.0.1:1/v1", "--workload", "synthetic", "--goodput", "ttft=5"}, "KEY:MILLISECONDS"},
		{[]string{"--url", "http://127.0.0.1:1/v1", "--workload", "synthetic", "--token-id-range", "9-3"}, "MAX below MIN"},
		{[]string{"--url", "http://127.0.0.1:1/v1", "--workload", "chat", "--prompt-format", "tokens"}, "token-id prompts need the completions endpoint"},
		{[]string{"--workload", "synthetic"}, "a URL is required"},
		{[]string{"compare", garbage}, "not a strata bench result"},
	} {
		out, err := strataBench(t, tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("strata bench %s: %v, output %q, want an error containing %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}
