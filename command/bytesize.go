package command

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag of a size in bytes, written as an integer with an
// optional unit: "68719476736", "64GiB", "512MiB", "2TB" (K, M, G, T are
// powers of 1000, Ki, Mi, Gi, Ti of 1024; the trailing B is optional).
type byteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"ti", 1 << 40}, {"gi", 1 << 30}, {"mi", 1 << 20}, {"ki", 1 << 10},
	{"t", 1e12}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3},
}

func (b *byteSize) Set(s string) error {
	v := strings.ToLower(strings.TrimSpace(s))
	v = strings.TrimSuffix(v, "b")
	mult := int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("size %q: want a non-negative integer with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	if n > math.MaxInt64/mult {
		return fmt.Errorf("size %q: too large", s)
	}
	*b = byteSize(n * mult)
	return nil
}

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (*byteSize) Type() string { return "bytes" }
