package client_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain"
	"github.com/strata-llm/strata/brain/client"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testSpec(name string) *stratav1.DeploymentSpec {
	return &stratav1.DeploymentSpec{
		Name: name, Model: "test/model", Engine: "sim",
		Pools: []*stratav1.Pool{{
			Role: stratav1.WorkerRole_WORKER_ROLE_BOTH, TensorParallelSize: 1,
			Replicas: &stratav1.Replicas{Min: 1, Max: 2, Initial: 1},
		}},
	}
}

// testCluster starts three brains, the first bootstrapped and the others
// joined to it, and waits until they agree on a leader.
func testCluster(t *testing.T) []*brain.Server {
	first := brain.TestServer(t, nil)
	brain.WaitForLeader(t, first)
	joiner := func(c *brain.Config) { c.Bootstrap = false }
	others := []*brain.Server{brain.TestServer(t, joiner), brain.TestServer(t, joiner)}
	brain.TestJoin(t, first, others...)
	all := append([]*brain.Server{first}, others...)
	brain.WaitForLeader(t, all...)
	return all
}

func newClient(t *testing.T, addrs []string, token auth.Token) *client.Client {
	t.Helper()
	c, err := client.New(addrs, token, auth.TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func deploymentNames(t *testing.T, c *client.Client) ([]string, error) {
	res, err := c.Admin().ListDeployments(testCtx(t), &stratav1.ListDeploymentsRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range res.GetDeployments() {
		names = append(names, d.GetSpec().GetName())
	}
	return names, nil
}

// TestFailover shuts down the replica a client is using, a follower or the
// leader, and checks that the very next write succeeds on another replica:
// the client must move on and retry without the caller noticing.
func TestFailover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leader bool
	}{
		{"follower", false},
		{"leader", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers := testCluster(t)
			leader := brain.WaitForLeader(t, servers...)
			i := slices.IndexFunc(servers, func(s *brain.Server) bool { return (s == leader) == tc.leader })
			target := servers[i]
			// The client tries addresses in order: list the target first.
			addrs := []string{target.Member().GetGrpcAddress()}
			for _, s := range servers {
				if s != target {
					addrs = append(addrs, s.Member().GetGrpcAddress())
				}
			}
			c := newClient(t, addrs, brain.TestClusterToken)

			var p peer.Peer
			if _, err := c.Admin().ApplyDeployment(testCtx(t), &stratav1.ApplyDeploymentRequest{Spec: testSpec("before")}, grpc.Peer(&p)); err != nil {
				t.Fatal(err)
			}
			if got := p.Addr.String(); got != addrs[0] {
				t.Fatalf("first call answered by %s, want the first address %s", got, addrs[0])
			}

			if err := target.Shutdown(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Admin().ApplyDeployment(testCtx(t), &stratav1.ApplyDeploymentRequest{Spec: testSpec("after")}, grpc.Peer(&p)); err != nil {
				t.Fatalf("write after shutting down the %s: %v", tc.name, err)
			}
			if got := p.Addr.String(); got == addrs[0] {
				t.Fatalf("write answered by the stopped replica %s", got)
			}
			// Reads are served by the replica the client moved to, which
			// may not have applied the write yet.
			testutil.WaitForResult(t, 5*time.Second, func() error {
				names, err := deploymentNames(t, c)
				if err != nil {
					t.Fatalf("read after shutting down the %s: %v", tc.name, err)
				}
				if !slices.Equal(names, []string{"after", "before"}) {
					return fmt.Errorf("deployments %v, want [after before]", names)
				}
				return nil
			})
		})
	}
}

func TestWrongToken(t *testing.T) {
	s := brain.TestServer(t, nil)
	brain.WaitForLeader(t, s)
	c := newClient(t, []string{s.Member().GetGrpcAddress()}, "wrong")
	_, err := c.Admin().ListNodes(testCtx(t), &stratav1.ListNodesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("err = %v, want Unauthenticated", err)
	}
}

func TestAddresses(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		ok    bool
	}{
		{nil, false},
		{[]string{}, false},
		{[]string{""}, false},
		{[]string{"brain-1"}, false},
		{[]string{"brain-1:"}, false},
		{[]string{":7001"}, false},
		{[]string{"brain-1:grpc"}, false},
		{[]string{"brain-1:0"}, false},
		{[]string{"brain-1:65536"}, false},
		{[]string{"127.0.0.1:7001", "brain-2"}, false},
		{[]string{"127.0.0.1:7001"}, true},
		{[]string{"brain-1.example:7001", "[::1]:7001", "10.0.0.3:7001"}, true},
	} {
		c, err := client.New(tc.addrs, brain.TestClusterToken, auth.TLSFiles{})
		if (err == nil) != tc.ok {
			t.Errorf("New(%q): err = %v, want ok %v", tc.addrs, err, tc.ok)
		}
		if c != nil {
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	}
}

func TestBadTLSFiles(t *testing.T) {
	_, err := client.New([]string{"127.0.0.1:7001"}, brain.TestClusterToken, auth.TLSFiles{Cert: "only-a-cert.pem"})
	if err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}
