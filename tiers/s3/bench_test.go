package s3

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/storetest"
)

const benchKeys = 32

// BenchmarkS3 puts and gets 2 MiB blocks through the tier and, in turns,
// the same bytes with plain minio-go PutObject and GetObject, against one
// MinIO on loopback (its data on the same disk).
func BenchmarkS3(b *testing.B) {
	srv := testutil.StartMinIO(b)
	ctx := context.Background()
	cfg := Config{Endpoint: srv.Endpoint, Bucket: "bench", Prefix: "kv", AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, CreateBucket: true}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close() //nolint:errcheck // bench
	if err := s.Check(ctx); err != nil {
		b.Fatal(err)
	}
	plain, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), MaxRetries: 1})
	if err != nil {
		b.Fatal(err)
	}
	blocks := make([]tiers.Block, benchKeys)
	for i := range blocks {
		blocks[i] = storetest.Block(i, storetest.BenchBlock)
	}
	plainName := func(i int) string { return "plain/" + blocks[i%benchKeys].Key.ObjectName() }
	plainPut := func(b *testing.B, i int) {
		data := blocks[i%benchKeys].Data
		if _, err := plain.PutObject(ctx, cfg.Bucket, plainName(i), bytes.NewReader(data), int64(len(data)),
			minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("put", func(b *testing.B) {
		storetest.Versus(b, storetest.BenchBlock, "miniogo", func(i int) {
			if err := s.Put(ctx, []tiers.Block{blocks[i%benchKeys]}); err != nil {
				b.Fatal(err)
			}
		}, func(i int) { plainPut(b, i) })
	})

	b.Run("get", func(b *testing.B) {
		for i := range blocks { // what put may not have reached
			if err := s.Put(ctx, []tiers.Block{blocks[i]}); err != nil {
				b.Fatal(err)
			}
			plainPut(b, i)
		}
		storetest.Versus(b, storetest.BenchBlock, "miniogo", func(i int) {
			if r := s.Get(ctx, []tiers.Key{blocks[i%benchKeys].Key}); r[0].Err != nil {
				b.Fatal(r[0].Err)
			}
		}, func(i int) {
			obj, err := plain.GetObject(ctx, cfg.Bucket, plainName(i), minio.GetObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			info, err := obj.Stat()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(obj, make([]byte, info.Size)); err != nil {
				b.Fatal(err)
			}
			_ = obj.Close()
		})
	})
}
