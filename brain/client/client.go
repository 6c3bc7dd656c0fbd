// Package client is the gRPC client of a brain cluster, shared by
// `strata ctl`, agents and gateways.
//
// A caller knows every brain replica's address and should not care which
// one answers: any replica serves reads and forwards writes to the leader.
// So a Client holds one connection over all the replicas. It sticks to one
// (pick_first), so that a caller sees one replica's consistent view and the
// brain holds one connection per caller, and moves to the next one listed
// when that replica dies. It retries calls that fail with UNAVAILABLE, which
// is what gRPC reports while the connection moves and what the brain
// answers while there is no leader or the leader just changed. Retrying is
// safe because every brain write is idempotent or answers NotFound when
// repeated.
package client

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/strata-llm/strata/auth"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Client is a connection to a brain cluster. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	admin   stratav1.AdminServiceClient
	agent   stratav1.AgentServiceClient
	gateway stratav1.GatewayServiceClient
}

// schemeSeq makes each Client's resolver scheme unique, so that two clients
// in one process (a test cluster, `strata dev`) never share an address list.
var schemeSeq atomic.Uint64

// serviceConfig picks pick_first over the replicas and retries UNAVAILABLE
// on every brain method with exponential backoff: up to 5 attempts, about
// 0.1s, 0.2s, 0.4s and 0.8s apart (gRPC adds jitter), which outlasts a
// leader election with Raft's default timeouts.
var serviceConfig = fmt.Sprintf(`{
  "loadBalancingConfig": [{"pick_first": {}}],
  "methodConfig": [{
    "name": [{"service": %q}, {"service": %q}, {"service": %q}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`, stratav1.AdminService_ServiceDesc.ServiceName, stratav1.AgentService_ServiceDesc.ServiceName,
	stratav1.GatewayService_ServiceDesc.ServiceName)

// keepaliveParams detect a replica that vanished without closing its
// connections (a powered-off host), which would otherwise leave a watch
// stream waiting forever. The brain permits pings every 10s.
var keepaliveParams = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}

// New returns a client of the brain replicas at addrs (host:port of their
// gRPC APIs), presenting token on every call and using TLS when files name
// any. It tries the replicas in the order given. opts are appended to the
// client's own dial options. New does not connect: the first call does.
func New(addrs []string, token auth.Token, files auth.TLSFiles, opts ...grpc.DialOption) (*Client, error) {
	if err := validateAddrs(addrs); err != nil {
		return nil, fmt.Errorf("brain client: %w", err)
	}
	dial, err := auth.DialOptions(token, files)
	if err != nil {
		return nil, fmt.Errorf("brain client: %w", err)
	}
	r := manual.NewBuilderWithScheme(fmt.Sprintf("strata-brains-%d", schemeSeq.Add(1)))
	endpoints := make([]resolver.Endpoint, len(addrs))
	for i, a := range addrs {
		endpoints[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}}
	}
	r.InitialState(resolver.State{Endpoints: endpoints})
	dial = append(dial,
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithKeepaliveParams(keepaliveParams),
	)
	conn, err := grpc.NewClient(r.Scheme()+":///brains", append(dial, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("brain client: %w", err)
	}
	return &Client{
		conn:    conn,
		admin:   stratav1.NewAdminServiceClient(conn),
		agent:   stratav1.NewAgentServiceClient(conn),
		gateway: stratav1.NewGatewayServiceClient(conn),
	}, nil
}

// validateAddrs rejects what could never be dialed, so that a typo in a
// flag fails at once instead of as retried UNAVAILABLE calls.
func validateAddrs(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("no brain address")
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("brain address %q: %w", a, err)
		}
		if host == "" {
			return fmt.Errorf("brain address %q: missing host", a)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("brain address %q: port must be 1-65535", a)
		}
	}
	return nil
}

// Admin is the operators' API: deployments, nodes, Raft membership.
func (c *Client) Admin() stratav1.AdminServiceClient { return c.admin }

// Agent is the node agents' API: registration, heartbeats, assignments.
func (c *Client) Agent() stratav1.AgentServiceClient { return c.agent }

// Gateway is the gateways' API: the routable cluster view and KV scores.
func (c *Client) Gateway() stratav1.GatewayServiceClient { return c.gateway }

// Close closes the connection; calls in flight fail with Canceled.
func (c *Client) Close() error { return c.conn.Close() }
