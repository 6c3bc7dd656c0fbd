package testutil

import (
	"fmt"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// MinIO is a real MinIO server on a loopback port, with a temporary data
// directory, for the S3 tier's tests and the agent's end-to-end tests.
type MinIO struct {
	// Endpoint is host:port (plain HTTP).
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// DataDir holds the server's data; it survives Stop, so Start brings
	// the same objects back.
	DataDir string

	proc *serverProcess
}

// StartMinIO starts a MinIO server (the binary `make minio` installs into
// bin/tools, or $STRATA_MINIO_BIN) and waits until it is ready; t.Cleanup
// kills it.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := toolBinary(t, "the MinIO server", "STRATA_MINIO_BIN", "minio", "minio")
	dir := t.TempDir()
	m := &MinIO{
		Endpoint:  hostPort(freePort(t)),
		AccessKey: "strata-test", SecretKey: "strata-test-secret",
		DataDir: filepath.Join(dir, "data"),
	}
	client := &http.Client{Timeout: 2 * time.Second}
	m.proc = &serverProcess{
		name: "minio", bin: bin, dir: dir, log: filepath.Join(dir, "minio.log"),
		args: []string{"server", "--quiet", "--address", m.Endpoint, "--certs-dir", filepath.Join(dir, "certs"), m.DataDir},
		env: []string{
			"MINIO_ROOT_USER=" + m.AccessKey, "MINIO_ROOT_PASSWORD=" + m.SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CALLHOME_ENABLE=off",
		},
		ready: func() error {
			resp, err := client.Get("http://" + m.Endpoint + "/minio/health/ready")
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			// The server answers ready before its object layer is up, and
			// says so in a header; until then S3 calls fail with 503.
			if st := resp.Header.Get("X-Minio-Server-Status"); resp.StatusCode != http.StatusOK || st != "" {
				return fmt.Errorf("health: %s %s", resp.Status, st)
			}
			return nil
		},
	}
	m.proc.start(t)
	t.Cleanup(m.Stop)
	return m
}

// Stop kills the server, as a crash would; the data directory stays.
func (m *MinIO) Stop() { m.proc.stop() }

// Pause freezes the server (SIGSTOP): connections are accepted by the
// kernel and never answered, like a server that hangs. It returns once
// every thread of the server has stopped. Resume thaws it.
func (m *MinIO) Pause(t testing.TB) {
	t.Helper()
	m.proc.signal(syscall.SIGSTOP)
	m.proc.waitStopped(t)
}

// Resume thaws a paused server.
func (m *MinIO) Resume() { m.proc.signal(syscall.SIGCONT) }

// Start restarts a stopped server on the same port and data directory.
func (m *MinIO) Start(t testing.TB) {
	t.Helper()
	m.proc.start(t)
}
