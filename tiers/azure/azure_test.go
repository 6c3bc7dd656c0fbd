package azure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/storetest"
)

var containers atomic.Int64

func newContainer() string { return fmt.Sprintf("strata-test-%d", containers.Add(1)) }

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// keyConfig authenticates with the emulator's account key, on a fresh
// container Check creates.
func keyConfig(az *testutil.Azurite) Config {
	return Config{
		ServiceURL: az.BlobEndpoint, Container: newContainer(), Prefix: "kv",
		AccountName: az.Account, AccountKey: az.Key, CreateContainer: true,
	}
}

// containerSAS signs a SAS for cfg's container with the account key.
func containerSAS(t *testing.T, az *testutil.Azurite, name string, perms sas.ContainerPermissions) string {
	t.Helper()
	cred, err := container.NewSharedKeyCredential(az.Account, az.Key)
	if err != nil {
		t.Fatal(err)
	}
	q, err := sas.BlobSignatureValues{
		Protocol: sas.ProtocolHTTPSandHTTP, ExpiryTime: time.Now().Add(time.Hour),
		Permissions: perms.String(), ContainerName: name,
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	return q.Encode()
}

func TestAzureStore(t *testing.T) {
	az := testutil.StartAzurite(t)
	ctx := context.Background()

	t.Run("Contract", func(t *testing.T) {
		storetest.Run(t, storetest.Options{BlockSize: 32 << 10}, func(t *testing.T) tiers.Store {
			return open(t, Config{ConnectionString: az.ConnectionString(), Container: newContainer(), Prefix: "kv", CreateContainer: true})
		})
	})

	t.Run("BlobNamesUnderPrefix", func(t *testing.T) {
		cfg := keyConfig(az)
		cfg.Prefix = "/strata/kv/"
		s := open(t, cfg)
		b := storetest.Block(1, 100)
		if err := s.Put(ctx, []tiers.Block{b}); err != nil {
			t.Fatal(err)
		}
		var names []string
		pager := s.container.NewListBlobsFlatPager(nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, item := range page.Segment.BlobItems {
				names = append(names, *item.Name)
			}
		}
		if want := "strata/kv/" + b.Key.ObjectName(); len(names) != 1 || names[0] != want {
			t.Fatalf("blobs %v, want [%s]", names, want)
		}
	})

	t.Run("SharedByTwoNodes", func(t *testing.T) {
		cfg := keyConfig(az)
		a, b := open(t, cfg), open(t, cfg)
		blk := storetest.Block(7, 5000)
		if err := a.Put(ctx, []tiers.Block{blk}); err != nil {
			t.Fatal(err)
		}
		storetest.MustGet(t, b, []tiers.Key{blk.Key}, []int{5000})
	})

	t.Run("SASToken", func(t *testing.T) {
		cfg := keyConfig(az)
		open(t, cfg) // creates the container
		token := containerSAS(t, az, cfg.Container, sas.ContainerPermissions{Read: true, Write: true, Create: true, Delete: true, List: true})
		s := open(t, Config{ServiceURL: az.BlobEndpoint, Container: cfg.Container, Prefix: "kv", SASToken: "?" + token})
		b := storetest.Block(3, 2000)
		if err := s.Put(ctx, []tiers.Block{b}); err != nil {
			t.Fatal(err)
		}
		storetest.MustGet(t, s, []tiers.Key{b.Key}, []int{2000})

		// A read-only SAS is refused the write, with a clear error that
		// does not carry the signature.
		ro := containerSAS(t, az, cfg.Container, sas.ContainerPermissions{Read: true})
		r, err := New(Config{ServiceURL: az.BlobEndpoint, Container: cfg.Container, Prefix: "kv", SASToken: ro})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close() //nolint:errcheck // test
		storetest.MustGet(t, r, []tiers.Key{b.Key}, []int{2000})
		err = r.Put(ctx, []tiers.Block{storetest.Block(4, 10)})
		if !errors.Is(err, tiers.ErrAccessDenied) || !errors.Is(err, tiers.ErrUnavailable) {
			t.Fatalf("put with a read-only SAS: %v, want ErrAccessDenied", err)
		}
		if strings.Contains(err.Error(), ro) || strings.Contains(err.Error(), "sig=") {
			t.Fatalf("the error carries the SAS: %v", err)
		}
	})

	t.Run("CorruptBlobIsDroppedNotServed", func(t *testing.T) {
		s := open(t, keyConfig(az))
		good, bad := storetest.Block(1, 4096), storetest.Block(2, 4096)
		if err := s.Put(ctx, []tiers.Block{good, bad}); err != nil {
			t.Fatal(err)
		}
		name := s.names.Name(bad.Key)
		resp, err := s.container.NewBlobClient(name).DownloadStream(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		if _, err := raw.ReadFrom(resp.Body); err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		flipped := raw.Bytes()
		flipped[len(flipped)/2] ^= 0x10
		if _, err := s.container.NewBlockBlobClient(name).UploadBuffer(ctx, flipped, nil); err != nil {
			t.Fatal(err)
		}
		storetest.WantCorruptDropped(t, s, good.Key, bad.Key)
	})

	t.Run("WrongKeyIsAClearError", func(t *testing.T) {
		cfg := keyConfig(az)
		open(t, cfg)
		wrong := "AAAA" + az.Key[4:]
		cfg.AccountKey, cfg.CreateContainer = wrong, false
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close() //nolint:errcheck // test
		storetest.WantAccessDenied(t, map[string]error{
			"check": s.Check(ctx),
			"put":   s.Put(ctx, []tiers.Block{storetest.Block(1, 10)}),
			"get":   s.Get(ctx, []tiers.Key{storetest.Key(1)})[0].Err,
		}, wrong)
	})

	t.Run("CredentialsFromFileAndEnvironment", func(t *testing.T) {
		cfg := keyConfig(az)
		file := t.TempDir() + "/key"
		if err := os.WriteFile(file, []byte(az.Key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.AccountKey, cfg.AccountKeyFile = "", file
		fromFile := open(t, cfg)
		if err := fromFile.Put(ctx, []tiers.Block{storetest.Block(1, 10)}); err != nil {
			t.Fatalf("key from a file: %v", err)
		}
		t.Setenv("AZURE_STORAGE_CONNECTION_STRING", az.ConnectionString())
		fromEnv := open(t, Config{Container: cfg.Container, Prefix: "kv"})
		storetest.MustGet(t, fromEnv, []tiers.Key{storetest.Key(1)}, []int{10})
	})

	t.Run("NoCredentials", func(t *testing.T) {
		for _, env := range []string{"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"} {
			t.Setenv(env, "")
		}
		if _, err := New(Config{ServiceURL: az.BlobEndpoint, Container: "c"}); err == nil || !strings.Contains(err.Error(), "no credentials") {
			t.Fatalf("New without credentials: %v", err)
		}
		if _, err := New(Config{ServiceURL: az.BlobEndpoint, Container: "c", AccountKeyFile: t.TempDir() + "/missing"}); err == nil {
			t.Fatal("New with a missing key file succeeded")
		}
	})

	t.Run("MissingContainer", func(t *testing.T) {
		cfg := keyConfig(az)
		cfg.CreateContainer = false
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close() //nolint:errcheck // test
		if err := s.Check(ctx); !errors.Is(err, tiers.ErrUnavailable) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("check of a missing container: %v", err)
		}
	})

	t.Run("SecretsNotLogged", func(t *testing.T) {
		var logs bytes.Buffer
		cfg := Config{ServiceURL: az.BlobEndpoint, Container: "c", ConnectionString: az.ConnectionString(), AccountKey: az.Key, SASToken: "sig=s3cr3t"}
		slog.New(slog.NewTextHandler(&logs, nil)).Info("tier", "config", cfg)
		if strings.Contains(logs.String(), az.Key) || strings.Contains(logs.String(), "s3cr3t") || !strings.Contains(logs.String(), "container=c") {
			t.Fatalf("logged config: %s", logs.String())
		}
	})
}

func TestUnreachableIsUnavailable(t *testing.T) {
	sig := "sig=c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ%3D%3D"
	s, err := New(Config{ServiceURL: "http://" + testutil.ClosedAddr(t) + "/devstoreaccount1", Container: "c", SASToken: "sv=2021-08-06&sr=c&sp=r&" + sig})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close() //nolint:errcheck // test
	for _, err := range []error{s.Check(context.Background()), s.Get(context.Background(), []tiers.Key{storetest.Key(1)})[0].Err} {
		if !errors.Is(err, tiers.ErrUnavailable) {
			t.Fatalf("a closed port: %v, want ErrUnavailable", err)
		}
		if strings.Contains(err.Error(), "c2VjcmV0") {
			t.Fatalf("the error carries the SAS signature: %v", err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{AccountName: "a", AccountKey: "a2V5", ServiceURL: "http://127.0.0.1:1/a"},
		{Container: "c", AccountKey: "a2V5", ServiceURL: "http://127.0.0.1:1/a"},
		{Container: "c", AccountName: "a", AccountKey: "not base64!", ServiceURL: "http://127.0.0.1:1/a"},
		{Container: "c", SASToken: "sig=x"},
		{Container: "c", SASToken: "sig=x", ServiceURL: "http://127.0.0.1:1/a", Prefix: "../x"},
	} {
		if _, err := New(cfg); err == nil {
			t.Fatalf("New(%+v) succeeded", cfg)
		}
	}
}
