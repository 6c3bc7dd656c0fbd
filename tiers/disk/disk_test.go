package disk

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/internal/record"
	"github.com/strata-llm/strata/tiers/storetest"
)

func open(t *testing.T, dir string, capacity int64) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, storetest.Options{BlockSize: 64 << 10}, func(t *testing.T) tiers.Store { return open(t, t.TempDir(), 64<<20) })
}

func TestCapacity(t *testing.T) {
	storetest.Capacity(t, open(t, t.TempDir(), 3*4096), tiers.Disk, 4096)
}

// Every file lives at <dir>/blocks/<top byte of the hash>/<scope>-<hash>,
// whatever the key: the name is the key's hex, nothing else.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	k := tiers.Key{Scope: 0x0102030405060708, Hash: 0xab00000000000001}
	if err := s.Put(context.Background(), []tiers.Block{{Key: k, Data: []byte("kv")}}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "blocks", "ab", "0102030405060708-ab00000000000001")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != record.HeaderSize+2 || !bytes.HasSuffix(b, []byte("kv")) {
		t.Fatalf("file %q", b)
	}
	for _, k := range []tiers.Key{{}, {Scope: ^tiers.Scope(0), Hash: ^uint64(0)}} {
		rel, err := filepath.Rel(dir, s.path(k))
		if err != nil || strings.Contains(rel, "..") || !strings.HasPrefix(rel, "blocks"+string(filepath.Separator)) {
			t.Fatalf("path of %v: %s escapes %s", k, s.path(k), dir)
		}
	}
}

// A flipped byte anywhere (payload or header) is detected on read: the
// block is not served, it is deleted, and the store's accounting drops it.
func TestCorruptBlockIsDroppedNotServed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset int // negative: from the end
	}{
		{"payload first byte", record.HeaderSize},
		{"payload last byte", -1},
		{"header key", 10},
		{"header length", 25},
		{"header checksum", 33},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			s, err := Open(context.Background(), Options{Dir: t.TempDir(), Capacity: 1 << 20, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close() //nolint:errcheck // test
			good, bad := storetest.Block(1, 8192), storetest.Block(2, 8192)
			if err := s.Put(context.Background(), []tiers.Block{good, bad}); err != nil {
				t.Fatal(err)
			}
			flipByte(t, s.path(bad.Key), tc.offset)

			res := s.Get(context.Background(), []tiers.Key{good.Key, bad.Key})
			if res[0].Err != nil || !bytes.Equal(res[0].Data, good.Data) {
				t.Fatalf("the intact block: %v", res[0].Err)
			}
			if !errors.Is(res[1].Err, tiers.ErrCorrupt) || res[1].Data != nil {
				t.Fatalf("the corrupt block: err %v, %d bytes; want ErrCorrupt and no data", res[1].Err, len(res[1].Data))
			}
			if _, err := os.Stat(s.path(bad.Key)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the corrupt file is still there: %v", err)
			}
			if st := s.Stats(); st.Blocks != 1 || st.Bytes != 8192 {
				t.Fatalf("stats after the drop: %+v", st)
			}
			if !strings.Contains(logs.String(), "corrupt") {
				t.Fatalf("no report in the log: %q", logs.String())
			}
			if r := s.Get(context.Background(), []tiers.Key{bad.Key}); !errors.Is(r[0].Err, tiers.ErrNotFound) {
				t.Fatalf("after the drop: %v, want ErrNotFound", r[0].Err)
			}
		})
	}
}

func flipByte(t *testing.T, path string, offset int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if offset < 0 {
		offset += len(b)
	}
	b[offset] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A store opened on a directory an earlier one used serves its blocks,
// after cleaning what a crash would leave: temp files, torn and misnamed
// files.
func TestRestartRebuildsIndex(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	blocks := []tiers.Block{storetest.Block(1, 1000), storetest.Block(2, 2000), storetest.Block(3, 3000), storetest.Block(4, 4000)}
	if err := s.Put(context.Background(), blocks); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What a crash leaves: a temp file, a torn file, a file copied onto
	// another key's name; and a stranger's file.
	shard := filepath.Dir(s.path(blocks[0].Key))
	mustWrite(t, filepath.Join(shard, tmpPrefix+"leftover"), []byte("partial"))
	torn, err := os.ReadFile(s.path(blocks[1].Key))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s.path(blocks[1].Key), torn[:len(torn)/2])
	moved := storetest.Key(9)
	whole, err := os.ReadFile(s.path(blocks[2].Key))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s.path(moved), whole)
	mustWrite(t, filepath.Join(shard, "README"), []byte("not a block"))

	s2 := open(t, dir, 1<<20)
	if st := s2.Stats(); st.Blocks != 3 || st.Bytes != 1000+3000+4000 {
		t.Fatalf("rebuilt stats %+v, want blocks 1, 3, 4", st)
	}
	storetest.MustGet(t, s2, []tiers.Key{blocks[0].Key, blocks[2].Key, blocks[3].Key}, []int{1000, 3000, 4000})
	for _, gone := range []string{filepath.Join(shard, tmpPrefix+"leftover"), s.path(blocks[1].Key), s.path(moved)} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s survived the rebuild", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(shard, "README")); err != nil {
		t.Fatalf("a file that is not a block was removed: %v", err)
	}
}

// Opening with a smaller capacity keeps the most recently written blocks.
func TestRestartWithSmallerCapacity(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	for i := range 4 {
		if err := s.Put(context.Background(), []tiers.Block{storetest.Block(i, 1000)}); err != nil {
			t.Fatal(err)
		}
		// File times have the kernel's tick as resolution: make the order plain.
		setModTime(t, s.path(storetest.Key(i)), i)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir, 2000)
	has, err := s2.Has(context.Background(), []tiers.Key{storetest.Key(0), storetest.Key(1), storetest.Key(2), storetest.Key(3)})
	if err != nil {
		t.Fatal(err)
	}
	if !has[2] || !has[3] || has[0] || has[1] {
		t.Fatalf("kept %v, want the two newest", has)
	}
}

func TestDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, 1<<20)
	if _, err := Open(context.Background(), Options{Dir: dir, Capacity: 1 << 20}); err == nil {
		t.Fatal("a second store opened the same directory")
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, o := range []Options{{Capacity: 1}, {Dir: t.TempDir()}} {
		if _, err := Open(context.Background(), o); err == nil {
			t.Fatalf("Open(%+v) succeeded", o)
		}
	}
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func setModTime(t *testing.T, path string, second int) {
	t.Helper()
	at := time.Unix(1_700_000_000+int64(second), 0)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}
