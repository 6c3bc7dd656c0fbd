package brain

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/strata-llm/strata/auth"
)

// raftPreamble opens every Raft connection between brains: a magic string,
// then the cluster token, length-prefixed. hashicorp/raft's TCP transport
// authenticates nobody, and anyone who can write to the Raft port can
// rewrite the cluster's state, so a connection is handed to Raft only after
// its token checked out.
const raftMagic = "STRATA-RAFT/1\n"

const (
	maxTokenLen      = 4096
	handshakeTimeout = 5 * time.Second
)

// streamLayer is a raft.StreamLayer over TCP (optionally TLS) that
// authenticates each connection with the cluster token.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	token     auth.Token
	serverTLS *tls.Config
	clientTLS *tls.Config
	log       *slog.Logger

	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(ln net.Listener, advertise net.Addr, token auth.Token, files auth.TLSFiles, log *slog.Logger) (*streamLayer, error) {
	serverTLS, err := files.ServerTLS()
	if err != nil {
		return nil, err
	}
	clientTLS, err := files.ClientTLS()
	if err != nil {
		return nil, err
	}
	s := &streamLayer{
		ln: ln, advertise: advertise, token: token, serverTLS: serverTLS, clientTLS: clientTLS, log: log,
		conns: make(chan net.Conn), closed: make(chan struct{}),
	}
	go s.acceptLoop()
	return s, nil
}

// acceptLoop accepts connections and checks each one's preamble on its own
// goroutine, so a peer that connects and says nothing cannot stall Raft.
func (s *streamLayer) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("raft accept", "error", err)
			continue
		}
		go func() {
			c, err := s.handshake(c)
			if err != nil {
				s.log.Warn("raft connection refused", "remote", c.RemoteAddr().String(), "error", err)
				_ = c.Close()
				return
			}
			select {
			case s.conns <- c:
			case <-s.closed:
				_ = c.Close()
			}
		}()
	}
}

func (s *streamLayer) handshake(c net.Conn) (net.Conn, error) {
	if s.serverTLS != nil {
		c = tls.Server(c, s.serverTLS)
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	r := bufio.NewReaderSize(c, len(raftMagic)+2)
	magic := make([]byte, len(raftMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != raftMagic {
		return c, fmt.Errorf("not a Strata raft peer (bad preamble)")
	}
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return c, fmt.Errorf("read token length: %w", err)
	}
	size := int(n[0])<<8 | int(n[1])
	if size > maxTokenLen {
		return c, fmt.Errorf("token length %d over %d", size, maxTokenLen)
	}
	tok := make([]byte, size)
	if _, err := io.ReadFull(r, tok); err != nil {
		return c, fmt.Errorf("read token: %w", err)
	}
	if !s.token.Matches(string(tok)) {
		return c, errors.New("wrong cluster token")
	}
	_ = c.SetDeadline(time.Time{})
	// The peer writes nothing more before Raft's own bytes, but anything
	// already buffered must not be lost.
	return &bufferedConn{Conn: c, r: r}, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Accept implements net.Listener.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (s *streamLayer) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.ln.Close()
}

// Addr implements net.Listener: the address other brains dial.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial implements raft.StreamLayer.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	if s.clientTLS != nil {
		cfg := s.clientTLS.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(string(address))
			cfg.ServerName = host
		}
		c = tls.Client(c, cfg)
	}
	msg := make([]byte, 0, len(raftMagic)+2+len(s.token))
	msg = append(msg, raftMagic...)
	msg = append(msg, byte(len(s.token)>>8), byte(len(s.token)))
	msg = append(msg, s.token...)
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(msg); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raft preamble to %s: %w", address, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}
