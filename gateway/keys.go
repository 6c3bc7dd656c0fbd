package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// apiKeys is the set of accepted API keys, read from a file and read again
// when the file changes (no restart). The file has one key per line:
//
//	# comment
//	<key> [name=<label>] [rps=<requests per second>] [burst=<requests>]
//
// name labels the key in logs (a key itself is never logged, only its
// name or a hash prefix); rps and burst set a token-bucket rate limit for
// the key (none by default). Keys are looked up by their SHA-256, so the
// comparison does not depend on how much of a wrong key matches.
type apiKeys struct {
	path string
	log  *slog.Logger

	mu      sync.RWMutex
	byHash  map[[32]byte]*apiKey
	modTime time.Time
	size    int64
}

type apiKey struct {
	name    string
	rps     float64
	burst   int
	limiter *rate.Limiter // nil: unlimited
}

func loadAPIKeys(path string, log *slog.Logger) (*apiKeys, error) {
	k := &apiKeys{path: path, log: log}
	if path == "" {
		return k, nil
	}
	if err := k.reload(); err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	return k, nil
}

func (k *apiKeys) enabled() bool { return k.path != "" }

// reload reads the file; on error the keys in use stay.
func (k *apiKeys) reload() error {
	st, err := os.Stat(k.path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		return err
	}
	parsed, err := parseAPIKeys(data)
	if err != nil {
		return fmt.Errorf("%s: %w", k.path, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for h, nk := range parsed {
		// An unchanged key keeps its bucket: a reload does not refill it.
		if old := k.byHash[h]; old != nil && old.rps == nk.rps && old.burst == nk.burst {
			nk.limiter = old.limiter
		}
	}
	k.byHash, k.modTime, k.size = parsed, st.ModTime(), st.Size()
	return nil
}

func parseAPIKeys(data []byte) (map[[32]byte]*apiKey, error) {
	out := map[[32]byte]*apiKey{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		key := &apiKey{name: fmt.Sprintf("line %d", n)}
		for _, f := range fields[1:] {
			name, value, ok := strings.Cut(f, "=")
			var err error
			switch {
			case !ok:
				err = fmt.Errorf("want name=value, got %q", f)
			case name == "name":
				key.name = value
			case name == "rps":
				key.rps, err = strconv.ParseFloat(value, 64)
				if err == nil && key.rps <= 0 {
					err = fmt.Errorf("rps must be positive")
				}
			case name == "burst":
				key.burst, err = strconv.Atoi(value)
				if err == nil && key.burst <= 0 {
					err = fmt.Errorf("burst must be positive")
				}
			default:
				err = fmt.Errorf("unknown setting %q (name, rps, burst)", name)
			}
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		if key.rps > 0 {
			if key.burst == 0 {
				key.burst = max(1, int(key.rps))
			}
			key.limiter = rate.NewLimiter(rate.Limit(key.rps), key.burst)
		}
		h := sha256.Sum256([]byte(fields[0]))
		if _, dup := out[h]; dup {
			return nil, fmt.Errorf("line %d: a key listed twice", n)
		}
		out[h] = key
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no keys: an empty key file would lock every client out")
	}
	return out, nil
}

// watch reloads the file when its size or modification time changes.
func (k *apiKeys) watch(ctx context.Context) {
	if k.path == "" {
		return
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := os.Stat(k.path)
		k.mu.RLock()
		same := err == nil && st.ModTime().Equal(k.modTime) && st.Size() == k.size
		k.mu.RUnlock()
		if same {
			continue
		}
		if err := k.reload(); err != nil {
			k.log.Error("API key file not reloaded; the previous keys stay", "error", err)
			continue
		}
		k.log.Info("API keys reloaded", "file", k.path)
	}
}

// check authenticates a request: its key's name, or an error to answer.
func (k *apiKeys) check(r *http.Request) (string, error) {
	if k.path == "" {
		return "", nil
	}
	presented, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || presented == "" {
		return "", &apiError{status: http.StatusUnauthorized, typ: typeInvalidRequest, code: "invalid_api_key",
			message: "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."}
	}
	h := sha256.Sum256([]byte(presented))
	k.mu.RLock()
	key := k.byHash[h]
	k.mu.RUnlock()
	if key == nil {
		return "", &apiError{status: http.StatusUnauthorized, typ: typeInvalidRequest, code: "invalid_api_key",
			message: "Incorrect API key provided."}
	}
	if key.limiter != nil && !key.limiter.Allow() {
		return key.name, &apiError{status: http.StatusTooManyRequests, typ: typeRateLimit, code: "rate_limit_exceeded",
			message:    fmt.Sprintf("Rate limit reached for this key (%g requests/s, burst %d).", key.rps, key.burst),
			retryAfter: time.Duration(float64(time.Second) / key.rps)}
	}
	return key.name, nil
}
