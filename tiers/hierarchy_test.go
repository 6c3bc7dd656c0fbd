package tiers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/disk"
	"github.com/strata-llm/strata/tiers/memory"
	"github.com/strata-llm/strata/tiers/storetest"
)

const blockSize = 4096

// recorder collects a hierarchy's events.
type recorder struct {
	mu     sync.Mutex
	events []tiers.Event
}

func (r *recorder) on(ev tiers.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) all() []tiers.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// replay applies the events to per-medium sets, as the brain's index does.
func replay(events []tiers.Event) map[tiers.Medium]map[tiers.Key]bool {
	sets := map[tiers.Medium]map[tiers.Key]bool{}
	for _, ev := range events {
		if sets[ev.Medium] == nil {
			sets[ev.Medium] = map[tiers.Key]bool{}
		}
		for _, k := range ev.Keys {
			if ev.Type == tiers.Stored {
				sets[ev.Medium][k] = true
			} else {
				delete(sets[ev.Medium], k)
			}
		}
	}
	return sets
}

type local struct {
	cpu  *memory.Store
	disk *disk.Store
}

// newLocal is a CPU tier of cpuBlocks and a disk tier of diskBlocks blocks
// of blockSize bytes.
func newLocal(t *testing.T, cpuBlocks, diskBlocks int) local {
	t.Helper()
	cpu, err := memory.New(int64(cpuBlocks * blockSize))
	if err != nil {
		t.Fatal(err)
	}
	d, err := disk.Open(context.Background(), disk.Options{Dir: t.TempDir(), Capacity: int64(diskBlocks * blockSize)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cpu.Close(); _ = d.Close() })
	return local{cpu: cpu, disk: d}
}

func (l local) tiers() []tiers.Tier {
	return []tiers.Tier{{Medium: tiers.CPU, Store: l.cpu}, {Medium: tiers.Disk, Store: l.disk}}
}

func newHierarchy(t *testing.T, cfg tiers.Config) *tiers.Hierarchy {
	t.Helper()
	h, err := tiers.NewHierarchy(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func keys(ids ...int) []tiers.Key {
	out := make([]tiers.Key, len(ids))
	for i, id := range ids {
		out[i] = storetest.Key(id)
	}
	return out
}

// held lists the ids (0..99) a store holds.
func held(t *testing.T, s tiers.Store) string {
	t.Helper()
	all := make([]int, 100)
	for i := range all {
		all[i] = i
	}
	has, err := s.Has(context.Background(), keys(all...))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, ok := range has {
		if ok {
			ids = append(ids, strconv.Itoa(i))
		}
	}
	return strings.Join(ids, ",")
}

// TestEvictionCascadeAndPromotion runs scripts of operations against a CPU
// tier of 3 blocks over a disk tier of 4, and checks what each tier holds
// and which tier served each read.
//
//	put 1 2   offload block 1, then block 2
//	batch 1 2 offload blocks 1 and 2 in one batch
//	get 1 cpu read block 1, served by the CPU tier ("miss": by none)
//	pin 1     pin block 1 for a minute
//	big 7     offload block 7 of four blocks' size (more than the CPU tier)
func TestEvictionCascadeAndPromotion(t *testing.T) {
	for _, tc := range []struct {
		name      string
		spillMin  int
		script    string
		cpu, disk string
	}{
		{"least recently used leaves first; once-seen blocks are not spilled", 2,
			"put 1 2 3; get 1 cpu; put 4", "1,3,4", ""},
		{"the frequency filter spills a block read since its offload", 2,
			"put 1 2 3; get 1 cpu; put 4; put 5; put 6", "4,5,6", "1"},
		{"a miss counts: a block asked for, then offloaded, is spilled", 2,
			"get 9 miss; put 9; put 1 2 3", "1,2,3", "9"},
		{"filter off: every victim spills", 1,
			"put 1 2 3 4 5", "3,4,5", "1,2"},
		{"the disk tier drops its least recently used", 1,
			"put 1 2 3 4 5 6 7 8", "6,7,8", "2,3,4,5"},
		{"a disk hit is promoted to the CPU tier and stays on disk", 1,
			"put 1 2 3 4; get 1 disk; get 1 cpu", "1,3,4", "1,2"},
		{"promotion order: the fastest tier serves", 1,
			"put 1 2 3 4; get 1 disk; get 1 cpu; get 2 disk", "1,2,4", "1,2,3"},
		{"a pinned block is passed over", 2,
			"put 1 2 3; pin 1; put 4", "1,3,4", ""},
		{"a block larger than the CPU tier goes to disk", 1,
			"put 1; big 7; get 7 disk", "1", "7"},
		{"a batch larger than the CPU tier: its first blocks stay, the rest go to disk", 1,
			"batch 1 2 3 4", "1,2,3", "4"},
		{"a block twice in one batch is stored once", 1,
			"batch 1 1 2; put 3 4", "2,3,4", "1"},
		{"a re-offloaded block is not rewritten", 1,
			"put 1 2 3; put 1; put 4", "1,3,4", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocal(t, 3, 4)
			var rec recorder
			h := newHierarchy(t, tiers.Config{Local: l.tiers(), SpillMinCount: tc.spillMin, OnEvent: rec.on})
			ctx := context.Background()
			for step := range strings.SplitSeq(tc.script, "; ") {
				f := strings.Fields(step)
				ids := make([]int, 0, len(f)-1)
				for _, s := range f[1:] {
					if id, err := strconv.Atoi(s); err == nil {
						ids = append(ids, id)
					}
				}
				switch f[0] {
				case "put":
					for _, id := range ids {
						if err := h.Put(ctx, []tiers.Block{storetest.Block(id, blockSize)}); err != nil {
							t.Fatalf("%s: %v", step, err)
						}
					}
				case "batch":
					var blocks []tiers.Block
					for _, id := range ids {
						blocks = append(blocks, storetest.Block(id, blockSize))
					}
					if err := h.Put(ctx, blocks); err != nil {
						t.Fatalf("%s: %v", step, err)
					}
				case "big":
					if err := h.Put(ctx, []tiers.Block{storetest.Block(ids[0], 4*blockSize)}); err != nil {
						t.Fatalf("%s: %v", step, err)
					}
				case "get":
					hits, err := h.Get(ctx, keys(ids[0]))
					if err != nil {
						t.Fatal(err)
					}
					served := hits[0].Medium.String()
					if hits[0].Medium == tiers.MediumNone {
						served = "miss"
					}
					if served != f[len(f)-1] {
						t.Fatalf("%s: served by %v", step, served)
					}
					if hits[0].Data != nil && len(hits[0].Data) != blockSize && len(hits[0].Data) != 4*blockSize {
						t.Fatalf("%s: %d bytes", step, len(hits[0].Data))
					}
				case "pin":
					h.Pin(keys(ids...), time.Minute)
				}
			}
			if got := held(t, l.cpu); got != tc.cpu {
				t.Errorf("cpu holds [%s], want [%s]", got, tc.cpu)
			}
			if got := held(t, l.disk); got != tc.disk {
				t.Errorf("disk holds [%s], want [%s]", got, tc.disk)
			}
			// The index agrees with the stores, and so do the events.
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			blocks := h.Blocks()
			sets := replay(rec.all())
			for _, m := range []tiers.Medium{tiers.CPU, tiers.Disk} {
				want := map[tiers.Key]bool{}
				for _, k := range blocks[m] {
					want[k] = true
				}
				if fmt.Sprint(sets[m]) != fmt.Sprint(want) && len(sets[m])+len(want) > 0 {
					t.Errorf("%v: events replay to %v, the index holds %v", m, sets[m], want)
				}
			}
			st := h.Stats()
			for i, s := range []tiers.Store{l.cpu, l.disk} {
				if got, want := st.Tiers[i].Stats, s.Stats(); got != want {
					t.Errorf("%v: hierarchy accounts %+v, the store %+v", st.Tiers[i].Medium, got, want)
				}
			}
		})
	}
}

// A block that moves down is Stored below before it is Removed above, so
// an index fed by the events never sees it absent.
func TestSpillIsStoredBeforeRemoved(t *testing.T) {
	l := newLocal(t, 1, 4)
	var rec recorder
	h := newHierarchy(t, tiers.Config{Local: l.tiers(), SpillMinCount: 1, OnEvent: rec.on})
	ctx := context.Background()
	for i := range 3 {
		if err := h.Put(ctx, []tiers.Block{storetest.Block(i, blockSize)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range rec.all() {
		for _, k := range ev.Keys {
			if k == storetest.Key(0) {
				got = append(got, ev.Type.String()+" "+ev.Medium.String())
			}
		}
	}
	if want := "[stored cpu stored disk removed cpu]"; fmt.Sprint(got) != want {
		t.Fatalf("block 0's events %v, want %s", got, want)
	}
}

func TestMediumMatchesTheProtocol(t *testing.T) {
	for m, p := range map[tiers.Medium]stratav1.Medium{
		tiers.MediumNone: stratav1.Medium_MEDIUM_UNSPECIFIED, tiers.CPU: stratav1.Medium_MEDIUM_CPU,
		tiers.Disk: stratav1.Medium_MEDIUM_DISK, tiers.Remote: stratav1.Medium_MEDIUM_REMOTE,
	} {
		if stratav1.Medium(m) != p {
			t.Errorf("%v is %d, the protocol's %v is %d", m, m, p, p)
		}
	}
}

// A node that restarts finds its disk blocks, reports them, and serves
// them.
func TestRestartReportsDiskBlocks(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	d, err := disk.Open(ctx, disk.Options{Dir: dir, Capacity: 10 * blockSize})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, []tiers.Block{storetest.Block(1, blockSize), storetest.Block(2, blockSize)}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	cpu, err := memory.New(10 * blockSize)
	if err != nil {
		t.Fatal(err)
	}
	l := local{cpu: cpu}
	if l.disk, err = disk.Open(ctx, disk.Options{Dir: dir, Capacity: 10 * blockSize}); err != nil {
		t.Fatal(err)
	}
	defer l.disk.Close() //nolint:errcheck // test
	var rec recorder
	h := newHierarchy(t, tiers.Config{Local: l.tiers(), OnEvent: rec.on})
	media, err := h.Lookup(ctx, keys(1, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	if mediaString(media) != "disk disk none" {
		t.Fatalf("lookup after restart: %v", media)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if sets := replay(rec.all()); len(sets[tiers.Disk]) != 2 {
		t.Fatalf("events after restart %v, want both disk blocks stored", rec.all())
	}
}

// A disk block that fails its checksum is dropped, reported and counted,
// and the read misses instead of serving it.
func TestCorruptDiskBlockIsNotServed(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cpu, _ := memory.New(blockSize)
	d, err := disk.Open(ctx, disk.Options{Dir: dir, Capacity: 10 * blockSize})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close() //nolint:errcheck // test
	var rec recorder
	h := newHierarchy(t, tiers.Config{Local: local{cpu: cpu, disk: d}.tiers(), SpillMinCount: 1, OnEvent: rec.on})
	for i := range 2 {
		if err := h.Put(ctx, []tiers.Block{storetest.Block(1+i, blockSize)}); err != nil {
			t.Fatal(err)
		}
	}
	// Block 1 was spilled to disk; corrupt its file.
	corruptFile(t, dir, storetest.Key(1))
	hits, err := h.Get(ctx, keys(1))
	if err != nil {
		t.Fatal(err)
	}
	if hits[0].Medium != tiers.MediumNone || hits[0].Data != nil {
		t.Fatalf("a corrupt block was served from %v", hits[0].Medium)
	}
	if st := h.Stats().Tiers[1]; st.Corrupt != 1 || st.Blocks != 0 {
		t.Fatalf("disk tier stats %+v, want one corrupt block dropped", st)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if sets := replay(rec.all()); sets[tiers.Disk][storetest.Key(1)] {
		t.Fatal("no Removed event for the corrupt block")
	}
}

func TestConcurrentUse(t *testing.T) {
	l := newLocal(t, 8, 16)
	var rec recorder
	h := newHierarchy(t, tiers.Config{Local: l.tiers(), SpillMinCount: 1, OnEvent: rec.on})
	ctx := context.Background()
	storetest.Concurrently(t, 6, func(g int) error {
		for r := range 60 {
			id := (g*13 + r*7) % 40
			var err error
			switch r % 5 {
			case 0, 1:
				err = h.Put(ctx, []tiers.Block{storetest.Block(id, blockSize), storetest.Block((id+1)%40, blockSize)})
			case 2:
				var hits []tiers.Hit
				hits, err = h.Get(ctx, keys(id, (id+5)%40))
				for i, hit := range hits {
					if hit.Data != nil && !slices.Equal(hit.Data, storetest.Data(keys(id, (id+5)%40)[i], blockSize)) {
						err = fmt.Errorf("block %d: wrong bytes from %v", id, hit.Medium)
					}
				}
			case 3:
				_, err = h.Lookup(ctx, keys(id))
				h.Pin(keys(id), time.Millisecond)
			case 4:
				err = h.Delete(ctx, keys((id+3)%40))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	st := h.Stats()
	for i, s := range []tiers.Store{l.cpu, l.disk} {
		if got, want := st.Tiers[i].Stats, s.Stats(); got != want {
			t.Errorf("%v: hierarchy accounts %+v, the store %+v", st.Tiers[i].Medium, got, want)
		}
	}
	sets := replay(rec.all())
	for m, ks := range h.Blocks() {
		if len(sets[m]) != len(ks) {
			t.Errorf("%v: events replay to %d blocks, the index holds %d", m, len(sets[m]), len(ks))
		}
	}
}

// A consumer that stalls makes the queue overflow into one Overflow event
// instead of growing without bound or blocking the hierarchy.
func TestEventOverflow(t *testing.T) {
	l := newLocal(t, 64, 64)
	release := make(chan struct{})
	var rec recorder
	var once sync.Once
	h := newHierarchy(t, tiers.Config{Local: l.tiers(), MaxPendingEvents: 4, OnEvent: func(ev tiers.Event) {
		once.Do(func() { <-release }) // stall on the first event
		rec.on(ev)
	}})
	ctx := context.Background()
	for i := range 20 {
		if err := h.Put(ctx, []tiers.Block{storetest.Block(i, blockSize)}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	var overflow bool
	for _, ev := range rec.all() {
		overflow = overflow || ev.Type == tiers.Overflow
	}
	if !overflow {
		t.Fatalf("no overflow event among %d events", len(rec.all()))
	}
	if n := len(h.Blocks()[tiers.CPU]); n != 20 {
		t.Fatalf("Blocks (the resync source) has %d CPU blocks, want 20", n)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := newLocal(t, 2, 4)
	h := newHierarchy(t, tiers.Config{Local: l.tiers(), SpillMinCount: 1, Metrics: tiers.NewMetrics(reg)})
	ctx := context.Background()
	for i := 1; i <= 3; i++ { // 1 and then 2 spill to disk
		if err := h.Put(ctx, []tiers.Block{storetest.Block(i, blockSize)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Get(ctx, keys(1, 3, 9)); err != nil { // 1 is promoted
		t.Fatal(err)
	}
	count, err := promtest.GatherAndCount(reg)
	if err != nil || count == 0 {
		t.Fatalf("gather: %d series, %v", count, err)
	}
	for _, c := range []struct {
		metric, tier string
		want         float64
	}{
		{"strata_kv_tier_hits_total", "cpu", 1}, {"strata_kv_tier_hits_total", "disk", 1},
		{"strata_kv_tier_misses_total", "cpu", 2}, {"strata_kv_tier_misses_total", "disk", 1},
		{"strata_kv_tier_evictions_total", "cpu", 2},
		{"strata_kv_tier_bytes", "cpu", 2 * blockSize}, {"strata_kv_tier_blocks", "disk", 2},
		{"strata_kv_tier_onboards_total", "disk", 1}, {"strata_kv_tier_offloads_total", "disk", 2},
	} {
		if got := gauge(t, reg, c.metric, c.tier); got != c.want {
			t.Errorf("%s{tier=%s} = %v, want %v", c.metric, c.tier, got, c.want)
		}
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name, tier string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "tier" && lp.GetValue() == tier {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

func TestConfigErrors(t *testing.T) {
	l := newLocal(t, 1, 1)
	for name, cfg := range map[string]tiers.Config{
		"no tiers":      {},
		"remote medium": {Local: []tiers.Tier{{Medium: tiers.Remote, Store: l.cpu}}},
		"same medium":   {Local: []tiers.Tier{{Medium: tiers.CPU, Store: l.cpu}, {Medium: tiers.CPU, Store: l.disk}}},
		"no store":      {Local: []tiers.Tier{{Medium: tiers.CPU}}},
		"no medium":     {Local: []tiers.Tier{{Store: l.cpu}}},
	} {
		if _, err := tiers.NewHierarchy(context.Background(), cfg); err == nil {
			t.Errorf("%s: NewHierarchy succeeded", name)
		}
	}
	h := newHierarchy(t, tiers.Config{Local: l.tiers()})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Put(context.Background(), []tiers.Block{storetest.Block(1, 1)}); !errors.Is(err, tiers.ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}
}

// corruptFile flips a payload byte of k's file in a disk tier's directory
// (layout: docs/tiers.md).
func corruptFile(t *testing.T, dir string, k tiers.Key) {
	t.Helper()
	path := filepath.Join(dir, "blocks", fmt.Sprintf("%02x", k.Shard()), k.String())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x20
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mediaString(ms []tiers.Medium) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.String()
	}
	return strings.Join(names, " ")
}
