package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strata-llm/strata/brain"
	"github.com/strata-llm/strata/kvhash"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tokenizer"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
	"github.com/strata-llm/strata/tokenizer/hf"
)

// routingBench is a gateway routing for a brain that holds, for each of 16
// workers, its own cached system prompt: what BenchmarkRoutingOverhead
// measures the gateway's own work against.
type routingBench struct {
	g       *Gateway
	tok     tokenizer.Tokenizer
	prompts []string   // per worker, its system prompt's text
	ids     [][]uint32 // and its token ids
}

// llamaDir is Llama 3.1's tokenizer from the test cache (make
// tokenizer-data), or "" when absent.
func llamaDir() string {
	dir := os.Getenv("STRATA_TOKENIZER_CACHE")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", ".cache", "tokenizers")
	}
	dir = filepath.Join(dir, "llama3_1")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		return ""
	}
	return dir
}

func newRoutingBench(b *testing.B, promptTokens int) *routingBench {
	s := brain.TestServer(b, func(c *brain.Config) { c.LeaseTTL = time.Hour })
	brain.WaitForLeader(b, s)
	conn := brain.TestConn(b, s)
	agents := stratav1.NewAgentServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	b.Cleanup(cancel)

	rb := &routingBench{tok: bytelevel.Tokenizer{}}
	dir := llamaDir()
	if dir != "" {
		t, err := hf.Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		rb.tok = t
	} else {
		b.Log("Llama 3.1's tokenizer is not in the cache (make tokenizer-data): text prompts use the byte-level tokenizer")
	}
	for n := range 2 {
		inv := &stratav1.Inventory{Hostname: fmt.Sprint("n", n)}
		for g := range 8 {
			inv.Gpus = append(inv.Gpus, &stratav1.GPU{Uuid: fmt.Sprintf("GPU-%d-%d", n, g), Index: uint32(g), MemoryBytes: 80 << 30})
		}
		if _, err := agents.Register(ctx, &stratav1.RegisterRequest{NodeId: fmt.Sprint("n", n), Address: "127.0.0.1:7070", Inventory: inv}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := brain.TestAdminClient(b, s).ApplyDeployment(ctx, &stratav1.ApplyDeploymentRequest{Spec: &stratav1.DeploymentSpec{
		Name: "m", Model: "m", Engine: "vllm", Tokenizer: dir,
		Pools: []*stratav1.Pool{{Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, TensorParallelSize: 1, Replicas: &stratav1.Replicas{Min: 1, Max: 16, Initial: 16}}},
	}}); err != nil {
		b.Fatal(err)
	}
	var workers []*stratav1.Worker
	testutil.WaitForResult(b, 20*time.Second, func() error {
		res, err := brain.TestAdminClient(b, s).ListWorkers(ctx, &stratav1.ListWorkersRequest{Deployment: "m"})
		if err != nil || len(res.GetWorkers()) != 16 {
			return fmt.Errorf("%d workers placed: %v", len(res.GetWorkers()), err)
		}
		workers = res.GetWorkers()
		return nil
	})
	// The agents report them ready, and their cached system prompts.
	byNode := map[string][]*stratav1.WorkerStatus{}
	for _, w := range workers {
		byNode[w.GetNodeId()] = append(byNode[w.GetNodeId()], &stratav1.WorkerStatus{WorkerId: w.GetId(), State: stratav1.WorkerState_WORKER_STATE_READY})
	}
	for node, st := range byNode {
		if _, err := agents.Heartbeat(ctx, &stratav1.HeartbeatRequest{NodeId: node, Workers: st}); err != nil {
			b.Fatal(err)
		}
	}
	words := strings.Fields("the quick brown fox jumps over a lazy dog while routing requests to cached prefixes of long prompts")
	streams := map[string]stratav1.AgentService_PublishKVEventsClient{}
	for i, w := range workers {
		var sb strings.Builder
		fmt.Fprintf(&sb, "System prompt %d. ", i)
		for j := 0; sb.Len() < 8*promptTokens; j++ {
			sb.WriteString(words[(i+j)%len(words)])
			sb.WriteByte(' ')
		}
		ids := rb.tok.Encode(sb.String(), true)[:promptTokens]
		text, err := rb.tok.Decode(ids, true)
		if err != nil {
			b.Fatal(err)
		}
		rb.prompts, rb.ids = append(rb.prompts, text), append(rb.ids, ids)
		// The chat prompt as the gateway renders it: requests with another
		// question share its blocks up to the question.
		chat, err := rb.tok.ApplyChatTemplate(tokenizer.Chat([]tokenizer.Message{{Role: "system", Content: text}, {Role: "user", Content: "Question number 0?"}}, true))
		if err != nil {
			b.Fatal(err)
		}
		hashes := map[string][]uint64{"ids": kvhash.Prompt(ids, 16, ""), "text": kvhash.Prompt(rb.tok.Encode(chat, false), 16, "")}
		st := streams[w.GetNodeId()]
		if st == nil {
			var err error
			if st, err = agents.PublishKVEvents(ctx); err != nil {
				b.Fatal(err)
			}
			streams[w.GetNodeId()] = st
		}
		var events []*stratav1.KVEvent
		for _, hs := range hashes {
			events = append(events, &stratav1.KVEvent{Event: &stratav1.KVEvent_Stored{Stored: &stratav1.BlockStored{SeqHashes: hs, Medium: stratav1.Medium_MEDIUM_GPU, BlockSize: 16}}})
		}
		if err := st.Send(&stratav1.PublishKVEventsRequest{NodeId: w.GetNodeId(), Batch: &stratav1.KVEventBatch{WorkerId: w.GetId(), Seq: 1, Snapshot: true, Events: events}}); err != nil {
			b.Fatal(err)
		}
	}
	g, err := New(Config{HTTPAddr: "127.0.0.1:0", Brains: []string{s.Member().GetGrpcAddress()}, ClusterToken: brain.TestClusterToken,
		LoadTokenizer: func(dir string) (tokenizer.Tokenizer, error) { return hf.Load(dir) }})
	if err != nil {
		b.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(context.Background())
	go func() { _ = g.Run(gctx) }()
	b.Cleanup(func() { gcancel(); g.Shutdown() })
	rb.g = g
	testutil.WaitForResult(b, 20*time.Second, func() error {
		if n := g.Routable("m"); n != 16 {
			return fmt.Errorf("%d routable", n)
		}
		// Every worker's prompt scores on it: the index is fed.
		for i := range workers {
			x := rb.exchange(b, rb.body("ids", i, 0))
			w, d, t, err := g.pick(ctx, x, stratav1.WorkerRole_WORKER_ROLE_DECODE, x.policy)
			if err != nil {
				return err
			}
			t.end()
			if d.Overlap.GPU < uint32(promptTokens/16) {
				return fmt.Errorf("worker %d's prompt scored %+v on %s", i, d.Overlap, w.id)
			}
		}
		return nil
	})
	return rb
}

// body is request n on worker i's prompt: its token ids (completions) or
// its text as a chat system message with a user turn.
func (rb *routingBench) body(kind string, i, n int) []byte {
	var v any
	switch kind {
	case "ids":
		v = map[string]any{"model": "m", "prompt": append(append([]uint32{}, rb.ids[i]...), uint32(n%1000)), "max_tokens": 16}
	default:
		v = map[string]any{"model": "m", "max_tokens": 16, "messages": []any{
			map[string]any{"role": "system", "content": rb.prompts[i]},
			map[string]any{"role": "user", "content": fmt.Sprintf("Question number %d?", n)},
		}}
	}
	b, _ := json.Marshal(v)
	return b
}

func (rb *routingBench) exchange(b *testing.B, body []byte) *exchange {
	ep := completionsEndpoint
	if !bytes.Contains(body, []byte(`"prompt"`)) {
		ep = chatEndpoint
	}
	r, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	x := &exchange{g: rb.g, start: time.Now(), tried: map[string]bool{}}
	if err := rb.g.prepare(r, ep, x); err != nil {
		b.Fatal(err)
	}
	return x
}

// BenchmarkRoutingOverhead is the gateway's own work per request — decode
// the body, render the chat template, tokenize, hash the blocks, ask the
// brain (a real replica, over the gateway's ScoreStream on loopback) and
// pick a worker — for 1k- and 8k-token prompts at a paced 500 requests/s,
// without the engine. Prompts come as token ids (what benchmarks send for
// exact lengths: no tokenizing) or as chat text tokenized with Llama 3.1's
// tokenizer (when cached; byte-level otherwise).
//
// It runs with the collector target `strata gateway` runs with
// (DefaultGCPercent), unless GOGC is set: GOGC=100 measures Go's default.
func BenchmarkRoutingOverhead(b *testing.B) {
	if _, set := os.LookupEnv("GOGC"); !set {
		defer debug.SetGCPercent(debug.SetGCPercent(DefaultGCPercent))
	}
	for _, tokens := range []int{1024, 8192} {
		b.Run(fmt.Sprintf("tokens=%d", tokens), func(b *testing.B) {
			rb := newRoutingBench(b, tokens)
			for _, kind := range []string{"ids", "text"} {
				bodies := make([][]byte, 256)
				for n := range bodies {
					bodies[n] = rb.body(kind, n%len(rb.ids), n)
				}
				b.Run(kind, func(b *testing.B) {
					ctx := context.Background()
					rb.g.metrics.stages.Reset()
					var hits, total int
					testutil.PacedLatency(b, 500, 8, func(i uint64) error {
						x := rb.exchange(b, bodies[i%uint64(len(bodies))])
						_, d, t, err := rb.g.pick(ctx, x, stratav1.WorkerRole_WORKER_ROLE_DECODE, x.policy)
						if err != nil {
							return err
						}
						t.end()
						if d.Reason == "cache-hit" {
							hits++
						}
						total++
						return nil
					})
					b.ReportMetric(float64(hits)/float64(max(total, 1)), "cache-hit-fraction")
					reportStageMeans(b, rb.g.metrics.stages)
				})
			}
		})
	}
}

// reportStageMeans reports the mean time of each routing stage the
// gateway's overhead histogram saw (its buckets are too coarse for
// percentiles).
func reportStageMeans(b *testing.B, stages *prometheus.HistogramVec) {
	for _, name := range []string{"template", "tokenize", "hash", "score", "select"} {
		var m dto.Metric
		if err := stages.WithLabelValues(name).(prometheus.Histogram).Write(&m); err != nil {
			b.Fatal(err)
		}
		if n := m.GetHistogram().GetSampleCount(); n > 0 {
			b.ReportMetric(m.GetHistogram().GetSampleSum()/float64(n)*1e6, name+"-mean-µs")
		}
	}
}
