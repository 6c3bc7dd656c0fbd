package agent

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/strata-llm/strata/agent/kvbm"
	"github.com/strata-llm/strata/auth"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tiers/s3"
)

// TestOpsToken is the ops token TestAgent configures.
const TestOpsToken auth.Token = "test-ops-token"

// TestAgent runs an agent for a test, against the brains at brains with
// the cluster token, until the returned stop is called or the test ends:
// node "node-a" with 4 fake GPUs, real `strata sim` engines (the binary
// testutil.StrataBinary builds), ops API on a loopback port, fast loops.
// cb may change any field (NodeID, DataDir — a fresh temp dir unless set —,
// KV). Stopping leaves the engines running, as an agent process that
// stops does; the test's end shuts them down.
func TestAgent(t testing.TB, brains []string, token auth.Token, cb func(*Config)) (*Agent, func()) {
	t.Helper()
	cfg := Config{
		NodeID: "node-a", Brains: brains, ClusterToken: token,
		HTTPAddr: "127.0.0.1:0", OpsToken: TestOpsToken, FakeGPUs: 4, EngineHost: "127.0.0.1",
		SimExecutable: testutil.StrataBinary(t), MetricsInterval: 50 * time.Millisecond,
		CanaryIdle: time.Hour, StopGrace: 5 * time.Second, RestartBackoff: 50 * time.Millisecond,
		Logger: testLogger(),
	}
	if cb != nil {
		cb(&cfg)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	stop := func() { cancel(); <-done }
	// Whatever happens in the test, no engine outlives it.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a.Shutdown(ctx)
		stop()
	})
	return a, stop
}

// testLogger logs to stderr when STRATA_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestKVTiers is a node's KV tiers for a test: 256 MiB of CPU tier and,
// with a MinIO server, the remote tier on its bucket "strata-kv" (created),
// written through. Agents given the same server share the remote tier.
func TestKVTiers(m *testutil.MinIO) kvbm.TierConfig {
	cfg := kvbm.TierConfig{CPUBytes: 256 << 20, WriteThrough: true}
	if m != nil {
		cfg.S3 = &s3.Config{
			Endpoint: m.Endpoint, Bucket: "strata-kv", Prefix: "test", CreateBucket: true,
			AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey,
		}
	}
	return cfg
}

// TestKVDeployment is a sim deployment (served model name = name) in
// which the KV tiers show in latency: real time (speedup 1), the prefill
// of a 70B-class model (ten times the 8B reference: 3,000 tokens take
// ~0.66 s), 64-token blocks (TestKVBlockSize) of 1 KiB of KV per token (64
// KiB: TestKVBlockBytes), a GPU pool of 63 blocks (4,032 tokens: two more
// 3,000-token prompts push a first one out, offloading it) and a
// host-to-GPU link of 0.25 GB/s (TestKVGBps: onboarding 3,000 tokens costs
// ~12 ms of transfer).
func TestKVDeployment(name string, replicas uint32) *stratav1.DeploymentSpec {
	return &stratav1.DeploymentSpec{
		Name: name, Model: "sim-model", Engine: "sim", BlockSize: TestKVBlockSize,
		EngineArgs: []string{
			"--speedup", "1", "--prefill-coefficients", "4.209989e-6,0.1518344,165.0142",
			"--num-gpu-blocks-override", "63", "--kv-bytes-per-token", "1024", "--kv-connector-gbps", "0.25",
		},
		Pools: []*stratav1.Pool{{Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, TensorParallelSize: 1,
			Replicas: &stratav1.Replicas{Min: replicas, Max: replicas, Initial: replicas}}},
	}
}

// TestKVDeployment's block size, block payload and host-to-GPU bandwidth.
const (
	TestKVBlockSize  = 64
	TestKVBlockBytes = TestKVBlockSize * 1024
	TestKVGBps       = 0.25
)
