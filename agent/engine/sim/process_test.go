package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/strata-llm/strata/agent/engine"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.KillStrayProcesses()
	testutil.CleanupBinary()
	os.Exit(code)
}

const processTimeout = 30 * time.Second

// freePortRange finds a base port whose PortsPerWorker ports are free on
// every interface (the simulator binds its KV sockets on tcp://*).
func freePortRange(t *testing.T) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if base+engine.PortsPerWorker-1 > 65535 {
			continue
		}
		free := true
		for i := range engine.PortsPerWorker {
			l, err := net.Listen("tcp", ":"+strconv.Itoa(base+i))
			if err != nil {
				free = false
				break
			}
			_ = l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of ports")
	return 0
}

// simProc is a `strata sim` started from the adapter's Launch.
type simProc struct {
	spec   engine.Spec
	a      *Adapter
	log    string
	exited chan error
}

func startSim(t *testing.T, role stratav1.WorkerRole) *simProc {
	t.Helper()
	dir := t.TempDir()
	spec := engine.Spec{
		WorkerID:           "simdep-" + strings.ToLower(role.String()),
		Deployment:         "simdep",
		Model:              "strata-sim",
		ServedModelName:    "sim-model",
		Role:               role,
		TensorParallelSize: 1,
		Host:               "127.0.0.1",
		Port:               freePortRange(t),
		BlockSize:          16,
		Executable:         testutil.StrataBinary(t),
		WorkDir:            dir,
		ExtraArgs:          []string{"--speedup", "1000"},
	}
	a := New()
	l, err := a.Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range l.Files {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := &simProc{spec: spec, a: a, log: filepath.Join(dir, "engine.log"), exited: make(chan error, 1)}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(l.Path, l.Args...)
	cmd.Env = append(os.Environ(), l.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = logf.Close()
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		t.Logf("strata sim stopped: %v", <-p.exited)
	})
	return p
}

// alive fails the poll with the engine's log when the process died, so a
// rejected flag reads as such instead of as a timeout.
func (p *simProc) alive() error {
	select {
	case err := <-p.exited:
		p.exited <- err
		out, _ := os.ReadFile(p.log)
		return fmt.Errorf("strata sim exited (%v):\n%s", err, out)
	default:
		return nil
	}
}

var client = &http.Client{Timeout: 5 * time.Second}

func (p *simProc) get(path string) ([]byte, error) {
	resp, err := client.Get(p.spec.DialURL() + path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

func (p *simProc) post(path string, body []byte) ([]byte, error) {
	resp, err := client.Post(p.spec.DialURL()+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: %s: %s", path, resp.Status, out)
	}
	return out, nil
}

func (p *simProc) waitHealthy(t *testing.T) {
	t.Helper()
	testutil.WaitForResult(t, processTimeout, func() error {
		if err := p.alive(); err != nil {
			return err
		}
		_, err := p.get(p.a.HealthPath())
		return err
	})
}

func (p *simProc) canary(t *testing.T) {
	t.Helper()
	c := p.a.Canary(p.spec)
	out, err := p.post(c.Path, c.Body)
	if err != nil {
		t.Fatalf("canary: %v", err)
	}
	var resp struct {
		Model   string `json:"model"`
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("canary answer %s: %v", out, err)
	}
	if resp.Model != "sim-model" || len(resp.Choices) != 1 || resp.Usage.CompletionTokens > 1 {
		t.Fatalf("canary answer %s", out)
	}
}

func TestProcess(t *testing.T) {
	for _, role := range []stratav1.WorkerRole{
		stratav1.WorkerRole_WORKER_ROLE_BOTH,
		stratav1.WorkerRole_WORKER_ROLE_PREFILL,
		stratav1.WorkerRole_WORKER_ROLE_DECODE,
	} {
		t.Run(role.String(), func(t *testing.T) {
			t.Parallel()
			p := startSim(t, role)
			p.waitHealthy(t)
			p.canary(t)
			if role == stratav1.WorkerRole_WORKER_ROLE_BOTH {
				checkKVEvents(t, p)
			}
			// Every request is done: the load settles at idle, with the
			// canary's (and KV check's) prompt tokens counted.
			testutil.WaitForResult(t, processTimeout, func() error {
				body, err := p.get(p.a.MetricsPath())
				if err != nil {
					return err
				}
				l, err := p.a.ParseLoad(body)
				if err != nil {
					return err
				}
				if l.Running != 0 || l.Waiting != 0 || l.PrefixQueries == 0 {
					return fmt.Errorf("load %+v, want idle with prefix queries", l)
				}
				return nil
			})
		})
	}
}

// checkKVEvents subscribes where the adapter says the KV events are and
// sends prompts long enough to fill blocks until a batch arrives: the
// endpoint in KVEvents is the one the engine binds from Command's flags.
func checkKVEvents(t *testing.T, p *simProc) {
	t.Helper()
	src := p.a.KVEvents(p.spec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := zmq4.NewSub(ctx)
	defer func() { _ = sub.Close() }()
	if err := sub.Dial(src.Endpoint); err != nil {
		t.Fatalf("dial %s: %v", src.Endpoint, err)
	}
	if err := sub.SetOption(zmq4.OptionSubscribe, src.Topic); err != nil {
		t.Fatal(err)
	}
	got := make(chan zmq4.Msg, 16)
	go func() {
		for {
			msg, err := sub.Recv()
			if err != nil {
				return
			}
			select {
			case got <- msg:
			default:
			}
		}
	}()
	// A SUB socket misses what is published before its subscription
	// reaches the publisher, so send new prompts until one is seen.
	n := 0
	testutil.WaitForResult(t, processTimeout, func() error {
		select {
		case msg := <-got:
			if len(msg.Frames) != 3 || len(msg.Frames[1]) != 8 || len(msg.Frames[2]) == 0 {
				return fmt.Errorf("KV event message has %d frames", len(msg.Frames))
			}
			return nil
		default:
		}
		n++
		body, _ := json.Marshal(map[string]any{
			"model":      p.spec.ServedName(),
			"prompt":     fmt.Sprintf("%04d %s", n, strings.Repeat("kv events fill whole blocks. ", 4)),
			"max_tokens": 1,
		})
		if _, err := p.post("/v1/completions", body); err != nil {
			return err
		}
		return errors.New("no KV event batch yet")
	})
}
