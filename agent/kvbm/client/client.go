// Package client is a Go KV connector's side of the agent's block API
// (package kvbm, docs/kvbm.md): a gRPC client on the agent's Unix socket
// with the protocol's chores done — chunking large blocks, reassembling
// them, and opening a scope again when the agent restarted and forgot it.
// `strata sim`'s connector and the KVBM's benchmarks use it; a connector in
// another language does the same with its own gRPC library.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/strata-llm/strata/agent/kvbm/internal/wire"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// maxMessage bounds what the client receives: the server's largest chunk
// (4 MiB by default) and the fields around it. A server announcing larger
// chunks is refused at OpenKVScope.
const maxMessage = 16 << 20

// maxBlock bounds a block the client assembles from chunks, whatever a
// server claims: the tiers' own bound.
const maxBlock = 256 << 20

// Client is a connection to the agent's socket; safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	api  stratav1.KVBlockServiceClient
}

// Dial connects to the socket lazily: no agent needs to be up yet.
func Dial(socket string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // a local socket, 0600
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage),
			// Puts send the caller's bytes as they are; gets copy a block
			// once, into the buffer the caller gets (package wire).
			grpc.ForceCodecV2(wire.Codec{})),
		grpc.WithInitialWindowSize(16<<20), grpc.WithInitialConnWindowSize(64<<20),
		grpc.WithReadBufferSize(256<<10), grpc.WithWriteBufferSize(256<<10),
	)
	if err != nil {
		return nil, fmt.Errorf("kvbm client: %w", err)
	}
	return &Client{conn: conn, api: stratav1.NewKVBlockServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Scope is one opened KV layout: every call names its blocks.
type Scope struct {
	c   *Client
	req *stratav1.OpenKVScopeRequest

	mu  sync.Mutex
	res *stratav1.OpenKVScopeResponse
}

// Open opens a scope (OpenKVScope).
func (c *Client) Open(ctx context.Context, req *stratav1.OpenKVScopeRequest) (*Scope, error) {
	s := &Scope{c: c, req: req}
	if err := s.reopen(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Scope) reopen(ctx context.Context) error {
	res, err := s.c.api.OpenKVScope(ctx, s.req)
	if err != nil {
		return fmt.Errorf("kvbm open: %w", err)
	}
	if l := res.GetLimits(); l.GetMaxChunkBytes() == 0 || l.GetMaxChunkBytes() > maxMessage/2 || l.GetMaxBatchBlocks() == 0 {
		return fmt.Errorf("kvbm open: unusable limits %v", l)
	}
	s.mu.Lock()
	s.res = res
	s.mu.Unlock()
	return nil
}

func (s *Scope) open() *stratav1.OpenKVScopeResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res
}

// ID is the scope.
func (s *Scope) ID() uint64 { return s.open().GetScope() }

// Limits are the server's.
func (s *Scope) Limits() *stratav1.KVLimits { return s.open().GetLimits() }

// Tiers are the node's tiers, fastest first.
func (s *Scope) Tiers() []stratav1.Medium { return s.open().GetTiers() }

// retry runs call, and once more after opening the scope again if the
// server no longer knows it (the agent restarted).
func (s *Scope) retry(ctx context.Context, call func(scope uint64) error) error {
	err := call(s.ID())
	if status.Code(err) != codes.FailedPrecondition {
		return err
	}
	if rerr := s.reopen(ctx); rerr != nil {
		return errors.Join(err, rerr)
	}
	return call(s.ID())
}

// Lookup says which tier holds each hash (LookupKVBlocks). With prefix it
// stops after the leading run; pinMs > 0 pins what it finds locally.
func (s *Scope) Lookup(ctx context.Context, hashes []uint64, prefix bool, pinMs uint32) (*stratav1.LookupKVBlocksResponse, error) {
	var res *stratav1.LookupKVBlocksResponse
	err := s.retry(ctx, func(scope uint64) error {
		var err error
		res, err = s.c.api.LookupKVBlocks(ctx, &stratav1.LookupKVBlocksRequest{Scope: scope, SeqHashes: hashes, Prefix: prefix, PinTtlMs: pinMs})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kvbm lookup: %w", err)
	}
	return res, nil
}

// Pin pins (or, with 0, unpins) blocks (PinKVBlocks).
func (s *Scope) Pin(ctx context.Context, hashes []uint64, ttlMs uint32) ([]stratav1.Medium, error) {
	var res *stratav1.PinKVBlocksResponse
	err := s.retry(ctx, func(scope uint64) error {
		var err error
		res, err = s.c.api.PinKVBlocks(ctx, &stratav1.PinKVBlocksRequest{Scope: scope, SeqHashes: hashes, TtlMs: ttlMs})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kvbm pin: %w", err)
	}
	return res.GetMedia(), nil
}

// Block is a block to put.
type Block struct {
	Hash uint64
	Data []byte
}

// PutResult is what a put stored.
type PutResult struct {
	Stored uint32
	Errors []*stratav1.KVBlockError
}

// Put offloads blocks in one stream (PutKVBlocks), each in chunks of the
// server's size. It does not keep the blocks' bytes.
func (s *Scope) Put(ctx context.Context, blocks []Block) (PutResult, error) {
	var out PutResult
	err := s.retry(ctx, func(scope uint64) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := s.c.api.PutKVBlocks(ctx)
		if err != nil {
			return err
		}
		chunk := int(s.Limits().GetMaxChunkBytes())
		msg := &wire.Put{Scope: scope}
		for _, b := range blocks {
			msg.SeqHash, msg.Size = b.Hash, uint64(len(b.Data))
			for off := 0; off < len(b.Data); off += chunk {
				msg.Offset, msg.Data = uint64(off), b.Data[off:min(off+chunk, len(b.Data))]
				if err := stream.SendMsg(msg); err != nil {
					if errors.Is(err, io.EOF) {
						_, err = stream.CloseAndRecv() // the server's reason
					}
					return err
				}
			}
		}
		res, err := stream.CloseAndRecv()
		if err != nil {
			return err
		}
		out = PutResult{Stored: res.GetStored(), Errors: res.GetErrors()}
		return nil
	})
	if err != nil {
		return PutResult{}, fmt.Errorf("kvbm put: %w", err)
	}
	return out, nil
}

// Got is one block GetKVBlocks answered.
type Got struct {
	// Index is the block's position in the request.
	Index  int
	Hash   uint64
	Status stratav1.KVBlockStatus
	Medium stratav1.Medium
	// Data is the block (status OK), the caller's to keep.
	Data []byte
}

// Get onboards blocks (GetKVBlocks), calling fn for each as it arrives, in
// request order. With prefix the stream stops at the first block no tier
// holds (fn sees it NOT_FOUND). An error from fn ends the call with it.
func (s *Scope) Get(ctx context.Context, hashes []uint64, prefix bool, fn func(Got) error) error {
	started := false
	err := s.retry(ctx, func(scope uint64) error {
		if started {
			return errors.New("kvbm get: the scope was lost in the middle of a stream")
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := s.c.api.GetKVBlocks(ctx, &stratav1.GetKVBlocksRequest{Scope: scope, SeqHashes: hashes, Prefix: prefix})
		if err != nil {
			return err
		}
		var cur *Got
		for {
			m := &wire.Get{}
			err := stream.RecvMsg(m)
			if errors.Is(err, io.EOF) {
				if cur != nil {
					return fmt.Errorf("kvbm get: block %016x ended after %d of its bytes", cur.Hash, len(cur.Data))
				}
				return nil
			}
			if err != nil {
				return err
			}
			started = true
			if cur, err = assemble(cur, m, len(hashes)); err != nil {
				return err
			}
			if cur != nil && (cur.Status != stratav1.KVBlockStatus_KV_BLOCK_STATUS_OK || uint64(len(cur.Data)) == m.Size) {
				if err := fn(*cur); err != nil {
					return err
				}
				cur = nil
			}
		}
	})
	if err != nil {
		return fmt.Errorf("kvbm get: %w", err)
	}
	return nil
}

// assemble adds one message of a get stream to the block being received.
// A block of one chunk is that chunk's bytes, with no copy.
func assemble(cur *Got, m *wire.Get, n int) (*Got, error) {
	if int(m.Index) >= n {
		return nil, fmt.Errorf("index %d out of a %d-block request", m.Index, n)
	}
	if cur == nil {
		if m.Offset != 0 || uint64(len(m.Data)) > m.Size {
			return nil, fmt.Errorf("block %016x: first chunk at offset %d, %d of %d bytes", m.SeqHash, m.Offset, len(m.Data), m.Size)
		}
		g := &Got{Index: int(m.Index), Hash: m.SeqHash, Status: stratav1.KVBlockStatus(m.Status), Medium: stratav1.Medium(m.Medium), Data: m.Data}
		if uint64(len(m.Data)) < m.Size {
			if m.Size > maxBlock {
				return nil, fmt.Errorf("block %016x: %d bytes", m.SeqHash, m.Size)
			}
			g.Data = append(make([]byte, 0, m.Size), m.Data...)
		}
		return g, nil
	}
	if int(m.Index) != cur.Index || m.Offset != uint64(len(cur.Data)) || uint64(len(cur.Data)+len(m.Data)) > uint64(cap(cur.Data)) {
		return nil, fmt.Errorf("block %016x: chunk out of order (index %d offset %d)", cur.Hash, m.Index, m.Offset)
	}
	cur.Data = append(cur.Data, m.Data...)
	return cur, nil
}
