package brain

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-llm/strata/brain/fsm"
	"github.com/strata-llm/strata/brain/kvindex"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// maxScoreHashes bounds one Score query: 8,192 blocks of 16 tokens is a
// 128k-token prompt.
const maxScoreHashes = 8192

func newKVIndex(reg prometheus.Registerer, opts kvindex.Options) *kvindex.Index {
	x := kvindex.New(opts, kvindex.NewMetrics(reg))
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strata_kvindex_entries", Help: "(block, worker, tier) entries in the KV index, remote blocks counted once."},
			func() float64 { e, _ := x.Size(); return float64(e) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strata_kvindex_blocks", Help: "Distinct blocks in the KV index."},
			func() float64 { _, b := x.Size(); return float64(b) }),
	)
	return x
}

// syncKVWorkers keeps the index's workers equal to the placed workers on
// nodes that are not down, with their served model. A worker that leaves,
// or whose node goes down, loses its blocks at once: the gateway must not
// credit a cache nobody can serve.
func (s *Server) syncKVWorkers(ctx context.Context) {
	var last uint64
	for {
		changed, _ := s.fsm.Changed()
		v := s.fsm.View()
		if v.PlacementIndex != last || last == 0 {
			last = v.PlacementIndex
			want := map[string]string{}
			for id, w := range v.Workers {
				n, d := v.Nodes[w.GetNodeId()], v.Deployments[w.GetDeployment()]
				if n == nil || d == nil || n.GetState() == stratav1.NodeState_NODE_STATE_DOWN {
					continue
				}
				want[id] = d.GetSpec().GetServedModelName()
			}
			s.kv.SyncWorkers(want)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// PublishKVEvents feeds one agent's event stream into this replica's index.
// It answers with a resync request when it needs a worker's snapshot: after
// a gap, or for a worker it did not know yet when its first batch came (a
// follower may apply the placement after the agent saw it), as soon as it
// learns of it.
func (a agentAPI) PublishKVEvents(stream grpc.BidiStreamingServer[stratav1.PublishKVEventsRequest, stratav1.PublishKVEventsResponse]) error {
	reqs := make(chan *stratav1.PublishKVEventsRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- req:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	pending := map[string]bool{} // unknown workers to ask for a snapshot once known
	// Workers this stream carries, and when each was last asked for a
	// snapshot: a request, or the snapshot answering it, can be lost (a
	// reconnect, a batch that raced the brain learning of the worker), so a
	// worker still waiting is asked again, at most once a second.
	asked := map[string]time.Time{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var resync []string
		select {
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-stream.Context().Done():
			return nil
		case <-a.s.ctx.Done():
			return status.Error(codes.Unavailable, "brain shutting down")
		case <-tick.C:
			for id := range pending {
				if a.s.kv.Known(id) {
					resync = append(resync, id)
					delete(pending, id)
				}
			}
			for id, at := range asked {
				if time.Since(at) > time.Second && a.s.kv.AwaitingSnapshot(id) && !slices.Contains(resync, id) {
					resync = append(resync, id)
				}
			}
		case req := <-reqs:
			b := req.GetBatch()
			if _, ok := asked[b.GetWorkerId()]; !ok {
				asked[b.GetWorkerId()] = time.Time{}
			}
			// An agent speaks only for the workers placed on its node.
			var owner string
			a.s.fsm.Read(func(v *fsm.View) { owner = v.Workers[b.GetWorkerId()].GetNodeId() })
			if owner != "" && owner != req.GetNodeId() {
				a.s.log.Warn("KV events for a worker of another node dropped", "worker", b.GetWorkerId(), "from", req.GetNodeId(), "owner", owner)
				continue
			}
			need, err := a.s.kv.Apply(b)
			switch {
			case errors.Is(err, kvindex.ErrUnknownWorker):
				pending[b.GetWorkerId()] = true
			case err != nil:
				a.s.log.Debug("kv batch partly rejected", "worker", b.GetWorkerId(), "error", err)
			}
			if need {
				resync = append(resync, b.GetWorkerId())
			}
		}
		if len(resync) > 0 {
			now := time.Now()
			for _, id := range resync {
				asked[id] = now
			}
			slices.Sort(resync)
			a.s.log.Debug("asking an agent for KV snapshots", "workers", resync)
			if err := stream.Send(&stratav1.PublishKVEventsResponse{ResyncWorkerIds: resync}); err != nil {
				return err
			}
		}
	}
}

// Score answers from this replica's index.
func (g gatewayAPI) Score(_ context.Context, req *stratav1.ScoreRequest) (*stratav1.ScoreResponse, error) {
	if req.GetModel() == "" {
		return nil, invalid("model is required")
	}
	if n := len(req.GetSeqHashes()); n > maxScoreHashes {
		return nil, invalid("%d hashes: at most %d", n, maxScoreHashes)
	}
	return &stratav1.ScoreResponse{Scores: g.s.kv.Score(req.GetModel(), req.GetSeqHashes())}, nil
}

// KVIndexStats answers from this replica's index.
func (a adminAPI) KVIndexStats(context.Context, *stratav1.KVIndexStatsRequest) (*stratav1.KVIndexStatsResponse, error) {
	workers, remote := a.s.kv.WorkerStats()
	out := &stratav1.KVIndexStatsResponse{BrainId: a.s.cfg.NodeID}
	slices.SortFunc(workers, func(x, y kvindex.Stats) int { return strings.Compare(x.WorkerID, y.WorkerID) })
	for _, w := range workers {
		out.Workers = append(out.Workers, &stratav1.KVWorkerStats{
			WorkerId: w.WorkerID, Model: w.Model, GpuBlocks: uint32(w.GPU), CpuBlocks: uint32(w.CPU), DiskBlocks: uint32(w.Disk),
			Seq: w.Seq, AwaitingSnapshot: w.AwaitingResync,
		})
	}
	for _, m := range slices.Sorted(maps.Keys(remote)) {
		out.Models = append(out.Models, &stratav1.KVModelStats{Model: m, RemoteBlocks: uint32(remote[m])})
	}
	return out, nil
}
