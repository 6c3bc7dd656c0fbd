package agent

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strata-llm/strata/agent/supervisor"
)

// maxOpsBody bounds request bodies of the ops API: no endpoint takes more
// than a few bytes of JSON.
const maxOpsBody = 64 << 10

// WorkerView is one worker in the ops API.
type WorkerView struct {
	ID         string    `json:"id"`
	Deployment string    `json:"deployment"`
	Role       string    `json:"role"`
	Engine     string    `json:"engine"`
	GPUs       []string  `json:"gpus"`
	Port       int       `json:"port"`
	PID        int       `json:"pid,omitempty"`
	Adopted    bool      `json:"adopted,omitempty"`
	State      string    `json:"state"`
	Message    string    `json:"message,omitempty"`
	Restarts   int       `json:"restarts"`
	LastExit   string    `json:"last_exit,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	ReadyAt    time.Time `json:"ready_at,omitzero"`
	Running    uint32    `json:"running_requests"`
	Waiting    uint32    `json:"waiting_requests"`
	KVUsage    float64   `json:"kv_usage"`
	LoadError  string    `json:"load_error,omitempty"`
}

func (w *worker) view() WorkerView {
	st := w.sup.Status()
	state := st.State.String()
	if st.State == supervisor.Stopped {
		state = "stopped"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return WorkerView{
		ID: w.id, Deployment: w.spec.Deployment, Role: roleName(w.spec.EffectiveRole().String()), Engine: w.adapter.Kind(),
		GPUs: w.spec.GPUs, Port: w.spec.Port, PID: st.PID, Adopted: st.Adopted, State: state, Message: st.Message,
		Restarts: st.Restarts, LastExit: st.LastExit, StartedAt: st.StartedAt, ReadyAt: st.ReadyAt,
		Running: w.load.Running, Waiting: w.load.Waiting, KVUsage: w.load.KVUsage, LoadError: w.loadErr,
	}
}

func roleName(s string) string {
	return strings.ToLower(strings.TrimPrefix(s, "WORKER_ROLE_"))
}

// opsError is the JSON error body of the ops API.
func opsError(c *gin.Context, code int, msg string) {
	c.AbortWithStatusJSON(code, gin.H{"error": gin.H{"message": msg, "code": code}})
}

func (a *Agent) opsHandler() http.Handler {
	r := gin.New()
	r.Use(gin.Recovery())
	r.NoRoute(func(c *gin.Context) { opsError(c, http.StatusNotFound, "no such endpoint") })
	r.NoMethod(func(c *gin.Context) { opsError(c, http.StatusMethodNotAllowed, "method not allowed") })
	r.HandleMethodNotAllowed = true

	reg := a.metrics // the KVBM registered its own on it
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), a.collector())
	// Health and metrics carry no secrets and change nothing: open, like
	// the brain's, so probes and Prometheus need no token.
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok", "node": a.cfg.NodeID}) })
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))

	v1 := r.Group("/v1", a.requireToken)
	v1.GET("/node", func(c *gin.Context) {
		a.mu.Lock()
		defer a.mu.Unlock()
		c.JSON(http.StatusOK, gin.H{"id": a.cfg.NodeID, "address": a.advertise(), "registered": a.registered,
			"inventory": a.node, "assignments_index": a.assignedAt, "brains": a.brains})
	})
	v1.GET("/workers", func(c *gin.Context) {
		out := []WorkerView{}
		for _, w := range a.sortedWorkers() {
			out = append(out, w.view())
		}
		c.JSON(http.StatusOK, gin.H{"workers": out})
	})
	v1.GET("/workers/:id", func(c *gin.Context) {
		if w := a.workerByID(c); w != nil {
			c.JSON(http.StatusOK, w.view())
		}
	})
	v1.POST("/workers/:id/restart", func(c *gin.Context) {
		w := a.workerByID(c)
		if w == nil {
			return
		}
		w.log.Info("restart requested through the ops API")
		w.mu.Lock()
		drained := w.drained
		w.mu.Unlock()
		if !drained {
			w.sup.Restart()
			c.JSON(http.StatusAccepted, w.view())
			return
		}
		// A drained worker's supervisor has finished: start a fresh one.
		<-w.done
		a.mu.Lock()
		fresh, err := a.newWorkerLocked(w.assignment)
		if err == nil && a.workers[w.id] == w {
			a.workers[w.id] = fresh
		}
		ctx := a.runCtx
		a.mu.Unlock()
		if err != nil {
			opsError(c, http.StatusInternalServerError, "restart: "+err.Error())
			return
		}
		fresh.start(ctx)
		a.wake()
		c.JSON(http.StatusAccepted, fresh.view())
	})
	v1.POST("/workers/:id/drain", func(c *gin.Context) {
		w := a.workerByID(c)
		if w == nil {
			return
		}
		// The engine finishes its in-flight requests and stops; the brain
		// sees DRAINING, then UNHEALTHY, and routes elsewhere. It stays
		// stopped while assigned, until POST .../restart: for a lasting
		// change, drain the node (strata ctl drain) or scale the deployment.
		w.mu.Lock()
		already := w.drained
		w.drained = true
		w.mu.Unlock()
		if !already {
			w.log.Info("drain requested through the ops API")
			go func() {
				w.stop(context.WithoutCancel(c.Request.Context()), a.cfg.StopGrace)
				a.wake()
			}()
		}
		a.wake()
		c.JSON(http.StatusAccepted, gin.H{"id": w.id, "state": "draining"})
	})
	v1.GET("/kv", a.kvView)
	v1.GET("/canaries", func(c *gin.Context) {
		out := []CanaryStatus{}
		for _, w := range a.sortedWorkers() {
			w.mu.Lock()
			out = append(out, w.canary)
			w.mu.Unlock()
		}
		c.JSON(http.StatusOK, gin.H{"canaries": out})
	})
	return http.MaxBytesHandler(r, maxOpsBody)
}

func (a *Agent) requireToken(c *gin.Context) {
	p, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || !a.cfg.OpsToken.Matches(p) {
		c.Header("WWW-Authenticate", `Bearer realm="strata-agent"`)
		opsError(c, http.StatusUnauthorized, "missing or wrong ops token")
		return
	}
	c.Next()
}

func (a *Agent) sortedWorkers() []*worker {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*worker, 0, len(a.workers))
	for _, id := range slices.Sorted(maps.Keys(a.workers)) {
		out = append(out, a.workers[id])
	}
	return out
}

func (a *Agent) workerByID(c *gin.Context) *worker {
	a.mu.Lock()
	w := a.workers[c.Param("id")]
	a.mu.Unlock()
	if w == nil {
		opsError(c, http.StatusNotFound, "no worker "+c.Param("id")+" on this node")
	}
	return w
}

func (a *Agent) serveOps(ctx context.Context) {
	srv := &http.Server{
		Handler:           a.opsHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(a.opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("ops server", "error", err)
	}
}

// collector exposes the workers' state, load and canaries at scrape time.
func (a *Agent) collector() prometheus.Collector { return agentCollector{a} }

type agentCollector struct{ a *Agent }

var (
	descWorkerUp       = prometheus.NewDesc("strata_agent_worker_state", "1 for each worker's current state.", []string{"worker", "deployment", "state"}, nil)
	descWorkerRunning  = prometheus.NewDesc("strata_agent_worker_running_requests", "Requests the engine is computing.", []string{"worker"}, nil)
	descWorkerWaiting  = prometheus.NewDesc("strata_agent_worker_waiting_requests", "Requests queued in the engine.", []string{"worker"}, nil)
	descWorkerKV       = prometheus.NewDesc("strata_agent_worker_kv_usage", "Fraction of the engine's GPU KV cache in use.", []string{"worker"}, nil)
	descWorkerRestarts = prometheus.NewDesc("strata_agent_worker_restarts", "Engine restarts since the agent started it.", []string{"worker"}, nil)
	descCanaryFail     = prometheus.NewDesc("strata_agent_canary_consecutive_failures", "Failed canaries in a row.", []string{"worker"}, nil)
)

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkerUp, descWorkerRunning, descWorkerWaiting, descWorkerKV, descWorkerRestarts, descCanaryFail} {
		ch <- d
	}
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	for _, w := range c.a.sortedWorkers() {
		v := w.view()
		w.mu.Lock()
		fails := w.canary.Failures
		w.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(descWorkerUp, prometheus.GaugeValue, 1, v.ID, v.Deployment, v.State)
		ch <- prometheus.MustNewConstMetric(descWorkerRunning, prometheus.GaugeValue, float64(v.Running), v.ID)
		ch <- prometheus.MustNewConstMetric(descWorkerWaiting, prometheus.GaugeValue, float64(v.Waiting), v.ID)
		ch <- prometheus.MustNewConstMetric(descWorkerKV, prometheus.GaugeValue, v.KVUsage, v.ID)
		ch <- prometheus.MustNewConstMetric(descWorkerRestarts, prometheus.GaugeValue, float64(v.Restarts), v.ID)
		ch <- prometheus.MustNewConstMetric(descCanaryFail, prometheus.GaugeValue, float64(fails), v.ID)
	}
}
