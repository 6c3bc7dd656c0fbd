package engines

import (
	"errors"
	"slices"
	"testing"
)

func TestLookup(t *testing.T) {
	kinds := Kinds()
	if !slices.IsSorted(kinds) || len(kinds) != 5 {
		t.Fatalf("kinds %q", kinds)
	}
	for _, kind := range kinds {
		a, err := Lookup(kind)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if a.Kind() != kind {
			t.Errorf("Lookup(%q).Kind() = %q", kind, a.Kind())
		}
	}
	for _, kind := range []string{"", "VLLM", "tgi", "vllm "} {
		if a, err := Lookup(kind); !errors.Is(err, ErrUnknownKind) || a != nil {
			t.Errorf("Lookup(%q) = %v, %v; want ErrUnknownKind", kind, a, err)
		}
	}
}
