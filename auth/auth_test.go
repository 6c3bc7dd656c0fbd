package auth

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/strata-llm/strata/test/testutil"
)

func TestTokenNeverPrinted(t *testing.T) {
	tok := Token("s3cret")
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", "token", tok)
	for _, out := range []string{tok.String(), fmt.Sprint(tok), fmt.Sprintf("%v", tok), b.String()} {
		if strings.Contains(out, "s3cret") {
			t.Fatalf("token printed: %q", out)
		}
	}
	if Token("").String() != "(none)" {
		t.Fatal("empty token should say so")
	}
}

func TestTokenMatches(t *testing.T) {
	tests := []struct {
		tok       Token
		presented string
		want      bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"abc", "", false},
		{"", "", true},
	}
	for _, tt := range tests {
		if got := tt.tok.Matches(tt.presented); got != tt.want {
			t.Errorf("%q.Matches(%q) = %v", string(tt.tok), tt.presented, got)
		}
	}
}

func TestTLSFiles(t *testing.T) {
	pki := testutil.TestPKI(t, "server")
	f := pki["server"]
	tests := []struct {
		name    string
		files   TLSFiles
		server  bool
		wantErr string
		mutual  bool
	}{
		{name: "off", files: TLSFiles{}, server: true},
		{name: "server TLS", files: TLSFiles{Cert: f.Cert, Key: f.Key}, server: true},
		{name: "mutual TLS", files: TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA}, server: true, mutual: true},
		{name: "server without a certificate", files: TLSFiles{CA: f.CA}, server: true, wantErr: "needs a certificate"},
		{name: "key without certificate", files: TLSFiles{Key: f.Key}, wantErr: "needs its key"},
		{name: "missing CA file", files: TLSFiles{CA: "/nonexistent/ca.pem"}, wantErr: "read CA"},
		{name: "CA file without certificates", files: TLSFiles{CA: f.Key}, wantErr: "no certificate in CA"},
		{name: "client with CA only", files: TLSFiles{CA: f.CA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			load := tt.files.ClientTLS
			if tt.server {
				load = tt.files.ServerTLS
			}
			cfg, err := load()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.files.Enabled() {
				if cfg != nil {
					t.Fatal("TLS config without files")
				}
				return
			}
			if tt.mutual != (cfg.ClientCAs != nil && tt.server && cfg.ClientAuth != 0) {
				t.Fatalf("mutual TLS = %v, want %v", cfg.ClientAuth, tt.mutual)
			}
		})
	}
}
