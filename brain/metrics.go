package brain

import (
	"strconv"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/strata-llm/strata/brain/fsm"
	"github.com/strata-llm/strata/brain/placement"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

type metrics struct {
	applyLatency     prometheus.Histogram
	forwarded        *prometheus.CounterVec
	heartbeats       prometheus.Counter
	heartbeatBatch   prometheus.Histogram
	plans            prometheus.Counter
	placementSeconds prometheus.Histogram
	leaderChanges    prometheus.Counter
	unplaced         *prometheus.GaugeVec
}

func newMetrics(s *Server, reg prometheus.Registerer) *metrics {
	m := &metrics{
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strata_brain_raft_apply_seconds", Help: "Time from proposing a command on the leader to its commit and apply.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_brain_forwarded_writes_total", Help: "Writes this replica forwarded to the leader, by method.",
		}, []string{"method"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_brain_heartbeats_committed_total", Help: "Node heartbeats committed to the Raft log (on the leader).",
		}),
		heartbeatBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strata_brain_heartbeat_batch_size", Help: "Heartbeats per committed HeartbeatBatch command.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		plans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_brain_placement_plans_total", Help: "Placement plans committed by this replica as leader.",
		}),
		placementSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strata_brain_placement_seconds", Help: "Time to compute one placement plan.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_brain_leadership_changes_total", Help: "Times this replica gained or lost leadership.",
		}),
		unplaced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strata_brain_unplaced_workers", Help: "Workers a pool wants but placement could not fit, as of the last plan.",
		}, []string{"deployment", "role"}),
	}
	reg.MustRegister(m.applyLatency, m.forwarded, m.heartbeats, m.heartbeatBatch, m.plans, m.placementSeconds, m.leaderChanges, m.unplaced,
		stateCollector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) recordShortfalls(short []placement.Shortfall) {
	m.unplaced.Reset()
	for _, sf := range short {
		m.unplaced.WithLabelValues(sf.Deployment, fsm.RoleName(sf.Role)).Set(float64(sf.Want - sf.Have))
	}
}

// stateCollector reads Raft and the tables at scrape time, so the gauges
// are never stale and cost nothing between scrapes.
type stateCollector struct{ s *Server }

var (
	descRaftState = prometheus.NewDesc("strata_brain_raft_state", "1 for this replica's current Raft state.", []string{"state"}, nil)
	descTerm      = prometheus.NewDesc("strata_brain_raft_term", "Current Raft term.", nil, nil)
	descCommit    = prometheus.NewDesc("strata_brain_raft_commit_index", "Raft commit index.", nil, nil)
	descApplied   = prometheus.NewDesc("strata_brain_raft_applied_index", "Raft applied index.", nil, nil)
	descPeers     = prometheus.NewDesc("strata_brain_raft_peers", "Voters in the Raft configuration.", nil, nil)
	descNodes     = prometheus.NewDesc("strata_brain_nodes", "Nodes by state.", []string{"state"}, nil)
	descWorkers   = prometheus.NewDesc("strata_brain_workers", "Workers by state.", []string{"state"}, nil)
	descDeploys   = prometheus.NewDesc("strata_brain_deployments", "Deployments.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descTerm, descCommit, descApplied, descPeers, descNodes, descWorkers, descDeploys} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.s.raft
	cur := r.State()
	for _, st := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, b2f(st == cur), st.String())
	}
	stats := r.Stats()
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(parseUint(stats["term"])))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(r.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(parseUint(stats["num_peers"])+1))

	nodes := map[stratav1.NodeState]int{}
	workers := map[stratav1.WorkerState]int{}
	var deployments int
	c.s.fsm.Read(func(v *fsm.View) {
		for _, n := range v.Nodes {
			nodes[n.GetState()]++
		}
		for _, w := range v.Workers {
			workers[w.GetState()]++
		}
		deployments = len(v.Deployments)
	})
	for st := range stratav1.NodeState_name {
		if st != 0 {
			ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(nodes[stratav1.NodeState(st)]), stateLabel(stratav1.NodeState(st).String(), "NODE_STATE_"))
		}
	}
	for st := range stratav1.WorkerState_name {
		if st != 0 {
			ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(workers[stratav1.WorkerState(st)]), stateLabel(stratav1.WorkerState(st).String(), "WORKER_STATE_"))
		}
	}
	ch <- prometheus.MustNewConstMetric(descDeploys, prometheus.GaugeValue, float64(deployments))
}

func stateLabel(name, prefix string) string {
	b := []byte(name[len(prefix):])
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}
