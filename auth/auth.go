// Package auth carries the cluster token and optional TLS between Strata's
// own processes (brain, agent, gateway, ctl). Every gRPC call presents the
// token as "authorization: Bearer <token>"; the server compares it in
// constant time. TLS (and mutual TLS when a CA is configured) is an option
// on top: the token still gates every call, TLS keeps it secret on the wire.
package auth

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Token is the cluster token. Its String never reveals it, so a Token can
// sit in a logged config struct.
type Token string

// String implements fmt.Stringer without the secret.
func (t Token) String() string {
	if t == "" {
		return "(none)"
	}
	return "(redacted)"
}

// LogValue keeps the token out of slog output.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// Matches compares a presented token in constant time.
func (t Token) Matches(presented string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(presented)) == 1
}

// TLSFiles names PEM files. With Cert and Key a server serves TLS; with CA
// too it requires client certificates signed by it (mutual TLS). A client
// uses CA to verify servers and Cert/Key as its own identity.
type TLSFiles struct {
	Cert, Key, CA string
}

// Enabled says whether any TLS file is configured.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

func (f TLSFiles) load() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("tls: a certificate needs its key and a key its certificate")
	}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: load key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("tls: read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificate in CA file %s", f.CA)
		}
		cfg.RootCAs, cfg.ClientCAs = pool, pool
	}
	return cfg, nil
}

// ServerTLS returns the server-side TLS config, or nil when TLS is off.
func (f TLSFiles) ServerTLS() (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	if f.Cert == "" {
		return nil, errors.New("tls: a server needs a certificate and key")
	}
	cfg, err := f.load()
	if err != nil {
		return nil, err
	}
	if cfg.ClientCAs != nil {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS returns the client-side TLS config, or nil when TLS is off.
func (f TLSFiles) ClientTLS() (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	return f.load()
}

const bearer = "Bearer "

// tokenCreds attaches the token to every call.
type tokenCreds struct {
	token  Token
	secure bool
}

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": bearer + string(c.token)}, nil
}

func (c tokenCreds) RequireTransportSecurity() bool { return c.secure }

// DialOptions are the gRPC client options for calling another Strata
// process: transport security (or plaintext) and the token on every call.
func DialOptions(token Token, files TLSFiles) ([]grpc.DialOption, error) {
	tlsCfg, err := files.ClientTLS()
	if err != nil {
		return nil, err
	}
	transport := insecure.NewCredentials()
	if tlsCfg != nil {
		transport = credentials.NewTLS(tlsCfg)
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithPerRPCCredentials(tokenCreds{token: token, secure: tlsCfg != nil}),
	}, nil
}

// ServerOptions are the gRPC server options that enforce the token (and
// TLS when configured) on every unary and streaming call.
func ServerOptions(token Token, files TLSFiles) ([]grpc.ServerOption, error) {
	tlsCfg, err := files.ServerTLS()
	if err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx, token); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context(), token); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	return opts, nil
}

func check(ctx context.Context, token Token) error {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if p, ok := strings.CutPrefix(v, bearer); ok && token.Matches(p) {
			return nil
		}
	}
	// Never echo what was presented: it may be a near-miss of the secret.
	return status.Error(codes.Unauthenticated, "missing or wrong cluster token")
}
