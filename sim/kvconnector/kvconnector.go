// Package kvconnector is `strata sim`'s KV connector to the node agent's
// block API (docs/kvbm.md), playing the part vLLM's offloading connectors
// play: the blocks the simulated GPU pool evicts are offloaded to the
// agent's tiers with real payload bytes (KV bytes per token × block size,
// derived from the block's key so that any read can be checked), and a
// prompt's blocks the GPU pool misses are looked up there, and the leading
// run the tiers hold is read back, checked byte for byte, and onboarded.
// The engine charges the bytes read as a host-to-GPU transfer.
package kvconnector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/strata-llm/strata/agent/kvbm/client"
	"github.com/strata-llm/strata/backoff"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Config configures a Connector.
type Config struct {
	// Socket is the agent's block API socket; WorkerID the worker the
	// agent launched this engine as.
	Socket, WorkerID string
	// Model is the served model name; BlockSize tokens per block;
	// BlockBytes the payload of one block.
	Model      string
	BlockSize  int
	BlockBytes int64
	// Layout names what else shapes a block's bytes (the simulator's KV
	// bytes per token); every node's simulators must spell it the same.
	Layout string
	// OffloadQueue bounds the blocks waiting to be offloaded (default
	// 1024); beyond it evicted blocks are dropped, as a real connector
	// drops what it has no room to copy.
	OffloadQueue int
	// Timeout bounds one load (default 30 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Stats counts what the connector did.
type Stats struct {
	Offloaded, OffloadBytes, OffloadDropped, OffloadFailed int64
	Loads, Onboarded, OnboardBytes, Corrupt, LoadFailed    int64
}

// Connector is one engine's connector. Offload and Load are safe for
// concurrent use.
type Connector struct {
	cfg Config
	log *slog.Logger
	c   *client.Client

	queue chan uint64
	ready chan struct{} // closed once the scope is open
	scope atomic.Pointer[client.Scope]

	offloaded, offloadBytes, offloadDropped, offloadFailed atomic.Int64
	loads, onboarded, onboardBytes, corrupt, loadFailed    atomic.Int64
}

// New checks cfg and dials (lazily); Run opens the scope and offloads.
func New(cfg Config) (*Connector, error) {
	switch {
	case cfg.Socket == "" || cfg.WorkerID == "" || cfg.Model == "":
		return nil, errors.New("kv connector: want the agent's socket, the worker id and the model")
	case cfg.BlockSize <= 0 || cfg.BlockBytes <= 0:
		return nil, fmt.Errorf("kv connector: block size %d tokens, %d bytes: must be positive", cfg.BlockSize, cfg.BlockBytes)
	}
	if cfg.OffloadQueue <= 0 {
		cfg.OffloadQueue = 1024
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := client.Dial(cfg.Socket)
	if err != nil {
		return nil, err
	}
	return &Connector{cfg: cfg, log: cfg.Logger, c: c, queue: make(chan uint64, cfg.OffloadQueue), ready: make(chan struct{})}, nil
}

// Layout is the layout name of a simulator with kvBytesPerToken.
func Layout(kvBytesPerToken int64) string {
	return "strata-sim|kv" + strconv.FormatInt(kvBytesPerToken, 10)
}

// Run opens the scope (retrying while the agent is not up, or does not
// run this worker yet) and then offloads queued blocks until ctx ends.
func (c *Connector) Run(ctx context.Context) error {
	retry := backoff.New()
	for {
		s, err := c.c.Open(ctx, &stratav1.OpenKVScopeRequest{
			WorkerId: c.cfg.WorkerID, Model: c.cfg.Model, BlockSize: uint32(c.cfg.BlockSize),
			Layout: c.cfg.Layout, BlockBytes: uint64(c.cfg.BlockBytes),
		})
		if err == nil {
			c.scope.Store(s)
			close(c.ready)
			c.log.Info("kv connector open", "socket", c.cfg.Socket, "scope", fmt.Sprintf("%016x", s.ID()), "tiers", s.Tiers(), "block_bytes", c.cfg.BlockBytes)
			break
		}
		c.log.Warn("kv connector: cannot open the scope yet", "err", err)
		if !retry.Wait(ctx) {
			return nil
		}
	}
	c.offloadLoop(ctx)
	return nil
}

// offloadBatch bounds one put stream.
const offloadBatch = 16

func (c *Connector) offloadLoop(ctx context.Context) {
	for {
		var batch []uint64
		select {
		case <-ctx.Done():
			return
		case h := <-c.queue:
			batch = append(batch, h)
		}
	fill:
		for len(batch) < offloadBatch {
			select {
			case h := <-c.queue:
				batch = append(batch, h)
			default:
				break fill
			}
		}
		c.put(ctx, batch)
	}
}

func (c *Connector) put(ctx context.Context, hashes []uint64) {
	s := c.scope.Load()
	blocks := make([]client.Block, len(hashes))
	for i, h := range hashes {
		blocks[i] = client.Block{Hash: h, Data: Payload(s.ID(), h, int(c.cfg.BlockBytes))}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	res, err := s.Put(ctx, blocks)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("kv connector: offload failed", "blocks", len(blocks), "err", err)
		}
		c.offloadFailed.Add(int64(len(blocks)))
		return
	}
	c.offloaded.Add(int64(res.Stored))
	c.offloadBytes.Add(int64(res.Stored) * c.cfg.BlockBytes)
	c.offloadFailed.Add(int64(len(res.Errors)))
	if len(res.Errors) > 0 {
		c.log.Debug("kv connector: blocks not offloaded", "blocks", len(res.Errors), "first", res.Errors[0].GetMessage())
	}
}

// Offload queues blocks evicted from the GPU pool (by Strata sequence
// hash) for the tiers. It never blocks: a block that finds the queue full,
// or the scope not open yet, is dropped and counted.
func (c *Connector) Offload(hashes []uint64) {
	if c.scope.Load() == nil {
		c.offloadDropped.Add(int64(len(hashes)))
		return
	}
	for _, h := range hashes {
		select {
		case c.queue <- h:
		default:
			c.offloadDropped.Add(1)
		}
	}
}

// Load onboards the leading run of hashes the tiers hold: it reads them
// with a prefix get (which stops at the first block no tier has), checks
// every block's bytes, and returns how many leading blocks it read and
// their bytes. It reads at once, so it needs no lookup and no pin (a
// connector that looks up in one place and reads in another, as vLLM's
// scheduler and workers do, pins in the lookup). A failure is a shorter
// run (possibly none), never an error: the engine computes the rest.
func (c *Connector) Load(ctx context.Context, hashes []uint64) (blocks int, bytes int64) {
	s := c.scope.Load()
	if s == nil || len(hashes) == 0 {
		return 0, 0
	}
	if limit := int(s.Limits().GetMaxBatchBlocks()); len(hashes) > limit {
		hashes = hashes[:limit]
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	c.loads.Add(1)
	err := s.Get(ctx, hashes, true, func(g client.Got) error {
		if g.Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_OK || g.Index != blocks {
			return errStop
		}
		if !Verify(g.Data, s.ID(), g.Hash, int(c.cfg.BlockBytes)) {
			c.corrupt.Add(1)
			c.log.Warn("kv connector: onboarded block has wrong bytes", "hash", fmt.Sprintf("%016x", g.Hash), "medium", g.Medium)
			return errStop
		}
		blocks++
		bytes += int64(len(g.Data))
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		c.loadFailed.Add(1)
		c.log.Warn("kv connector: onboard failed", "read", blocks, "of", len(hashes), "err", err)
	}
	c.onboarded.Add(int64(blocks))
	c.onboardBytes.Add(bytes)
	return blocks, bytes
}

var errStop = errors.New("stop at this block")

// Stats returns the counters.
func (c *Connector) Stats() Stats {
	return Stats{
		Offloaded: c.offloaded.Load(), OffloadBytes: c.offloadBytes.Load(), OffloadDropped: c.offloadDropped.Load(), OffloadFailed: c.offloadFailed.Load(),
		Loads: c.loads.Load(), Onboarded: c.onboarded.Load(), OnboardBytes: c.onboardBytes.Load(), Corrupt: c.corrupt.Load(), LoadFailed: c.loadFailed.Load(),
	}
}

// Ready is closed once the scope is open.
func (c *Connector) Ready() <-chan struct{} { return c.ready }

// Close closes the connection; Run must have returned.
func (c *Connector) Close() error { return c.c.Close() }

// Payload is a block's simulated KV bytes: size bytes derived from the
// scope and hash, so that whoever reads the block back can check it.
func Payload(scope, hash uint64, size int) []byte {
	b := make([]byte, size)
	fill(b, seed(scope, hash))
	return b
}

// Verify says whether b is the payload of (scope, hash) of size bytes.
func Verify(b []byte, scope, hash uint64, size int) bool {
	if len(b) != size {
		return false
	}
	x := seed(scope, hash)
	i := 0
	for ; i+8 <= size; i += 8 {
		x = next(x)
		if binary.LittleEndian.Uint64(b[i:]) != x {
			return false
		}
	}
	if i < size {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], next(x))
		return string(b[i:]) == string(w[:size-i])
	}
	return true
}

func seed(scope, hash uint64) uint64 { return hash ^ scope*0x9e3779b97f4a7c15 | 1 }

func next(x uint64) uint64 {
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	return x
}

func fill(b []byte, x uint64) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x = next(x)
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	if i < len(b) {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], next(x))
		copy(b[i:], w[:])
	}
}
