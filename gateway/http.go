package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"
	"unsafe"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strata-llm/strata/gateway/routing"
	"github.com/strata-llm/strata/gateway/routing/leastloaded"
)

func init() { gin.SetMode(gin.ReleaseMode) }

const (
	requestIDKey = "strata.request_id"
	keyNameKey   = "strata.key"
)

func (g *Gateway) handler() http.Handler {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(g.recover, g.requestID)
	r.NoRoute(func(c *gin.Context) {
		writeError(c.Writer, &apiError{status: http.StatusNotFound, typ: typeInvalidRequest, code: "unknown_url",
			message: "Unknown request URL: " + c.Request.Method + " " + c.Request.URL.Path + "."})
	})
	r.NoMethod(func(c *gin.Context) {
		writeError(c.Writer, &apiError{status: http.StatusMethodNotAllowed, typ: typeInvalidRequest,
			message: "Method " + c.Request.Method + " is not allowed on " + c.Request.URL.Path + "."})
	})
	// Probes and metrics carry no secrets: open, like the brain's.
	r.GET("/live", func(c *gin.Context) { c.Status(http.StatusOK) })
	r.GET("/health", g.health)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(g.cfg.Registry, promhttp.HandlerOpts{})))

	v1 := r.Group("/v1", g.authenticate)
	v1.GET("/models", g.listModels)
	v1.POST("/chat/completions", g.inference(chatEndpoint))
	v1.POST("/completions", g.inference(completionsEndpoint))
	v1.POST("/embeddings", g.inference(embeddingsEndpoint))
	return r
}

// recover turns a panic in a handler into a 500 envelope instead of a
// dropped connection; it is a bug, so it is logged with the request id.
func (g *Gateway) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			g.log.Error("handler panic", "request_id", c.GetString(requestIDKey), "panic", p)
			if !c.Writer.Written() {
				writeError(c.Writer, errors.New("panic"))
			}
			c.Abort()
		}
	}()
	c.Next()
}

// requestID takes the client's X-Request-Id (printable, at most 128
// bytes) or makes one, and echoes it; engines get it too.
func (g *Gateway) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-Id")
	if !validRequestID(id) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	c.Set(requestIDKey, id)
	c.Header("X-Request-Id", id)
	c.Next()
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func (g *Gateway) authenticate(c *gin.Context) {
	name, err := g.keys.check(c.Request)
	if err != nil {
		g.log.Info("request refused", "request_id", c.GetString(requestIDKey), "key", name, "error", err)
		writeError(c.Writer, err)
		c.Abort()
		return
	}
	c.Set(keyNameKey, name)
	c.Next()
}

// health is 200 once the gateway has a view of the cluster with a routable
// worker: a load balancer in front of several gateways uses it.
func (g *Gateway) health(c *gin.Context) {
	status := map[string]any{"brain_connected": g.cluster.connected.Load(), "synced": g.cluster.isSynced()}
	routable := 0
	g.cluster.mu.RLock()
	for _, m := range g.cluster.models {
		routable += len(m.workers)
	}
	g.cluster.mu.RUnlock()
	status["routable_workers"] = routable
	code := http.StatusOK
	if routable == 0 {
		code = http.StatusServiceUnavailable
	}
	c.JSON(code, status)
}

func (g *Gateway) listModels(c *gin.Context) {
	type entry struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []entry `json:"data"`
	}{Object: "list", Data: []entry{}}
	for _, m := range g.cluster.modelInfos() {
		out.Data = append(out.Data, entry{ID: m.GetName(), Object: "model", OwnedBy: "strata"})
	}
	c.JSON(http.StatusOK, out)
}

// inference serves one OpenAI inference endpoint.
func (g *Gateway) inference(ep endpoint) gin.HandlerFunc {
	return func(c *gin.Context) {
		x := &exchange{g: g, reqID: c.GetString(requestIDKey), start: time.Now(), tried: map[string]bool{}}
		ctx, cancel := context.WithTimeout(c.Request.Context(), g.cfg.RequestTimeout)
		defer cancel()
		defer g.finish(c, x)
		if err := g.prepare(c.Request, ep, x); err != nil {
			x.fail(c.Writer, err)
			return
		}
		if x.req.stream {
			x.serveStream(ctx, c.Writer)
		} else {
			x.serveAnswer(ctx, c.Writer)
		}
	}
}

// readBody reads a request's body, up to limit bytes, as a string: every
// decoder after it reads the string in place. A body that declares its
// length is read into a buffer of that size, not one that doubles (an 8k-
// token prompt is 40 KB).
func readBody(r *http.Request, limit int64) (string, error) {
	size := bytes.MinRead
	if r.ContentLength > 0 && r.ContentLength <= limit {
		size += int(r.ContentLength)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, limit))
	data := buf.Bytes()
	// The string takes the buffer over, as strings.Builder does: nothing
	// else holds it, so its bytes never change.
	return unsafe.String(unsafe.SliceData(data), len(data)), err
}

// prepare reads and decodes the request, finds its model and policy, and
// tokenizes and hashes its prompt.
func (g *Gateway) prepare(r *http.Request, ep endpoint, x *exchange) error {
	text, err := readBody(r, g.cfg.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &apiError{status: http.StatusRequestEntityTooLarge, typ: typeInvalidRequest, code: "request_too_large",
				message: "the request body is over " + strconv.FormatInt(g.cfg.MaxBodyBytes, 10) + " bytes"}
		}
		return badRequest("", "reading the request body: %v", err)
	}
	if x.req, err = decodeRequest(ep, text); err != nil {
		return err
	}
	m, _ := g.cluster.model(x.req.model)
	if m == nil {
		if !g.cluster.isSynced() {
			return noCapacity("the gateway has not heard from the brain yet")
		}
		return modelNotFound(x.req.model)
	}
	x.m = m
	if ep == embeddingsEndpoint {
		x.policy = g.policies[leastloaded.Name]
		x.route = routing.Request{Model: x.req.model, BlockSize: m.blockSize}
		return nil
	}
	if x.policy, err = g.policyFor(r, x.req, m); err != nil {
		return err
	}
	tok, err := g.toks.forModel(m)
	switch {
	case err == nil:
		x.tok = tok
		if x.ids, err = g.promptTokens(x.req, tok); err != nil {
			return err
		}
	case x.req.isIDs:
		x.ids = x.req.promptIDs
	default:
		g.metrics.tokenizerErr.WithLabelValues(x.req.model).Inc()
	}
	session := x.req.hints.SessionID
	if session == "" {
		session = r.Header.Get("X-Session-Id")
	}
	if session == "" {
		session = x.req.user
	}
	x.route = routing.Request{Model: x.req.model, PromptTokens: len(x.ids), BlockSize: m.blockSize, SessionKey: session}
	if x.ids == nil {
		// Not tokenized: size its load from the text (4 bytes a token).
		x.route.PromptTokens = len(text) / 4
	} else {
		x.route.Hashes = g.hashPrompt(x.ids, m.blockSize)
	}
	return nil
}

// finish records the request in metrics and the access log (which never
// has prompt or output text).
func (g *Gateway) finish(c *gin.Context, x *exchange) {
	if x.status == 0 {
		x.status = c.Writer.Status()
	}
	model, ep := "", "unknown"
	if x.req != nil {
		model, ep = x.req.model, x.req.endpoint.String()
	}
	if x.m == nil {
		model = "" // unknown models are not metric labels: clients choose them
	}
	dur := time.Since(x.start)
	g.metrics.requests.WithLabelValues(model, ep, strconv.Itoa(x.status)).Inc()
	attrs := []any{"request_id", x.reqID, "key", c.GetString(keyNameKey), "model", model, "endpoint", ep,
		"status", x.status, "duration_ms", dur.Milliseconds()}
	if x.m != nil && x.status == http.StatusOK {
		g.metrics.duration.WithLabelValues(model, ep).Observe(dur.Seconds())
		prompt := len(x.ids)
		out := x.outChunks
		if x.usage != nil {
			prompt, out = x.usage.PromptTokens, max(out, x.usage.CompletionTokens)
			g.metrics.cachedTokens.WithLabelValues(model, "reported").Add(float64(x.usage.CachedTokens))
		}
		if x.migrations > 0 {
			prompt = max(len(x.ids), prompt-out)
		}
		g.metrics.promptTokens.WithLabelValues(model).Observe(float64(prompt))
		g.metrics.outputTokens.WithLabelValues(model).Observe(float64(out))
		g.metrics.cachedTokens.WithLabelValues(model, "predicted").Add(float64(int(x.predicted) * x.m.blockSize))
		if !x.req.stream && !x.firstToken.IsZero() {
			g.metrics.ttft.WithLabelValues(model).Observe(x.firstToken.Sub(x.start).Seconds())
		}
		bs := float64(x.m.blockSize)
		x.m.kept.promptBlocks.observe(float64(prompt) / bs)
		x.m.kept.totalBlocks.observe(float64(prompt+out) / bs)
		attrs = append(attrs, "worker", x.worker, "migrations", x.migrations, "prompt_tokens", prompt, "output_tokens", out)
		if !x.firstToken.IsZero() {
			attrs = append(attrs, "ttft_ms", x.firstToken.Sub(x.start).Milliseconds())
		}
	}
	g.log.Info("request", attrs...)
}
