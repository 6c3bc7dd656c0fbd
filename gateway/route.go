package gateway

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/strata-llm/strata/gateway/routing"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// pool is the role of the workers a step of a request goes to.
func pool(m *model, role stratav1.WorkerRole) []*worker {
	if m.info.GetMode() != stratav1.DeploymentMode_DEPLOYMENT_MODE_DISAGGREGATED {
		return m.workers
	}
	var out []*worker
	for _, w := range m.workers {
		if w.role == role {
			out = append(out, w)
		}
	}
	return out
}

// busy says whether a worker should get new requests only when every
// other is busy too.
func (g *Gateway) busy(w *worker, own int) bool {
	if own >= g.cfg.MaxInflight {
		return true
	}
	l := w.load.Load()
	return l != nil && (int(l.GetWaitingRequests()) >= g.cfg.BusyWaiting || l.GetKvUsage() >= g.cfg.BusyKVUsage)
}

// pick chooses a worker of role for the exchange with its policy, among the
// model's routable workers that have not failed it, skipping busy ones,
// and counts the request on it (the caller ends the ticket). When all are
// busy (or none is routable yet), it waits in the admission queue until
// one is free, ctx ends, or the queue timeout passes.
func (g *Gateway) pick(ctx context.Context, x *exchange, role stratav1.WorkerRole, policy routing.Policy) (*worker, routing.Decision, *ticket, error) {
	var (
		wt      *waiter
		expired <-chan time.Time
		since   time.Time
	)
	defer func() {
		if wt != nil {
			g.queue.remove(wt)
			g.metrics.queueWait.Observe(time.Since(since).Seconds())
			g.cluster.notify() // the next in line may go
		}
	}()
	prepared := false
	for {
		m, changed := g.cluster.model(x.req.model)
		if m == nil {
			return nil, routing.Decision{}, nil, modelNotFound(x.req.model)
		}
		workers := pool(m, role)
		if id := x.req.hints.Worker; id != "" {
			for _, w := range workers {
				if w.id == id {
					d := routing.Decision{Worker: w.view(m), Policy: "pinned", Reason: "pinned"}
					return w, d, w.dispatch(x.prefillBlocks(d.Overlap), x.kvBlocks()), nil
				}
			}
			return nil, routing.Decision{}, nil, badRequest(hintsField+".worker", "worker %q is not a routable worker of %s", id, x.req.model)
		}
		if (wt == nil && !g.queue.busy(x.req.model)) || (wt != nil && g.queue.isHead(wt)) {
			if p, ok := policy.(routing.Preparer); ok && !prepared {
				start := time.Now()
				p.Prepare(ctx, &x.route)
				g.metrics.stage("score", start)
				prepared = true
			}
			w, d, t, err := g.selectWorker(ctx, x, m, workers, policy)
			if err != nil || w != nil {
				return w, d, t, err
			}
		}
		if wt == nil {
			if wt = g.queue.enqueue(x.req.model, x.req.hints.Priority); wt == nil {
				return nil, routing.Decision{}, nil, noCapacity("all workers of %s are busy and %d requests are waiting already", x.req.model, g.cfg.QueueSize)
			}
			since = time.Now()
			t := time.NewTimer(g.cfg.QueueTimeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-changed:
			prepared = false // the caches may have moved while it waited
		case <-ctx.Done():
			return nil, routing.Decision{}, nil, ctx.Err()
		case <-expired:
			if len(workers) == 0 {
				return nil, routing.Decision{}, nil, noCapacity("no worker of %s is ready", x.req.model)
			}
			return nil, routing.Decision{}, nil, noCapacity("all %d workers of %s stayed busy for %s", len(workers), x.req.model, g.cfg.QueueTimeout)
		}
	}
}

// selectWorker reads the load of the workers not busy, lets the policy
// pick one and counts the request on it, all under the model's selection
// lock so concurrent requests see each other. It returns no worker when
// every one is busy.
func (g *Gateway) selectWorker(ctx context.Context, x *exchange, m *model, workers []*worker, policy routing.Policy) (*worker, routing.Decision, *ticket, error) {
	m.kept.selecting.Lock()
	defer m.kept.selecting.Unlock()
	var free []*worker
	var views []*routing.Worker
	for _, w := range workers {
		if x.tried[w.id] {
			continue
		}
		v := w.view(m)
		if !g.busy(w, v.Inflight) {
			free, views = append(free, w), append(views, v)
		}
	}
	if len(views) == 0 {
		return nil, routing.Decision{}, nil, nil
	}
	start := time.Now()
	d, err := policy.Pick(ctx, &x.route, views)
	g.metrics.stage("select", start)
	if err != nil {
		return nil, d, nil, err
	}
	for i, v := range views {
		if v == d.Worker {
			g.observe(&x.route, v.ID)
			return free[i], d, free[i].dispatch(x.prefillBlocks(d.Overlap), x.kvBlocks()), nil
		}
	}
	return nil, d, nil, fmt.Errorf("policy %s picked a worker it was not offered", policy.Name())
}

// policyFor is the request's policy: the one it names (header or hint),
// else its deployment's, else the gateway's default.
func (g *Gateway) policyFor(r *http.Request, req *request, m *model) (routing.Policy, error) {
	name := req.hints.Routing
	if h := r.Header.Get("X-Strata-Routing"); h != "" {
		name = h
	}
	if name == "" {
		name = m.info.GetRouting()
	}
	if name == "" {
		name = g.cfg.Routing
	}
	p, ok := g.policies[name]
	if !ok {
		return nil, badRequest(hintsField+".routing", "unknown routing policy %q: want one of %v", name, PolicyNames)
	}
	return p, nil
}

// observation is a routing decision for the policies that learn from them.
type observation struct {
	req    *routing.Request
	worker string
}

// observe tells the learning policies (approx-kv) where a request went,
// off the request's path: remembering a long prompt's blocks costs tens of
// microseconds, which the next request need not wait for. When the
// learner falls behind, observations are dropped: approx-kv is a fallback
// and a prediction, not a record.
func (g *Gateway) observe(req *routing.Request, worker string) {
	select {
	case g.observations <- observation{req, worker}:
	default:
	}
}

func (g *Gateway) learn(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-g.observations:
			for _, l := range g.observers {
				l.Observe(o.req, o.worker)
			}
		}
	}
}
