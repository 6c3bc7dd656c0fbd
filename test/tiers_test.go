package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/agent"
	"github.com/strata-llm/strata/brain"
	"github.com/strata-llm/strata/gateway"
	"github.com/strata-llm/strata/kvhash"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

// TestGatewayCreditsTheRemoteTier: two nodes share one MinIO bucket as
// their remote KV tier. A long prefix served on node A is pushed out of
// A's GPU pool (offloaded, and written through to the bucket); node A's
// worker is then drained, and the same prefix, sent to the gateway with
// no hint, goes to node B's worker, which the gateway credits with the
// remote blocks and which onboards them from the bucket instead of
// recomputing: its engine reports them cached, and its TTFT is the
// transfer's, not a prefill's.
func TestGatewayCreditsTheRemoteTier(t *testing.T) {
	m := testutil.StartMinIO(t)
	s := brain.TestServer(t, func(c *brain.Config) { c.LeaseTTL = 5 * time.Second })
	brain.WaitForLeader(t, s)
	brains := []string{s.Member().GetGrpcAddress()}
	base := 11000 + 20*rand.IntN(450)
	nodes := map[string]*agent.Agent{}
	for i, id := range []string{"node-a", "node-b"} {
		a, stop := agent.TestAgent(t, brains, brain.TestClusterToken, func(c *agent.Config) {
			c.NodeID, c.FakeGPUs, c.KV, c.EnginePortBase = id, 1, agent.TestKVTiers(m), base+10*i
		})
		t.Cleanup(stop)
		nodes[id] = a
	}
	admin := brain.TestAdminClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testutil.WaitForResult(t, 30*time.Second, func() error {
		res, err := admin.ListNodes(ctx, &stratav1.ListNodesRequest{})
		if err != nil || len(res.Nodes) != 2 {
			return fmt.Errorf("nodes %v, %v", res.GetNodes(), err)
		}
		return nil
	})
	if _, err := admin.ApplyDeployment(ctx, &stratav1.ApplyDeploymentRequest{Spec: agent.TestKVDeployment("tiny", 2)}); err != nil {
		t.Fatal(err)
	}
	// Routing on the brain's answer is what this checks: past the 5 ms
	// default (under -race on two busy cores, it happens) the gateway
	// would route by approx-kv, which knows nothing of the bucket.
	g, err := gateway.New(gateway.Config{HTTPAddr: "127.0.0.1:0", Brains: brains, ClusterToken: brain.TestClusterToken, Logger: testLogger(),
		ScoreTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(context.Background())
	go func() { _ = g.Run(gctx) }()
	t.Cleanup(func() { gcancel(); g.Shutdown() })
	testutil.WaitForResult(t, 60*time.Second, func() error {
		if n := g.Routable("tiny"); n != 2 {
			return fmt.Errorf("%d of 2 workers routable", n)
		}
		return nil
	})
	onNode := map[string]string{}
	res, err := admin.ListWorkers(ctx, &stratav1.ListWorkersRequest{Deployment: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Workers {
		onNode[w.NodeId] = w.Id
	}
	on := func(worker, prompt string) testutil.Streamed {
		return testutil.StreamCompletion(t, g.Addr(), map[string]any{"model": "tiny", "prompt": prompt, "max_tokens": 2,
			"strata": map[string]any{"worker": worker}})
	}
	long := func(word string) string {
		return strings.Repeat(fmt.Sprintf("%s: a prefix long enough to be worth keeping. ", word), 3000/(len(word)+43))
	}
	prompt := long("shared")
	on(onNode["node-a"], prompt)
	cold := on(onNode["node-a"], long("beta")) // a recompute of as long a prompt
	on(onNode["node-a"], long("gamma"))        // and the shared one is out of A's GPU pool

	// Node A leaves service; the index credits B with the bucket's blocks.
	req, _ := http.NewRequest(http.MethodPost, "http://"+nodes["node-a"].OpsAddr()+"/v1/workers/"+onNode["node-a"]+"/drain", nil)
	req.Header.Set("Authorization", "Bearer "+string(agent.TestOpsToken))
	if dr, err := http.DefaultClient.Do(req); err != nil || dr.StatusCode/100 != 2 {
		t.Fatalf("drain: %v %v", dr, err)
	}
	testutil.WaitForResult(t, 30*time.Second, func() error {
		if n := g.Routable("tiny"); n != 1 {
			return fmt.Errorf("%d workers routable after the drain", n)
		}
		return nil
	})
	hashes := kvhash.Prompt(bytelevel.Tokenizer{}.Encode(prompt, true), agent.TestKVBlockSize, "")
	score := stratav1.NewGatewayServiceClient(brain.TestConn(t, s))
	testutil.WaitForResult(t, 30*time.Second, func() error {
		res, err := score.Score(ctx, &stratav1.ScoreRequest{Model: "tiny", SeqHashes: hashes})
		if err != nil {
			return err
		}
		for _, sc := range res.Scores {
			if sc.WorkerId == onNode["node-b"] && sc.Remote == uint32(len(hashes)) {
				return nil
			}
		}
		return fmt.Errorf("scores %v: want node B's worker with %d remote blocks", res.Scores, len(hashes))
	})
	got := testutil.StreamCompletion(t, g.Addr(), map[string]any{"model": "tiny", "prompt": prompt, "max_tokens": 2})
	if w := got.Header.Get("X-Strata-Worker"); w != onNode["node-b"] {
		t.Fatalf("served by %s, want node B's %s", w, onNode["node-b"])
	}
	if want := (got.PromptTokens - 1) / agent.TestKVBlockSize * agent.TestKVBlockSize; got.CachedTokens != want {
		t.Fatalf("node B reported %d cached tokens of %d, want %d onboarded from the bucket", got.CachedTokens, got.PromptTokens, want)
	}
	if got.TTFT >= cold.TTFT {
		t.Fatalf("node B's TTFT %v is not below a recompute's %v", got.TTFT, cold.TTFT)
	}
	// The gateway routed on the remote tier's credit.
	if n := scrape(t, g.Addr(), `strata_gateway_routing_decisions_total{policy="kv",reason="cache-hit"}`); n < 1 {
		t.Fatalf("no cache-hit decision counted (%v)", n)
	}
	if n := scrape(t, g.Addr(), `strata_gateway_cached_tokens_total{model="tiny",source="predicted"}`); n < float64(got.CachedTokens) {
		t.Fatalf("the gateway predicted %v cached tokens, the engine reported %d", n, got.CachedTokens)
	}
	t.Logf("TTFT: recompute %v, onboarding %d tokens from MinIO on node B %v", cold.TTFT.Round(time.Millisecond), got.CachedTokens, got.TTFT.Round(time.Millisecond))
}
