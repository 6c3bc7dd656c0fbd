package command

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// configCmd is a command with the flag kinds daemons use.
func configCmd(t *testing.T, args ...string) (*cobra.Command, *struct {
	addr  string
	join  []string
	boot  bool
	token string
}) {
	t.Helper()
	v := &struct {
		addr  string
		join  []string
		boot  bool
		token string
	}{}
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	f := cmd.Flags()
	f.String("config", "", "")
	f.StringVar(&v.addr, "raft-addr", "default:1", "")
	f.StringSliceVar(&v.join, "join", nil, "")
	f.BoolVar(&v.boot, "bootstrap", false, "")
	f.StringVar(&v.token, "cluster-token", "", "")
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cmd, v
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "strata.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyConfigPrecedence(t *testing.T) {
	file := writeConfig(t, "raft-addr: file:1\njoin: [a:1, b:2]\nbootstrap: true\ncluster-token: from-file\n")
	t.Setenv("STRATA_CLUSTER_TOKEN", "from-env")
	t.Setenv("STRATA_RAFT_ADDR", "env:1")
	cmd, v := configCmd(t, "--config", file, "--raft-addr", "flag:1")
	if err := applyConfig(cmd); err != nil {
		t.Fatal(err)
	}
	if v.addr != "flag:1" {
		t.Errorf("raft-addr = %q: a flag must beat env and file", v.addr)
	}
	if v.token != "from-env" {
		t.Errorf("cluster-token = %q: env must beat the file", v.token)
	}
	if !v.boot || strings.Join(v.join, ",") != "a:1,b:2" {
		t.Errorf("bootstrap=%v join=%v: file values must fill unset flags", v.boot, v.join)
	}
}

func TestApplyConfigErrors(t *testing.T) {
	tests := []struct {
		name, body, env, want string
	}{
		{name: "unknown key", body: "raft-addr: x:1\nraft-adr: y\n", want: `line 2: unknown key "raft-adr"`},
		{name: "not a mapping", body: "- a\n- b\n", want: "line 1: want a mapping"},
		{name: "nested value", body: "join: {a: 1}\n", want: "want a scalar or a list"},
		{name: "bad yaml", body: "raft-addr: [\n", want: "config file"},
		{name: "bad value", body: "bootstrap: maybe\n", want: "config file key bootstrap"},
		{name: "bad env value", body: "", env: "maybe", want: "STRATA_BOOTSTRAP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("STRATA_BOOTSTRAP", tt.env)
			}
			cmd, _ := configCmd(t, "--config", writeConfig(t, tt.body))
			err := applyConfig(cmd)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func FuzzReadConfigFile(f *testing.F) {
	f.Add([]byte("raft-addr: x:1\njoin: [a:1]\n"))
	f.Add([]byte("bootstrap: true\n"))
	f.Add([]byte("- x\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd, _ := configCmd(t)
		m, err := readConfigFile(cmd.Flags(), p)
		if err != nil {
			return
		}
		for k := range m {
			if cmd.Flags().Lookup(k) == nil {
				t.Fatalf("accepted unknown key %q", k)
			}
		}
	})
}
