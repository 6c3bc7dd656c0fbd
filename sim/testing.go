package sim

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/strata-llm/strata/sim/engine"
)

// TestSim starts a simulated engine on a loopback port for a test, fast
// (speedup 1000) and small, and stops it when the test ends. cb may adjust
// the options first.
func TestSim(t testing.TB, cb func(*Options)) *Sim {
	t.Helper()
	opts := Options{
		Host:   "127.0.0.1",
		Model:  "sim-model",
		Engine: engine.DefaultConfig(),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	opts.Engine.Speedup = 1000
	opts.Engine.NumGPUBlocks = 4096
	opts.Engine.MaxModelLen = 8192
	if cb != nil {
		cb(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, opts)
	if err != nil {
		cancel()
		t.Fatalf("start sim: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("sim stopped with: %v", err)
		}
	})
	return s
}

// URL is the sim's base URL.
func (s *Sim) URL() string { return "http://" + s.Addr.String() }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
