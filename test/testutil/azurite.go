package testutil

import (
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Azurite is a real Azurite (the Azure Storage emulator) blob service on a
// loopback port, keeping its data in memory, for the Azure tier's tests.
type Azurite struct {
	// BlobEndpoint is the service URL of the emulator's account,
	// http://127.0.0.1:PORT/devstoreaccount1.
	BlobEndpoint string
	// Account and Key are the emulator's well-known development account
	// (public, documented by Microsoft; not a secret).
	Account, Key string

	proc *serverProcess
}

// AzuriteKey is the key of the emulator's devstoreaccount1.
const AzuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// StartAzurite starts Azurite's blob service (the package `make azurite`
// installs into bin/tools/azurite, or $STRATA_AZURITE_BIN) and waits until
// it answers; t.Cleanup kills it.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	bin := toolBinary(t, "Azurite", "STRATA_AZURITE_BIN", filepath.Join("azurite", "node_modules", ".bin", "azurite-blob"), "azurite")
	dir := t.TempDir()
	port := freePort(t)
	a := &Azurite{
		BlobEndpoint: "http://" + hostPort(port) + "/devstoreaccount1",
		Account:      "devstoreaccount1", Key: AzuriteKey,
	}
	client := &http.Client{Timeout: 2 * time.Second}
	a.proc = &serverProcess{
		name: "azurite", bin: bin, dir: dir, log: filepath.Join(dir, "azurite.log"),
		args: []string{
			"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
			"--inMemoryPersistence", "--extentMemoryLimit", "1024",
			// The SDK may speak a newer service version than the emulator
			// knows; the operations the tier uses are old.
			"--skipApiVersionCheck",
			"--disableTelemetry", "--silent",
		},
		// With in-memory persistence Azurite writes nothing; a private HOME
		// keeps anything node might write out of the user's.
		env: []string{"HOME=" + dir},
		ready: func() error {
			// Any HTTP answer (403 without credentials) means it serves.
			resp, err := client.Get(a.BlobEndpoint + "?comp=list")
			if err != nil {
				return err
			}
			return resp.Body.Close()
		},
	}
	a.proc.start(t)
	t.Cleanup(a.Stop)
	return a
}

// ConnectionString is a connection string for the emulator's account.
func (a *Azurite) ConnectionString() string {
	return "DefaultEndpointsProtocol=http;AccountName=" + a.Account + ";AccountKey=" + a.Key + ";BlobEndpoint=" + a.BlobEndpoint + ";"
}

// Stop kills the emulator (its in-memory data is lost).
func (a *Azurite) Stop() { a.proc.stop() }
