package s3

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

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/storetest"
)

var buckets atomic.Int64

// newStore opens a store on a fresh bucket of srv (created by Check).
func newStore(t *testing.T, srv *testutil.MinIO, prefix string) (*Store, Config) {
	t.Helper()
	cfg := Config{
		Endpoint: srv.Endpoint, Bucket: fmt.Sprintf("strata-test-%d", buckets.Add(1)), Prefix: prefix,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, CreateBucket: true,
	}
	s := open(t, cfg)
	return s, cfg
}

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

// plainClient is minio-go without the tier, to look at what the tier wrote.
func plainClient(t *testing.T, srv *testutil.MinIO) *minio.Client {
	t.Helper()
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// One MinIO serves every subtest, each on its own bucket. (A bucket has
// no capacity to evict within: the capacity check is the local tiers'.)
func TestS3Store(t *testing.T) {
	srv := testutil.StartMinIO(t)
	ctx := context.Background()

	t.Run("Contract", func(t *testing.T) {
		storetest.Run(t, storetest.Options{BlockSize: 32 << 10}, func(t *testing.T) tiers.Store {
			s, _ := newStore(t, srv, "kv")
			return s
		})
	})

	t.Run("ObjectNamesUnderPrefix", func(t *testing.T) {
		s, cfg := newStore(t, srv, "/strata/kv/")
		b := storetest.Block(1, 100)
		if err := s.Put(ctx, []tiers.Block{b}); err != nil {
			t.Fatal(err)
		}
		var names []string
		for o := range plainClient(t, srv).ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			names = append(names, o.Key)
		}
		if want := "strata/kv/" + b.Key.ObjectName(); len(names) != 1 || names[0] != want {
			t.Fatalf("objects %v, want [%s]", names, want)
		}
	})

	t.Run("SharedByTwoNodes", func(t *testing.T) {
		a, cfg := newStore(t, srv, "kv")
		b := open(t, cfg) // another node, same bucket and prefix
		blk := storetest.Block(7, 5000)
		if err := a.Put(ctx, []tiers.Block{blk}); err != nil {
			t.Fatal(err)
		}
		storetest.MustGet(t, b, []tiers.Key{blk.Key}, []int{5000})
	})

	t.Run("CorruptObjectIsDroppedNotServed", func(t *testing.T) {
		s, cfg := newStore(t, srv, "kv")
		good, bad := storetest.Block(1, 4096), storetest.Block(2, 4096)
		if err := s.Put(ctx, []tiers.Block{good, bad}); err != nil {
			t.Fatal(err)
		}
		pc := plainClient(t, srv)
		name := s.name(bad.Key)
		obj, err := pc.GetObject(ctx, cfg.Bucket, name, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		if _, err := raw.ReadFrom(obj); err != nil {
			t.Fatal(err)
		}
		flipped := raw.Bytes()
		flipped[len(flipped)-10] ^= 0x04
		if _, err := pc.PutObject(ctx, cfg.Bucket, name, bytes.NewReader(flipped), int64(len(flipped)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		storetest.WantCorruptDropped(t, s, good.Key, bad.Key)
	})

	t.Run("WrongSecretIsAClearError", func(t *testing.T) {
		_, cfg := newStore(t, srv, "kv")
		cfg.SecretAccessKey = "not-the-secret-at-all"
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close() //nolint:errcheck // test
		storetest.WantAccessDenied(t, map[string]error{
			"check": s.Check(ctx),
			"put":   s.Put(ctx, []tiers.Block{storetest.Block(1, 10)}),
		}, cfg.SecretAccessKey)
	})

	t.Run("NoCredentials", func(t *testing.T) {
		for _, env := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "MINIO_ROOT_USER", "MINIO_ACCESS_KEY", "MINIO_ROOT_PASSWORD", "MINIO_SECRET_KEY"} {
			t.Setenv(env, "")
		}
		_, err := New(Config{Endpoint: srv.Endpoint, Bucket: "b", CredentialsFile: t.TempDir() + "/none"})
		if err == nil || !strings.Contains(err.Error(), "no credentials") {
			t.Fatalf("New without credentials: %v", err)
		}
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		s := open(t, Config{Endpoint: srv.Endpoint, Bucket: "strata-test-env", CreateBucket: true})
		if err := s.Put(ctx, []tiers.Block{storetest.Block(1, 10)}); err != nil {
			t.Fatalf("credentials from the environment: %v", err)
		}
	})

	t.Run("CredentialsFile", func(t *testing.T) {
		file := t.TempDir() + "/credentials"
		ini := fmt.Sprintf("[kv]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)
		if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, env := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} {
			t.Setenv(env, "")
		}
		s := open(t, Config{Endpoint: srv.Endpoint, Bucket: "strata-test-file", CreateBucket: true, CredentialsFile: file, Profile: "kv"})
		if err := s.Put(ctx, []tiers.Block{storetest.Block(1, 10)}); err != nil {
			t.Fatalf("credentials from a file: %v", err)
		}
	})

	t.Run("MissingBucket", func(t *testing.T) {
		s, err := New(Config{Endpoint: srv.Endpoint, Bucket: "strata-no-such-bucket", AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close() //nolint:errcheck // test
		if err := s.Check(ctx); !errors.Is(err, tiers.ErrUnavailable) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("check of a missing bucket: %v", err)
		}
	})

	t.Run("SecretsNotLogged", func(t *testing.T) {
		var logs bytes.Buffer
		cfg := Config{Endpoint: srv.Endpoint, Bucket: "b", AccessKeyID: "id", SecretAccessKey: "s3cr3t-value", SessionToken: "t0ken-value"}
		slog.New(slog.NewTextHandler(&logs, nil)).Info("tier", "config", cfg)
		if strings.Contains(logs.String(), "s3cr3t-value") || strings.Contains(logs.String(), "t0ken-value") || !strings.Contains(logs.String(), "bucket=b") {
			t.Fatalf("logged config: %s", logs.String())
		}
	})
}

func TestUnreachableIsUnavailable(t *testing.T) {
	s, err := New(Config{Endpoint: testutil.ClosedAddr(t), Bucket: "b", AccessKeyID: "id", SecretAccessKey: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close() //nolint:errcheck // test
	if err := s.Check(context.Background()); !errors.Is(err, tiers.ErrUnavailable) {
		t.Fatalf("check of a closed port: %v", err)
	}
	if res := s.Get(context.Background(), []tiers.Key{storetest.Key(1)}); !errors.Is(res[0].Err, tiers.ErrUnavailable) {
		t.Fatalf("get from a closed port: %v", res[0].Err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s"},
		{Endpoint: "127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "s"},
		{Endpoint: "127.0.0.1:1", Bucket: "b", AccessKeyID: "a"},
		{Endpoint: "127.0.0.1:1", Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s", Prefix: "a/../../b"},
	} {
		if _, err := New(cfg); err == nil {
			t.Fatalf("New(%+v) succeeded", cfg)
		}
	}
}
