package brain

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/strata-llm/strata/brain/fsm"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// watch streams build(view) now and after every change of state whose
// result differs from what was last sent (ignoring the index), waiting at
// least every between sends so a stream of heartbeats becomes a few updates
// a second.
func watch[M interface {
	proto.Message
	GetIndex() uint64
}](s *Server, ctx context.Context, every time.Duration, build func(*fsm.View) M, send func(M) error) error {
	var last M
	var pace *time.Ticker
	if every > 0 {
		pace = time.NewTicker(every)
		defer pace.Stop()
	}
	for {
		changed, _ := s.fsm.Changed()
		msg := build(s.fsm.View())
		// Compare without the index, which moves with every heartbeat; the
		// message is fresh, so its index can be cleared and put back
		// instead of cloning a view of the whole cluster per change.
		index := indexField(msg)
		at := msg.ProtoReflect().Get(index)
		msg.ProtoReflect().Clear(index)
		if !last.ProtoReflect().IsValid() || !proto.Equal(msg, last) {
			msg.ProtoReflect().Set(index, at)
			if err := send(msg); err != nil {
				return err
			}
			msg.ProtoReflect().Clear(index)
			last = msg
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.ctx.Done():
			return nil
		case <-changed:
		}
		if pace != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-s.ctx.Done():
				return nil
			case <-pace.C:
			}
		}
	}
}

func indexField(m proto.Message) protoreflect.FieldDescriptor {
	return m.ProtoReflect().Descriptor().Fields().ByName("index")
}

// assignments is the desired state of one node: its workers as placed,
// without the fields the agent itself reports (state, load), so that an
// update means something changed in what the node must run.
func assignments(v *fsm.View, nodeID string) *stratav1.WatchAssignmentsResponse {
	out := &stratav1.WatchAssignmentsResponse{Index: v.Index}
	for _, id := range slices.Sorted(maps.Keys(v.Workers)) {
		w := v.Workers[id]
		if w.GetNodeId() != nodeID {
			continue
		}
		desired := &stratav1.Worker{
			Id: w.GetId(), Deployment: w.GetDeployment(), Generation: w.GetGeneration(), Role: w.GetRole(),
			NodeId: w.GetNodeId(), GpuUuids: w.GetGpuUuids(), Port: w.GetPort(), CreatedUnixNanos: w.GetCreatedUnixNanos(),
		}
		out.Assignments = append(out.Assignments, &stratav1.Assignment{Worker: desired, Spec: v.Deployments[w.GetDeployment()].GetSpec()})
	}
	return out
}

// clusterView is what a gateway routes with: every model, and the workers
// ready to take requests on nodes that are up.
func clusterView(v *fsm.View) *stratav1.WatchClusterResponse {
	out := &stratav1.WatchClusterResponse{Index: v.Index}
	for _, name := range slices.Sorted(maps.Keys(v.Deployments)) {
		sp := v.Deployments[name].GetSpec()
		out.Models = append(out.Models, &stratav1.ClusterModel{
			Name: sp.GetServedModelName(), Deployment: sp.GetName(), Engine: sp.GetEngine(),
			Tokenizer: sp.GetTokenizer(), BlockSize: sp.GetBlockSize(), Mode: sp.GetMode(), Routing: sp.GetRouting(),
		})
	}
	for _, id := range slices.Sorted(maps.Keys(v.Workers)) {
		w := v.Workers[id]
		n, d := v.Nodes[w.GetNodeId()], v.Deployments[w.GetDeployment()]
		if w.GetState() != stratav1.WorkerState_WORKER_STATE_READY || n == nil || d == nil ||
			n.GetState() == stratav1.NodeState_NODE_STATE_DOWN {
			continue
		}
		host, _, err := net.SplitHostPort(n.GetAddress())
		if err != nil {
			continue
		}
		out.Workers = append(out.Workers, &stratav1.RoutableWorker{
			Worker: w, Model: d.GetSpec().GetServedModelName(), BlockSize: d.GetSpec().GetBlockSize(),
			Endpoint: net.JoinHostPort(host, strconv.Itoa(int(w.GetPort()))),
		})
	}
	return out
}
