package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/brain"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

// ctlBrain starts a brain with two registered fake nodes of four GPUs. The
// nodes never heartbeat, so their lease outlasts the test.
func ctlBrain(t *testing.T) *brain.Server {
	t.Helper()
	s := brain.TestServer(t, func(c *brain.Config) { c.LeaseTTL = time.Hour })
	brain.WaitForLeader(t, s)
	agent := stratav1.NewAgentServiceClient(brain.TestConn(t, s))
	for _, id := range []string{"node-a", "node-b"} {
		inv := &stratav1.Inventory{Hostname: id, CpuCores: 32, MemoryBytes: 256 << 30}
		for i := range 4 {
			inv.Gpus = append(inv.Gpus, &stratav1.GPU{Uuid: fmt.Sprintf("GPU-%s-%d", id, i), Index: uint32(i), Model: "sim", MemoryBytes: 80 << 30})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := agent.Register(ctx, &stratav1.RegisterRequest{NodeId: id, Address: "127.0.0.1:7070", Inventory: inv})
		cancel()
		if err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	return s
}

// ctl runs `strata ctl args…` through the real root command and returns
// what it printed.
func ctl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"ctl"}, args...))
	err := root.Execute()
	return out.String(), err
}

// ctlTo runs ctl against s with the test token.
func ctlTo(t *testing.T, s *brain.Server, args ...string) string {
	t.Helper()
	out, err := ctl(t, "", append([]string{"--brain", s.Member().GetGrpcAddress(), "--cluster-token", string(brain.TestClusterToken)}, args...)...)
	if err != nil {
		t.Fatalf("strata ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

type statusJSON struct {
	Raft struct {
		LeaderID string `json:"leader_id"`
	} `json:"raft"`
	Nodes []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"nodes"`
	Deployments []struct {
		Spec struct {
			Name string `json:"name"`
		} `json:"spec"`
		Generation string `json:"generation"`
	} `json:"deployments"`
	Workers []struct {
		ID     string `json:"id"`
		NodeID string `json:"node_id"`
	} `json:"workers"`
}

func getStatus(t *testing.T, s *brain.Server) statusJSON {
	t.Helper()
	var st statusJSON
	out := ctlTo(t, s, "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

const llamaSpec = "name: llama\nmodel: test/model\nengine: sim\nreplicas: {min: 1, max: 8, initial: %d}\n"

func TestCtlDeployStatusDrainUndeploy(t *testing.T) {
	s := ctlBrain(t)
	file := filepath.Join(t.TempDir(), "llama.yaml")
	write := func(replicas int) {
		if err := os.WriteFile(file, fmt.Appendf(nil, llamaSpec, replicas), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write(3)
	for _, want := range []string{
		"deployment llama created (generation 1)\n",
		"deployment llama unchanged (generation 1)\n",
	} {
		if out := ctlTo(t, s, "deploy", "-f", file); out != want {
			t.Fatalf("deploy printed %q, want %q", out, want)
		}
	}

	testutil.WaitForResult(t, 10*time.Second, func() error {
		if n := len(getStatus(t, s).Workers); n != 3 {
			return fmt.Errorf("%d workers placed, want 3", n)
		}
		return nil
	})
	st := getStatus(t, s)
	if st.Raft.LeaderID == "" || len(st.Nodes) != 2 || len(st.Deployments) != 1 ||
		st.Deployments[0].Spec.Name != "llama" || st.Deployments[0].Generation != "1" {
		t.Fatalf("status --json = %+v", st)
	}
	text := ctlTo(t, s, "status")
	for _, want := range []string{
		"Leader: " + s.Member().GetId(),
		"NAME   MODEL       ENGINE  MODE        GEN  WORKERS\nllama  test/model  sim     aggregated  1    0/3\n",
		"node-a  ready  2/4",
		"node-b  ready  1/4",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	for _, w := range st.Workers {
		if !strings.Contains(text, w.ID+"  llama       both  "+w.NodeID) {
			t.Errorf("status lacks worker %s on %s:\n%s", w.ID, w.NodeID, text)
		}
	}

	if out := ctlTo(t, s, "drain", "node-a"); out != "node node-a drained (state draining)\n" {
		t.Fatalf("drain printed %q", out)
	}
	testutil.WaitForResult(t, 10*time.Second, func() error {
		st := getStatus(t, s)
		for _, w := range st.Workers {
			if w.NodeID == "node-a" {
				return fmt.Errorf("worker %s still on the drained node", w.ID)
			}
		}
		if len(st.Workers) != 3 {
			return fmt.Errorf("%d workers, want 3", len(st.Workers))
		}
		return nil
	})
	if text := ctlTo(t, s, "status"); !strings.Contains(text, "node-a  draining  0/4") || !strings.Contains(text, "node-b  ready     3/4") {
		t.Fatalf("status after drain:\n%s", text)
	}
	if out := ctlTo(t, s, "drain", "node-a", "--undrain"); out != "node node-a undrained (state ready)\n" {
		t.Fatalf("undrain printed %q", out)
	}

	write(4)
	if out := ctlTo(t, s, "deploy", "-f", file); out != "deployment llama updated (generation 2)\n" {
		t.Fatalf("deploy of a changed spec printed %q", out)
	}
	out, err := ctl(t, fmt.Sprintf(llamaSpec, 4), "--brain", s.Member().GetGrpcAddress(), "--cluster-token", string(brain.TestClusterToken), "deploy", "-f", "-")
	if err != nil || out != "deployment llama unchanged (generation 2)\n" {
		t.Fatalf("deploy -f -: %q, %v", out, err)
	}

	if out := ctlTo(t, s, "undeploy", "llama"); out != "deployment llama deleted\n" {
		t.Fatalf("undeploy printed %q", out)
	}
	if st := getStatus(t, s); len(st.Deployments) != 0 || len(st.Workers) != 0 {
		t.Fatalf("after undeploy: %+v", st)
	}
}

func TestCtlPeersJoinRemove(t *testing.T) {
	s := ctlBrain(t)
	other := brain.TestServer(t, func(c *brain.Config) { c.Bootstrap = false })
	m := other.Member()

	out := ctlTo(t, s, "peers")
	want := fmt.Sprintf("ID%sRAFT ADDRESS", strings.Repeat(" ", len(s.Member().GetId())))
	if !strings.HasPrefix(out, want) || !strings.Contains(out, s.Member().GetId()+"  "+s.Member().GetRaftAddress()) || !strings.Contains(out, "voter     yes") {
		t.Fatalf("peers:\n%s", out)
	}

	join := []string{"join", "--id", m.GetId(), "--raft-addr", m.GetRaftAddress(), "--grpc-addr", m.GetGrpcAddress()}
	if out := ctlTo(t, s, join...); out != "brain "+m.GetId()+" added\n" {
		t.Fatalf("join printed %q", out)
	}
	if out := ctlTo(t, s, join...); out != "brain "+m.GetId()+" already a member, unchanged\n" {
		t.Fatalf("second join printed %q", out)
	}
	brain.WaitForLeader(t, s, other)
	// The new replica answers with the configuration once it has it.
	testutil.WaitForResult(t, 10*time.Second, func() error {
		if out := ctlTo(t, other, "peers"); !strings.Contains(out, m.GetId()+"  "+m.GetRaftAddress()+"  "+m.GetGrpcAddress()+"  voter     no") {
			return fmt.Errorf("peers on the new replica:\n%s", out)
		}
		return nil
	})

	if out := ctlTo(t, s, "remove-peer", m.GetId()); out != "brain "+m.GetId()+" removed\n" {
		t.Fatalf("remove-peer printed %q", out)
	}
	if out := ctlTo(t, s, "peers"); strings.Contains(out, m.GetId()) {
		t.Fatalf("peers after remove-peer:\n%s", out)
	}
}

// TestCtlEnv checks that the connection flags come from the environment,
// and that a flag beats its variable.
func TestCtlEnv(t *testing.T) {
	s := ctlBrain(t)
	t.Setenv("STRATA_BRAIN", "127.0.0.1:1,"+s.Member().GetGrpcAddress())
	t.Setenv("STRATA_CLUSTER_TOKEN", string(brain.TestClusterToken))
	out, err := ctl(t, "", "status")
	if err != nil || !strings.Contains(out, "node-b") {
		t.Fatalf("status with the environment: %v\n%s", err, out)
	}
	_, err = ctl(t, "", "--cluster-token", "wrong", "status")
	if err == nil || !strings.Contains(err.Error(), "(Unauthenticated)") {
		t.Fatalf("--cluster-token did not beat STRATA_CLUSTER_TOKEN: %v", err)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestCtlErrors(t *testing.T) {
	s := ctlBrain(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: Bad Name\nmodel: m\nengine: sim\nreplica: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := s.Member().GetGrpcAddress()
	token := string(brain.TestClusterToken)
	for _, tc := range []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"wrong token", []string{"--brain", addr, "--cluster-token", "wrong", "status"},
			[]string{"RaftStatus: missing or wrong cluster token (Unauthenticated)"}},
		{"no token", []string{"--brain", addr, "peers"},
			[]string{"RaftStatus: missing or wrong cluster token (Unauthenticated)"}},
		{"invalid spec", []string{"--brain", addr, "--cluster-token", token, "deploy", "-f", bad},
			[]string{bad + ": invalid deployment spec", "line 4", `"replica"`}},
		{"missing file", []string{"--brain", addr, "--cluster-token", token, "deploy", "-f", filepath.Join(dir, "nope.yaml")},
			[]string{"nope.yaml", "no such file"}},
		{"no file flag", []string{"--brain", addr, "--cluster-token", token, "deploy"},
			[]string{`"file" not set`}},
		{"unknown deployment", []string{"--brain", addr, "--cluster-token", token, "undeploy", "nope"},
			[]string{"DeleteDeployment: ", "(NotFound)"}},
		{"unknown node", []string{"--brain", addr, "--cluster-token", token, "drain", "nope"},
			[]string{"DrainNode: ", "(NotFound)"}},
		{"unknown peer", []string{"--brain", addr, "--cluster-token", token, "remove-peer", "nope"},
			[]string{`RemovePeer: brain "nope" is not a member (NotFound)`}},
		{"no brain", []string{"--brain", closedAddr(t), "--cluster-token", token, "peers"},
			[]string{"RaftStatus: ", "connection refused", "(Unavailable)"}},
		{"bad address", []string{"--brain", "brain-1", "--cluster-token", token, "status"},
			[]string{`brain address "brain-1"`}},
		{"unknown subcommand", []string{"stauts"}, []string{`unknown command "stauts" for "strata ctl"`}},
		{"bad timeout", []string{"--brain", addr, "--cluster-token", token, "--timeout", "0s", "status"},
			[]string{"--timeout 0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ctl(t, "", tc.args...)
			if err == nil {
				t.Fatalf("no error; printed:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "rpc error") || strings.Contains(out+err.Error(), token) {
				t.Errorf("raw gRPC error or the token shown: %q\n%s", err, out)
			}
		})
	}
}
