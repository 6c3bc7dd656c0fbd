package tiers

import (
	"fmt"
	"strconv"

	"github.com/zeebo/xxh3"
)

// Scope is the namespace of a key: the same Strata sequence hash under two
// models, or under one model with two KV layouts (dtype, block size, tensor
// parallel split), names different bytes. A scope is a 64-bit hash of a name
// the caller makes unique per layout, so that every node computes the same
// scope for the same model and the remote tier is shared by all of them.
type Scope uint64

// scopeSeed separates scope hashes from the token and chain hashes of
// package kvhash, which use 1337.
const scopeSeed = 0x5354524154414b56 // "STRATAKV"

// ScopeOf is the scope of a model (and its layout, when the caller appends
// it to the name, e.g. "meta-llama/Llama-3.1-8B|bf16|bs16|tp1").
func ScopeOf(name string) Scope { return Scope(xxh3.HashStringSeed(name, scopeSeed)) }

// Key names one KV block: a Strata sequence hash (package kvhash) within a
// scope. Its text form is two fixed-width lowercase hex fields, so it is
// always a valid, fixed-length file or object name made of [0-9a-f] only:
// whatever the hash, a key can never contain a separator, a dot or "..",
// and so can never name a path outside the directory or prefix it lives in.
type Key struct {
	Scope Scope
	Hash  uint64
}

// KeyLen is the length of a key's text form.
const KeyLen = 16 + 1 + 16

// String is "<scope>-<hash>", each 16 lowercase hex digits.
func (k Key) String() string { return string(k.AppendText(make([]byte, 0, KeyLen))) }

// AppendText appends k's text form to b.
func (k Key) AppendText(b []byte) []byte {
	b = appendHex16(b, uint64(k.Scope))
	b = append(b, '-')
	return appendHex16(b, k.Hash)
}

// ObjectName is k's name under a prefix in a bucket or container:
// "<scope>/<hash>". Objects group by scope (one model's blocks list
// together, and can be expired together by a lifecycle rule) and the hash,
// uniformly distributed, spreads them across the store's key partitions.
func (k Key) ObjectName() string {
	b := make([]byte, 0, KeyLen)
	b = appendHex16(b, uint64(k.Scope))
	b = append(b, '/')
	return string(appendHex16(b, k.Hash))
}

// Shard is the byte of the hash a sharded directory layout uses (the top
// byte: hashes are uniform, so shards fill evenly).
func (k Key) Shard() uint8 { return uint8(k.Hash >> 56) }

// ParseKey parses the text form String returns, exactly: 33 characters,
// lowercase hex, a dash in the middle.
func ParseKey(s string) (Key, error) {
	if len(s) != KeyLen || s[16] != '-' {
		return Key{}, fmt.Errorf("tiers: key %q: want <16 hex>-<16 hex>", s)
	}
	scope, err1 := parseHex16(s[:16])
	hash, err2 := parseHex16(s[17:])
	if err1 != nil || err2 != nil {
		return Key{}, fmt.Errorf("tiers: key %q: want lowercase hex digits", s)
	}
	return Key{Scope: Scope(scope), Hash: hash}, nil
}

// ParseObjectName parses the name ObjectName returns.
func ParseObjectName(s string) (Key, error) {
	if len(s) != KeyLen || s[16] != '/' {
		return Key{}, fmt.Errorf("tiers: object name %q: want <16 hex>/<16 hex>", s)
	}
	return ParseKey(s[:16] + "-" + s[17:])
}

const hexDigits = "0123456789abcdef"

func appendHex16(b []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[(v>>uint(shift))&0xf])
	}
	return b
}

// parseHex16 accepts exactly 16 lowercase hex digits, so that every key has
// one text form (strconv alone would also take upper case).
func parseHex16(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(s, 16, 64)
}
