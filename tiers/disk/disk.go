// Package disk is the local NVMe tier: one file per block under a directory,
// bounded by payload bytes, its index rebuilt from the files when it opens.
//
// Layout (docs/tiers.md):
//
//	<dir>/LOCK                       flock'd while a store has the directory open
//	<dir>/blocks/<hh>/<scope>-<hash> one record (package record: header + payload)
//	<dir>/blocks/<hh>/.tmp-*         a block being written, renamed into place when whole
//
// <hh> is the top byte of the hash in hex: 256 shard directories however
// many blocks there are. Every path component is built from a key's fixed
// hex form, never from outside text, so no key can name a path outside dir.
//
// A block is written to a temp file and renamed over its name, so a reader
// sees the whole old block or the whole new one. Without Options.Sync there
// is no fsync: the tier is a cache, and a file a crash left torn fails its
// checksum and is dropped, on the next open (header) or the next read
// (payload). Every read verifies the record; a corrupt block is deleted,
// logged and reported as ErrCorrupt, never served.
//
// Ownership: Put does not keep the caller's bytes; Get returns a fresh
// buffer the caller owns.
package disk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/internal/batch"
	"github.com/strata-llm/strata/tiers/internal/record"
)

// Options configure a disk store.
type Options struct {
	// Dir is the store's directory, created if missing.
	Dir string
	// Capacity bounds the payload bytes held (headers add 40 bytes a block).
	Capacity int64
	// Sync fsyncs each block file before the rename, for media where a torn
	// write must not even cost a re-read.
	Sync bool
	// Parallel is how many blocks of a batch are read or written at once
	// (default 4: NVMe wants a queue, two cores want few threads).
	Parallel int
	// Logger receives corrupt-block and cleanup reports (default: discard).
	Logger *slog.Logger
}

// Store is the disk tier.
type Store struct {
	dir      string
	blocks   string
	capacity int64
	sync     bool
	parallel int
	log      *slog.Logger
	lock     *os.File

	mu       sync.RWMutex
	index    map[tiers.Key]fileInfo
	bytes    int64 // payload bytes of indexed blocks
	reserved int64 // payload bytes of puts in flight
	closed   bool
}

type fileInfo struct {
	size     int64
	modified time.Time
}

var (
	_ tiers.Store  = (*Store)(nil)
	_ tiers.Lister = (*Store)(nil)
)

const tmpPrefix = ".tmp-"

// Open opens (or creates) the store in opts.Dir and rebuilds its index from
// the files there: leftover temp files are removed, files whose header is
// corrupt or disagrees with their name or size are removed and logged, and
// if the blocks exceed the capacity the least recently written are removed
// until they fit.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("disk tier: no directory")
	}
	if opts.Capacity <= 0 {
		return nil, fmt.Errorf("disk tier: capacity %d bytes: want > 0", opts.Capacity)
	}
	s := &Store{
		dir: opts.Dir, blocks: filepath.Join(opts.Dir, "blocks"),
		capacity: opts.Capacity, sync: opts.Sync, parallel: cmp.Or(opts.Parallel, 4),
		log: opts.Logger, index: map[tiers.Key]fileInfo{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for i := range 256 {
		if err := os.MkdirAll(s.shardDir(uint8(i)), 0o700); err != nil {
			return nil, fmt.Errorf("disk tier: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(opts.Dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("disk tier: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("disk tier: %s is in use by another store: %w", opts.Dir, err)
	}
	s.lock = lock
	if err := s.rebuild(ctx); err != nil {
		_ = lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) shardDir(shard uint8) string {
	return filepath.Join(s.blocks, string([]byte{hexDigit(shard >> 4), hexDigit(shard & 0xf)}))
}

func hexDigit(v uint8) byte { return "0123456789abcdef"[v] }

// path is where key's file lives: made of the key's hex only.
func (s *Store) path(k tiers.Key) string { return filepath.Join(s.shardDir(k.Shard()), k.String()) }

func (s *Store) rebuild(ctx context.Context) error {
	var mu sync.Mutex
	var firstErr error
	batch.Each(256, s.parallel, func(i int) {
		found, err := s.scanShard(ctx, uint8(i))
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for k, fi := range found {
			s.index[k] = fi
			s.bytes += fi.size
		}
	})
	if firstErr != nil {
		return firstErr
	}
	if s.bytes <= s.capacity {
		return nil
	}
	// The capacity shrank since the last run: keep the newest blocks.
	infos := s.listLocked()
	slices.SortFunc(infos, func(a, b tiers.BlockInfo) int { return a.Modified.Compare(b.Modified) })
	removed := 0
	for _, info := range infos {
		if s.bytes <= s.capacity {
			break
		}
		s.removeFile(info.Key)
		delete(s.index, info.Key)
		s.bytes -= info.Size
		removed++
	}
	s.log.Info("disk tier over its capacity on open: removed the oldest blocks", "dir", s.dir, "removed", removed, "capacity", s.capacity)
	return nil
}

// scanShard indexes one shard directory, reading each file's header only.
func (s *Store) scanShard(ctx context.Context, shard uint8) (map[tiers.Key]fileInfo, error) {
	dir := s.shardDir(shard)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("disk tier: %w", err)
	}
	found := make(map[tiers.Key]fileInfo, len(entries))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, tmpPrefix) {
			_ = os.Remove(path) // a write a crash or a kill interrupted
			continue
		}
		k, err := tiers.ParseKey(name)
		if err != nil || k.Shard() != shard || !e.Type().IsRegular() {
			s.log.Warn("disk tier: ignoring a file that is not a block", "path", path)
			continue
		}
		fi, err := checkHeader(path, k)
		if err != nil {
			s.log.Warn("disk tier: removing a corrupt block", "key", k, "err", err)
			_ = os.Remove(path)
			continue
		}
		found[k] = fi
	}
	return found, nil
}

// checkHeader verifies a block file's header against its name and size.
func checkHeader(path string, k tiers.Key) (fileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileInfo{}, err
	}
	defer f.Close() //nolint:errcheck // read-only
	st, err := f.Stat()
	if err != nil {
		return fileInfo{}, err
	}
	var h [record.HeaderSize]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return fileInfo{}, fmt.Errorf("read header: %v: %w", err, tiers.ErrCorrupt)
	}
	hdr, err := record.DecodeHeader(h[:])
	if err != nil {
		return fileInfo{}, err
	}
	if hdr.Key != k {
		return fileInfo{}, fmt.Errorf("file holds key %s: %w", hdr.Key, tiers.ErrCorrupt)
	}
	if st.Size() != record.HeaderSize+hdr.Length {
		return fileInfo{}, fmt.Errorf("file is %d bytes, its header says %d: %w", st.Size(), record.HeaderSize+hdr.Length, tiers.ErrCorrupt)
	}
	return fileInfo{size: hdr.Length, modified: st.ModTime()}, nil
}

// Put writes each block to a temp file and renames it into place. A block
// that does not fit in what is left of the capacity fails with
// ErrOverCapacity (the store never evicts on its own), as does one the
// file system has no room for.
func (s *Store) Put(ctx context.Context, blocks []tiers.Block) error {
	errs := make([]error, len(blocks))
	batch.Each(len(blocks), s.parallel, func(i int) {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			return
		}
		errs[i] = s.put(blocks[i])
	})
	return tiers.Batch(errs)
}

func (s *Store) put(b tiers.Block) error {
	size := int64(len(b.Data))
	if size > tiers.MaxBlockSize {
		return fmt.Errorf("disk put %s: %d bytes exceed the %d-byte block limit: %w", b.Key, size, tiers.MaxBlockSize, tiers.ErrOverCapacity)
	}
	s.mu.Lock()
	switch old := s.index[b.Key].size; {
	case s.closed:
		s.mu.Unlock()
		return fmt.Errorf("disk put %s: %w", b.Key, tiers.ErrClosed)
	case s.bytes+s.reserved-old+size > s.capacity:
		used := s.bytes + s.reserved
		s.mu.Unlock()
		return fmt.Errorf("disk put %s: %d bytes do not fit (%d of %d used): %w", b.Key, size, used, s.capacity, tiers.ErrOverCapacity)
	}
	s.reserved += size
	s.mu.Unlock()

	modified, err := s.writeFile(b)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved -= size
	if err != nil {
		return fmt.Errorf("disk put %s: %w", b.Key, err)
	}
	if s.closed {
		s.removeFile(b.Key)
		return fmt.Errorf("disk put %s: %w", b.Key, tiers.ErrClosed)
	}
	s.bytes += size - s.index[b.Key].size
	s.index[b.Key] = fileInfo{size: size, modified: modified}
	return nil
}

func (s *Store) writeFile(b tiers.Block) (time.Time, error) {
	f, err := os.CreateTemp(s.shardDir(b.Key.Shard()), tmpPrefix+b.Key.String()+"-")
	if err != nil {
		return time.Time{}, fsError(err)
	}
	tmp := f.Name()
	fail := func(err error) (time.Time, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return time.Time{}, fsError(err)
	}
	header := record.AppendHeader(make([]byte, 0, record.HeaderSize), b.Key, b.Data)
	if _, err := f.Write(header); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b.Data); err != nil {
		return fail(err)
	}
	if s.sync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return time.Time{}, fsError(err)
	}
	if err := os.Rename(tmp, s.path(b.Key)); err != nil {
		_ = os.Remove(tmp)
		return time.Time{}, fsError(err)
	}
	return st.ModTime(), nil
}

// fsError marks a full file system as the tier being over capacity.
func fsError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", err, tiers.ErrOverCapacity)
	}
	return err
}

// Get reads and verifies each block; a block that fails is deleted and
// reported as ErrCorrupt.
func (s *Store) Get(ctx context.Context, keys []tiers.Key) []tiers.Result {
	out := make([]tiers.Result, len(keys))
	batch.Each(len(keys), s.parallel, func(i int) {
		if err := ctx.Err(); err != nil {
			out[i].Err = err
			return
		}
		out[i].Data, out[i].Err = s.get(keys[i])
	})
	return out
}

func (s *Store) get(k tiers.Key) ([]byte, error) {
	s.mu.RLock()
	fi, ok := s.index[k]
	closed := s.closed
	s.mu.RUnlock()
	switch {
	case closed:
		return nil, fmt.Errorf("disk get %s: %w", k, tiers.ErrClosed)
	case !ok:
		return nil, fmt.Errorf("disk get %s: %w", k, tiers.ErrNotFound)
	}
	payload, err := readFile(s.path(k), k)
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.forget(k, fi, false)
		return nil, fmt.Errorf("disk get %s: %w", k, tiers.ErrNotFound)
	case errors.Is(err, tiers.ErrCorrupt):
		s.log.Warn("disk tier: dropping a corrupt block", "key", k, "err", err)
		s.forget(k, fi, true)
		return nil, fmt.Errorf("disk get %s: %w", k, err)
	case err != nil:
		return nil, fmt.Errorf("disk get %s: %w", k, err)
	}
	return payload, nil
}

// readFile reads and verifies a block file.
func readFile(path string, k tiers.Key) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() //nolint:errcheck // read-only
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return record.Read(f, st.Size(), k)
}

// forget drops k from the index, and its file when remove is set, if the
// index still describes the file fi that was read (a put may have replaced
// it since).
func (s *Store) forget(k tiers.Key, fi fileInfo, remove bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.index[k]; ok && cur == fi {
		if remove {
			s.removeFile(k)
		}
		s.bytes -= cur.size
		delete(s.index, k)
	}
}

func (s *Store) removeFile(k tiers.Key) {
	if err := os.Remove(s.path(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("disk tier: could not remove a block", "key", k, "err", err)
	}
}

// Has reports which keys the index holds.
func (s *Store) Has(ctx context.Context, keys []tiers.Key) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("disk has: %w", tiers.ErrClosed)
	}
	out := make([]bool, len(keys))
	for i, k := range keys {
		_, out[i] = s.index[k]
	}
	return out, nil
}

// Delete removes the keys' files.
func (s *Store) Delete(ctx context.Context, keys []tiers.Key) error {
	errs := make([]error, len(keys))
	batch.Each(len(keys), s.parallel, func(i int) {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			return
		}
		errs[i] = s.delete(keys[i])
	})
	return tiers.Batch(errs)
}

func (s *Store) delete(k tiers.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("disk delete %s: %w", k, tiers.ErrClosed)
	}
	fi, ok := s.index[k]
	if !ok {
		return nil
	}
	// Under the lock, so that a put of the same key cannot rename its file
	// in between the unlink and the index update.
	if err := os.Remove(s.path(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disk delete %s: %w", k, err)
	}
	s.bytes -= fi.size
	delete(s.index, k)
	return nil
}

// List enumerates the index; Modified is the file's last write.
func (s *Store) List(ctx context.Context, fn func(tiers.BlockInfo) bool) error {
	s.mu.RLock()
	infos := s.listLocked()
	s.mu.RUnlock()
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !fn(info) {
			return nil
		}
	}
	return nil
}

func (s *Store) listLocked() []tiers.BlockInfo {
	infos := make([]tiers.BlockInfo, 0, len(s.index))
	for k, fi := range s.index {
		infos = append(infos, tiers.BlockInfo{Key: k, Size: fi.size, Modified: fi.modified})
	}
	return infos
}

// Stats is the store's size accounting.
func (s *Store) Stats() tiers.Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return tiers.Stats{Blocks: int64(len(s.index)), Bytes: s.bytes, Capacity: s.capacity}
}

// Close releases the directory; the files stay for the next Open.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lock.Close() // closing the descriptor releases the flock
}
