package kvevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Config is the JSON object vLLM takes as --kv-events-config. Keys, types and
// defaults are vLLM's (vllm/config/kv_events.py KVEventsConfig) so that one
// command line configures the simulator and a real engine alike.
type Config struct {
	EnableKVCacheEvents bool `json:"enable_kv_cache_events"`
	// Publisher is "zmq" or "null". Empty means what vLLM does when the key
	// is absent: "zmq" if events are enabled, "null" otherwise.
	Publisher string `json:"publisher"`
	// Endpoint is where the PUB socket lives. vLLM binds when it contains
	// "*" or "::" or is ipc:// or inproc://, and connects otherwise.
	Endpoint string `json:"endpoint"`
	// ReplayEndpoint is always bound (ROUTER). Empty means no replay
	// service, like vLLM's None.
	ReplayEndpoint string `json:"replay_endpoint"`
	// BufferSteps is how many published batches the replay ring keeps.
	BufferSteps int `json:"buffer_steps"`
	// HWM is the PUB socket's send high-water mark; 0 means unlimited.
	HWM int `json:"hwm"`
	// MaxQueueSize bounds the batches waiting for the sender goroutine;
	// 0 means unbounded, as for Python's queue.Queue(maxsize=0).
	MaxQueueSize int `json:"max_queue_size"`
	// Topic is the first frame of every live message; subscribers filter
	// on it as a prefix.
	Topic string `json:"topic"`
}

const (
	publisherZMQ  = "zmq"
	publisherNull = "null"
)

// DefaultConfig returns vLLM's KVEventsConfig defaults. Like vLLM, events are
// disabled until EnableKVCacheEvents is set. Publisher is left empty (vLLM's
// None) so that setting EnableKVCacheEvents alone selects "zmq".
func DefaultConfig() Config {
	return Config{
		Endpoint:     "tcp://*:5557",
		BufferSteps:  10_000,
		HWM:          100_000,
		MaxQueueSize: 100_000,
	}
}

// ParseConfig parses the JSON given to --kv-events-config. It is stricter
// than vLLM's pydantic validation (no string-to-number coercion, endpoints are
// checked up front) because a typo here otherwise shows up much later as a
// router that silently never sees a cache event.
func ParseConfig(s string) (Config, error) {
	cfg := DefaultConfig()
	dec := json.NewDecoder(strings.NewReader(s))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return Config{}, fmt.Errorf("kv events config: %w", err)
	}
	if raw == nil {
		return Config{}, errors.New("kv events config: must be a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, errors.New("kv events config: unexpected data after the JSON object")
	}

	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	publisherSet := false
	for _, k := range keys {
		v := raw[k]
		var err error
		switch k {
		case "enable_kv_cache_events":
			err = decodeBool(v, &cfg.EnableKVCacheEvents)
		case "publisher":
			publisherSet = true
			err = decodeString(v, &cfg.Publisher)
			if err == nil && cfg.Publisher != publisherZMQ && cfg.Publisher != publisherNull {
				err = fmt.Errorf("must be %q or %q, got %q", publisherZMQ, publisherNull, cfg.Publisher)
			}
		case "endpoint":
			err = decodeString(v, &cfg.Endpoint)
		case "replay_endpoint":
			if bytes.Equal(v, []byte("null")) {
				cfg.ReplayEndpoint = ""
				break
			}
			err = decodeString(v, &cfg.ReplayEndpoint)
			if err == nil && cfg.ReplayEndpoint == "" {
				err = errors.New("must not be empty (use null or leave it out to disable replay)")
			}
		case "buffer_steps":
			err = decodeInt(v, &cfg.BufferSteps)
		case "hwm":
			err = decodeInt(v, &cfg.HWM)
		case "max_queue_size":
			err = decodeInt(v, &cfg.MaxQueueSize)
		case "topic":
			err = decodeString(v, &cfg.Topic)
		default:
			err = fmt.Errorf("unknown key (want one of enable_kv_cache_events, publisher, endpoint, " +
				"replay_endpoint, buffer_steps, hwm, max_queue_size, topic)")
		}
		if err != nil {
			return Config{}, fmt.Errorf("kv events config: %q: %w", k, err)
		}
	}
	if !publisherSet {
		cfg.Publisher = cfg.publisherKind()
	}
	if err := cfg.validate(); err != nil {
		return Config{}, fmt.Errorf("kv events config: %w", err)
	}
	return cfg, nil
}

// publisherKind resolves an empty Publisher the way vLLM's __post_init__ does.
func (c Config) publisherKind() string {
	if c.Publisher != "" {
		return c.Publisher
	}
	if c.EnableKVCacheEvents {
		return publisherZMQ
	}
	return publisherNull
}

// enabled reports whether vLLM's EventPublisherFactory would build a ZMQ
// publisher rather than its NullEventPublisher.
func (c Config) enabled() bool {
	return c.EnableKVCacheEvents && c.publisherKind() == publisherZMQ
}

func (c Config) validate() error {
	if p := c.publisherKind(); p != publisherZMQ && p != publisherNull {
		return fmt.Errorf("publisher: must be %q or %q, got %q", publisherZMQ, publisherNull, p)
	}
	if err := checkEndpoint(c.Endpoint, isBindEndpoint(c.Endpoint)); err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	if c.ReplayEndpoint != "" {
		if err := checkEndpoint(c.ReplayEndpoint, true); err != nil {
			return fmt.Errorf("replay_endpoint: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"buffer_steps", c.BufferSteps}, {"hwm", c.HWM}, {"max_queue_size", c.MaxQueueSize}} {
		if f.v < 0 {
			return fmt.Errorf("%s: must not be negative, got %d", f.name, f.v)
		}
	}
	return nil
}

func decodeBool(raw json.RawMessage, dst *bool) error {
	if bytes.Equal(raw, []byte("true")) {
		*dst = true
		return nil
	}
	if bytes.Equal(raw, []byte("false")) {
		*dst = false
		return nil
	}
	return fmt.Errorf("must be true or false, got %s", truncate(raw))
}

func decodeString(raw json.RawMessage, dst *string) error {
	if len(raw) == 0 || raw[0] != '"' {
		return fmt.Errorf("must be a string, got %s", truncate(raw))
	}
	return json.Unmarshal(raw, dst)
}

// decodeInt accepts only integer literals: vLLM's fields are ints and a
// fractional or exponent form is more likely a mistake than intent.
func decodeInt(raw json.RawMessage, dst *int) error {
	n, err := strconv.ParseInt(string(raw), 10, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("must be an integer, got %s", truncate(raw))
	}
	*dst = int(n)
	return nil
}

func truncate(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}

// isBindEndpoint is vLLM's heuristic for the PUB socket ("bind stable,
// connect volatile"); it is copied literally, substring tests included,
// because it decides which side of the connection the engine is on.
func isBindEndpoint(ep string) bool {
	return strings.Contains(ep, "*") || strings.Contains(ep, "::") ||
		strings.HasPrefix(ep, "ipc://") || strings.HasPrefix(ep, "inproc://")
}

// splitEndpoint splits a ZeroMQ endpoint into its transport and address,
// accepting only the transports a vLLM deployment uses.
func splitEndpoint(ep string) (scheme, addr string, err error) {
	scheme, addr, ok := strings.Cut(ep, "://")
	if !ok {
		return "", "", fmt.Errorf("%q: want transport://address, e.g. tcp://*:5557", ep)
	}
	switch scheme {
	case "tcp", "ipc", "inproc":
	default:
		return "", "", fmt.Errorf("%q: unsupported transport %q (want tcp, ipc or inproc)", ep, scheme)
	}
	if addr == "" {
		return "", "", fmt.Errorf("%q: empty address", ep)
	}
	return scheme, addr, nil
}

// checkEndpoint rejects endpoints ZeroMQ would refuse only once the engine is
// running. bind says which operation the endpoint is for: ports 0 and "*"
// ask for an ephemeral port, which only a bind can do.
func checkEndpoint(ep string, bind bool) error {
	scheme, addr, err := splitEndpoint(ep)
	if err != nil {
		return err
	}
	if scheme != "tcp" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want tcp://host:port (IPv6 hosts in brackets): %w", ep, err)
	}
	if host == "" {
		return fmt.Errorf("%q: empty host (use * to bind all interfaces)", ep)
	}
	if port == "*" {
		if !bind {
			return fmt.Errorf("%q: port * needs a bind endpoint", ep)
		}
		return nil
	}
	n, err := parsePort(port)
	if err != nil {
		return fmt.Errorf("%q: %w", ep, err)
	}
	if n == 0 && !bind {
		return fmt.Errorf("%q: port 0 can only be bound, not connected to", ep)
	}
	return nil
}

func parsePort(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("port %q out of range 0-65535", s)
	}
	return n, nil
}

// offsetEndpoint gives each data-parallel rank its own endpoint the way
// vLLM's ZmqEventPublisher.offset_endpoint_port does: tcp ports move up by
// the rank, inproc names get a "_dp<rank>" suffix. Routers rely on it to find
// rank r at base port + r. An ephemeral port (0) stays ephemeral since there
// is no base to offset.
func offsetEndpoint(ep string, rank int) (string, error) {
	if ep == "" || rank == 0 {
		return ep, nil
	}
	if rank < 0 {
		return "", fmt.Errorf("negative data parallel rank %d", rank)
	}
	scheme, addr, err := splitEndpoint(ep)
	if err != nil {
		return "", err
	}
	switch scheme {
	case "inproc":
		return fmt.Sprintf("%s_dp%d", ep, rank), nil
	case "tcp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("%q: %w", ep, err)
		}
		n, err := parsePort(port)
		if err != nil {
			return "", fmt.Errorf("%q: cannot offset by data parallel rank %d: %w", ep, rank, err)
		}
		if n == 0 {
			return ep, nil
		}
		if n+rank > 65535 {
			return "", fmt.Errorf("%q: port %d + data parallel rank %d exceeds 65535", ep, n, rank)
		}
		return "tcp://" + net.JoinHostPort(host, strconv.Itoa(n+rank)), nil
	default:
		return "", fmt.Errorf("%q: vLLM cannot offset %s endpoints by data parallel rank (use tcp or inproc)", ep, scheme)
	}
}
