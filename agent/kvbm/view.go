package kvbm

import (
	"time"

	"github.com/strata-llm/strata/tiers"
)

// TierView is one tier in GET /v1/kv.
type TierView struct {
	Medium string `json:"medium"`
	// Blocks, Bytes and Capacity of a local tier (the remote tier's are
	// -1 and 0: a bucket the cluster shares cannot be counted cheaply).
	Blocks   int64 `json:"blocks"`
	Bytes    int64 `json:"bytes"`
	Capacity int64 `json:"capacity_bytes"`
	// Usage is Bytes / Capacity (local tiers).
	Usage float64 `json:"usage,omitempty"`
	// Hits and Misses count blocks asked for; HitRate is hits over both
	// (0 before any request).
	Hits         int64   `json:"hits"`
	Misses       int64   `json:"misses"`
	HitRate      float64 `json:"hit_rate"`
	Offloads     int64   `json:"offloads"`
	Onboards     int64   `json:"onboards"`
	Evictions    int64   `json:"evictions"`
	Errors       int64   `json:"errors"`
	Corrupt      int64   `json:"corrupt"`
	OffloadBytes int64   `json:"offload_bytes"`
	OnboardBytes int64   `json:"onboard_bytes"`
}

// RemoteView is the remote tier's health.
type RemoteView struct {
	Available     bool      `json:"available"`
	LastError     string    `json:"last_error,omitempty"`
	Since         time.Time `json:"since"`
	WriteThrough  bool      `json:"write_through"`
	QueuedBytes   int64     `json:"queued_bytes"`
	DroppedWrites int64     `json:"dropped_writes"`
	Outages       int64     `json:"outages"`
}

// View is the KVBM in GET /v1/kv.
type View struct {
	Enabled bool        `json:"enabled"`
	Socket  string      `json:"socket,omitempty"`
	Tiers   []TierView  `json:"tiers"`
	Remote  *RemoteView `json:"remote,omitempty"`
	// Scopes are the KV layouts connectors opened, with their workers.
	Scopes []scopeView `json:"scopes"`
}

// View reports the tiers, the remote tier's health and the open scopes.
func (s *Server) View() View {
	st := s.h.Stats()
	v := View{Enabled: true, Socket: s.path, Tiers: make([]TierView, 0, len(st.Tiers)), Scopes: s.reg.views()}
	for _, t := range st.Tiers {
		tv := TierView{
			Medium: t.Medium.String(), Blocks: t.Blocks, Bytes: t.Bytes, Capacity: t.Capacity,
			Hits: t.Hits, Misses: t.Misses, Offloads: t.Offloads, Onboards: t.Onboards, Evictions: t.Evictions,
			Errors: t.Errors, Corrupt: t.Corrupt, OffloadBytes: t.OffloadBytes, OnboardBytes: t.OnboardBytes,
		}
		if t.Capacity > 0 && t.Medium != tiers.Remote {
			tv.Usage = float64(t.Bytes) / float64(t.Capacity)
		}
		if n := t.Hits + t.Misses; n > 0 {
			tv.HitRate = float64(t.Hits) / float64(n)
		}
		v.Tiers = append(v.Tiers, tv)
	}
	if r := st.Remote; r != nil {
		v.Remote = &RemoteView{
			Available: r.Available, LastError: r.LastError, Since: r.Since, WriteThrough: r.WriteThrough,
			QueuedBytes: r.QueuedBytes, DroppedWrites: r.DroppedWrites, Outages: r.Outages,
		}
	}
	return v
}
