package workload

import (
	"fmt"
	"math/rand/v2"
)

// Synthetic is random lengths: each request's prompt and output lengths are
// drawn uniformly from [len·(1−RangeRatio), len·(1+RangeRatio)] (as
// `vllm bench serve --dataset-name random` draws them), and every prompt is
// distinct.
type Synthetic struct {
	InputLen, OutputLen int
	RangeRatio          float64
}

func (s Synthetic) build(n int, seed uint64) (*Workload, error) {
	if s.InputLen < 1 || s.OutputLen < 1 {
		return nil, fmt.Errorf("%w: synthetic lengths must be at least 1 (input %d, output %d)", ErrSpec, s.InputLen, s.OutputLen)
	}
	if !(s.RangeRatio >= 0 && s.RangeRatio < 1) {
		return nil, fmt.Errorf("%w: range ratio %v must be in [0, 1)", ErrSpec, s.RangeRatio)
	}
	r := newRand(seed, domainLengths)
	w := &Workload{Kind: KindSynthetic, Items: make([]Item, n)}
	for i := range w.Items {
		w.Items[i] = Item{
			Index:        i,
			Prompt:       []Segment{{Seed: seedOf(seed, domainSynthetic, uint64(i)), Len: spread(r, s.InputLen, s.RangeRatio)}},
			OutputTokens: spread(r, s.OutputLen, s.RangeRatio),
		}
	}
	return w, nil
}

// spread draws an integer uniformly from [int(l·(1−ratio)), int(l·(1+ratio))],
// at least 1.
func spread(r *rand.Rand, l int, ratio float64) int {
	lo := max(1, int(float64(l)*(1-ratio)))
	hi := max(lo, int(float64(l)*(1+ratio)))
	return lo + r.IntN(hi-lo+1)
}

// Prefix is prefix repetition: every prompt is one of NumPrefixes shared
// prefixes of PrefixLen tokens, chosen uniformly at random, followed by a
// distinct suffix of SuffixLen tokens. It is the workload KV-aware routing
// is for: a router that sends each prefix where it is cached skips its
// prefill.
type Prefix struct {
	NumPrefixes, PrefixLen, SuffixLen, OutputLen int
}

func (p Prefix) build(n int, seed uint64) (*Workload, error) {
	switch {
	case p.NumPrefixes < 1:
		return nil, fmt.Errorf("%w: prefix workload needs at least one prefix", ErrSpec)
	case p.PrefixLen < 0 || p.SuffixLen < 0 || p.PrefixLen+p.SuffixLen < 1:
		return nil, fmt.Errorf("%w: prefix %d + suffix %d tokens: want a non-empty prompt", ErrSpec, p.PrefixLen, p.SuffixLen)
	case p.OutputLen < 1:
		return nil, fmt.Errorf("%w: output length %d must be at least 1", ErrSpec, p.OutputLen)
	}
	r := newRand(seed, domainPrefixChoice)
	w := &Workload{Kind: KindPrefix, Items: make([]Item, n)}
	for i := range w.Items {
		var segs []Segment
		if p.PrefixLen > 0 {
			segs = append(segs, Segment{Seed: seedOf(seed, domainPrefix, uint64(r.IntN(p.NumPrefixes))), Len: p.PrefixLen})
		}
		if p.SuffixLen > 0 {
			segs = append(segs, Segment{Seed: seedOf(seed, domainSuffix, uint64(i)), Len: p.SuffixLen})
		}
		w.Items[i] = Item{Index: i, Prompt: segs, OutputTokens: p.OutputLen}
	}
	return w, nil
}

// Chat is Users concurrent conversations of Rounds turns each. Every
// request carries the conversation so far: a system prompt shared by all
// users, then the user's earlier turns with the answers the endpoint gave,
// then a new user turn of UserLen tokens; the history grows by a turn and an
// answer every round. The i-th arrival is round i / Users of user
// i mod Users + 1, so the request rate counts every turn; a round due
// before its user's previous answer ended waits for it.
type Chat struct {
	Users, Rounds, SystemLen, UserLen, OutputLen int
}

func (c Chat) build(n int, seed uint64) (*Workload, error) {
	switch {
	case c.Users < 1 || c.Rounds < 1:
		return nil, fmt.Errorf("%w: chat needs at least one user and one round (%d users, %d rounds)", ErrSpec, c.Users, c.Rounds)
	case c.UserLen < 1 || c.SystemLen < 0:
		return nil, fmt.Errorf("%w: chat user turns need at least 1 token (user %d, system %d)", ErrSpec, c.UserLen, c.SystemLen)
	case c.OutputLen < 1:
		return nil, fmt.Errorf("%w: output length %d must be at least 1", ErrSpec, c.OutputLen)
	}
	total := c.Users * c.Rounds
	if n == 0 {
		n = total
	}
	if n > total {
		return nil, fmt.Errorf("%w: %d requests asked of a chat of %d users × %d rounds (%d turns)", ErrSpec, n, c.Users, c.Rounds, total)
	}
	w := &Workload{Kind: KindChat, Items: make([]Item, n)}
	if c.SystemLen > 0 {
		w.System = []Segment{{Seed: seedOf(seed, domainSystem), Len: c.SystemLen}}
	}
	for i := range w.Items {
		session, round := i%c.Users+1, i/c.Users
		w.Items[i] = Item{
			Index:        i,
			Prompt:       []Segment{{Seed: seedOf(seed, domainUser, uint64(session), uint64(round)), Len: c.UserLen}},
			OutputTokens: c.OutputLen,
			Session:      session,
			Round:        round,
		}
	}
	return w, nil
}

func newRand(seed, domain uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, domain))
}
