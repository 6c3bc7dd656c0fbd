// Package arrival computes when the requests of an open-loop benchmark are
// sent: a renewal process (Poisson, or gamma with a burstiness factor), all
// at once, or a trace's own timestamps replayed at a speed factor.
//
// Gaps follow `vllm bench serve`: gamma with shape = burstiness and
// scale = 1/(rate·burstiness), so the mean rate is the same for every
// burstiness, burstiness 1 is Poisson, and the squared coefficient of
// variation of the gaps is 1/burstiness.
package arrival

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Process yields the gaps between consecutive arrivals.
type Process interface {
	// Gap is the time from one arrival to the next.
	Gap() time.Duration
}

// ErrInvalid is wrapped by every error about invalid parameters.
var ErrInvalid = errors.New("invalid arrival process")

// Gamma is a renewal process with gamma-distributed gaps.
type Gamma struct {
	shape, scale float64 // scale in seconds
	rng          *rand.Rand
}

var _ Process = (*Gamma)(nil)

// NewGamma returns arrivals at rate per second with the given burstiness
// (the gamma shape; 1 is Poisson), drawn from seed.
func NewGamma(rate, burstiness float64, seed uint64) (*Gamma, error) {
	if !(rate > 0) || math.IsInf(rate, 0) {
		return nil, fmt.Errorf("%w: rate %v must be a positive number of requests per second", ErrInvalid, rate)
	}
	if !(burstiness > 0) || math.IsInf(burstiness, 0) {
		return nil, fmt.Errorf("%w: burstiness %v must be positive", ErrInvalid, burstiness)
	}
	return &Gamma{shape: burstiness, scale: 1 / (rate * burstiness), rng: rand.New(rand.NewPCG(seed, 0x61727269))}, nil
}

// NewPoisson returns Poisson arrivals at rate per second.
func NewPoisson(rate float64, seed uint64) (*Gamma, error) { return NewGamma(rate, 1, seed) }

// Gap implements Process.
func (g *Gamma) Gap() time.Duration {
	return seconds(g.sample() * g.scale)
}

// sample draws from Gamma(shape, 1).
func (g *Gamma) sample() float64 {
	if g.shape == 1 {
		return g.rng.ExpFloat64()
	}
	if g.shape < 1 {
		// Gamma(k) = Gamma(k+1) · U^(1/k) (Marsaglia and Tsang, §6).
		u := 1 - g.rng.Float64() // (0, 1]
		return marsagliaTsang(g.rng, g.shape+1) * math.Pow(u, 1/g.shape)
	}
	return marsagliaTsang(g.rng, g.shape)
}

// marsagliaTsang draws Gamma(k, 1) for k ≥ 1 ("A simple method for
// generating gamma variables", 2000).
func marsagliaTsang(rng *rand.Rand, k float64) float64 {
	d := k - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// Burst sends every request at once (request rate "inf").
type Burst struct{}

var _ Process = Burst{}

// Gap implements Process.
func (Burst) Gap() time.Duration { return 0 }

// Schedule returns n arrival times from p, the first at 0.
func Schedule(p Process, n int) []time.Duration {
	at := make([]time.Duration, n)
	for i := 1; i < n; i++ {
		at[i] = at[i-1] + min(p.Gap(), math.MaxInt64-at[i-1])
	}
	return at
}

// Replay divides a trace's arrival times by speed: 2 replays twice as fast.
func Replay(times []time.Duration, speed float64) ([]time.Duration, error) {
	if !(speed > 0) || math.IsInf(speed, 0) {
		return nil, fmt.Errorf("%w: speed %v must be positive", ErrInvalid, speed)
	}
	out := make([]time.Duration, len(times))
	for i, t := range times {
		out[i] = seconds(t.Seconds() / speed)
	}
	return out, nil
}

func seconds(s float64) time.Duration {
	if s >= float64(math.MaxInt64)/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s * float64(time.Second))
}
