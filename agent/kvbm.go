package agent

import (
	"context"
	"net/http"
	"path/filepath"

	"github.com/gin-gonic/gin"

	"github.com/strata-llm/strata/agent/kvbm"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// openKVBM starts the node's KV block manager when the config has tiers:
// the tiers, and the block API's socket under <data-dir>/kvbm.
func (a *Agent) openKVBM() error {
	if !a.cfg.KV.Enabled() {
		return nil
	}
	srv, err := kvbm.New(context.Background(), kvbm.Config{
		Dir: filepath.Join(a.cfg.DataDir, "kvbm"), Tiers: a.cfg.KV, Workers: kvbmWorkers{a},
		Registerer: a.metrics, Logger: a.log,
	})
	if err != nil {
		return err
	}
	a.kvbm = srv
	return nil
}

// kvbmSocket is the socket engines' KV connectors dial, "" without a KVBM.
func (a *Agent) kvbmSocket() string {
	if a.kvbm == nil {
		return ""
	}
	return a.kvbm.SocketPath()
}

// kvbmTierBlocks is a worker's tier blocks for its KV snapshots (nil
// without a KVBM).
func (a *Agent) kvbmTierBlocks(workerID string) func() []*stratav1.KVEvent {
	if a.kvbm == nil {
		return nil
	}
	return func() []*stratav1.KVEvent { return a.kvbm.TierBlocks(workerID) }
}

// kvbmWorkers is the agent as the KVBM sees it: its workers, and their KV
// event streams, which carry the tier events to every brain replica.
type kvbmWorkers struct{ a *Agent }

func (k kvbmWorkers) ServedModel(id string) (string, bool) {
	k.a.mu.Lock()
	defer k.a.mu.Unlock()
	w := k.a.workers[id]
	if w == nil {
		return "", false
	}
	return w.spec.ServedName(), true
}

// Publish injects tier events into the worker's event stream. A worker
// without one (an engine that publishes no KV events) cannot report them:
// the brain's batches of a worker are one numbered stream.
func (k kvbmWorkers) Publish(id string, events []*stratav1.KVEvent) {
	k.a.mu.Lock()
	w := k.a.workers[id]
	k.a.mu.Unlock()
	if w != nil && w.kv != nil {
		w.kv.Inject(events)
	}
}

func (k kvbmWorkers) Resync() { k.a.snapshotWorkers(nil) }

// kvView answers GET /v1/kv.
func (a *Agent) kvView(c *gin.Context) {
	if a.kvbm == nil {
		c.JSON(http.StatusOK, kvbm.View{Tiers: []kvbm.TierView{}})
		return
	}
	c.JSON(http.StatusOK, a.kvbm.View())
}
