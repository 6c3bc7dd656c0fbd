package gateway

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func TestAPIKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# team keys\nsk-alpha name=alpha\nsk-beta name=beta rps=1 burst=2\n")
	k, err := loadAPIKeys(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	req := func(auth string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	status := func(err error) int {
		var ae *apiError
		if errors.As(err, &ae) {
			return ae.status
		}
		return 0
	}
	for _, tc := range []struct {
		auth   string
		name   string
		status int
	}{
		{"Bearer sk-alpha", "alpha", 0},
		{"", "", http.StatusUnauthorized},
		{"Bearer sk-alph", "", http.StatusUnauthorized},
		{"sk-alpha", "", http.StatusUnauthorized},
		{"Bearer sk-beta", "beta", 0},
		{"Bearer sk-beta", "beta", 0},
		{"Bearer sk-beta", "beta", http.StatusTooManyRequests}, // burst of 2 spent
	} {
		name, err := k.check(req(tc.auth))
		if name != tc.name || status(err) != tc.status {
			t.Fatalf("%q: key %q, %v; want %q, status %d", tc.auth, name, err, tc.name, tc.status)
		}
	}

	// A reload takes new keys and keeps unchanged keys' buckets; a bad
	// file keeps the keys in use.
	write("sk-beta name=beta rps=1 burst=2\nsk-gamma\n")
	if err := k.reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.check(req("Bearer sk-alpha")); status(err) != http.StatusUnauthorized {
		t.Fatalf("removed key still accepted: %v", err)
	}
	if _, err := k.check(req("Bearer sk-beta")); status(err) != http.StatusTooManyRequests {
		t.Fatalf("reload refilled an unchanged key's bucket: %v", err)
	}
	if name, err := k.check(req("Bearer sk-gamma")); err != nil || name != "line 2" {
		t.Fatalf("new key: %q, %v", name, err)
	}
	for _, bad := range []string{"", "# nothing\n", "k rps=0\n", "k rps=x\n", "k bogus=1\n", "k\nk\n", "k name\n"} {
		write(bad)
		if err := k.reload(); err == nil {
			t.Fatalf("file %q accepted", bad)
		}
	}
	if _, err := k.check(req("Bearer sk-gamma")); err != nil {
		t.Fatalf("a bad reload dropped the keys: %v", err)
	}
	if _, err := loadAPIKeys(filepath.Join(t.TempDir(), "missing"), slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a missing key file was accepted")
	}
}
