package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/strata-llm/strata/auth"
	"github.com/strata-llm/strata/brain/client"
	"github.com/strata-llm/strata/brain/spec"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// ctlOptions are the connection settings every ctl subcommand shares.
type ctlOptions struct {
	brains  []string
	token   string
	tls     auth.TLSFiles
	timeout time.Duration
}

func newCtlCommand() *cobra.Command {
	o := &ctlOptions{}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Operate a cluster through its brain: status, deploy, drain, raft peers",
		Long: `ctl talks to the brain's admin API. Give it every brain replica with
--brain: it uses one and moves to another when that one fails; any replica
answers reads and forwards writes to the leader. The connection flags can
also be given as environment variables (--cluster-token as
STRATA_CLUSTER_TOKEN, --brain as STRATA_BRAIN), which keeps the token out of
the shell history and the process list.`,
		// Runnable only so that a mistyped subcommand is an error rather
		// than help and success.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyConfig(cmd)
		},
	}
	f := cmd.PersistentFlags()
	brainClientFlags(f, &o.brains, &o.token, &o.tls)
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long each call to the brain may take")
	cmd.AddCommand(
		newCtlStatusCommand(o),
		newCtlDeployCommand(o),
		newCtlUndeployCommand(o),
		newCtlDrainCommand(o),
		newCtlPeersCommand(o),
		newCtlJoinCommand(o),
		newCtlRemovePeerCommand(o),
	)
	return cmd
}

// run wraps a subcommand's body with a brain client that lives as long as
// the command.
func (o *ctlOptions) run(body func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if o.timeout <= 0 {
			return fmt.Errorf("--timeout %s: want a positive duration", o.timeout)
		}
		var addrs []string
		for _, a := range o.brains {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		c, err := client.New(addrs, auth.Token(o.token), o.tls, grpc.WithChainUnaryInterceptor(readableErrors))
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		return body(cmd, c, args)
	}
}

// call makes one call to the brain, bounded by --timeout.
func call[Req, Resp any](cmd *cobra.Command, o *ctlOptions, method func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	return method(ctx, req)
}

// rpcError shows a failed call as "<method>: <message> (<code>)": an
// operator needs the brain's reason, not "rpc error: code = … desc = …".
type rpcError struct {
	method string
	err    error
}

func (e *rpcError) Error() string {
	st := status.Convert(e.err)
	// When gRPC gives up retrying it wraps the last attempt's status in
	// "max retries exhausted: …": show that status.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(e.err, &se) {
		st = se.GRPCStatus()
	}
	return fmt.Sprintf("%s: %s (%s)", e.method, st.Message(), st.Code())
}

func (e *rpcError) Unwrap() error { return e.err }

func readableErrors(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
		return &rpcError{method: path.Base(method), err: err}
	}
	return nil
}

func newCtlStatusCommand(o *ctlOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the brain leader and peers, nodes, deployments and workers",
		Long: `status shows the cluster as the brain replica it reaches sees it. Reads
are served by that replica, which may lag the leader by the writes in
flight.`,
		Args: cobra.NoArgs,
		RunE: o.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			st, err := fetchStatus(cmd, o, c)
			if err != nil {
				return err
			}
			if asJSON {
				return st.writeJSON(cmd.OutOrStdout())
			}
			return st.writeText(cmd.OutOrStdout(), time.Now())
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object {raft, nodes, deployments, workers, kv_index}")
	return cmd
}

type clusterStatus struct {
	raft        *stratav1.RaftStatusResponse
	nodes       []*stratav1.Node
	deployments []*stratav1.Deployment
	workers     []*stratav1.Worker
	kv          *stratav1.KVIndexStatsResponse
}

func fetchStatus(cmd *cobra.Command, o *ctlOptions, c *client.Client) (*clusterStatus, error) {
	raft, err := call(cmd, o, c.Admin().RaftStatus, &stratav1.RaftStatusRequest{})
	if err != nil {
		return nil, err
	}
	nodes, err := call(cmd, o, c.Admin().ListNodes, &stratav1.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	deployments, err := call(cmd, o, c.Admin().ListDeployments, &stratav1.ListDeploymentsRequest{})
	if err != nil {
		return nil, err
	}
	workers, err := call(cmd, o, c.Admin().ListWorkers, &stratav1.ListWorkersRequest{})
	if err != nil {
		return nil, err
	}
	kv, err := call(cmd, o, c.Admin().KVIndexStats, &stratav1.KVIndexStatsRequest{})
	if err != nil {
		return nil, err
	}
	return &clusterStatus{raft: raft, nodes: nodes.GetNodes(), deployments: deployments.GetDeployments(), workers: workers.GetWorkers(), kv: kv}, nil
}

// jsonOptions name fields as the .proto does (as deployment spec files do)
// and print every field, so scripts need not know proto3's defaults.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

func (st *clusterStatus) writeJSON(w io.Writer) error {
	var out struct {
		Raft        json.RawMessage   `json:"raft"`
		Nodes       []json.RawMessage `json:"nodes"`
		Deployments []json.RawMessage `json:"deployments"`
		Workers     []json.RawMessage `json:"workers"`
		KVIndex     json.RawMessage   `json:"kv_index"`
	}
	var err error
	if out.KVIndex, err = jsonOptions.Marshal(st.kv); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if out.Raft, err = jsonOptions.Marshal(st.raft); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if out.Nodes, err = marshalAll(st.nodes); err != nil {
		return err
	}
	if out.Deployments, err = marshalAll(st.deployments); err != nil {
		return err
	}
	if out.Workers, err = marshalAll(st.workers); err != nil {
		return err
	}
	b, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func marshalAll[M proto.Message](msgs []M) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(msgs))
	for _, m := range msgs {
		b, err := jsonOptions.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

func (st *clusterStatus) writeText(w io.Writer, now time.Time) error {
	r := st.raft
	leader := "none (no leader elected)"
	if r.GetLeaderId() != "" {
		leader = fmt.Sprintf("%s (raft %s, grpc %s)", r.GetLeaderId(), r.GetLeaderRaftAddress(), r.GetLeaderGrpcAddress())
	}
	fmt.Fprintf(w, "Leader: %s, term %d\n", leader, r.GetTerm())
	fmt.Fprintf(w, "Answered by: %s (%s), applied index %d\n\n", r.GetId(), strings.ToLower(r.GetState()), r.GetAppliedIndex())
	fmt.Fprintln(w, "Brains")
	if err := writePeers(w, r); err != nil {
		return err
	}

	// GPUs in use per node, and each GPU's index for humans.
	used := map[string]int{}
	gpuIndex := map[string]string{}
	for _, n := range st.nodes {
		for _, g := range n.GetInventory().GetGpus() {
			gpuIndex[g.GetUuid()] = strconv.FormatUint(uint64(g.GetIndex()), 10)
		}
	}
	ready, placed := map[string]int{}, map[string]int{}
	for _, wk := range st.workers {
		used[wk.GetNodeId()] += len(wk.GetGpuUuids())
		placed[wk.GetDeployment()]++
		if wk.GetState() == stratav1.WorkerState_WORKER_STATE_READY {
			ready[wk.GetDeployment()]++
		}
	}

	fmt.Fprintln(w, "\nNodes")
	tw := newTable(w, "ID", "STATE", "GPUS", "ADDRESS", "LAST HEARTBEAT")
	for _, n := range st.nodes {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", n.GetId(), enumName(n.GetState(), "NODE_STATE_"),
			used[n.GetId()], len(n.GetInventory().GetGpus()), n.GetAddress(), age(n.GetLastHeartbeatUnixNanos(), now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nDeployments")
	tw = newTable(w, "NAME", "MODEL", "ENGINE", "MODE", "GEN", "WORKERS")
	for _, d := range st.deployments {
		s := d.GetSpec()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d/%d\n", s.GetName(), s.GetModel(), s.GetEngine(),
			enumName(s.GetMode(), "DEPLOYMENT_MODE_"), d.GetGeneration(), ready[s.GetName()], placed[s.GetName()])
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nWorkers")
	kv := map[string]*stratav1.KVWorkerStats{}
	for _, k := range st.kv.GetWorkers() {
		kv[k.GetWorkerId()] = k
	}
	tw = newTable(w, "ID", "DEPLOYMENT", "ROLE", "NODE", "GPUS", "PORT", "STATE", "LOAD", "KV BLOCKS GPU/CPU/DISK")
	for _, wk := range st.workers {
		gpus := make([]string, 0, len(wk.GetGpuUuids()))
		for _, u := range wk.GetGpuUuids() {
			if i, ok := gpuIndex[u]; ok {
				u = i
			}
			gpus = append(gpus, u)
		}
		load := "-"
		if l := wk.GetLoad(); l != nil {
			load = fmt.Sprintf("%d/%d %.0f%%", l.GetRunningRequests(), l.GetWaitingRequests(), 100*l.GetKvUsage())
		}
		blocks := "-"
		if k := kv[wk.GetId()]; k != nil && !k.GetAwaitingSnapshot() {
			blocks = fmt.Sprintf("%d/%d/%d", k.GetGpuBlocks(), k.GetCpuBlocks(), k.GetDiskBlocks())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", wk.GetId(), wk.GetDeployment(), enumName(wk.GetRole(), "WORKER_ROLE_"),
			wk.GetNodeId(), strings.Join(gpus, ","), wk.GetPort(), enumName(wk.GetState(), "WORKER_STATE_"), load, blocks)
	}
	return tw.Flush()
}

// newTable starts an aligned table with its header row.
func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

// enumName is an enum value as operators say it: NODE_STATE_READY is "ready".
func enumName(v fmt.Stringer, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(v.String(), prefix))
}

// age is how long ago a leader-stamped time was, to the second.
func age(unixNanos int64, now time.Time) string {
	if unixNanos == 0 {
		return "never"
	}
	return max(now.Sub(time.Unix(0, unixNanos)), 0).Truncate(time.Second).String() + " ago"
}

func writePeers(w io.Writer, r *stratav1.RaftStatusResponse) error {
	tw := newTable(w, "ID", "RAFT ADDRESS", "GRPC ADDRESS", "SUFFRAGE", "LEADER")
	for _, s := range r.GetServers() {
		leader := "no"
		if s.GetLeader() {
			leader = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.GetId(), s.GetAddress(), s.GetGrpcAddress(), strings.ToLower(s.GetSuffrage()), leader)
	}
	return tw.Flush()
}

func newCtlDeployCommand(o *ctlOptions) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "deploy -f FILE",
		Short: "Create or update a deployment from a YAML spec (-f - reads stdin)",
		Long: `deploy applies a deployment spec. Applying an unchanged spec changes
nothing; a changed one bumps the deployment's generation and the brain rolls
its workers to it.`,
		Args: cobra.NoArgs,
		RunE: o.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			sp, err := readSpec(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			res, err := call(cmd, o, c.Admin().ApplyDeployment, &stratav1.ApplyDeploymentRequest{Spec: sp})
			if err != nil {
				return err
			}
			d := res.GetDeployment()
			what := "unchanged"
			switch {
			case res.GetChanged() && d.GetGeneration() == 1:
				what = "created"
			case res.GetChanged():
				what = "updated"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "deployment %s %s (generation %d)\n", d.GetSpec().GetName(), what, d.GetGeneration())
			return err
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "YAML deployment spec; - reads stdin")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// readSpec reads and parses a spec file, naming the file in any error.
func readSpec(stdin io.Reader, file string) (*stratav1.DeploymentSpec, error) {
	name, r := file, stdin
	if file == "-" {
		name = "<stdin>"
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	// One byte past the limit lets Parse report an oversized input.
	data, err := io.ReadAll(io.LimitReader(r, spec.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	sp, err := spec.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return sp, nil
}

func newCtlUndeployCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "undeploy NAME",
		Short: "Delete a deployment and stop its workers",
		Args:  cobra.ExactArgs(1),
		RunE: o.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if _, err := call(cmd, o, c.Admin().DeleteDeployment, &stratav1.DeleteDeploymentRequest{Name: args[0]}); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "deployment %s deleted\n", args[0])
			return err
		}),
	}
}

func newCtlDrainCommand(o *ctlOptions) *cobra.Command {
	var undrain bool
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Move a node's workers elsewhere and place nothing new on it (--undrain reverses)",
		Long: `drain marks a node drained: the brain re-places its workers on other nodes
and places nothing new on it, also after the node re-registers, until it is
undrained.`,
		Args: cobra.ExactArgs(1),
		RunE: o.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			res, err := call(cmd, o, c.Admin().DrainNode, &stratav1.DrainNodeRequest{NodeId: args[0], Undrain: undrain})
			if err != nil {
				return err
			}
			what := "drained"
			if undrain {
				what = "undrained"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "node %s %s (state %s)\n", args[0], what, enumName(res.GetNode().GetState(), "NODE_STATE_"))
			return err
		}),
	}
	cmd.Flags().BoolVar(&undrain, "undrain", false, "make a drained node eligible for workers again")
	return cmd
}

func newCtlPeersCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "List the brain replicas in the Raft configuration",
		Args:  cobra.NoArgs,
		RunE: o.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			res, err := call(cmd, o, c.Admin().RaftStatus, &stratav1.RaftStatusRequest{})
			if err != nil {
				return err
			}
			return writePeers(cmd.OutOrStdout(), res)
		}),
	}
}

func newCtlJoinCommand(o *ctlOptions) *cobra.Command {
	m := &stratav1.BrainMember{}
	cmd := &cobra.Command{
		Use:   "join --id ID --raft-addr ADDR --grpc-addr ADDR",
		Short: "Add a brain replica to the Raft configuration as a voter",
		Long: `join adds a running brain replica (started without --bootstrap) as a
voter. Joining a replica that is already a member with the same addresses
changes nothing. A replica started with --join does this itself.`,
		Args: cobra.NoArgs,
		RunE: o.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			res, err := call(cmd, o, c.Admin().AddPeer, &stratav1.AddPeerRequest{Member: m})
			if err != nil {
				return err
			}
			what := "added"
			if !res.GetChanged() {
				what = "already a member, unchanged"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "brain %s %s\n", m.GetId(), what)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&m.Id, "id", "", "the replica's Raft server id (its --node-id)")
	f.StringVar(&m.RaftAddress, "raft-addr", "", "the address other brains reach its Raft transport at")
	f.StringVar(&m.GrpcAddress, "grpc-addr", "", "the address of its gRPC API")
	for _, name := range []string{"id", "raft-addr", "grpc-addr"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newCtlRemovePeerCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove-peer ID",
		Short: "Remove a brain replica from the Raft configuration",
		Long: `remove-peer removes a replica for good, e.g. a dead machine, so that it
no longer counts towards the quorum. Keep an odd number of voters.`,
		Args: cobra.ExactArgs(1),
		RunE: o.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if _, err := call(cmd, o, c.Admin().RemovePeer, &stratav1.RemovePeerRequest{Id: args[0]}); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "brain %s removed\n", args[0])
			return err
		}),
	}
}
