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

// checkScore validates a Score query.
func checkScore(req *stratav1.ScoreRequest) error {
	if req.GetModel() == "" {
		return invalid("model is required")
	}
	if n := len(req.GetSeqHashes()); n > maxScoreHashes {
		return invalid("%d hashes: at most %d", n, maxScoreHashes)
	}
	return nil
}

// Score answers from this replica's index.
func (g gatewayAPI) Score(_ context.Context, req *stratav1.ScoreRequest) (*stratav1.ScoreResponse, error) {
	if err := checkScore(req); err != nil {
		return nil, err
	}
	return &stratav1.ScoreResponse{Scores: g.s.kv.Score(req.GetModel(), req.GetSeqHashes())}, nil
}

// maxStreamWorkers bounds the worker numbering one ScoreStream remembers:
// when an answer could take it past the bound (workers churned for a long
// time), the numbering starts over with that answer.
const maxStreamWorkers = 1 << 16

// ScoreStream answers queries one after the other as they arrive, in the
// stream's compact form: workers by number, grouped by equal counts. It
// reuses one request, one answer and its buffers for the stream's life (the
// answer is marshalled by Send before the next query overwrites it), so a
// query costs no allocation here beyond gRPC's own.
func (g gatewayAPI) ScoreStream(stream grpc.BidiStreamingServer[stratav1.ScoreStreamRequest, stratav1.ScoreStreamResponse]) error {
	var (
		req     stratav1.ScoreStreamRequest
		res     stratav1.ScoreStreamResponse
		matches []kvindex.Match
		enc     = scoreEncoder{limit: maxStreamWorkers}
	)
	for {
		if err := stream.RecvMsg(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		q := req.GetQuery()
		res.Id, res.Error = req.GetId(), ""
		if err := checkScore(q); err != nil {
			res.Error = status.Convert(err).Message()
			enc.encode(&res, nil)
		} else {
			matches = g.s.kv.ScoreInto(matches[:0], q.GetModel(), q.GetSeqHashes())
			enc.encode(&res, matches)
		}
		if err := stream.Send(&res); err != nil {
			return err
		}
	}
}

// scoreEncoder writes matches into a ScoreStreamResponse, numbering the
// stream's workers and grouping equal counts. Its buffers live as long as
// the stream.
type scoreEncoder struct {
	limit  int // workers numbered before the numbering starts over
	nums   map[string]uint32
	groups []*stratav1.ScoreGroup // allocated once each, reused
	byKey  map[[4]uint32]int
}

func (e *scoreEncoder) encode(res *stratav1.ScoreStreamResponse, matches []kvindex.Match) {
	if e.nums == nil {
		e.nums, e.byKey = map[string]uint32{}, map[[4]uint32]int{}
	}
	res.NewWorkers, res.ResetWorkers = res.NewWorkers[:0], false
	if len(e.nums)+len(matches) > e.limit {
		clear(e.nums)
		res.ResetWorkers = true
	}
	clear(e.byKey)
	used := 0
	for _, m := range matches {
		num, ok := e.nums[m.WorkerID]
		if !ok {
			num = uint32(len(e.nums))
			e.nums[m.WorkerID] = num
			res.NewWorkers = append(res.NewWorkers, m.WorkerID)
		}
		key := [4]uint32{m.GPU, m.CPU, m.Disk, m.Remote}
		gi, ok := e.byKey[key]
		if !ok {
			gi = used
			used++
			e.byKey[key] = gi
			if gi == len(e.groups) {
				e.groups = append(e.groups, &stratav1.ScoreGroup{})
			}
			g := e.groups[gi]
			g.Gpu, g.Cpu, g.Disk, g.Remote, g.Workers = m.GPU, m.CPU, m.Disk, m.Remote, g.Workers[:0]
		}
		e.groups[gi].Workers = append(e.groups[gi].Workers, num)
	}
	res.Groups = e.groups[:used]
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
