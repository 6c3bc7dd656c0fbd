package brain

import (
	"context"

	"github.com/strata-llm/strata/backoff"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// joinLoop asks the brains in Config.Join, in turn, to add this replica,
// backing off between rounds until one accepts. Asking again after a
// restart is harmless: AddPeer of a current member changes nothing.
func (s *Server) joinLoop(ctx context.Context) {
	retry := backoff.New()
	for {
		for _, addr := range s.cfg.Join {
			if err := s.joinVia(ctx, addr); err != nil {
				s.log.Warn("join", "via", addr, "error", err)
				continue
			}
			s.log.Info("joined the cluster", "via", addr)
			return
		}
		if !retry.Wait(ctx) {
			return
		}
	}
}

func (s *Server) joinVia(ctx context.Context, addr string) error {
	conn, err := s.peers.get(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LeaderWait+s.cfg.ApplyTimeout)
	defer cancel()
	_, err = stratav1.NewAdminServiceClient(conn).AddPeer(ctx, &stratav1.AddPeerRequest{Member: s.member})
	return err
}
