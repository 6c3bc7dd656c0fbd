package brain

import (
	"context"
	"slices"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// maxHeartbeatBatch bounds one HeartbeatBatchCommand (about 100 KiB with a
// few workers per node).
const maxHeartbeatBatch = 1024

// heartbeatBatcher group-commits heartbeats on the leader: while one batch
// is in Raft, the heartbeats that arrive queue up and go in the next one
// together. A lone heartbeat waits for nobody, and a thousand nodes cost a
// handful of log entries per round instead of a thousand.
type heartbeatBatcher struct {
	s     *Server
	queue chan *pendingHeartbeat
}

type pendingHeartbeat struct {
	hb   *stratav1.NodeHeartbeat
	done chan heartbeatResult
}

type heartbeatResult struct {
	unknown bool
	err     error
}

func newHeartbeatBatcher(s *Server) *heartbeatBatcher {
	return &heartbeatBatcher{s: s, queue: make(chan *pendingHeartbeat, 4*maxHeartbeatBatch)}
}

// submit queues a heartbeat and waits for its batch to commit. It reports
// whether the node is unknown and must register again.
func (b *heartbeatBatcher) submit(ctx context.Context, hb *stratav1.NodeHeartbeat) (bool, error) {
	p := &pendingHeartbeat{hb: hb, done: make(chan heartbeatResult, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case r := <-p.done:
		return r.unknown, r.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (b *heartbeatBatcher) run(ctx context.Context) {
	for {
		var batch []*pendingHeartbeat
		select {
		case <-ctx.Done():
			return
		case p := <-b.queue:
			batch = append(batch, p)
		}
	fill:
		for len(batch) < maxHeartbeatBatch {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		b.commit(ctx, batch)
	}
}

func (b *heartbeatBatcher) commit(ctx context.Context, batch []*pendingHeartbeat) {
	// A node that sent twice while the last batch committed needs only its
	// latest report in the log.
	cmd := &stratav1.HeartbeatBatchCommand{UnixNanos: now()}
	slot := map[string]int{}
	for _, p := range batch {
		if i, ok := slot[p.hb.GetNodeId()]; ok {
			cmd.Heartbeats[i] = p.hb
			continue
		}
		slot[p.hb.GetNodeId()] = len(cmd.Heartbeats)
		cmd.Heartbeats = append(cmd.Heartbeats, p.hb)
	}
	res, err := b.s.apply(ctx, cmd)
	unknown, _ := res.([]string)
	if err == nil {
		b.s.metrics.heartbeats.Add(float64(len(cmd.Heartbeats)))
		b.s.metrics.heartbeatBatch.Observe(float64(len(cmd.Heartbeats)))
	}
	for _, p := range batch {
		p.done <- heartbeatResult{unknown: slices.Contains(unknown, p.hb.GetNodeId()), err: err}
	}
}
