package brain

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-llm/strata/auth"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testSpec(name string, replicas uint32) *stratav1.DeploymentSpec {
	return &stratav1.DeploymentSpec{
		Name: name, Model: "test/model", Engine: "sim",
		Pools: []*stratav1.Pool{{
			Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, TensorParallelSize: 1,
			Replicas: &stratav1.Replicas{Min: 1, Max: 8, Initial: replicas},
		}},
	}
}

// fakeNode registers a node with n GPUs in a full NVLink mesh.
func fakeNode(t testing.TB, s *Server, id string, n int) {
	t.Helper()
	inv := &stratav1.Inventory{Hostname: id, CpuCores: 32, MemoryBytes: 256 << 30}
	for i := range n {
		inv.Gpus = append(inv.Gpus, &stratav1.GPU{Uuid: fmt.Sprintf("GPU-%s-%d", id, i), Index: uint32(i), Model: "sim", MemoryBytes: 80 << 30})
	}
	for _, g := range inv.Gpus {
		for _, p := range inv.Gpus {
			if p != g {
				g.NvlinkPeers = append(g.NvlinkPeers, p.Uuid)
			}
		}
	}
	_, err := stratav1.NewAgentServiceClient(TestConn(t, s)).Register(testCtx(t), &stratav1.RegisterRequest{NodeId: id, Address: "127.0.0.1:7070", Inventory: inv})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

func listWorkers(t *testing.T, s *Server, deployment string) []*stratav1.Worker {
	t.Helper()
	res, err := TestAdminClient(t, s).ListWorkers(testCtx(t), &stratav1.ListWorkersRequest{Deployment: deployment})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetWorkers()
}

func TestSingleServerPlacesDeployment(t *testing.T) {
	s := TestServer(t, nil)
	WaitForLeader(t, s)
	fakeNode(t, s, "node-a", 4)
	fakeNode(t, s, "node-b", 4)

	res, err := TestAdminClient(t, s).ApplyDeployment(testCtx(t), &stratav1.ApplyDeploymentRequest{Spec: testSpec("llama", 3)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Deployment.Generation != 1 || res.Deployment.Spec.ServedModelName != "llama" || res.Deployment.Spec.BlockSize != 16 {
		t.Fatalf("apply = %v (defaults must be filled in)", res)
	}
	testutil.WaitForResult(t, 5*time.Second, func() error {
		if n := len(listWorkers(t, s, "llama")); n != 3 {
			return fmt.Errorf("%d workers placed, want 3", n)
		}
		return nil
	})
	perNode := map[string]int{}
	for _, w := range listWorkers(t, s, "llama") {
		perNode[w.NodeId]++
	}
	if perNode["node-a"] == 0 || perNode["node-b"] == 0 {
		t.Fatalf("replicas not spread: %v", perNode)
	}

	// Invalid specs are refused with the reason.
	_, err = TestAdminClient(t, s).ApplyDeployment(testCtx(t), &stratav1.ApplyDeploymentRequest{Spec: &stratav1.DeploymentSpec{Name: "Bad Name", Engine: "sim", Model: "m"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("invalid spec: %v", err)
	}
}

func TestWrongTokenRejected(t *testing.T) {
	s := TestServer(t, nil)
	WaitForLeader(t, s)
	for _, tok := range []auth.Token{"", "wrong", TestClusterToken + "x"} {
		opts, _ := auth.DialOptions(tok, auth.TLSFiles{})
		conn, err := grpc.NewClient(s.Member().GetGrpcAddress(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = stratav1.NewAdminServiceClient(conn).ListNodes(testCtx(t), &stratav1.ListNodesRequest{})
		_ = conn.Close()
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("token %q: err = %v, want Unauthenticated", tok, err)
		}
	}
}
