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

	b.Run("put", func(b *testing.B) {
		tier, base := storetest.NewTimer("tier"), storetest.NewTimer("miniogo")
		i := 0
		for b.Loop() {
			blk := blocks[i%benchKeys]
			storetest.InTurns(i, func() {
				base.Time(len(blk.Data), func() {
					if _, err := plain.PutObject(ctx, cfg.Bucket, plainName(i), bytes.NewReader(blk.Data), int64(len(blk.Data)),
						minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
						b.Fatal(err)
					}
				})
			}, func() {
				tier.Time(len(blk.Data), func() {
					if err := s.Put(ctx, []tiers.Block{blk}); err != nil {
						b.Fatal(err)
					}
				})
			})
			i++
		}
		storetest.Compare(b, tier, base)
	})

	b.Run("get", func(b *testing.B) {
		for i := range blocks { // what put may not have reached
			if err := s.Put(ctx, []tiers.Block{blocks[i]}); err != nil {
				b.Fatal(err)
			}
			if _, err := plain.PutObject(ctx, cfg.Bucket, plainName(i), bytes.NewReader(blocks[i].Data), int64(len(blocks[i].Data)), minio.PutObjectOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		tier, base := storetest.NewTimer("tier"), storetest.NewTimer("miniogo")
		i := 0
		for b.Loop() {
			k := blocks[i%benchKeys].Key
			storetest.InTurns(i, func() {
				base.Time(storetest.BenchBlock, func() {
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
			}, func() {
				tier.Time(storetest.BenchBlock, func() {
					if r := s.Get(ctx, []tiers.Key{k}); r[0].Err != nil {
						b.Fatal(r[0].Err)
					}
				})
			})
			i++
		}
		storetest.Compare(b, tier, base)
	})
}
