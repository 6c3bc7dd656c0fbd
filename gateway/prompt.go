package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-llm/strata/kvhash"
	"github.com/strata-llm/strata/tokenizer"
	"github.com/strata-llm/strata/tokenizer/bytelevel"
)

// errNoTokenizer: the gateway cannot tokenize for the model, so it routes
// by load alone.
var errNoTokenizer = errors.New("no tokenizer for the model")

// tokenizers loads each tokenizer directory once and shares it between the
// models naming it. A directory that fails to load is retried after a
// minute (it may be being copied), not on every request.
type tokenizers struct {
	load func(dir string) (tokenizer.Tokenizer, error)
	log  *slog.Logger

	mu    sync.Mutex
	byDir map[string]*loadedTokenizer
}

type loadedTokenizer struct {
	once     sync.Once
	tok      tokenizer.Tokenizer
	err      error
	failedAt atomic.Int64 // unix nanos; read before once completes
}

func newTokenizers(load func(string) (tokenizer.Tokenizer, error), log *slog.Logger) *tokenizers {
	return &tokenizers{load: load, log: log, byDir: map[string]*loadedTokenizer{}}
}

// forModel is the tokenizer the model's engines use: its deployment's
// tokenizer directory, or the simulator's built-in byte-level one for a
// simulated engine without one.
func (t *tokenizers) forModel(m *model) (tokenizer.Tokenizer, error) {
	dir := m.info.GetTokenizer()
	if dir == "" {
		if m.info.GetEngine() == "sim" {
			return bytelevel.Tokenizer{}, nil
		}
		return nil, errNoTokenizer
	}
	if t.load == nil {
		return nil, errNoTokenizer
	}
	t.mu.Lock()
	lt := t.byDir[dir]
	if lt == nil || (lt.failedAt.Load() != 0 && time.Since(time.Unix(0, lt.failedAt.Load())) > time.Minute) {
		lt = &loadedTokenizer{}
		t.byDir[dir] = lt
	}
	t.mu.Unlock()
	lt.once.Do(func() {
		if lt.tok, lt.err = t.load(dir); lt.err != nil {
			lt.failedAt.Store(time.Now().UnixNano())
			t.log.Error("tokenizer failed to load; routing that model by load", "dir", dir, "error", lt.err)
		}
	})
	if lt.err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", dir, lt.err)
	}
	return lt.tok, nil
}

// promptTokens renders and tokenizes the request's prompt as the engine
// will: chat through the template (encoded without special tokens, the
// template writes them), completions text with them (vLLM's
// add_special_tokens default), token ids as they are.
func (g *Gateway) promptTokens(req *request, tok tokenizer.Tokenizer) ([]uint32, error) {
	switch {
	case req.endpoint == chatEndpoint:
		start := time.Now()
		text, err := tok.ApplyChatTemplate(req.chat)
		g.metrics.stage("template", start)
		if err != nil {
			if errors.Is(err, tokenizer.ErrUnsupportedContent) {
				return nil, badRequest("messages", "%s", err.Error())
			}
			return nil, badRequest("messages", "the chat template failed: %s", err.Error())
		}
		start = time.Now()
		ids := tok.Encode(text, false)
		g.metrics.stage("tokenize", start)
		return ids, nil
	case req.isIDs:
		return req.promptIDs, nil
	default:
		start := time.Now()
		ids := tok.Encode(req.promptText, true)
		g.metrics.stage("tokenize", start)
		return ids, nil
	}
}

// hashPrompt is the prompt's KV block identity as engines report it.
func (g *Gateway) hashPrompt(ids []uint32, blockSize int) []uint64 {
	start := time.Now()
	defer g.metrics.stage("hash", start)
	return kvhash.Prompt(ids, blockSize, "")
}
