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
		storetest.Versus(b, storetest.BenchBlock, "azblob", func(i int) {
			if err := s.Put(ctx, []tiers.Block{blocks[i%benchKeys]}); err != nil {
				b.Fatal(err)
			}
		}, func(i int) { plainPut(b, i) })
	})

	b.Run("get", func(b *testing.B) {
		for i := range blocks {
			if err := s.Put(ctx, []tiers.Block{blocks[i]}); err != nil {
				b.Fatal(err)
			}
			plainPut(b, i)
		}
		storetest.Versus(b, storetest.BenchBlock, "azblob", func(i int) {
			if r := s.Get(ctx, []tiers.Key{blocks[i%benchKeys].Key}); r[0].Err != nil {
				b.Fatal(r[0].Err)
			}
		}, func(i int) {
			resp, err := s.container.NewBlobClient(plainName(i)).DownloadStream(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, *resp.ContentLength)); err != nil {
				b.Fatal(err)
			}
			_ = resp.Body.Close()
		})
	})
}

type nopSeekCloser struct{ io.ReadSeeker }

func (nopSeekCloser) Close() error { return nil }
