package kvevents

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	def := DefaultConfig()
	def.Publisher = "null"
	withDef := func(f func(*Config)) Config {
		c := def
		f(&c)
		return c
	}
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{"empty object is vLLM's defaults", `{}`, def},
		{"enable implies zmq publisher", `{"enable_kv_cache_events": true}`, withDef(func(c *Config) {
			c.EnableKVCacheEvents = true
			c.Publisher = "zmq"
		})},
		{"ENGINES.md example",
			`{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","replay_endpoint":"tcp://*:5558","topic":""}`,
			withDef(func(c *Config) {
				c.EnableKVCacheEvents = true
				c.Publisher = "zmq"
				c.ReplayEndpoint = "tcp://*:5558"
			})},
		{"explicit null publisher wins", `{"enable_kv_cache_events": true, "publisher": "null"}`, withDef(func(c *Config) {
			c.EnableKVCacheEvents = true
			c.Publisher = "null"
		})},
		{"all keys", `{"enable_kv_cache_events": false, "publisher": "zmq", "endpoint": "tcp://10.0.0.5:6000",
			"replay_endpoint": "tcp://*:6001", "buffer_steps": 0, "hwm": 0, "max_queue_size": 1, "topic": "kv@r0"}`,
			Config{Publisher: "zmq", Endpoint: "tcp://10.0.0.5:6000", ReplayEndpoint: "tcp://*:6001",
				MaxQueueSize: 1, Topic: "kv@r0"}},
		{"null replay endpoint", `{"replay_endpoint": null}`, def},
		{"ipc and inproc", `{"endpoint": "ipc:///tmp/kv.sock", "replay_endpoint": "inproc://replay"}`,
			withDef(func(c *Config) {
				c.Endpoint = "ipc:///tmp/kv.sock"
				c.ReplayEndpoint = "inproc://replay"
			})},
		{"ipv6 bind", `{"endpoint": "tcp://[::]:5557"}`, withDef(func(c *Config) { c.Endpoint = "tcp://[::]:5557" })},
		{"ephemeral ports", `{"endpoint": "tcp://*:0", "replay_endpoint": "tcp://*:*"}`, withDef(func(c *Config) {
			c.Endpoint = "tcp://*:0"
			c.ReplayEndpoint = "tcp://*:*"
		})},
		{"whitespace around", " \n{\"topic\":\"t\"}\n ", withDef(func(c *Config) { c.Topic = "t" })},
		{"unicode topic", `{"topic":"k\u00e9y"}`, withDef(func(c *Config) { c.Topic = "kéy" })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(tc.in)
			if err != nil {
				t.Fatalf("ParseConfig(%s): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseConfig(%s)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty input", ``, "EOF"},
		{"not an object", `[]`, "cannot unmarshal"},
		{"null", `null`, "must be a JSON object"},
		{"trailing data", `{} {}`, "after the JSON object"},
		{"truncated", `{"topic": "x"`, "unexpected EOF"},
		{"unknown key", `{"enable_kv_cache_event": true}`, `"enable_kv_cache_event": unknown key`},
		{"bool as string", `{"enable_kv_cache_events": "true"}`, "must be true or false"},
		{"bool as int", `{"enable_kv_cache_events": 1}`, "must be true or false"},
		{"bool null", `{"enable_kv_cache_events": null}`, "must be true or false"},
		{"unknown publisher", `{"publisher": "kafka"}`, `must be "zmq" or "null"`},
		{"publisher null", `{"publisher": null}`, "must be a string"},
		{"endpoint number", `{"endpoint": 5557}`, "must be a string"},
		{"endpoint null", `{"endpoint": null}`, "must be a string"},
		{"endpoint empty", `{"endpoint": ""}`, "want transport://address"},
		{"endpoint no scheme", `{"endpoint": "localhost:5557"}`, "want transport://address"},
		{"endpoint udp", `{"endpoint": "udp://*:5557"}`, "unsupported transport"},
		{"endpoint no port", `{"endpoint": "tcp://*"}`, "want tcp://host:port"},
		{"endpoint bad port", `{"endpoint": "tcp://*:55x7"}`, "not a number"},
		{"endpoint port range", `{"endpoint": "tcp://*:65536"}`, "out of range"},
		{"endpoint signed port", `{"endpoint": "tcp://*:+5557"}`, "not a number"},
		{"endpoint no host", `{"endpoint": "tcp://:5557"}`, "empty host"},
		{"endpoint unbracketed ipv6", `{"endpoint": "tcp://fe80::1:5557"}`, "want tcp://host:port"},
		{"connect to port 0", `{"endpoint": "tcp://localhost:0"}`, "can only be bound"},
		{"empty ipc path", `{"endpoint": "ipc://"}`, "empty address"},
		{"replay empty string", `{"replay_endpoint": ""}`, "must not be empty"},
		{"replay bad", `{"replay_endpoint": "tcp://*:99999"}`, "replay_endpoint"},
		{"int as string", `{"buffer_steps": "100"}`, "must be an integer"},
		{"int as float", `{"buffer_steps": 100.0}`, "must be an integer"},
		{"int exponent", `{"hwm": 1e5}`, "must be an integer"},
		{"int overflow", `{"max_queue_size": 99999999999999999999}`, "must be an integer"},
		{"int null", `{"hwm": null}`, "must be an integer"},
		{"negative buffer", `{"buffer_steps": -1}`, "must not be negative"},
		{"negative hwm", `{"hwm": -5}`, "must not be negative"},
		{"negative queue", `{"max_queue_size": -1}`, "must not be negative"},
		{"topic number", `{"topic": 1}`, "must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(tc.in)
			if err == nil {
				t.Fatalf("ParseConfig(%s): no error", tc.in)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseConfig(%s) = %q, want it to contain %q", tc.in, err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "kv events config: ") {
				t.Errorf("error %q lacks context prefix", err)
			}
		})
	}
}

func TestIsBindEndpoint(t *testing.T) {
	for ep, want := range map[string]bool{
		"tcp://*:5557":         true,
		"tcp://[::]:5557":      true,
		"tcp://[::1]:5557":     true, // vLLM's "::" substring test
		"ipc:///tmp/kv":        true,
		"inproc://kv":          true,
		"tcp://127.0.0.1:5557": false,
		"tcp://router:5557":    false,
	} {
		if got := isBindEndpoint(ep); got != want {
			t.Errorf("isBindEndpoint(%q) = %v, want %v", ep, got, want)
		}
	}
}

func TestOffsetEndpoint(t *testing.T) {
	tests := []struct {
		ep      string
		rank    int
		want    string
		wantErr bool
	}{
		{"tcp://*:5557", 0, "tcp://*:5557", false},
		{"tcp://*:5557", 1, "tcp://*:5558", false},
		{"tcp://*:5557", 3, "tcp://*:5560", false},
		{"tcp://10.1.2.3:5557", 2, "tcp://10.1.2.3:5559", false},
		{"tcp://[::]:5557", 1, "tcp://[::]:5558", false},
		{"tcp://*:0", 2, "tcp://*:0", false},
		{"inproc://kv", 2, "inproc://kv_dp2", false},
		{"", 3, "", false},
		{"tcp://*:*", 1, "", true},
		{"tcp://*:65535", 1, "", true},
		{"ipc:///tmp/kv", 1, "", true},
		{"tcp://*:5557", -1, "", true},
	}
	for _, tc := range tests {
		got, err := offsetEndpoint(tc.ep, tc.rank)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("offsetEndpoint(%q, %d) = %q, %v; want %q, error %v", tc.ep, tc.rank, got, err, tc.want, tc.wantErr)
		}
	}
}

// FuzzParseConfig checks that no input panics and that every accepted config
// survives a JSON round trip unchanged.
func FuzzParseConfig(f *testing.F) {
	f.Add(`{"enable_kv_cache_events":true,"endpoint":"tcp://*:5557","replay_endpoint":"tcp://*:5558"}`)
	f.Add(`{"buffer_steps":-1}`)
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseConfig(s)
		if err != nil {
			return
		}
		if err := cfg.validate(); err != nil {
			t.Fatalf("ParseConfig(%q) accepted an invalid config: %v", s, err)
		}
		m := map[string]any{
			"enable_kv_cache_events": cfg.EnableKVCacheEvents,
			"publisher":              cfg.Publisher,
			"endpoint":               cfg.Endpoint,
			"replay_endpoint":        nil,
			"buffer_steps":           cfg.BufferSteps,
			"hwm":                    cfg.HWM,
			"max_queue_size":         cfg.MaxQueueSize,
			"topic":                  cfg.Topic,
		}
		if cfg.ReplayEndpoint != "" {
			m["replay_endpoint"] = cfg.ReplayEndpoint
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig(string(b))
		if err != nil {
			t.Fatalf("round trip of %q via %s: %v", s, b, err)
		}
		if again != cfg {
			t.Fatalf("round trip of %q: got %+v, want %+v", s, again, cfg)
		}
	})
}
