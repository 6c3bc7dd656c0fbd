// Package sim assembles `strata sim`: the simulated engine, its KV event
// publisher and its OpenAI-compatible HTTP server, configured the way
// `vllm serve` is.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/strata-llm/strata/sim/engine"
	"github.com/strata-llm/strata/sim/kvconnector"
	"github.com/strata-llm/strata/sim/kvevents"
	"github.com/strata-llm/strata/sim/server"
	"github.com/strata-llm/strata/tokenizer"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
	"github.com/strata-llm/strata/tokenizer/hf"
)

// Options is everything `strata sim` takes on its command line.
type Options struct {
	Host             string
	Port             int
	Model            string
	ServedModelNames []string
	Engine           engine.Config
	// KVEventsConfig and KVTransferConfig are vLLM's JSON flags, verbatim.
	KVEventsConfig   string
	KVTransferConfig string
	// Role overrides the role implied by KVTransferConfig's kv_role.
	Role          server.Role
	EventEncoding kvevents.Encoding
	EventHashes   kvevents.HashEncoding
	// ReplayWithTopic answers replay requests as vLLM >= 0.26 does.
	ReplayWithTopic bool
	MaxBodyBytes    int64
	// StallAfter injects a hang after that many completion requests (see
	// server.Config.StallAfter).
	StallAfter int
	// Tokenizer tokenizes prompts and detokenizes output; nil means
	// TokenizerDir's Hugging Face tokenizer, or without one the built-in
	// byte-level tokenizer.
	Tokenizer tokenizer.Tokenizer
	// TokenizerDir is a model directory with tokenizer.json and
	// tokenizer_config.json (vLLM's --tokenizer).
	TokenizerDir string
	// KVBMSocket, when set, connects the engine's KV connector to the node
	// agent's block API there (docs/kvbm.md), as worker KVBMWorkerID.
	KVBMSocket, KVBMWorkerID string
	Logger                   *slog.Logger
}

// ServedNames are the names the model answers to, the first reported.
func (o Options) ServedNames() []string {
	if len(o.ServedModelNames) == 0 {
		return []string{o.Model}
	}
	return o.ServedModelNames
}

// Sim is a running simulated engine.
type Sim struct {
	Addr      net.Addr
	Engine    *engine.Engine
	Publisher *kvevents.Publisher
	Server    *server.Server
	// Connector is the KV connector to the agent's tiers, nil without one.
	Connector *kvconnector.Connector

	run func(context.Context) error
}

// New binds the listener and the KV event sockets and builds the engine;
// Run serves. Binding first lets callers learn the real addresses of ":0".
func New(ctx context.Context, opts Options) (*Sim, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tok := opts.Tokenizer
	switch {
	case tok != nil:
	case opts.TokenizerDir != "":
		hft, err := hf.Load(opts.TokenizerDir)
		if err != nil {
			return nil, fmt.Errorf("--tokenizer: %w", err)
		}
		tok = hft
	default:
		tok = bytelevel.Tokenizer{}
	}
	names := opts.ServedNames()
	if names[0] == "" {
		return nil, errors.New("sim: a model name is required")
	}

	srvCfg := server.Config{
		ServedModelNames: names,
		MaxModelLen:      opts.Engine.MaxModelLen,
		Role:             opts.Role,
		MaxBodyBytes:     opts.MaxBodyBytes,
		StallAfter:       opts.StallAfter,
		Logger:           log,
	}
	if opts.KVTransferConfig != "" {
		kt, err := server.ParseKVTransferConfig(opts.KVTransferConfig)
		if err != nil {
			return nil, err
		}
		srvCfg.KVTransfer = true
		srvCfg.EngineID = kt.EngineID
		if srvCfg.Role == "" {
			if srvCfg.Role, err = kt.Role(); err != nil {
				return nil, err
			}
		}
	} else if opts.Role != "" && opts.Role != server.RoleBoth {
		// A prefill or decode role is only meaningful with the handshake.
		srvCfg.KVTransfer = true
	}
	if srvCfg.KVTransfer && srvCfg.EngineID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		srvCfg.EngineID = hex.EncodeToString(b[:])
	}

	var pub *kvevents.Publisher
	if opts.KVEventsConfig != "" {
		kc, err := kvevents.ParseConfig(opts.KVEventsConfig)
		if err != nil {
			return nil, fmt.Errorf("--kv-events-config: %w", err)
		}
		if kc.EnableKVCacheEvents && kc.Publisher == "zmq" {
			pub, err = kvevents.NewPublisher(ctx, kc, kvevents.Options{
				Encoding: opts.EventEncoding, Hashes: opts.EventHashes,
				ReplayWithTopic: opts.ReplayWithTopic, Logger: log,
			})
			if err != nil {
				return nil, fmt.Errorf("kv events: %w", err)
			}
			opts.Engine.Events = pub
		}
	}

	ecfg := opts.Engine
	ecfg.EOS, ecfg.TextTokens, ecfg.Logger = tok.EOS(), tok.TextTokens(), log
	var conn *kvconnector.Connector
	if opts.KVBMSocket != "" {
		var err error
		conn, err = kvconnector.New(kvconnector.Config{
			Socket: opts.KVBMSocket, WorkerID: opts.KVBMWorkerID, Model: names[0],
			BlockSize: ecfg.BlockSize, BlockBytes: ecfg.Timing.KVBytesPerToken * int64(ecfg.BlockSize),
			Layout: kvconnector.Layout(ecfg.Timing.KVBytesPerToken), Logger: log,
		})
		if err != nil {
			closePub(pub)
			return nil, fmt.Errorf("--kvbm-socket: %w", err)
		}
		ecfg.Connector = conn
	}
	eng, err := engine.New(ecfg)
	if err != nil {
		closePub(pub)
		closeConn(conn)
		return nil, err
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)))
	if err != nil {
		closePub(pub)
		closeConn(conn)
		return nil, fmt.Errorf("listen: %w", err)
	}
	srvCfg.AdvertiseHost = advertiseHost(opts.Host)
	srvCfg.AdvertisePort = ln.Addr().(*net.TCPAddr).Port
	srv, err := server.New(srvCfg, eng, tok)
	if err != nil {
		ln.Close()
		closePub(pub)
		closeConn(conn)
		return nil, err
	}
	s := &Sim{Addr: ln.Addr(), Engine: eng, Publisher: pub, Server: srv, Connector: conn}
	s.run = func(ctx context.Context) error {
		defer closePub(pub)
		engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
		engDone := make(chan error, 1)
		go func() { engDone <- eng.Run(engCtx) }()
		connDone := make(chan error, 1)
		if conn != nil {
			go func() { connDone <- conn.Run(engCtx) }()
		} else {
			connDone <- nil
		}
		err := srv.Serve(ctx, ln)
		// The HTTP server has drained; now stop the engine, which aborts
		// whatever a client left behind, and the connector.
		stopEngine()
		err = errors.Join(err, <-engDone, <-connDone)
		closeConn(conn)
		return err
	}
	return s, nil
}

// Run serves until ctx ends.
func (s *Sim) Run(ctx context.Context) error { return s.run(ctx) }

func closeConn(c *kvconnector.Connector) {
	if c != nil {
		_ = c.Close()
	}
}

func closePub(p *kvevents.Publisher) {
	if p != nil {
		_ = p.Close()
	}
}

// advertiseHost is the address a peer can reach a wildcard listener on.
func advertiseHost(host string) string {
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "127.0.0.1"
	}
	return host
}
