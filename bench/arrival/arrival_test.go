package arrival_test

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/strata-llm/strata/bench/arrival"
)

// gapStats are the mean and squared coefficient of variation of the gaps
// of n arrivals.
func gapStats(at []time.Duration) (mean, cv2 float64) {
	var sum, sq float64
	n := float64(len(at) - 1)
	for i := 1; i < len(at); i++ {
		sum += (at[i] - at[i-1]).Seconds()
	}
	mean = sum / n
	for i := 1; i < len(at); i++ {
		d := (at[i] - at[i-1]).Seconds() - mean
		sq += d * d
	}
	return mean, sq / n / (mean * mean)
}

// The gaps have mean 1/rate for every burstiness and squared coefficient
// of variation 1/burstiness (Poisson: 1). 50,000 gaps give both within a
// few percent; the seed makes the test deterministic.
func TestGammaStatistics(t *testing.T) {
	for _, tc := range []struct {
		name             string
		rate, burstiness float64
	}{
		{"poisson", 20, 1},
		{"bursty", 20, 0.25},
		{"regular", 5, 4},
		{"very bursty", 100, 0.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := arrival.NewGamma(tc.rate, tc.burstiness, 1)
			if err != nil {
				t.Fatal(err)
			}
			at := arrival.Schedule(p, 50001)
			if at[0] != 0 || !slices.IsSorted(at) {
				t.Fatal("schedule does not start at 0 and rise")
			}
			mean, cv2 := gapStats(at)
			if want := 1 / tc.rate; math.Abs(mean-want)/want > 0.03 {
				t.Errorf("mean gap %.5f s, want %.5f", mean, want)
			}
			if want := 1 / tc.burstiness; math.Abs(cv2-want)/want > 0.08 {
				t.Errorf("squared CV %.3f, want %.3f", cv2, want)
			}
		})
	}
}

// Poisson arrivals in disjoint windows are independent with variance equal
// to the mean: the index of dispersion of counts per 1 s window is ≈ 1.
func TestPoissonCounts(t *testing.T) {
	p, _ := arrival.NewPoisson(50, 2)
	at := arrival.Schedule(p, 100000)
	counts := make([]float64, int(at[len(at)-1]/time.Second))
	for _, a := range at {
		if s := int(a / time.Second); s < len(counts) {
			counts[s]++
		}
	}
	var mean, sq float64
	for _, c := range counts {
		mean += c
	}
	mean /= float64(len(counts))
	for _, c := range counts {
		sq += (c - mean) * (c - mean)
	}
	if d := sq / float64(len(counts)) / mean; math.Abs(mean-50) > 1 || math.Abs(d-1) > 0.1 {
		t.Fatalf("per-second counts: mean %.2f (want 50), dispersion %.3f (want 1)", mean, d)
	}
}

func TestDeterministic(t *testing.T) {
	a, _ := arrival.NewGamma(10, 0.5, 9)
	b, _ := arrival.NewGamma(10, 0.5, 9)
	c, _ := arrival.NewGamma(10, 0.5, 10)
	sa, sb, sc := arrival.Schedule(a, 100), arrival.Schedule(b, 100), arrival.Schedule(c, 100)
	if !slices.Equal(sa, sb) || slices.Equal(sa, sc) {
		t.Fatal("schedules do not follow the seed")
	}
}

func TestBurstAndReplay(t *testing.T) {
	if at := arrival.Schedule(arrival.Burst{}, 5); !slices.Equal(at, make([]time.Duration, 5)) {
		t.Fatalf("burst %v", at)
	}
	at, err := arrival.Replay([]time.Duration{0, time.Second, 3 * time.Second}, 4)
	if err != nil || !slices.Equal(at, []time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond}) {
		t.Fatalf("replay at 4×: %v %v", at, err)
	}
	at, _ = arrival.Replay([]time.Duration{0, time.Second}, 0.5)
	if at[1] != 2*time.Second {
		t.Fatalf("replay at 0.5×: %v", at)
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct{ rate, burstiness float64 }{
		{0, 1}, {-1, 1}, {math.NaN(), 1}, {math.Inf(1), 1}, {1, 0}, {1, -2}, {1, math.NaN()},
	} {
		if _, err := arrival.NewGamma(tc.rate, tc.burstiness, 1); !errors.Is(err, arrival.ErrInvalid) {
			t.Errorf("rate %v burstiness %v: %v", tc.rate, tc.burstiness, err)
		}
	}
	for _, speed := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, err := arrival.Replay(nil, speed); !errors.Is(err, arrival.ErrInvalid) {
			t.Errorf("speed %v: %v", speed, err)
		}
	}
}
