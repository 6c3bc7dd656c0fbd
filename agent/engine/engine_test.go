package engine

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/strata-llm/strata/brain/placement"
	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

func TestPortsPerWorkerMatchesPlacement(t *testing.T) {
	if PortsPerWorker != placement.PortStride {
		t.Fatalf("PortsPerWorker %d, placement.PortStride %d", PortsPerWorker, placement.PortStride)
	}
	if OffsetKVTransfer >= PortsPerWorker {
		t.Fatalf("offsets exceed the worker's ports")
	}
}

func TestHosts(t *testing.T) {
	tests := []struct {
		host, advertise       string
		bind, dial, peer, url string
	}{
		{"", "", "0.0.0.0", "127.0.0.1", "", "http://127.0.0.1:30000"},
		{"0.0.0.0", "10.1.2.3", "0.0.0.0", "127.0.0.1", "10.1.2.3", "http://127.0.0.1:30000"},
		{"::", "node7.dc", "::", "127.0.0.1", "node7.dc", "http://127.0.0.1:30000"},
		{"10.1.2.3", "", "10.1.2.3", "10.1.2.3", "10.1.2.3", "http://10.1.2.3:30000"},
		{"10.1.2.3", "0.0.0.0", "10.1.2.3", "10.1.2.3", "10.1.2.3", "http://10.1.2.3:30000"},
		{"fd00::7", "", "fd00::7", "fd00::7", "fd00::7", "http://[fd00::7]:30000"},
	}
	for _, tt := range tests {
		s := Spec{Host: tt.host, AdvertiseHost: tt.advertise, Port: 30000}
		if got := s.BindHost(); got != tt.bind {
			t.Errorf("%q/%q: bind %q, want %q", tt.host, tt.advertise, got, tt.bind)
		}
		if got := s.DialHost(); got != tt.dial {
			t.Errorf("%q/%q: dial %q, want %q", tt.host, tt.advertise, got, tt.dial)
		}
		if got := s.PeerHost(); got != tt.peer {
			t.Errorf("%q/%q: peer %q, want %q", tt.host, tt.advertise, got, tt.peer)
		}
		if got := s.DialURL(); got != tt.url {
			t.Errorf("%q/%q: url %q, want %q", tt.host, tt.advertise, got, tt.url)
		}
	}
}

func TestZMQEventSourceIPv6(t *testing.T) {
	got := ZMQEventSource(Spec{Host: "fd00::7", Port: 30000}, KVFormatSGLang)
	want := KVEventSource{Format: KVFormatSGLang, Endpoint: "tcp://[fd00::7]:30001", ReplayEndpoint: "tcp://[fd00::7]:30002"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestServedName(t *testing.T) {
	for _, tt := range []struct{ served, dep, model, want string }{
		{"n", "d", "m", "n"},
		{"", "d", "m", "d"},
		{"", "", "m", "m"},
	} {
		if got := (Spec{ServedModelName: tt.served, Deployment: tt.dep, Model: tt.model}).ServedName(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt, got, tt.want)
		}
	}
}

func TestCUDAEnv(t *testing.T) {
	s := Spec{GPUs: []string{"GPU-a", "GPU-b"}}
	if got, want := CUDAEnv(s), []string{"CUDA_VISIBLE_DEVICES=GPU-a,GPU-b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("UUIDs: %q, want %q", got, want)
	}
	s.GPUIndices = []int{3, 1}
	if got, want := CUDAEnv(s), []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=3,1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("indices: %q, want %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	ok := Spec{WorkerID: "w", Model: "m", Port: 20000, TensorParallelSize: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*Spec){
		"no model":          func(s *Spec) { s.Model = "" },
		"port 0":            func(s *Spec) { s.Port = 0 },
		"port range spills": func(s *Spec) { s.Port = 65527 },
		"TP 0":              func(s *Spec) { s.TensorParallelSize = 0 },
		"role":              func(s *Spec) { s.Role = 42 },
		"block size":        func(s *Spec) { s.BlockSize = -1 },
		"host with space":   func(s *Spec) { s.Host = "a b" },
		"decode, wildcard":  func(s *Spec) { s.Role = stratav1.WorkerRole_WORKER_ROLE_DECODE },
		"relative work dir": func(s *Spec) { s.WorkDir = "w" },
	}
	for name, edit := range bad {
		s := ok
		edit(&s)
		if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: %v, want ErrInvalidSpec", name, err)
		}
	}
}

func TestCompletionCanary(t *testing.T) {
	c := CompletionCanary(Spec{ServedModelName: `we"ird`}, map[string]any{"bootstrap_room": 0})
	want := `{"bootstrap_room":0,"max_tokens":1,"model":"we\"ird","prompt":"ping"}`
	if c.Path != "/v1/completions" || string(c.Body) != want {
		t.Fatalf("%s %s", c.Path, c.Body)
	}
	// A value JSON cannot encode falls back to the plain canary.
	c = CompletionCanary(Spec{Model: "m"}, map[string]any{"x": math.NaN()})
	if string(c.Body) != `{"max_tokens":1,"model":"m","prompt":"ping"}` {
		t.Fatalf("fallback %s", c.Body)
	}
}

func TestMetricsReductions(t *testing.T) {
	m, err := ParsePrometheus([]byte(`# TYPE a gauge
a{x="1"} 1
a{x="2"} 3
a{x="3"} NaN
# TYPE h histogram
h_bucket{le="+Inf"} 2
h_sum 1
h_count 2
u 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.Sum("a"); !ok || v != 4 {
		t.Errorf("sum %v %v", v, ok)
	}
	if v, ok := m.Mean("a"); !ok || v != 2 {
		t.Errorf("mean %v %v", v, ok)
	}
	if _, ok := m.Sum("h"); ok {
		t.Errorf("histogram summed")
	}
	if v, ok := m.First("missing", "u"); !ok || v != 5 {
		t.Errorf("first %v %v", v, ok)
	}
	if !m.Has("a") || m.Has("missing") {
		t.Errorf("has")
	}
	if _, err := ParsePrometheus([]byte(" \n")); err == nil {
		t.Errorf("blank body parsed")
	}
}

func TestConversions(t *testing.T) {
	for _, tt := range []struct {
		in    float64
		count uint32
		total uint64
		frac  float64
	}{
		{math.NaN(), 0, 0, 0},
		{-1, 0, 0, 0},
		{0.4, 0, 0, 0.4},
		{2.6, 3, 3, 1},
		{math.Inf(1), math.MaxUint32, math.MaxUint64, 1},
		{1e300, math.MaxUint32, math.MaxUint64, 1},
	} {
		if got := Count(tt.in); got != tt.count {
			t.Errorf("Count(%v) %v, want %v", tt.in, got, tt.count)
		}
		if got := Total(tt.in); got != tt.total {
			t.Errorf("Total(%v) %v, want %v", tt.in, got, tt.total)
		}
		if got := Fraction(tt.in); got != tt.frac {
			t.Errorf("Fraction(%v) %v, want %v", tt.in, got, tt.frac)
		}
	}
}
