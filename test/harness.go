package test

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/strata-llm/strata/agent"
	"github.com/strata-llm/strata/dev"
	"github.com/strata-llm/strata/test/testutil"
)

// TestCluster starts a whole cluster for a test, as `strata dev` runs it:
// a brain, an agent with fake GPUs running real `strata sim` processes
// (two, at a thousand times an H100's pace, unless cb says otherwise), and
// a gateway on a free loopback port. It is closed when the test ends.
// Logs go to stderr when STRATA_TEST_LOG is set.
func TestCluster(t testing.TB, cb func(*dev.Config)) *dev.Cluster {
	t.Helper()
	cfg := dev.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Engines: 2, SimArgs: []string{"--speedup", "1000"},
		// Engine ports below the agent tests' range and Linux's ephemeral
		// ports, at random so that test binaries running at once rarely meet.
		WorkerPortBase: 11000 + 10*rand.IntN(900),
		SimExecutable:  testutil.StrataBinary(t),
		Logger:         testLogger(),
	}
	if cb != nil {
		cb(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := dev.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func testLogger() *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// EngineViews lists the cluster's engines as its agent's ops API shows them.
func EngineViews(t testing.TB, c *dev.Cluster) []agent.WorkerView {
	t.Helper()
	var out struct{ Workers []agent.WorkerView }
	opsGet(t, c, "/v1/workers", &out)
	return out.Workers
}

// Canaries lists the latest health canary of each of the agent's workers.
func Canaries(t testing.TB, c *dev.Cluster) []agent.CanaryStatus {
	t.Helper()
	var out struct{ Canaries []agent.CanaryStatus }
	opsGet(t, c, "/v1/canaries", &out)
	return out.Canaries
}

// opsGet decodes the JSON answer of the agent's ops API at path into out.
func opsGet(t testing.TB, c *dev.Cluster, path string, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+c.Agent.OpsAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+string(c.OpsToken))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, res.StatusCode, err)
	}
}

// EnginePID is the process id of a worker's engine.
func EnginePID(t testing.TB, c *dev.Cluster, worker string) int {
	t.Helper()
	for _, v := range EngineViews(t, c) {
		if v.ID == worker && v.PID > 0 {
			return v.PID
		}
	}
	t.Fatalf("no running engine for worker %s", worker)
	return 0
}
