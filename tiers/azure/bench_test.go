package azure

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/strata-llm/strata/test/testutil"
	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/storetest"
)

const benchKeys = 16

// BenchmarkAzure puts and gets 2 MiB blocks through the tier and, in turns,
// the same bytes with the plain SDK (UploadBuffer, DownloadStream) against
// one Azurite on loopback. Azurite is an emulator in Node.js: the numbers
// say what the tier costs over the SDK, not what Azure does.
func BenchmarkAzure(b *testing.B) {
	az := testutil.StartAzurite(b)
	ctx := context.Background()
	s, err := New(Config{ConnectionString: az.ConnectionString(), Container: "bench", Prefix: "kv", CreateContainer: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close() //nolint:errcheck // bench
	if err := s.Check(ctx); err != nil {
		b.Fatal(err)
	}
	blocks := make([]tiers.Block, benchKeys)
	for i := range blocks {
		blocks[i] = storetest.Block(i, storetest.BenchBlock)
	}
	plainName := func(i int) string { return "plain/" + blocks[i%benchKeys].Key.ObjectName() }
	plainPut := func(b *testing.B, i int) {
		if _, err := s.container.NewBlockBlobClient(plainName(i)).Upload(ctx, nopSeekCloser{bytes.NewReader(blocks[i%benchKeys].Data)}, nil); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("put", func(b *testing.B) {
		tier, base := storetest.NewTimer("tier"), storetest.NewTimer("azblob")
		i := 0
		for b.Loop() {
			blk := blocks[i%benchKeys]
			storetest.InTurns(i, func() {
				base.Time(len(blk.Data), func() { plainPut(b, i) })
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
		for i := range blocks {
			if err := s.Put(ctx, []tiers.Block{blocks[i]}); err != nil {
				b.Fatal(err)
			}
			plainPut(b, i)
		}
		tier, base := storetest.NewTimer("tier"), storetest.NewTimer("azblob")
		i := 0
		for b.Loop() {
			k := blocks[i%benchKeys].Key
			storetest.InTurns(i, func() {
				base.Time(storetest.BenchBlock, func() {
					resp, err := s.container.NewBlobClient(plainName(i)).DownloadStream(ctx, nil)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(resp.Body, make([]byte, *resp.ContentLength)); err != nil {
						b.Fatal(err)
					}
					_ = resp.Body.Close()
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

type nopSeekCloser struct{ io.ReadSeeker }

func (nopSeekCloser) Close() error { return nil }
