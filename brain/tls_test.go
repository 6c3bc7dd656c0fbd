package brain

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-llm/strata/auth"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

// TestMutualTLSCluster runs three brains with mutual TLS on gRPC and on the
// Raft transport: they form a cluster and replicate; a client without a
// certificate, or speaking plaintext, is refused even with the right token.
func TestMutualTLSCluster(t *testing.T) {
	pki := testutil.TestPKI(t, "brain", "client")
	files := func(name string) auth.TLSFiles {
		f := pki[name]
		return auth.TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA}
	}
	servers := testCluster(t, 3, func(c *Config) { c.TLS = files("brain") })
	deploy(t, follower(servers), "over-tls", 1)
	waitReplicated(t, servers, "over-tls")

	tests := []struct {
		name  string
		files auth.TLSFiles
		want  codes.Code
	}{
		{"client certificate", files("client"), codes.OK},
		{"no client certificate", auth.TLSFiles{CA: pki["client"].CA}, codes.Unavailable},
		{"plaintext", auth.TLSFiles{}, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := auth.DialOptions(TestClusterToken, tt.files)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient(servers[0].Member().GetGrpcAddress(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			_, err = stratav1.NewAdminServiceClient(conn).ListDeployments(testCtx(t), &stratav1.ListDeploymentsRequest{})
			if status.Code(err) != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
