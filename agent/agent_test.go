package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-llm/strata/brain"
	"github.com/strata-llm/strata/kvhash"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

const opsToken = string(TestOpsToken)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.KillStrayProcesses()
	testutil.CleanupBinary()
	os.Exit(code)
}

// cluster is three in-process brains whose placement uses a random port
// range, so parallel test packages do not collide on engine ports. The
// range stays below Linux's ephemeral ports (32768 and up): an engine port
// in that range can already be held by some test's outgoing connection.
func cluster(t *testing.T) []*brain.Server {
	t.Helper()
	base := 21000 + 10*rand.IntN(1100)
	cb := func(c *brain.Config) { c.WorkerPortBase = base; c.LeaseTTL = 3 * time.Second }
	first := brain.TestServer(t, cb)
	brain.WaitForLeader(t, first)
	var rest []*brain.Server
	for range 2 {
		rest = append(rest, brain.TestServer(t, func(c *brain.Config) { cb(c); c.Bootstrap = false }))
	}
	brain.TestJoin(t, first, rest...)
	servers := append([]*brain.Server{first}, rest...)
	brain.WaitForLeader(t, servers...)
	return servers
}

func addrs(servers []*brain.Server) []string {
	var out []string
	for _, s := range servers {
		if s.Raft().State().String() != "Shutdown" {
			out = append(out, s.Member().GetGrpcAddress())
		}
	}
	return out
}

// startAgent runs an agent with 4 fake GPUs and real `strata sim` engines
// until the returned stop is called (engines keep running, as when the
// agent process stops).
func startAgent(t *testing.T, servers []*brain.Server, dataDir string) (*Agent, func()) {
	t.Helper()
	return startAgentWith(t, servers, dataDir, nil)
}

func startAgentWith(t *testing.T, servers []*brain.Server, dataDir string, cb func(*Config)) (*Agent, func()) {
	t.Helper()
	return TestAgent(t, addrs(servers), brain.TestClusterToken, func(c *Config) {
		c.DataDir = dataDir
		if cb != nil {
			cb(c)
		}
	})
}

func deploySim(t *testing.T, s *brain.Server, replicas uint32, args ...string) {
	t.Helper()
	_, err := brain.TestAdminClient(t, s).ApplyDeployment(context.Background(), &stratav1.ApplyDeploymentRequest{Spec: &stratav1.DeploymentSpec{
		Name: "tiny", Model: "sim-model", Engine: "sim", EngineArgs: append([]string{"--speedup", "1000"}, args...),
		Pools: []*stratav1.Pool{{Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, TensorParallelSize: 1,
			Replicas: &stratav1.Replicas{Min: 1, Max: 4, Initial: replicas}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// routable waits for n READY workers in a gateway's WatchCluster view.
func routable(t *testing.T, s *brain.Server, n int) []*stratav1.RoutableWorker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := stratav1.NewGatewayServiceClient(brain.TestConn(t, s)).WatchCluster(ctx, &stratav1.WatchClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		v, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for %d routable workers: %v", n, err)
		}
		if len(v.Workers) == n {
			return v.Workers
		}
	}
}

// waitView waits for a WatchCluster view of s that satisfies ok.
func waitView(t *testing.T, s *brain.Server, ok func([]*stratav1.RoutableWorker) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := stratav1.NewGatewayServiceClient(brain.TestConn(t, s)).WatchCluster(ctx, &stratav1.WatchClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		v, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for a cluster view: %v", err)
		}
		if ok(v.Workers) {
			return
		}
	}
}

func ops(t *testing.T, a *Agent, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.OpsAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func workerViews(t *testing.T, a *Agent) []WorkerView {
	t.Helper()
	code, b := ops(t, a, http.MethodGet, "/v1/workers")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/workers: %d %s", code, b)
	}
	var out struct{ Workers []WorkerView }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.Workers
}

func complete(t *testing.T, endpoint, prompt string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": "tiny", "prompt": prompt, "max_tokens": 2})
	res, err := http.Post("http://"+endpoint+"/v1/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("completion: %d %s", res.StatusCode, b)
	}
}

// TestAgentRunsAssignedEngines drives the agent against a 3-brain cluster
// with real sim processes: engines start and become routable, a killed
// engine is restarted, a restarted agent adopts its engines without
// duplicating them, and the agent rides out the loss of the brain leader.
func TestAgentRunsAssignedEngines(t *testing.T) {
	servers := cluster(t)
	dataDir := t.TempDir()
	a, stop := startAgent(t, servers, dataDir)
	deploySim(t, servers[0], 2)
	ws := routable(t, servers[1], 2)

	views := workerViews(t, a)
	if len(views) != 2 || views[0].GPUs[0] == views[1].GPUs[0] || views[0].PID == 0 {
		t.Fatalf("workers = %+v", views)
	}
	for _, w := range ws {
		complete(t, w.Endpoint, "hello")
	}

	// Kill one engine: the supervisor restarts it and the brain sees it
	// ready again.
	victim := views[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForResult(t, 30*time.Second, func() error {
		for _, v := range workerViews(t, a) {
			if v.ID == victim.ID && v.Restarts >= 1 && v.State == "ready" && v.PID != victim.PID {
				return nil
			}
		}
		return fmt.Errorf("%s not restarted", victim.ID)
	})
	routable(t, servers[2], 2)

	// Agent restart: the engines keep running and are adopted, not doubled.
	pids := map[int]bool{}
	for _, v := range workerViews(t, a) {
		pids[v.PID] = true
	}
	stop()
	a, stop = startAgent(t, servers, dataDir)
	defer stop()
	testutil.WaitForResult(t, 30*time.Second, func() error {
		vs := workerViews(t, a)
		if len(vs) != 2 {
			return fmt.Errorf("%d workers", len(vs))
		}
		for _, v := range vs {
			if !v.Adopted || !pids[v.PID] || v.State != "ready" {
				return fmt.Errorf("worker %s: adopted=%v pid=%d state=%s", v.ID, v.Adopted, v.PID, v.State)
			}
		}
		return nil
	})

	// Lose the brain leader: the agent keeps heartbeating through the
	// others, so its node stays ready.
	leader := brain.WaitForLeader(t, servers...)
	if err := leader.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rest := slices.DeleteFunc(slices.Clone(servers), func(s *brain.Server) bool { return s == leader })
	next := brain.WaitForLeader(t, rest...)
	testutil.WaitForResult(t, 30*time.Second, func() error {
		res, err := brain.TestAdminClient(t, next).ListNodes(context.Background(), &stratav1.ListNodesRequest{})
		if err != nil {
			return err
		}
		n := res.Nodes[0]
		if n.State != stratav1.NodeState_NODE_STATE_READY || time.Since(time.Unix(0, n.LastHeartbeatUnixNanos)) > time.Second {
			return fmt.Errorf("node %v, last heartbeat %v ago", n.State, time.Since(time.Unix(0, n.LastHeartbeatUnixNanos)))
		}
		return nil
	})
	routable(t, next, 2)
	// Leaving service stops the engines.
	a.Shutdown(context.Background())
	for pid := range pids {
		testutil.WaitFor(t, 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	}
}

// TestKVEventsReachTheBrain: requests to a sim engine produce blocks in
// every brain replica's index, and Score finds the prompt's prefix there.
func TestKVEventsReachTheBrain(t *testing.T) {
	servers := cluster(t)
	a, stop := startAgent(t, servers, t.TempDir())
	defer stop()
	deploySim(t, servers[0], 1)
	w := routable(t, servers[0], 1)[0]

	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 8)
	complete(t, w.Endpoint, prompt)
	hashes := kvhash.Prompt(bytelevel.Tokenizer{}.Encode(prompt, true), 16, "")
	for _, s := range servers {
		testutil.WaitForResult(t, 30*time.Second, func() error {
			res, err := stratav1.NewGatewayServiceClient(brain.TestConn(t, s)).Score(context.Background(), &stratav1.ScoreRequest{Model: "tiny", SeqHashes: hashes})
			if err != nil {
				return err
			}
			for _, sc := range res.Scores {
				if sc.WorkerId == w.Worker.Id && sc.Gpu == uint32(len(hashes)) {
					return nil
				}
			}
			return fmt.Errorf("brain %s scores %v, want %d GPU blocks on %s", s.Member().Id, res.Scores, len(hashes), w.Worker.Id)
		})
	}
	code, b := ops(t, a, http.MethodGet, "/v1/canaries")
	if code != http.StatusOK || !bytes.Contains(b, []byte(w.Worker.Id)) {
		t.Fatalf("canaries: %d %s", code, b)
	}

	// An engine restart empties its cache: every replica forgets the blocks.
	if code, b := ops(t, a, http.MethodPost, "/v1/workers/"+w.Worker.Id+"/restart"); code != http.StatusAccepted {
		t.Fatalf("restart: %d %s", code, b)
	}
	for _, s := range servers {
		testutil.WaitForResult(t, 30*time.Second, func() error {
			res, err := stratav1.NewGatewayServiceClient(brain.TestConn(t, s)).Score(context.Background(), &stratav1.ScoreRequest{Model: "tiny", SeqHashes: hashes})
			if err != nil {
				return err
			}
			if len(res.Scores) != 0 {
				return fmt.Errorf("brain %s still scores %v after the engine restarted", s.Member().Id, res.Scores)
			}
			return nil
		})
	}
}

func TestOpsAPIAuthAndErrors(t *testing.T) {
	servers := cluster(t)
	a, stop := startAgent(t, servers, t.TempDir())
	defer stop()
	tests := []struct {
		name, method, path, token string
		want                      int
	}{
		{"health is open", http.MethodGet, "/healthz", "", http.StatusOK},
		{"metrics are open", http.MethodGet, "/metrics", "", http.StatusOK},
		{"no token", http.MethodGet, "/v1/workers", "", http.StatusUnauthorized},
		{"wrong token", http.MethodGet, "/v1/node", "nope", http.StatusUnauthorized},
		{"node", http.MethodGet, "/v1/node", opsToken, http.StatusOK},
		{"unknown worker", http.MethodGet, "/v1/workers/nope", opsToken, http.StatusNotFound},
		{"restart unknown", http.MethodPost, "/v1/workers/nope/restart", opsToken, http.StatusNotFound},
		{"wrong method", http.MethodDelete, "/v1/workers", opsToken, http.StatusMethodNotAllowed},
		{"no such path", http.MethodGet, "/v2/x", opsToken, http.StatusNotFound},
		{"kv needs the token", http.MethodGet, "/v1/kv", "", http.StatusUnauthorized},
		{"kv without tiers", http.MethodGet, "/v1/kv", opsToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://"+a.OpsAddr()+tt.path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, res.StatusCode, b, tt.want)
			}
			if tt.want >= 400 && !bytes.Contains(b, []byte(`"error"`)) {
				t.Fatalf("error body not JSON envelope: %s", b)
			}
		})
	}
}

// TestCanaryTakesHungEngineOutOfRotation: an engine whose HTTP server lives
// but whose completions hang (the sim's injected stall) is marked unhealthy
// by the canary — the brain stops listing it as routable — and restarted
// after repeated failures, after which it serves again.
func TestCanaryTakesHungEngineOutOfRotation(t *testing.T) {
	servers := cluster(t)
	a, stop := startAgentWith(t, servers, t.TempDir(), func(c *Config) {
		c.CanaryIdle = 200 * time.Millisecond
		// Generous for a loaded CI machine under -race: only the injected
		// stall, never a slow but healthy engine, may fail a canary.
		c.CanaryTimeout = 2 * time.Second
		c.CanaryRestartAfter = 3
	})
	defer stop()
	// The first canary succeeds; every later completion hangs.
	deploySim(t, servers[0], 1, "--fault-stall-after", "1")
	w := routable(t, servers[0], 1)[0]

	start := time.Now()
	testutil.WaitForResult(t, 30*time.Second, func() error {
		res, err := brain.TestAdminClient(t, servers[1]).ListWorkers(context.Background(), &stratav1.ListWorkersRequest{})
		if err != nil {
			return err
		}
		if st := res.Workers[0].State; st != stratav1.WorkerState_WORKER_STATE_UNHEALTHY {
			return fmt.Errorf("worker %s is %v", w.Worker.Id, st)
		}
		return nil
	})
	t.Logf("hung engine marked unhealthy after %v", time.Since(start).Round(10*time.Millisecond))
	waitView(t, servers[2], func(ws []*stratav1.RoutableWorker) bool { return len(ws) == 0 })

	testutil.WaitForResult(t, 60*time.Second, func() error {
		vs := workerViews(t, a)
		if len(vs) != 1 || vs[0].Restarts < 1 {
			return fmt.Errorf("not restarted: %+v", vs)
		}
		return nil
	})
	// The restarted engine answers its first canary again: back in rotation.
	routable(t, servers[0], 1)
}

// TestOpsDrainAndRestart: draining a worker through the ops API stops its
// engine and takes it out of rotation until a restart brings it back.
func TestOpsDrainAndRestart(t *testing.T) {
	servers := cluster(t)
	a, stop := startAgent(t, servers, t.TempDir())
	defer stop()
	deploySim(t, servers[0], 2)
	ws := routable(t, servers[0], 2)
	id := ws[0].Worker.Id
	var pid int
	for _, v := range workerViews(t, a) {
		if v.ID == id {
			pid = v.PID
		}
	}
	if code, b := ops(t, a, http.MethodPost, "/v1/workers/"+id+"/drain"); code != http.StatusAccepted {
		t.Fatalf("drain: %d %s", code, b)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	// A follower's view converges on the other worker alone (it may still
	// be catching up on the first one's start).
	waitView(t, servers[1], func(ws []*stratav1.RoutableWorker) bool {
		return len(ws) == 1 && ws[0].Worker.Id != id
	})
	// An assignment update (another deployment lands on the node) must not
	// bring it back on its own.
	_, err := brain.TestAdminClient(t, servers[0]).ApplyDeployment(context.Background(), &stratav1.ApplyDeploymentRequest{Spec: &stratav1.DeploymentSpec{
		Name: "other", Model: "sim-model", Engine: "sim", EngineArgs: []string{"--speedup", "1000"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitForResult(t, 30*time.Second, func() error {
		if n := len(workerViews(t, a)); n != 3 {
			return fmt.Errorf("%d workers, want 3", n)
		}
		return nil
	})
	for _, v := range workerViews(t, a) {
		if v.ID == id && v.PID != 0 {
			t.Fatalf("drained worker restarted by reconcile: %+v", v)
		}
	}
	if code, b := ops(t, a, http.MethodPost, "/v1/workers/"+id+"/restart"); code != http.StatusAccepted {
		t.Fatalf("restart: %d %s", code, b)
	}
	testutil.WaitForResult(t, 30*time.Second, func() error {
		for _, v := range workerViews(t, a) {
			if v.ID == id && v.State == "ready" {
				return nil
			}
		}
		return fmt.Errorf("%s not back", id)
	})
}

// TestEngineEvictionReachesTheBrain: when the engine evicts a prompt's
// blocks to make room, every brain replica stops crediting them.
func TestEngineEvictionReachesTheBrain(t *testing.T) {
	servers := cluster(t)
	_, stop := startAgent(t, servers, t.TempDir())
	defer stop()
	// 64 blocks of 16 tokens: a few prompts fill the cache.
	deploySim(t, servers[0], 1, "--num-gpu-blocks-override", "64")
	w := routable(t, servers[0], 1)[0]

	first := strings.Repeat("first prompt, soon evicted. ", 12)
	complete(t, w.Endpoint, first)
	hashes := kvhash.Prompt(bytelevel.Tokenizer{}.Encode(first, true), 16, "")
	score := func(s *brain.Server) uint32 {
		res, err := stratav1.NewGatewayServiceClient(brain.TestConn(t, s)).Score(context.Background(), &stratav1.ScoreRequest{Model: "tiny", SeqHashes: hashes})
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range res.Scores {
			return sc.Gpu
		}
		return 0
	}
	testutil.WaitForResult(t, 30*time.Second, func() error {
		if got := score(servers[0]); got != uint32(len(hashes)) {
			return fmt.Errorf("scores %d, want %d", got, len(hashes))
		}
		return nil
	})
	for i := range 8 {
		complete(t, w.Endpoint, fmt.Sprintf("%d other prompt pushing the first one out. ", i)+strings.Repeat("x", 300))
	}
	for _, s := range servers {
		testutil.WaitForResult(t, 30*time.Second, func() error {
			if got := score(s); got != 0 {
				return fmt.Errorf("brain %s still credits %d evicted blocks", s.Member().Id, got)
			}
			return nil
		})
	}
}
