package kvevents

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-llm/strata/test/testutil"
)

// trtServer is a stand-in for trtllm-serve's POST /kv_cache_events: each
// poll drains the next queued answer, then empty lists.
type trtServer struct {
	mu      sync.Mutex
	answers []trtAnswer
	polls   int
}

type trtAnswer struct {
	status int
	body   string
}

func (s *trtServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/kv_cache_events" {
		http.Error(w, "wrong request", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	a := trtAnswer{http.StatusOK, "[]"}
	if len(s.answers) > 0 {
		a, s.answers = s.answers[0], s.answers[1:]
	}
	s.polls++
	s.mu.Unlock()
	w.WriteHeader(a.status)
	fmt.Fprint(w, a.body)
}

func (s *trtServer) queue(answers ...trtAnswer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = append(s.answers, answers...)
}

func (s *trtServer) drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.answers) == 0
}

// trtStored is a "stored" event for p's blocks [from, to).
func (p prompt) trtStored(from, to int) string {
	parent := "null"
	if from > 0 {
		parent = fmt.Sprint(p.raw(from - 1))
	}
	var blocks []string
	for i := from; i < to; i++ {
		blocks = append(blocks, trtBlockJSON(fmt.Sprint(p.raw(i)), 0, p.tokens[i*p.bs:(i+1)*p.bs]))
	}
	return fmt.Sprintf(`{"event_id":%d,"window_size":64,"data":{"type":"stored","parent_hash":%s,"blocks":[%s]}}`,
		from, parent, strings.Join(blocks, ","))
}

func TestPoller(t *testing.T) {
	srv := &trtServer{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	p, q := newPrompt(1, 4, 16), newPrompt(2, 2, 16)
	srv.queue(
		trtAnswer{200, "[" + p.trtStored(0, 2) + "," + p.trtStored(2, 4) + "]"},
		trtAnswer{200, fmt.Sprintf(`[{"event_id":9,"data":{"type":"removed","block_hashes":[%d]}}]`, p.raw(3))},
	)

	b := newBrain(t)
	poller, err := NewPoller(PollerConfig{
		WorkerID: "w1", PollURL: ts.URL + "/kv_cache_events", Interval: time.Millisecond,
		BlockSize: 16, Sink: b.sink, Logger: testLogger(t), FlushInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- poller.Run(context.Background()) }()

	b.wantIndex(t, p.seqs(3))
	if err := poller.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
	if _, clears := b.state(); clears != 1 {
		t.Fatalf("%d AllBlocksCleared, want the one before the first poll", clears)
	}

	// A garbage body is skipped; a failed poll is a resync.
	srv.queue(trtAnswer{200, `{"not":"a list"}`}, trtAnswer{500, "boom"}, trtAnswer{200, "[" + q.trtStored(0, 2) + "]"})
	testutil.WaitFor(t, waitTimeout, srv.drained)
	b.wantIndex(t, q.seqs(2))
	if _, clears := b.state(); clears != 2 {
		t.Fatalf("%d AllBlocksCleared, want 2", clears)
	}

	poller.EmitSnapshot()
	b.wantIndex(t, q.seqs(2))

	if err := poller.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := poller.Stats()
	if st.Failures != 1 || st.Garbage != 1 || st.Polls < 4 || st.Translator.Blocks != 2 {
		t.Fatalf("stats %+v", st)
	}
	if err := poller.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}

func TestPollerOversizedBody(t *testing.T) {
	srv := &trtServer{}
	srv.queue(trtAnswer{200, "[" + strings.Repeat(" ", 100) + "]"})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	b := newBrain(t)
	poller, err := NewPoller(PollerConfig{WorkerID: "w1", PollURL: ts.URL + "/kv_cache_events", Interval: time.Millisecond,
		MaxBody: 50, Sink: b.sink})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- poller.Run(ctx) }()
	testutil.WaitFor(t, waitTimeout, func() bool { return poller.Stats().Failures == 1 && poller.Stats().Polls > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
