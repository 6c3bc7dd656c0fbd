package brain

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/strata-llm/strata/auth"
)

func TestStreamLayerToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	layer, err := newStreamLayer(ln, ln.Addr(), "right", auth.TLSFiles{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = layer.Close() }()
	addr := raft.ServerAddress(ln.Addr().String())
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	tests := []struct {
		name   string
		dial   func() (net.Conn, error)
		accept bool
	}{
		{"right token", func() (net.Conn, error) { return dialer("right").Dial(addr, time.Second) }, true},
		{"wrong token", func() (net.Conn, error) { return dialer("wrong").Dial(addr, time.Second) }, false},
		{"no token", func() (net.Conn, error) { return dialer("").Dial(addr, time.Second) }, false},
		{"not a strata peer", func() (net.Conn, error) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err == nil {
				_, err = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			}
			return c, err
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			if tt.accept {
				select {
				case srv := <-accepted:
					// Raft's first bytes reach the other side intact.
					go func() { _, _ = c.Write([]byte{1, 2, 3}) }()
					buf := make([]byte, 3)
					if _, err := io.ReadFull(srv, buf); err != nil || buf[2] != 3 {
						t.Fatalf("read after handshake: %v %v", buf, err)
					}
					_ = srv.Close()
				case <-time.After(5 * time.Second):
					t.Fatal("connection with the right token not accepted")
				}
				return
			}
			// A refused connection is closed by the server (EOF, or a reset
			// when unread bytes were pending).
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); err == nil || (ok && ne.Timeout()) {
				t.Fatalf("refused connection: read err = %v, want it closed", err)
			}
			select {
			case <-accepted:
				t.Fatal("connection with a bad preamble reached raft")
			default:
			}
		})
	}
}

// dialer is a stream layer used only for its Dial side.
func dialer(token auth.Token) *streamLayer { return &streamLayer{token: token} }
