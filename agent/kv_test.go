package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/agent/kvbm"
	"github.com/strata-llm/strata/brain"
	"github.com/strata-llm/strata/kvhash"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

// longPrompt is a prompt of about 3,000 byte-level tokens, its own for
// each word.
func longPrompt(word string) string {
	return strings.Repeat(fmt.Sprintf("%s: a prefix long enough to be worth keeping. ", word), 3000/(len(word)+43))
}

func promptHashes(p string) []uint64 {
	return kvhash.Prompt(bytelevel.Tokenizer{}.Encode(p, true), TestKVBlockSize, "")
}

func deployKV(t *testing.T, s *brain.Server, replicas uint32) {
	t.Helper()
	if _, err := brain.TestAdminClient(t, s).ApplyDeployment(context.Background(), &stratav1.ApplyDeploymentRequest{Spec: TestKVDeployment("tiny", replicas)}); err != nil {
		t.Fatal(err)
	}
}

// streamed is what a streamed completion showed its client.
type streamed struct {
	ttft           time.Duration
	prompt, cached int
}

// streamComplete sends a streamed completion to model tiny and times its
// first token.
func streamComplete(t *testing.T, endpoint, prompt string) streamed {
	t.Helper()
	s := testutil.StreamCompletion(t, endpoint, map[string]any{"model": "tiny", "prompt": prompt, "max_tokens": 2})
	return streamed{ttft: s.TTFT, prompt: s.PromptTokens, cached: s.CachedTokens}
}

func kvView(t *testing.T, a *Agent) kvbm.View {
	t.Helper()
	code, b := ops(t, a, http.MethodGet, "/v1/kv")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/kv: %d %s", code, b)
	}
	var v kvbm.View
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func tierOf(v kvbm.View, medium string) kvbm.TierView {
	for _, tv := range v.Tiers {
		if tv.Medium == medium {
			return tv
		}
	}
	return kvbm.TierView{}
}

// scoreOf is a worker's Score of hashes on one replica.
func scoreOf(t *testing.T, s *brain.Server, worker string, hashes []uint64) *stratav1.WorkerScore {
	t.Helper()
	res, err := stratav1.NewGatewayServiceClient(brain.TestConn(t, s)).Score(context.Background(), &stratav1.ScoreRequest{Model: "tiny", SeqHashes: hashes})
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range res.Scores {
		if sc.WorkerId == worker {
			return sc
		}
	}
	return &stratav1.WorkerScore{WorkerId: worker}
}

// pushOut computes two other long prompts on a worker, which pushes a
// first one out of its GPU pool (TestKVDeployment), and returns the second's
// stream: a full recompute of a prompt as long.
func pushOut(t *testing.T, endpoint string) streamed {
	t.Helper()
	cold := streamComplete(t, endpoint, longPrompt("beta"))
	if cold.cached != 0 {
		t.Fatalf("a fresh prompt had %d cached tokens", cold.cached)
	}
	streamComplete(t, endpoint, longPrompt("gamma"))
	return cold
}

// transferTime is the simulated host-to-GPU copy of blocks.
func transferTime(blocks uint32) time.Duration {
	return time.Duration(float64(blocks) * TestKVBlockBytes / (TestKVGBps * 1e9) * float64(time.Second))
}

// TestKVTiersCPU: a long prompt pushed out of a sim's GPU pool lands in
// the agent's CPU tier — visible in GET /v1/kv and as the worker's CPU
// blocks in every brain replica's index — and asked again it is onboarded
// from there: all its blocks cached, a TTFT that pays the transfer but not
// the prefill.
func TestKVTiersCPU(t *testing.T) {
	servers := cluster(t)
	a, stop := startAgentWith(t, servers, t.TempDir(), func(c *Config) { c.KV = TestKVTiers(nil) })
	defer stop()
	deployKV(t, servers[0], 1)
	w := routable(t, servers[0], 1)[0]

	p := longPrompt("alpha")
	hashes := promptHashes(p)
	streamComplete(t, w.Endpoint, p)
	cold := pushOut(t, w.Endpoint)

	// Every replica credits the worker with the prompt on its CPU tier.
	var onCPU uint32
	for _, s := range servers {
		testutil.WaitForResult(t, 30*time.Second, func() error {
			sc := scoreOf(t, s, w.Worker.Id, hashes)
			if sc.Cpu == 0 || sc.Gpu+sc.Cpu != uint32(len(hashes)) {
				return fmt.Errorf("brain %s scores %v for %d blocks, want them on GPU or CPU, some on CPU", s.Member().Id, sc, len(hashes))
			}
			onCPU = sc.Cpu
			return nil
		})
		st, err := brain.TestAdminClient(t, s).KVIndexStats(context.Background(), &stratav1.KVIndexStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Workers) != 1 || st.Workers[0].CpuBlocks < onCPU {
			t.Fatalf("brain %s index stats %v", s.Member().Id, st.Workers)
		}
	}
	v := kvView(t, a)
	if cpu := tierOf(v, "cpu"); !v.Enabled || cpu.Blocks < int64(onCPU) || cpu.Offloads < int64(onCPU) || cpu.Usage <= 0 {
		t.Fatalf("GET /v1/kv: %+v", v)
	}
	if len(v.Scopes) != 1 || v.Scopes[0].Model != "tiny" || len(v.Scopes[0].Workers) != 1 || v.Scopes[0].Workers[0] != w.Worker.Id {
		t.Fatalf("scopes %+v", v.Scopes)
	}

	again := streamComplete(t, w.Endpoint, p)
	if want := (again.prompt - 1) / TestKVBlockSize * TestKVBlockSize; again.cached != want {
		t.Fatalf("repeat: %d cached tokens of %d, want %d", again.cached, again.prompt, want)
	}
	if min := transferTime(onCPU); again.ttft < min || again.ttft >= cold.ttft {
		t.Fatalf("repeat TTFT %v: want at least the transfer of %d blocks (%v) and less than a recompute (%v)", again.ttft, onCPU, min, cold.ttft)
	}
	if cpu := tierOf(kvView(t, a), "cpu"); cpu.Hits < int64(onCPU) || cpu.OnboardBytes < int64(onCPU)*TestKVBlockBytes {
		t.Fatalf("CPU tier after the onboard: %+v", cpu)
	}
	t.Logf("TTFT: recompute %v, onboard of %d CPU blocks %v", cold.ttft.Round(time.Millisecond), onCPU, again.ttft.Round(time.Millisecond))
}

// TestKVRemoteTierSharedByTwoNodes: two agents (two nodes) share one MinIO
// bucket as their remote tier. A prefix offloaded on node A is written
// through to the bucket, every brain replica reports it REMOTE to the
// model's worker on node B, and B's sim onboards it from the bucket
// instead of recomputing it.
func TestKVRemoteTierSharedByTwoNodes(t *testing.T) {
	m := testutil.StartMinIO(t)
	servers := cluster(t)
	// Two nodes on one host: each its own engine ports.
	node := func(id string, portBase int) *Agent {
		a, stop := startAgentWith(t, servers, t.TempDir(), func(c *Config) {
			c.NodeID, c.FakeGPUs, c.KV, c.EnginePortBase = id, 1, TestKVTiers(m), portBase
		})
		t.Cleanup(stop)
		return a
	}
	base := 21000 + 20*rand.IntN(550)
	a, b := node("node-a", base), node("node-b", base+10)
	testutil.WaitForResult(t, 30*time.Second, func() error {
		res, err := brain.TestAdminClient(t, servers[0]).ListNodes(context.Background(), &stratav1.ListNodesRequest{})
		if err != nil || len(res.Nodes) != 2 {
			return fmt.Errorf("nodes %v, %v", res.GetNodes(), err)
		}
		return nil
	})
	deployKV(t, servers[0], 2)
	var tiny []*stratav1.RoutableWorker
	waitView(t, servers[0], func(ws []*stratav1.RoutableWorker) bool {
		tiny = ws
		return len(tiny) == 2
	})
	var onA, onB *stratav1.RoutableWorker
	for _, w := range tiny {
		switch w.Worker.NodeId {
		case "node-a":
			onA = w
		case "node-b":
			onB = w
		}
	}
	if onA == nil || onB == nil {
		res, _ := brain.TestAdminClient(t, servers[0]).ListWorkers(context.Background(), &stratav1.ListWorkersRequest{})
		t.Fatalf("the two replicas are not on the two nodes: %v", res.GetWorkers())
	}

	p := longPrompt("shared")
	hashes := promptHashes(p)
	streamComplete(t, onA.Endpoint, p)
	cold := pushOut(t, onA.Endpoint)

	// Written through to the bucket: every replica credits B's worker
	// with the whole prompt on the remote tier.
	for _, s := range servers {
		testutil.WaitForResult(t, 60*time.Second, func() error {
			if sc := scoreOf(t, s, onB.Worker.Id, hashes); sc.Remote != uint32(len(hashes)) {
				return fmt.Errorf("brain %s scores %v for node B's worker, want %d remote blocks", s.Member().Id, sc, len(hashes))
			}
			return nil
		})
		st, err := brain.TestAdminClient(t, s).KVIndexStats(context.Background(), &stratav1.KVIndexStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(st.Models, func(m *stratav1.KVModelStats) bool { return m.Model == "tiny" })
		if i < 0 || st.Models[i].RemoteBlocks < uint32(len(hashes)) {
			t.Fatalf("brain %s remote blocks %v", s.Member().Id, st.Models)
		}
	}
	if r := kvView(t, a).Remote; r == nil || !r.Available || !r.WriteThrough {
		t.Fatalf("node A's remote tier: %+v", r)
	}

	got := streamComplete(t, onB.Endpoint, p)
	if want := (got.prompt - 1) / TestKVBlockSize * TestKVBlockSize; got.cached != want {
		t.Fatalf("node B: %d cached tokens of %d, want %d onboarded from the bucket", got.cached, got.prompt, want)
	}
	n := uint32(got.cached / TestKVBlockSize)
	if min := transferTime(n); got.ttft < min || got.ttft >= cold.ttft {
		t.Fatalf("node B's TTFT %v: want at least the transfer of %d blocks (%v) and less than a recompute (%v)", got.ttft, n, min, cold.ttft)
	}
	v := kvView(t, b)
	if remote := tierOf(v, "remote"); remote.Hits < int64(n) || remote.OnboardBytes < int64(n)*TestKVBlockBytes {
		t.Fatalf("node B's remote tier: %+v", remote)
	}
	if cpu := tierOf(v, "cpu"); cpu.Blocks < int64(n) {
		t.Fatalf("node B's CPU tier holds %d blocks after onboarding %d from the bucket (promotion)", cpu.Blocks, n)
	}
	t.Logf("TTFT: recompute on A %v, onboard of %d blocks from MinIO on B %v", cold.ttft.Round(time.Millisecond), n, got.ttft.Round(time.Millisecond))
}
