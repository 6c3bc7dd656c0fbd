package brain

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/hashicorp/raft"

	"github.com/strata-llm/strata/auth"
)

// Config is everything a brain replica needs. The zero value of a field
// means its default (see withDefaults).
type Config struct {
	// NodeID is this replica's Raft server id; stable across restarts.
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string

	// RaftAddr is where Raft listens; RaftAdvertise is what other brains
	// dial (defaults to the bound address, which must then not be a
	// wildcard; port 0 binds any free port, for tests).
	RaftAddr, RaftAdvertise string
	// GRPCAddr serves the agent, gateway and admin APIs; GRPCAdvertise is
	// what followers forward writes to and clients are told.
	GRPCAddr, GRPCAdvertise string
	// HTTPAddr serves /healthz, /status and /metrics; empty disables it.
	HTTPAddr string

	// Bootstrap makes this replica form a new one-member cluster when its
	// data dir holds no Raft state. Harmless on restart.
	Bootstrap bool
	// Join lists gRPC addresses of existing brains to ask for membership.
	// Harmless when already a member.
	Join []string

	ClusterToken auth.Token
	TLS          auth.TLSFiles

	// LeaseTTL is how long a node stays READY without a heartbeat.
	LeaseTTL time.Duration
	// ReconcileInterval bounds how long placement waits when nothing changes.
	ReconcileInterval time.Duration
	// WatchClusterInterval coalesces WatchCluster updates (load changes on
	// every heartbeat).
	WatchClusterInterval time.Duration
	// LeaderWait is how long a write on a follower waits for a leader.
	LeaderWait time.Duration
	// ApplyTimeout bounds one Raft apply.
	ApplyTimeout time.Duration

	// Raft timing; defaults are hashicorp/raft's (1s heartbeat and election
	// timeouts, 500ms leader lease). Tests shorten them.
	RaftHeartbeatTimeout, RaftElectionTimeout, RaftLeaderLeaseTimeout time.Duration
	// SnapshotThreshold is the number of log entries between snapshots.
	SnapshotThreshold uint64

	// WorkerPortBase is the first port placement gives workers on a node
	// (0: placement.PortBase, 20000).
	WorkerPortBase int

	// KVMaxBlocksPerModel caps the KV index per model (0: the index's
	// default, 4,000,000 blocks).
	KVMaxBlocksPerModel int

	// Planner, when set, runs on the leader every PlannerInterval and its
	// decisions are committed.
	Planner         Planner
	PlannerInterval time.Duration

	Logger *slog.Logger

	// RaftTransport replaces the TCP transport; tests use raft's in-memory
	// transport to cut links between replicas.
	RaftTransport raft.Transport
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (c Config) withDefaults() (Config, error) {
	var errs []error
	if !nodeIDPattern.MatchString(c.NodeID) {
		errs = append(errs, fmt.Errorf("node id %q: want 1-128 of [A-Za-z0-9._-], starting alphanumeric", c.NodeID))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, errors.New("raft address is required"))
	}
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("gRPC address is required"))
	}
	if len(c.ClusterToken) > maxTokenLen {
		errs = append(errs, fmt.Errorf("cluster token longer than %d bytes", maxTokenLen))
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.LeaseTTL, 15*time.Second)
	def(&c.ReconcileInterval, 5*time.Second)
	def(&c.WatchClusterInterval, 200*time.Millisecond)
	def(&c.LeaderWait, 5*time.Second)
	def(&c.ApplyTimeout, 10*time.Second)
	def(&c.RaftHeartbeatTimeout, time.Second)
	def(&c.RaftElectionTimeout, time.Second)
	def(&c.RaftLeaderLeaseTimeout, 500*time.Millisecond)
	def(&c.PlannerInterval, 30*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// advertised returns the address to tell others: the configured one, or
// the bound listener's, which must be dialable.
func advertised(configured string, bound net.Addr) (string, error) {
	addr := configured
	if addr == "" {
		addr = bound.String()
	}
	return addr, dialable(addr)
}

// dialable rejects addresses another process could not dial: a wildcard
// host (0.0.0.0, ::, empty) or port 0.
func dialable(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("%q is a wildcard: set an advertise address", addr)
	}
	if port == "0" {
		return fmt.Errorf("%q has port 0: set an advertise address", addr)
	}
	return nil
}
