package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestDelaysDoubleUpToMaxAndReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &Backoff{Initial: time.Second, Max: 5 * time.Second}
		var got []time.Duration
		for range 5 {
			start := time.Now()
			if !b.Wait(context.Background()) {
				t.Fatal("Wait returned false")
			}
			got = append(got, time.Since(start))
		}
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("delays %v, want %v", got, want)
			}
		}
		b.Reset()
		start := time.Now()
		b.Wait(context.Background())
		if d := time.Since(start); d != time.Second {
			t.Fatalf("after Reset waited %v, want 1s", d)
		}
	})
}

func TestWaitStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		b := New()
		time.AfterFunc(50*time.Millisecond, cancel) // virtual time under synctest
		for b.Wait(ctx) {
		}
		if ctx.Err() == nil {
			t.Fatal("Wait returned false before the context ended")
		}
	})
}
