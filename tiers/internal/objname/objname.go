// Package objname names blocks in a bucket or container: <prefix>/<scope>/<hash>.
package objname

import (
	"fmt"
	"strings"

	"github.com/strata-llm/strata/tiers"
)

// Namer joins a checked prefix and a key's object name.
type Namer struct{ prefix string }

// New checks an operator's prefix: slash-separated segments of letters,
// digits, '-', '_' and '.', none of them "." or ".."; leading and trailing
// slashes are dropped, so "/strata/kv/" is "strata/kv". Empty is allowed.
func New(prefix string) (Namer, error) {
	p := strings.Trim(prefix, "/")
	if p == "" {
		return Namer{}, nil
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return Namer{}, fmt.Errorf("prefix %q: empty, . or .. segment", prefix)
		}
		if i := strings.IndexFunc(seg, notNameChar); i >= 0 {
			return Namer{}, fmt.Errorf("prefix %q: character %q (want letters, digits, - _ . and /)", prefix, seg[i])
		}
	}
	return Namer{prefix: p + "/"}, nil
}

func notNameChar(c rune) bool {
	ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	return !ok
}

// Name is k's object name.
func (n Namer) Name(k tiers.Key) string { return n.prefix + k.ObjectName() }
