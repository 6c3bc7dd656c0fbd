// Package bench is `strata bench`: an open-loop load generator and trace
// replayer for any OpenAI-compatible endpoint (Strata's gateway, a single
// engine, anything else). Run sends a workload (package workload) at the
// times an arrival process or a trace gives (package arrival), through a
// streaming client that times every chunk (package client), and returns a
// result (proto strata.v1.BenchResult) with latency distributions,
// throughput, goodput, the cached-token fraction and the workload's reuse
// bounds (package reuse); package report renders it as HTML.
//
// Run is the whole tool as a library, so a benchmark can drive it
// in-process (the routing benchmark replays one workload under each
// routing policy); command/bench.go only parses flags into a Config.
package bench

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/strata-llm/strata/bench/client"
	"github.com/strata-llm/strata/bench/metrics"
	"github.com/strata-llm/strata/bench/workload"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tokenizer"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

// Result is the result of a run, as written to the result file.
type Result = stratav1.BenchResult

// SLO are the objectives goodput counts against.
type SLO = metrics.SLO

// Config is one run. Start from DefaultConfig: the zero value of a boolean
// field is the less common choice.
type Config struct {
	// URL is the API root, ending in /v1.
	URL string
	// Endpoint is chat for the chat workload and completions otherwise
	// when empty.
	Endpoint client.Endpoint
	// Model is the first the endpoint lists (GET /v1/models) when empty.
	Model string
	// APIKey is sent as a bearer token; it is never written to the result.
	APIKey string
	// Header is sent with every request: X-Strata-Routing names Strata's
	// routing policy. The result records it, credentials redacted.
	Header   http.Header
	Workload workload.Spec

	// RequestRate is requests per second; 0 or +Inf sends everything at
	// once, except for a trace, whose own timestamps (divided by Speed)
	// are used unless a rate is given.
	RequestRate float64
	// Burstiness is the gamma shape of the gaps: 1 is Poisson.
	Burstiness float64
	// Speed divides a trace's timestamps.
	Speed float64
	// Seed drives every random choice of the run.
	Seed uint64
	// MaxConcurrency caps the requests in flight (0: no cap). A request
	// due while the cap is reached waits, and its wait shows as schedule
	// lag.
	MaxConcurrency int
	// NumRequests is how many requests the workload has (0: its default);
	// Duration, if set, ends the schedule earlier.
	NumRequests int
	Duration    time.Duration
	// Requests due in the first Warmup, and the first WarmupRequests, are
	// sent but not measured.
	Warmup         time.Duration
	WarmupRequests int

	Stream, IncludeUsage bool
	// IgnoreEOS and MinTokens ask for exact output lengths.
	IgnoreEOS, MinTokens bool
	// PromptFormat is tokens for completions and text for chat when empty.
	PromptFormat workload.Format
	// Token-id prompts draw ids from [TokenIDMin, TokenIDMax].
	TokenIDMin, TokenIDMax uint32
	// Tokenizer sizes text prompts and renders the prompts the reuse
	// bounds count (nil: Strata's byte-level tokenizer, named
	// TokenizerName).
	Tokenizer     tokenizer.Tokenizer
	TokenizerName string

	RequestTimeout time.Duration
	SLO            metrics.SLO
	// The reuse bounds assume blocks of BoundBlockSize tokens and a pooled
	// cache of BoundCapacityBlocks blocks (the cluster's KV capacity).
	BoundBlockSize, BoundCapacityBlocks int
	// SaveRequests lists every request in the result.
	SaveRequests bool

	// CommandLine and Version are recorded in the result.
	CommandLine []string
	Version     string
	// Progress, if set, is called every ProgressInterval during the run
	// and once at its end, from a goroutine of its own.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// Progress is a snapshot of a run.
type Progress struct {
	Elapsed time.Duration
	// Total is the requests the run will send at most.
	Total                             int
	Sent, Succeeded, Failed, InFlight int
	OutputTokens                      int64
	Finished                          bool
}

// DefaultConfig is a streaming run with usage, exact output lengths and the
// byte-level tokenizer's bounds for one `strata sim`.
func DefaultConfig() Config {
	return Config{
		Burstiness:          1,
		Speed:               1,
		Stream:              true,
		IncludeUsage:        true,
		IgnoreEOS:           true,
		MinTokens:           true,
		TokenIDMin:          workload.DefaultTokenIDMin,
		TokenIDMax:          workload.DefaultTokenIDMax,
		RequestTimeout:      10 * time.Minute,
		BoundBlockSize:      16,
		BoundCapacityBlocks: 16384,
		ProgressInterval:    200 * time.Millisecond,
	}
}

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("invalid bench config")

// normalize fills the defaults that depend on other fields and checks cfg.
func (cfg *Config) normalize() error {
	if cfg.URL == "" {
		return fmt.Errorf("%w: a URL is required (http://host:port/v1)", ErrConfig)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = client.Completions
		if cfg.Workload.Kind == workload.KindChat {
			cfg.Endpoint = client.Chat
		}
	}
	switch cfg.Endpoint {
	case client.Completions, client.Chat:
	default:
		return fmt.Errorf("%w: endpoint %q (want completions or chat)", ErrConfig, cfg.Endpoint)
	}
	if cfg.Workload.Kind == workload.KindChat && cfg.Endpoint != client.Chat {
		return fmt.Errorf("%w: the chat workload needs the chat endpoint", ErrConfig)
	}
	if cfg.PromptFormat == "" {
		cfg.PromptFormat = workload.FormatTokens
		if cfg.Endpoint == client.Chat {
			cfg.PromptFormat = workload.FormatText
		}
	}
	switch {
	case cfg.PromptFormat != workload.FormatTokens && cfg.PromptFormat != workload.FormatText:
		return fmt.Errorf("%w: prompt format %q (want tokens or text)", ErrConfig, cfg.PromptFormat)
	case cfg.PromptFormat == workload.FormatTokens && cfg.Endpoint == client.Chat:
		return fmt.Errorf("%w: token-id prompts need the completions endpoint (chat takes text)", ErrConfig)
	case cfg.RequestRate < 0 || math.IsNaN(cfg.RequestRate):
		return fmt.Errorf("%w: request rate %v", ErrConfig, cfg.RequestRate)
	case cfg.MaxConcurrency < 0 || cfg.NumRequests < 0 || cfg.WarmupRequests < 0:
		return fmt.Errorf("%w: negative concurrency, request count or warm-up", ErrConfig)
	case cfg.Duration < 0 || cfg.Warmup < 0:
		return fmt.Errorf("%w: negative duration or warm-up", ErrConfig)
	case cfg.RequestTimeout <= 0:
		return fmt.Errorf("%w: request timeout %v must be positive", ErrConfig, cfg.RequestTimeout)
	}
	if cfg.Tokenizer == nil {
		cfg.Tokenizer, cfg.TokenizerName = bytelevel.Tokenizer{}, "bytelevel"
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 200 * time.Millisecond
	}
	return nil
}

// arrivalProcess names the arrival process cfg implies for w.
func (cfg *Config) arrivalProcess(w *workload.Workload) string {
	switch {
	case w.Timed && cfg.RequestRate == 0:
		return "trace"
	case cfg.RequestRate == 0 || math.IsInf(cfg.RequestRate, 1):
		return "burst"
	case cfg.Burstiness == 1:
		return "poisson"
	}
	return "gamma"
}

// proto is the configuration as recorded in the result.
func (cfg *Config) proto(w *workload.Workload) *stratav1.BenchConfig {
	p := &stratav1.BenchConfig{
		Url: cfg.URL, Endpoint: string(cfg.Endpoint), Model: cfg.Model, Workload: cfg.Workload.Kind,
		Arrival: &stratav1.BenchArrival{
			Process: cfg.arrivalProcess(w), Burstiness: cfg.Burstiness, Speed: cfg.Speed,
		},
		Seed: cfg.Seed, MaxConcurrency: uint32(cfg.MaxConcurrency), NumRequests: uint64(cfg.NumRequests),
		DurationSeconds: cfg.Duration.Seconds(), WarmupSeconds: cfg.Warmup.Seconds(), WarmupRequests: uint64(cfg.WarmupRequests),
		Stream: cfg.Stream, IncludeUsage: cfg.IncludeUsage, IgnoreEos: cfg.IgnoreEOS, MinTokens: cfg.MinTokens,
		PromptFormat: string(cfg.PromptFormat), TokenIdMin: cfg.TokenIDMin, TokenIdMax: cfg.TokenIDMax,
		Tokenizer: cfg.TokenizerName, RequestTimeoutSeconds: cfg.RequestTimeout.Seconds(),
		Slo: &stratav1.BenchSLO{
			TtftMs: ms(cfg.SLO.TTFT), TpotMs: ms(cfg.SLO.TPOT), E2ELatencyMs: ms(cfg.SLO.E2E),
		},
		BoundBlockSize: uint32(cfg.BoundBlockSize), BoundCapacityBlocks: uint64(cfg.BoundCapacityBlocks),
		Headers: recordedHeaders(cfg.Header),
	}
	if !math.IsInf(cfg.RequestRate, 0) {
		p.Arrival.RequestRate = cfg.RequestRate
	}
	spec := cfg.Workload
	switch spec.Kind {
	case workload.KindSynthetic:
		s := spec.Synthetic
		p.WorkloadParams = &stratav1.BenchConfig_Synthetic{Synthetic: &stratav1.BenchSyntheticWorkload{
			InputLen: uint32(s.InputLen), OutputLen: uint32(s.OutputLen), RangeRatio: s.RangeRatio,
		}}
	case workload.KindPrefix:
		s := spec.Prefix
		p.WorkloadParams = &stratav1.BenchConfig_Prefix{Prefix: &stratav1.BenchPrefixWorkload{
			NumPrefixes: uint32(s.NumPrefixes), PrefixLen: uint32(s.PrefixLen), SuffixLen: uint32(s.SuffixLen), OutputLen: uint32(s.OutputLen),
		}}
	case workload.KindChat:
		s := spec.Chat
		p.WorkloadParams = &stratav1.BenchConfig_Chat{Chat: &stratav1.BenchChatWorkload{
			Users: uint32(s.Users), Rounds: uint32(s.Rounds), SystemLen: uint32(s.SystemLen), UserLen: uint32(s.UserLen), OutputLen: uint32(s.OutputLen),
		}}
	case workload.KindTrace:
		s := spec.Trace
		bs := s.HashBlockSize
		if bs == 0 && s.Format == workload.FormatMooncake {
			bs = workload.DefaultHashBlockSize
		}
		p.WorkloadParams = &stratav1.BenchConfig_Trace{Trace: &stratav1.BenchTraceWorkload{
			File: s.File, Format: s.Format, HashBlockSize: uint32(bs),
			TraceRequests: uint64(w.TraceRequests), TraceSeconds: w.TraceSpan.Seconds(),
		}}
	}
	return p
}

// recordedHeaders is h as the result records it: one value per name (the
// values joined by ", ", as HTTP allows), credentials redacted.
func recordedHeaders(h http.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	for name, vals := range h {
		v := strings.Join(vals, ", ")
		if CredentialHeader(name) {
			v = "REDACTED"
		}
		out[name] = v
	}
	return out
}

// CredentialHeader says whether a header's value may be a secret, and is
// kept out of results and recorded command lines.
func CredentialHeader(name string) bool {
	n := strings.ToLower(name)
	if n == "authorization" || n == "proxy-authorization" || n == "cookie" {
		return true
	}
	for _, s := range []string{"key", "token", "secret", "password"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
