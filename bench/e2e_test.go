package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench"
	"github.com/strata-llm/strata/dev"
	"github.com/strata-llm/strata/test"
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

// workloadCase is one `strata bench` run of the end-to-end tests.
type workloadCase struct {
	name string
	args []string
	want uint64 // requests that must succeed
	// trace is a shared data file to replay.
	trace string
}

// workloadCases are every workload kind and both shared traces, each a
// second or two against engines 1000× faster than the modelled GPU.
var workloadCases = []workloadCase{
	{"synthetic", []string{"--workload", "synthetic", "--input-len", "512", "--output-len", "32", "--range-ratio", "0.5", "--num-requests", "200", "--request-rate", "200"}, 200, ""},
	{"prefix", []string{"--workload", "prefix", "--num-prefixes", "4", "--prefix-len", "2048", "--suffix-len", "128", "--output-len", "32", "--num-requests", "200", "--request-rate", "200", "--burstiness", "0.5"}, 200, ""},
	{"chat", []string{"--workload", "chat", "--chat-users", "8", "--chat-rounds", "4", "--chat-system-len", "256", "--chat-user-len", "64", "--output-len", "32", "--request-rate", "50"}, 32, ""},
	{"mooncake", []string{"--num-requests", "150", "--speed", "25"}, 150, "mooncake_synthetic_trace.jsonl"},
	{"azure", []string{"--num-requests", "300", "--speed", "80", "--max-concurrency", "64"}, 300, "azure_llm_code_trace.csv"},
}

// run runs the case with `strata bench` and checks what a user would: the
// summary, the result file (every request succeeded with its asked
// length, cache hits within the infinite-cache bound, reuse where the
// workload has some) and the HTML report's plots, at least minPlots.
func (tc workloadCase) run(t *testing.T, common []string, dir string, minPlots int) *bench.Result {
	t.Helper()
	args := append(append([]string{}, common...), tc.args...)
	if tc.trace != "" {
		args = append(args, "--trace", sharedData(t, tc.trace))
	}
	out := filepath.Join(dir, tc.name+".json")
	html := filepath.Join(dir, tc.name+".html")
	stdout, err := strataBench(t, append(args, "--output", out, "--report", html)...)
	if err != nil {
		t.Fatalf("strata bench: %v\n%s", err, stdout)
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
	if err != nil || bytes.Count(page, []byte("<svg")) < minPlots {
		t.Fatalf("report: %v, %d plots, want %d", err, bytes.Count(page, []byte("<svg")), minPlots)
	}
	t.Logf("%s: %d requests in %.2f s, TTFT p50 %.2f ms p99 %.2f ms, ITL p50 %.3f ms, %.0f tok/s, cached %.3f (bounds %.3f / %.3f), lag p99 %.2f ms",
		tc.name, res.RequestsSucceeded, res.DurationSeconds, res.TtftMs.P50, res.TtftMs.P99, res.ItlMs.P50,
		res.OutputTokenThroughputPerSecond, res.CachedTokenFraction, res.ReuseBounds.InfiniteHitFraction, res.ReuseBounds.PooledHitFraction, res.ScheduleLagMs.P99)
	return res
}

// `strata bench` against a `strata sim` process, as a user runs them:
// every workload kind and both shared traces, each for a second or two,
// with the result file, the HTML report and the comparison.
func TestCommandAgainstSimProcess(t *testing.T) {
	// Room for the Mooncake trace's long prompts (up to 56k tokens in its
	// first rows) and 1000× faster than the modelled GPU.
	p := startSimProcess(t, "--speedup", "1000", "--max-model-len", "262144", "--num-gpu-blocks-override", "65536")
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sim log:\n%s", p.logText())
		}
	})
	common := []string{"--url", p.url, "--seed", "3", "--goodput", "ttft:1000,tpot:100", "--bound-capacity-blocks", "65536"}
	for _, tc := range workloadCases {
		t.Run(tc.name, func(t *testing.T) {
			resetPrefixCache(t, p.url)
			tc.run(t, common, dir, 6)
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

// `strata bench` against a `strata dev` cluster (a brain, an agent with two
// `strata sim` engines, the gateway, in this process): every workload kind
// and both shared traces through the gateway, which names the serving
// worker, so the report has the per-worker plot too. Then `strata bench
// routing` on a tiny scale: it runs, prints the table with the bounds,
// writes its files, and kv caches more than round-robin on a prefix
// workload whose prefixes fit the two engines together but not one.
func TestCommandAgainstDevCluster(t *testing.T) {
	c := test.TestCluster(t, func(cfg *dev.Config) {
		cfg.SimArgs = []string{"--speedup", "1000", "--max-model-len", "262144", "--num-gpu-blocks-override", "65536"}
	})
	url := "http://" + c.Gateway.Addr() + "/v1"
	dir := t.TempDir()
	common := []string{"--url", url, "--seed", "3", "--goodput", "ttft:1000,tpot:100", "--bound-capacity-blocks", "131072"}
	for _, tc := range workloadCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range test.EngineViews(t, c) {
				resetPrefixCache(t, "http://127.0.0.1:"+strconv.Itoa(e.Port)+"/v1")
			}
			res := tc.run(t, common, dir, 7)
			var served uint64
			for _, w := range res.Workers {
				served += w.Requests
				if !strings.HasPrefix(w.Worker, "strata-sim-") {
					t.Fatalf("worker %q: not a worker the gateway names", w.Worker)
				}
			}
			if served != tc.want {
				t.Fatalf("workers served %d requests of %d: %v", served, tc.want, res.Workers)
			}
		})
	}

	t.Run("routing", func(t *testing.T) {
		out := filepath.Join(dir, "routing")
		// 2 engines of 384 blocks; 8 prefixes of 64 blocks (512) fit both
		// caches (768), not one. Ten times the modelled pace, at a given
		// rate: no calibration.
		stdout, err := strataBench(t, "routing", "--engines", "2", "--speedup", "10", "--kv-blocks", "384",
			"--engine-port-base", strconv.Itoa(12000+10*rand.IntN(500)),
			"--num-prefixes", "8", "--prefix-len", "1024", "--suffix-len", "32", "--output-len", "8",
			"--policies", "round-robin,kv", "--request-rate", "20", "--duration", "4s", "--warmup", "1s", "--seed", "5",
			"--output-dir", out, "--log-level", "warn")
		if err != nil {
			t.Fatalf("strata bench routing: %v\n%s", err, stdout)
		}
		for _, want := range []string{"Load: 20.00 req/s", "Ratios are to round-robin.", "P50 TTFT (ms)", "Cached / pooled bound",
			"infinite cache", "pooled cache (768 blocks"} {
			if !strings.Contains(stdout, want) {
				t.Fatalf("table lacks %q:\n%s", want, stdout)
			}
		}
		for _, f := range []string{"round-robin.json", "round-robin.html", "kv.json", "kv.html", "compare.html", "routing.txt"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Fatal(err)
			}
		}
		rr, err := bench.ReadResultFile(filepath.Join(out, "round-robin.json"))
		if err != nil {
			t.Fatal(err)
		}
		kv, err := bench.ReadResultFile(filepath.Join(out, "kv.json"))
		if err != nil {
			t.Fatal(err)
		}
		if rr.Config.Headers["X-Strata-Routing"] != "round-robin" || kv.Config.Headers["X-Strata-Routing"] != "kv" {
			t.Fatalf("headers %v, %v", rr.Config.Headers, kv.Config.Headers)
		}
		if rr.RequestsFailed+kv.RequestsFailed != 0 || kv.CachedTokenFraction <= rr.CachedTokenFraction {
			t.Fatalf("kv cached %.3f, round-robin %.3f (bound %.3f); failures %d, %d\n%s", kv.CachedTokenFraction, rr.CachedTokenFraction,
				kv.ReuseBounds.PooledHitFraction, kv.RequestsFailed, rr.RequestsFailed, stdout)
		}
		t.Logf("tiny routing benchmark:\n%s", stdout)
	})
}
