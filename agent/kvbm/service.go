package kvbm

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-llm/strata/agent/kvbm/internal/wire"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tiers"
)

// Bounds of OpenKVScope's strings and numbers.
const (
	maxNameLen   = 512
	maxBlockSize = 1 << 20 // tokens per block
	maxTPSize    = 1024
	// lookupChunk is how many hashes a prefix lookup asks the hierarchy
	// about at a time: it stops after the first chunk with a miss, so a
	// prompt whose tail no tier has costs no remote request per block.
	lookupChunk = 64
)

type service struct {
	stratav1.UnimplementedKVBlockServiceServer
	s *Server
}

var _ stratav1.KVBlockServiceServer = (*service)(nil)

func validName(what, v string, required bool) error {
	switch {
	case v == "" && required:
		return status.Errorf(codes.InvalidArgument, "%s is required", what)
	case len(v) > maxNameLen:
		return status.Errorf(codes.InvalidArgument, "%s: %d bytes, at most %d", what, len(v), maxNameLen)
	case !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return status.Errorf(codes.InvalidArgument, "%s: want printable UTF-8", what)
	}
	return nil
}

func (v *service) OpenKVScope(_ context.Context, req *stratav1.OpenKVScopeRequest) (*stratav1.OpenKVScopeResponse, error) {
	l := v.s.limits
	for _, err := range []error{
		validName("worker_id", req.GetWorkerId(), true), validName("model", req.GetModel(), true),
		validName("layout", req.GetLayout(), false),
	} {
		if err != nil {
			return nil, err
		}
	}
	switch {
	case req.GetBlockSize() == 0 || req.GetBlockSize() > maxBlockSize:
		return nil, status.Errorf(codes.InvalidArgument, "block_size %d: want 1 to %d tokens", req.GetBlockSize(), maxBlockSize)
	case req.GetTpSize() > maxTPSize:
		return nil, status.Errorf(codes.InvalidArgument, "tp_size %d: at most %d", req.GetTpSize(), maxTPSize)
	case req.GetBlockBytes() > l.MaxBlockBytes:
		return nil, status.Errorf(codes.InvalidArgument, "block_bytes %d exceed max_block_bytes %d", req.GetBlockBytes(), l.MaxBlockBytes)
	}
	model, ok := v.s.reg.workers.ServedModel(req.GetWorkerId())
	switch {
	case !ok:
		// The agent may not have re-adopted the worker yet after a restart.
		return nil, status.Errorf(codes.Unavailable, "worker %q is not run by this agent (yet): retry", req.GetWorkerId())
	case model != req.GetModel():
		return nil, status.Errorf(codes.InvalidArgument, "model %q: worker %q serves %q", req.GetModel(), req.GetWorkerId(), model)
	}
	si, err := v.s.reg.open(req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return &stratav1.OpenKVScopeResponse{Scope: uint64(si.scope), Limits: l.proto(), Tiers: v.s.media, Reported: si.reported()}, nil
}

// keys checks a batch of hashes of a registered scope.
func (v *service) keys(scope uint64, hashes []uint64) (*scopeInfo, []tiers.Key, error) {
	si := v.s.reg.lookup(scope)
	if si == nil {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "scope %016x is not open (the agent restarted?): call OpenKVScope again", scope)
	}
	if len(hashes) == 0 || len(hashes) > v.s.limits.MaxBatchBlocks {
		return nil, nil, status.Errorf(codes.InvalidArgument, "%d hashes: want 1 to max_batch_blocks %d", len(hashes), v.s.limits.MaxBatchBlocks)
	}
	keys := make([]tiers.Key, len(hashes))
	for i, h := range hashes {
		keys[i] = tiers.Key{Scope: si.scope, Hash: h}
	}
	return si, keys, nil
}

func (v *service) ttl(ms uint32) (time.Duration, error) {
	d := time.Duration(ms) * time.Millisecond
	if d > v.s.limits.MaxPinTTL {
		return 0, status.Errorf(codes.InvalidArgument, "pin ttl %v exceeds max_pin_ttl_ms %d", d, v.s.limits.MaxPinTTL.Milliseconds())
	}
	return d, nil
}

func (v *service) LookupKVBlocks(ctx context.Context, req *stratav1.LookupKVBlocksRequest) (*stratav1.LookupKVBlocksResponse, error) {
	_, keys, err := v.keys(req.GetScope(), req.GetSeqHashes())
	if err != nil {
		return nil, err
	}
	ttl, err := v.ttl(req.GetPinTtlMs())
	if err != nil {
		return nil, err
	}
	media := make([]tiers.Medium, 0, len(keys))
	step := len(keys)
	if req.GetPrefix() {
		step = lookupChunk
	}
	for i := 0; i < len(keys); i += step {
		got, err := v.s.h.Lookup(ctx, keys[i:min(i+step, len(keys))])
		if err != nil {
			return nil, tierStatus(err)
		}
		media = append(media, got...)
		if req.GetPrefix() && prefixLen(got) < len(got) {
			break
		}
	}
	n := prefixLen(media)
	if req.GetPrefix() {
		media = media[:n]
	}
	if ttl > 0 {
		var local []tiers.Key
		for i, m := range media {
			if m == tiers.CPU || m == tiers.Disk {
				local = append(local, keys[i])
			}
		}
		v.s.h.Pin(local, ttl)
	}
	v.s.m.blocks("lookup", "found", n)
	return &stratav1.LookupKVBlocksResponse{Media: protoMedia(media), PrefixBlocks: uint32(n)}, nil
}

func prefixLen(media []tiers.Medium) int {
	for i, m := range media {
		if m == tiers.MediumNone {
			return i
		}
	}
	return len(media)
}

// getBatchBytes bounds the bytes one GetKVBlocks holds at a time: the
// hierarchy is asked for this much, which is sent, then the next.
const getBatchBytes = 32 << 20

func (v *service) GetKVBlocks(req *stratav1.GetKVBlocksRequest, stream grpc.ServerStreamingServer[stratav1.GetKVBlocksResponse]) error {
	ctx := stream.Context()
	si, keys, err := v.keys(req.GetScope(), req.GetSeqHashes())
	if err != nil {
		return err
	}
	step := 16
	if si.blockBytes > 0 {
		step = int(min(max(getBatchBytes/si.blockBytes, 1), 64))
	}
	chunk := int(v.s.limits.MaxChunkBytes)
	for i := 0; i < len(keys); i += step {
		batch := keys[i:min(i+step, len(keys))]
		hits, err := v.s.h.Get(ctx, batch)
		if err != nil {
			return tierStatus(err)
		}
		for j, hit := range hits {
			idx := uint32(i + j)
			if hit.Medium == tiers.MediumNone {
				v.s.m.blocks("get", "not_found", 1)
				err := stream.SendMsg(&wire.Get{Index: idx, SeqHash: batch[j].Hash, Status: int32(stratav1.KVBlockStatus_KV_BLOCK_STATUS_NOT_FOUND)})
				if err != nil || req.GetPrefix() {
					return err
				}
				continue
			}
			data := hit.Data
			// The codec sends the tier's bytes as they are: a memory tier's
			// are shared and never written again, a disk or remote read's
			// are this call's.
			msg := &wire.Get{
				Index: idx, SeqHash: batch[j].Hash, Status: int32(stratav1.KVBlockStatus_KV_BLOCK_STATUS_OK),
				Medium: int32(hit.Medium), Size: uint64(len(data)),
			}
			for off := 0; off == 0 || off < len(data); off += chunk {
				msg.Offset, msg.Data = uint64(off), data[off:min(off+chunk, len(data))]
				if err := stream.SendMsg(msg); err != nil {
					return err
				}
			}
			v.s.m.bytesOut.Add(float64(len(data)))
			v.s.m.blocks("get", hit.Medium.String(), 1)
		}
	}
	return nil
}

func (v *service) PutKVBlocks(stream grpc.ClientStreamingServer[stratav1.PutKVBlocksRequest, stratav1.PutKVBlocksResponse]) error {
	ctx := stream.Context()
	// Receiving runs beside the loop so that an idle stream can be cut
	// off: Recv itself has no deadline.
	msgs := make(chan *wire.Put)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m := &wire.Put{} // the codec decodes it without copying the data
			if err := stream.RecvMsg(m); err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				m.Release()
				return
			}
		}
	}()
	idle := time.NewTimer(v.s.limits.StreamIdleTimeout)
	defer idle.Stop()
	var asm *assembler
	var held []*wire.Put // messages whose data the batch holds
	defer func() {
		for _, m := range held {
			m.Release()
		}
	}()
	res := &stratav1.PutKVBlocksResponse{}
	store := func() error {
		batch := asm.take()
		if len(batch) == 0 {
			return nil
		}
		err := v.s.h.Put(ctx, batch) // copies the bytes: the buffers can go
		for _, m := range held {
			m.Release()
		}
		held = held[:0]
		if errors.Is(err, tiers.ErrClosed) || ctx.Err() != nil {
			return tierStatus(errors.Join(err, ctx.Err()))
		}
		stored := len(batch)
		for i, e := range tiers.ItemErrors(err, len(batch)) {
			if e != nil {
				stored--
				res.Errors = append(res.Errors, &stratav1.KVBlockError{SeqHash: batch[i].Key.Hash, Status: blockStatus(e), Message: e.Error()})
			}
		}
		res.Stored += uint32(stored)
		v.s.m.blocks("put", "stored", stored)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-idle.C:
			return status.Errorf(codes.DeadlineExceeded, "put stream idle for %v: aborted", v.s.limits.StreamIdleTimeout)
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				return err
			}
			if asm == nil {
				return stream.SendAndClose(res) // an empty stream stores nothing
			}
			if err := asm.finish(); err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			if err := store(); err != nil {
				return err
			}
			res.Errors = append(res.Errors, asm.rejected...)
			return stream.SendAndClose(res)
		case m := <-msgs:
			idle.Reset(v.s.limits.StreamIdleTimeout)
			v.s.m.bytesIn.Add(float64(len(m.Data)))
			if asm == nil {
				si := v.s.reg.lookup(m.Scope)
				if si == nil {
					m.Release()
					return status.Errorf(codes.FailedPrecondition, "scope %016x is not open (the agent restarted?): call OpenKVScope again", m.Scope)
				}
				asm = newAssembler(si, v.s.limits)
			}
			kept, err := asm.add(m)
			if kept {
				held = append(held, m)
			} else {
				m.Release()
			}
			if err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			if asm.full() {
				if err := store(); err != nil {
					return err
				}
			}
		}
	}
}

func (v *service) PinKVBlocks(_ context.Context, req *stratav1.PinKVBlocksRequest) (*stratav1.PinKVBlocksResponse, error) {
	_, keys, err := v.keys(req.GetScope(), req.GetSeqHashes())
	if err != nil {
		return nil, err
	}
	ttl, err := v.ttl(req.GetTtlMs())
	if err != nil {
		return nil, err
	}
	return &stratav1.PinKVBlocksResponse{Media: protoMedia(v.s.h.Pin(keys, ttl))}, nil
}

// protoMedia converts tier media to the protocol's (the values are equal).
func protoMedia(media []tiers.Medium) []stratav1.Medium {
	out := make([]stratav1.Medium, len(media))
	for i, m := range media {
		out[i] = stratav1.Medium(m)
	}
	return out
}

// blockStatus is a block's status for a tiers error.
func blockStatus(err error) stratav1.KVBlockStatus {
	switch {
	case errors.Is(err, tiers.ErrCorrupt):
		// A put whose size disagrees with the stored copy: the hierarchy
		// calls that corrupt, the protocol a conflict.
		return stratav1.KVBlockStatus_KV_BLOCK_STATUS_CONFLICT
	case errors.Is(err, tiers.ErrOverCapacity):
		return stratav1.KVBlockStatus_KV_BLOCK_STATUS_OVER_CAPACITY
	}
	return stratav1.KVBlockStatus_KV_BLOCK_STATUS_UNAVAILABLE
}

// tierStatus is a call's status for a hierarchy error.
func tierStatus(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Errorf(codes.Unavailable, "kvbm: %v", err)
}
