package kvevents

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/strata-llm/strata/kvhash"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

const (
	gpu = stratav1.Medium_MEDIUM_GPU
	cpu = stratav1.Medium_MEDIUM_CPU
)

// prompt is a test prompt of whole blocks with made-up engine hashes.
type prompt struct {
	id     int
	tokens []uint32
	bs     int
}

func newPrompt(id, blocks, bs int) prompt {
	return prompt{id: id, tokens: toks(id*100_000, blocks*bs), bs: bs}
}

// hash is the engine's (made-up) hash of block i.
func (p prompt) hash(i int) EngineHash { return IntHash(uint64(p.id)<<32 | uint64(i)) }

// run is the Stored event for blocks [from, to).
func (p prompt) run(from, to int, m stratav1.Medium) EngineEvent {
	ev := EngineEvent{Kind: Stored, Tokens: p.tokens[from*p.bs : to*p.bs], BlockSize: p.bs, Medium: m}
	for i := from; i < to; i++ {
		ev.Hashes = append(ev.Hashes, p.hash(i))
	}
	if from > 0 {
		ev.Parent, ev.HasParent = p.hash(from-1), true
	}
	return ev
}

func (p prompt) removed(m stratav1.Medium, blocks ...int) EngineEvent {
	ev := EngineEvent{Kind: Removed, Medium: m}
	for _, i := range blocks {
		ev.Hashes = append(ev.Hashes, p.hash(i))
	}
	return ev
}

// index is a stand-in for the brain's view of one worker: Strata blocks per
// medium, built only from the events.
type index map[stratav1.Medium]map[uint64]bool

func (x index) apply(tb testing.TB, events []*stratav1.KVEvent) {
	tb.Helper()
	for _, ev := range events {
		switch e := ev.Event.(type) {
		case *stratav1.KVEvent_Stored:
			if x[e.Stored.Medium] == nil {
				x[e.Stored.Medium] = map[uint64]bool{}
			}
			for _, h := range e.Stored.SeqHashes {
				x[e.Stored.Medium][h] = true
			}
		case *stratav1.KVEvent_Removed:
			for _, h := range e.Removed.SeqHashes {
				if !x[e.Removed.Medium][h] {
					tb.Errorf("removal of %x on %v, which was not announced", h, e.Removed.Medium)
				}
				delete(x[e.Removed.Medium], h)
			}
		case *stratav1.KVEvent_Cleared:
			clear(x)
		default:
			tb.Errorf("event %T", ev.Event)
		}
	}
	for m, set := range x {
		if len(set) == 0 {
			delete(x, m)
		}
	}
}

// set builds the expected index from Strata hashes.
func set(m stratav1.Medium, hashes ...[]uint64) index {
	x := index{m: map[uint64]bool{}}
	for _, hs := range hashes {
		for _, h := range hs {
			x[m][h] = true
		}
	}
	return x
}

func TestTranslatorRunsMatchWholePrompt(t *testing.T) {
	tests := []struct {
		name   string
		blocks int
		bs     int
		runs   []int // block boundaries
		lora   string
		cfgBS  int // the deployment's; the events then carry none
	}{
		{"one run", 6, 16, []int{0, 6}, "", 0},
		{"three runs", 9, 16, []int{0, 2, 3, 9}, "", 0},
		{"single blocks", 4, 4, []int{0, 1, 2, 3, 4}, "", 0},
		{"lora", 5, 16, []int{0, 3, 5}, "sql-adapter", 0},
		{"block size from the deployment", 5, 32, []int{0, 2, 5}, "", 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPrompt(1, tt.blocks, tt.bs)
			tr := NewTranslator(tt.cfgBS)
			var got []*stratav1.KVEvent
			for i := 1; i < len(tt.runs); i++ {
				ev := p.run(tt.runs[i-1], tt.runs[i], gpu)
				ev.LoraName = tt.lora
				ev.HasLoraID = tt.lora != ""
				if tt.cfgBS != 0 {
					ev.BlockSize = 0
				}
				got = tr.Apply(got, ev)
			}
			whole := kvhash.Prompt(p.tokens, tt.bs, tt.lora)
			var seqs []uint64
			for i, ev := range got {
				s := ev.GetStored()
				if s == nil {
					t.Fatalf("event %d is %T", i, ev.Event)
				}
				start := tt.runs[i]
				if s.HasParent != (start > 0) || (start > 0 && s.ParentSeqHash != whole[start-1]) {
					t.Fatalf("run %d: parent %x (has %v), want block %d's", i, s.ParentSeqHash, s.HasParent, start-1)
				}
				if s.Medium != gpu || s.BlockSize != uint32(tt.bs) || s.LoraName != tt.lora {
					t.Fatalf("run %d: %v", i, s)
				}
				seqs = append(seqs, s.SeqHashes...)
			}
			if !slices.Equal(seqs, whole) {
				t.Fatalf("hashes of the runs differ from kvhash.Prompt of the whole prompt")
			}
			if st := tr.Stats(); st.Blocks != tt.blocks || st.Stored != uint64(tt.blocks) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestTranslatorSkips(t *testing.T) {
	p := newPrompt(1, 4, 16)
	base := func(mod func(*EngineEvent)) EngineEvent {
		ev := p.run(0, 2, gpu)
		mod(&ev)
		return ev
	}
	tests := []struct {
		name string
		ev   EngineEvent
		want func(TranslatorStats) uint64
	}{
		{"unknown parent", p.run(2, 4, gpu), func(s TranslatorStats) uint64 { return s.UnknownParent }},
		{"no tokens (offloading connector)", base(func(e *EngineEvent) { e.Tokens, e.BlockSize, e.Medium = nil, 0, cpu }),
			func(s TranslatorStats) uint64 { return s.NoTokens }},
		{"tokens do not match hashes", base(func(e *EngineEvent) { e.Tokens = e.Tokens[:20] }),
			func(s TranslatorStats) uint64 { return s.BadTokens }},
		{"no block size anywhere", base(func(e *EngineEvent) { e.BlockSize = 0 }),
			func(s TranslatorStats) uint64 { return s.BadTokens }},
		{"adapter without a name", base(func(e *EngineEvent) { e.LoraID, e.HasLoraID = 3, true }),
			func(s TranslatorStats) uint64 { return s.UnnamedLoRA }},
		{"unknown medium", base(func(e *EngineEvent) { e.Medium = stratav1.Medium_MEDIUM_UNSPECIFIED }),
			func(s TranslatorStats) uint64 { return s.UnknownMedium }},
		{"unknown removal", p.removed(gpu, 0), func(s TranslatorStats) uint64 { return s.UnknownRemoved }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTranslator(0)
			if out := tr.Apply(nil, tt.ev); len(out) != 0 {
				t.Fatalf("translated to %v", out)
			}
			if st := tr.Stats(); tt.want(st) != 1 || st.Blocks != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestTranslatorUnknownParentCascades: once a run is dropped, its children
// are dropped too, and a fresh prompt is still learned.
func TestTranslatorUnknownParentCascades(t *testing.T) {
	p, q := newPrompt(1, 6, 16), newPrompt(2, 2, 16)
	tr := NewTranslator(16)
	x := index{}
	x.apply(t, tr.Apply(nil, p.run(2, 4, gpu)))
	x.apply(t, tr.Apply(nil, p.run(4, 6, gpu)))
	x.apply(t, tr.Apply(nil, q.run(0, 2, gpu)))
	if st := tr.Stats(); st.UnknownParent != 2 || st.Blocks != 2 {
		t.Fatalf("stats %+v", st)
	}
	if want := set(gpu, kvhash.Prompt(q.tokens, 16, "")); !reflect.DeepEqual(x, want) {
		t.Fatalf("index %v, want %v", x, want)
	}
}

func TestTranslatorRemoveAndClear(t *testing.T) {
	p := newPrompt(1, 4, 16)
	whole := kvhash.Prompt(p.tokens, 16, "")
	tr := NewTranslator(16)
	x := index{}
	x.apply(t, tr.Apply(nil, p.run(0, 4, gpu)))
	// A run on CPU whose parent only the GPU holds: the parent's Strata
	// hash does not depend on the medium.
	x.apply(t, tr.Apply(nil, p.run(3, 4, cpu)))
	if !x[cpu][whole[3]] {
		t.Fatal("run on CPU not chained to its parent on the GPU")
	}
	// Offloaded to CPU with tokens: the same blocks on a second medium.
	x.apply(t, tr.Apply(nil, p.run(0, 2, cpu)))

	out := tr.Apply(nil, p.removed(gpu, 3, 2))
	if len(out) != 1 || !slices.Equal(out[0].GetRemoved().SeqHashes, []uint64{whole[3], whole[2]}) || out[0].GetRemoved().Medium != gpu {
		t.Fatalf("removal: %v", out)
	}
	x.apply(t, out)
	want := set(gpu, whole[:2])
	maps.Copy(want, set(cpu, whole[:2], whole[3:]))
	if !reflect.DeepEqual(x, want) {
		t.Fatalf("index %v, want %v", x, want)
	}

	// No medium (TRT-LLM): gone from every medium.
	x.apply(t, tr.Apply(nil, EngineEvent{Kind: Removed, Hashes: []EngineHash{p.hash(1)}}))
	want = set(gpu, whole[:1])
	maps.Copy(want, set(cpu, whole[:1], whole[3:]))
	if !reflect.DeepEqual(x, want) {
		t.Fatalf("index %v, want %v", x, want)
	}

	out = tr.Apply(nil, EngineEvent{Kind: Cleared})
	if len(out) != 1 || out[0].GetCleared() == nil {
		t.Fatalf("clear: %v", out)
	}
	x.apply(t, out)
	if st := tr.Stats(); st.Blocks != 0 || len(x) != 0 || st.Cleared != 1 {
		t.Fatalf("after clear: stats %+v, index %v", st, x)
	}
	if out := tr.Apply(nil, p.removed(gpu, 0)); len(out) != 0 {
		t.Fatalf("removal after clear: %v", out)
	}
}

// TestTranslatorSharedStrataBlock: two engine blocks with the same tokens
// (vLLM hashes extra keys Strata does not see) are one Strata block, removed
// with the last of them.
func TestTranslatorSharedStrataBlock(t *testing.T) {
	p := newPrompt(1, 1, 16)
	salted := p.run(0, 1, gpu)
	salted.Hashes = []EngineHash{IntHash(999)}
	tr := NewTranslator(16)
	tr.Apply(nil, p.run(0, 1, gpu))
	tr.Apply(nil, salted)
	if out := tr.Apply(nil, p.removed(gpu, 0)); len(out) != 0 {
		t.Fatalf("removed while another engine block holds it: %v", out)
	}
	if out := tr.Apply(nil, EngineEvent{Kind: Removed, Medium: gpu, Hashes: salted.Hashes}); len(out) != 1 {
		t.Fatalf("last removal: %v", out)
	}
	// An engine hash reused for other tokens replaces its block.
	tr.Apply(nil, p.run(0, 1, gpu))
	other := newPrompt(2, 1, 16).run(0, 1, gpu)
	other.Hashes = []EngineHash{p.hash(0)}
	out := tr.Apply(nil, other)
	if len(out) != 2 || out[0].GetRemoved() == nil || out[1].GetStored() == nil {
		t.Fatalf("reuse: %v", out)
	}
}

// TestTranslatorSnapshot: a snapshot rebuilds the same index, lists every
// event after the one that announces its parent, and costs one event per
// branch.
func TestTranslatorSnapshot(t *testing.T) {
	a := newPrompt(1, 6, 16)
	b := prompt{id: 2, tokens: append(slices.Clone(a.tokens[:3*16]), toks(777_000, 3*16)...), bs: 16}
	c := newPrompt(3, 2, 16)
	tr := NewTranslator(16)
	x := index{}
	apply := func(ev EngineEvent) { x.apply(t, tr.Apply(nil, ev)) }
	apply(a.run(0, 2, gpu))
	apply(a.run(2, 6, gpu))
	// b shares a's first 3 blocks; the engine reports only its own.
	bRun := b.run(3, 6, gpu)
	bRun.Parent = a.hash(2)
	apply(bRun)
	apply(c.run(0, 2, cpu))
	apply(a.run(0, 1, cpu))
	// Evicting a's middle leaves its tail orphaned on the GPU.
	apply(a.removed(gpu, 4))

	snap := tr.Snapshot()
	rebuilt := index{}
	rebuilt.apply(t, snap)
	if !reflect.DeepEqual(rebuilt, x) {
		t.Fatalf("snapshot rebuilds %v, want %v", rebuilt, x)
	}
	announced := map[stratav1.Medium]map[uint64]bool{}
	perMedium := map[stratav1.Medium]int{}
	lastMedium := stratav1.Medium(0)
	for i, ev := range snap {
		s := ev.GetStored()
		if s == nil {
			t.Fatalf("snapshot event %d is %T", i, ev.Event)
		}
		if s.Medium < lastMedium {
			t.Fatalf("media out of order at event %d", i)
		}
		lastMedium = s.Medium
		perMedium[s.Medium]++
		if announced[s.Medium] == nil {
			announced[s.Medium] = map[uint64]bool{}
		}
		if s.HasParent && x[s.Medium][s.ParentSeqHash] && !announced[s.Medium][s.ParentSeqHash] {
			t.Fatalf("event %d's parent is held but announced later", i)
		}
		for _, h := range s.SeqHashes {
			announced[s.Medium][h] = true
		}
	}
	// GPU: a[0..3] (then a[4] is gone), b's branch, a's orphaned a[5].
	// CPU: c, and a[0].
	if want := map[stratav1.Medium]int{gpu: 3, cpu: 2}; !reflect.DeepEqual(perMedium, want) {
		t.Fatalf("events per medium %v, want %v:\n%v", perMedium, want, snap)
	}
	if again := tr.Snapshot(); !reflect.DeepEqual(fmt.Sprint(again), fmt.Sprint(snap)) {
		t.Fatal("snapshot is not deterministic")
	}
}
