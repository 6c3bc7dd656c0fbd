// Package test holds Strata's cross-component tests: real processes on
// loopback, the way an operator runs them.
package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/strata-llm/strata/auth"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.KillStrayProcesses()
	testutil.CleanupBinary()
	os.Exit(code)
}

const processToken = "process-test-token"

// brainProc is one `strata brain` process.
type brainProc struct {
	id               string
	raft, grpc, http string
	dir, log         string
	args             []string
	cmd              *exec.Cmd
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func (b *brainProc) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(b.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	b.cmd = exec.Command(testutil.StrataBinary(t), b.args...)
	b.cmd.Env = append(os.Environ(), "STRATA_CLUSTER_TOKEN="+processToken)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = logf.Close()
	cmd := b.cmd
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

func (b *brainProc) kill9() {
	_ = b.cmd.Process.Kill() // SIGKILL: no shutdown path runs
	_ = b.cmd.Wait()
}

type health struct {
	ID, State, Leader string
}

func (b *brainProc) health() (health, error) {
	var h health
	c := http.Client{Timeout: time.Second}
	res, err := c.Get("http://" + b.http + "/healthz")
	if err != nil {
		return h, err
	}
	defer func() { _ = res.Body.Close() }()
	err = json.NewDecoder(res.Body).Decode(&h)
	return h, err
}

// waitLeader waits until every process in procs reports the same leader,
// one of procs, and returns it.
func waitLeader(t testing.TB, timeout time.Duration, procs ...*brainProc) *brainProc {
	t.Helper()
	var leader *brainProc
	testutil.WaitForResult(t, timeout, func() error {
		leader = nil
		var seen string
		for _, p := range procs {
			h, err := p.health()
			if err != nil {
				return fmt.Errorf("%s: %v", p.id, err)
			}
			if h.Leader == "" || (seen != "" && h.Leader != seen) {
				return fmt.Errorf("%s sees leader %q, others %q", p.id, h.Leader, seen)
			}
			seen = h.Leader
			if h.Leader == p.id {
				leader = p
			}
		}
		if leader == nil {
			return fmt.Errorf("leader %q is not among the running processes", seen)
		}
		return nil
	})
	return leader
}

func admin(t testing.TB, p *brainProc) stratav1.AdminServiceClient {
	t.Helper()
	opts, err := auth.DialOptions(processToken, auth.TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := grpc.NewClient(p.grpc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return stratav1.NewAdminServiceClient(c)
}

func deployment(name string) *stratav1.DeploymentSpec {
	return &stratav1.DeploymentSpec{Name: name, Model: "test/model", Engine: "sim"}
}

func dumpLogs(t *testing.T, procs []*brainProc) {
	if !t.Failed() {
		return
	}
	for _, p := range procs {
		b, _ := os.ReadFile(p.log)
		t.Logf("--- %s log ---\n%s", p.id, b)
	}
}

// TestBrainProcessesSurviveLeaderKill runs three real `strata brain`
// processes, kill -9s the leader, and checks that the others elect a new
// one, keep the committed deployment and take writes, and that the killed
// replica, restarted from its data dir, catches up.
func TestBrainProcessesSurviveLeaderKill(t *testing.T) {
	dir := t.TempDir()
	var procs []*brainProc
	for i := range 3 {
		p := &brainProc{id: fmt.Sprintf("b%d", i+1), raft: freePort(t), grpc: freePort(t), http: freePort(t)}
		p.dir = filepath.Join(dir, p.id)
		p.log = filepath.Join(dir, p.id+".log")
		p.args = []string{"brain", "--node-id", p.id, "--data-dir", p.dir,
			"--raft-addr", p.raft, "--grpc-addr", p.grpc, "--http-addr", p.http, "--log-level", "debug"}
		if i == 0 {
			p.args = append(p.args, "--bootstrap")
		} else {
			p.args = append(p.args, "--join", procs[0].grpc)
		}
		procs = append(procs, p)
	}
	defer dumpLogs(t, procs)
	for _, p := range procs {
		p.start(t)
	}
	testutil.WaitForResult(t, 30*time.Second, func() error {
		st, err := admin(t, procs[0]).RaftStatus(context.Background(), &stratav1.RaftStatusRequest{})
		if err != nil || len(st.Servers) != 3 {
			return fmt.Errorf("raft servers %v, %v", st.GetServers(), err)
		}
		return nil
	})
	leader := waitLeader(t, 30*time.Second, procs...)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Written through a follower: forwarded to the leader.
	var f *brainProc
	for _, p := range procs {
		if p != leader {
			f = p
		}
	}
	if _, err := admin(t, f).ApplyDeployment(ctx, &stratav1.ApplyDeploymentRequest{Spec: deployment("before-kill")}); err != nil {
		t.Fatal(err)
	}

	leader.kill9()
	var rest []*brainProc
	for _, p := range procs {
		if p != leader {
			rest = append(rest, p)
		}
	}
	start := time.Now()
	next := waitLeader(t, 30*time.Second, rest...)
	t.Logf("new leader %s %v after kill -9 of %s", next.id, time.Since(start).Round(time.Millisecond), leader.id)

	if _, err := admin(t, next).ApplyDeployment(ctx, &stratav1.ApplyDeploymentRequest{Spec: deployment("after-kill")}); err != nil {
		t.Fatal(err)
	}
	for _, p := range rest {
		testutil.WaitForResult(t, 10*time.Second, func() error { return hasDeployments(ctx, admin(t, p), "before-kill", "after-kill") })
	}

	leader.start(t)
	testutil.WaitForResult(t, 30*time.Second, func() error { return hasDeployments(ctx, admin(t, leader), "before-kill", "after-kill") })
	waitLeader(t, 30*time.Second, procs...)
}

func hasDeployments(ctx context.Context, c stratav1.AdminServiceClient, names ...string) error {
	res, err := c.ListDeployments(ctx, &stratav1.ListDeploymentsRequest{})
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, d := range res.Deployments {
		have[d.Spec.Name] = true
	}
	for _, n := range names {
		if !have[n] {
			return fmt.Errorf("deployment %s missing (index %d)", n, res.Index)
		}
	}
	return nil
}
