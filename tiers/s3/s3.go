// Package s3 is the remote tier on any S3-compatible object store (AWS S3,
// MinIO, Ceph RGW, ...) through minio-go. One object per block, named
// <prefix>/<scope>/<hash> in one bucket, so every node of the cluster
// computes the same name for the same block. Each object is a record
// (package record: header with the key and CRC-32C, then the payload), so
// a corrupt or misplaced object is detected, deleted and never served.
//
// Credentials come from the Config (typically read from a file the
// operator controls), else from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; or MINIO_ROOT_USER and
// MINIO_ROOT_PASSWORD), else from an AWS shared credentials file. No
// instance-metadata lookup is made. Secrets never appear in logs or errors:
// Config's LogValue leaves them out.
//
// Ownership: Put does not keep the caller's bytes; Get returns a fresh
// buffer the caller owns.
package s3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/internal/objname"
	"github.com/strata-llm/strata/tiers/internal/objstore"
	"github.com/strata-llm/strata/tiers/internal/record"
)

// Config configures an S3 store.
type Config struct {
	// Endpoint is the service's host[:port] (s3.amazonaws.com,
	// 127.0.0.1:9000).
	Endpoint string
	// Secure selects HTTPS.
	Secure bool
	// Region; empty asks the service.
	Region string
	// Bucket holds the blocks.
	Bucket string
	// Prefix is prepended to every object name ("strata/kv"); may be empty.
	Prefix string

	// AccessKeyID, SecretAccessKey and SessionToken are static
	// credentials; when empty, the environment and then the shared
	// credentials file are used.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// CredentialsFile is an AWS shared credentials file and Profile its
	// section (defaults: $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
	// $AWS_PROFILE or "default").
	CredentialsFile, Profile string

	// CreateBucket makes Check create the bucket when it is missing.
	CreateBucket bool
	// Parallel is how many objects of a batch are transferred at once
	// (default 8).
	Parallel int
	// MaxRetries is the client's own retries of one request (default 1:
	// none; the Hierarchy retries the tier as a whole, with backoff).
	MaxRetries int
	// Transport overrides the HTTP transport (nil: minio-go's default,
	// with idle connections kept for Parallel transfers).
	Transport http.RoundTripper
}

// LogValue is the config without its secrets, for slog.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint), slog.Bool("secure", c.Secure), slog.String("region", c.Region),
		slog.String("bucket", c.Bucket), slog.String("prefix", c.Prefix),
		slog.Bool("static_credentials", c.AccessKeyID != ""), slog.String("credentials_file", c.CredentialsFile),
	)
}

// Store is the S3 tier.
type Store struct {
	client    *minio.Client
	core      minio.Core
	transport http.RoundTripper
	bucket    string
	names     objname.Namer
	create    bool
	batches   *objstore.Batches
}

var _ tiers.Store = (*Store)(nil)

// New makes the client; it does no I/O (Check does). It fails when no
// credentials are found anywhere.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3 tier: want an endpoint and a bucket")
	}
	names, err := objname.New(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("s3 tier: %w", err)
	}
	var creds *credentials.Credentials
	switch {
	case cfg.AccessKeyID != "" || cfg.SecretAccessKey != "":
		if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
			return nil, errors.New("s3 tier: static credentials need both an access key id and a secret access key")
		}
		creds = credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	default:
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{},
			&credentials.FileAWSCredentials{Filename: cfg.CredentialsFile, Profile: cfg.Profile},
		})
		if v, err := creds.GetWithContext(&credentials.CredContext{Client: &http.Client{Transport: noNetwork{}}}); err != nil || v.AccessKeyID == "" {
			return nil, errors.New("s3 tier: no credentials: set them in the config, in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or in a shared credentials file")
		}
	}
	parallel := cmp.Or(cfg.Parallel, 8)
	transport := cfg.Transport
	if transport == nil {
		t, err := minio.DefaultTransport(cfg.Secure)
		if err != nil {
			return nil, fmt.Errorf("s3 tier: %w", err)
		}
		t.MaxIdleConnsPerHost = 2 * parallel
		transport = t
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds: creds, Secure: cfg.Secure, Region: cfg.Region, Transport: transport,
		MaxRetries: cmp.Or(cfg.MaxRetries, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("s3 tier: %w", err)
	}
	return &Store{client: client, core: minio.Core{Client: client}, transport: transport, bucket: cfg.Bucket, names: names, create: cfg.CreateBucket,
		batches: &objstore.Batches{Name: "s3", Parallel: parallel}}, nil
}

// noNetwork is the HTTP client New lends the credential providers: the
// ones it chains read the environment and files only, and must stay so.
type noNetwork struct{}

func (noNetwork) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("s3 tier: credential lookups make no requests")
}

// Check verifies that the bucket exists and the credentials may use it
// (creating it with CreateBucket). Its error says which of the two failed.
func (s *Store) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.classify("check bucket", s.bucket, err)
	}
	if ok {
		return nil
	}
	if !s.create {
		return fmt.Errorf("s3 tier: bucket %q does not exist (create it, or set CreateBucket): %w", s.bucket, tiers.ErrUnavailable)
	}
	if err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{}); err != nil {
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil // another node made it first
		}
		return s.classify("create bucket", s.bucket, err)
	}
	return nil
}

func (s *Store) name(k tiers.Key) string { return s.names.Name(k) }

// Put uploads each block as one object, Parallel at a time.
func (s *Store) Put(ctx context.Context, blocks []tiers.Block) error {
	return s.batches.Put(ctx, blocks, func(ctx context.Context, b tiers.Block) error {
		r := record.NewReader(b.Key, b.Data)
		_, err := s.client.PutObject(ctx, s.bucket, s.name(b.Key), r, r.Size(), minio.PutObjectOptions{
			ContentType: "application/octet-stream", DisableMultipart: true,
		})
		return s.classify("put", s.name(b.Key), err)
	})
}

// Get downloads and verifies each block. A corrupt object is deleted (all
// nodes share it: one that is never served should not stay to be fetched).
func (s *Store) Get(ctx context.Context, keys []tiers.Key) []tiers.Result {
	return s.batches.Get(ctx, keys, s.get)
}

func (s *Store) get(ctx context.Context, k tiers.Key) ([]byte, error) {
	name := s.name(k)
	body, info, _, err := s.core.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.classify("get", name, err)
	}
	defer body.Close() //nolint:errcheck // read to the end or abandoned
	payload, err := record.Read(body, info.Size, k)
	switch {
	case errors.Is(err, tiers.ErrCorrupt):
		_ = s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{})
		return nil, fmt.Errorf("s3 get %s: %w", name, err)
	case err != nil:
		return nil, s.classify("get", name, err)
	}
	return payload, nil
}

// Has asks for each object's metadata.
func (s *Store) Has(ctx context.Context, keys []tiers.Key) ([]bool, error) {
	return s.batches.Has(ctx, keys, func(ctx context.Context, k tiers.Key) error {
		_, err := s.client.StatObject(ctx, s.bucket, s.name(k), minio.StatObjectOptions{})
		return s.classify("has", s.name(k), err)
	})
}

// Delete removes the objects in multi-object delete requests.
func (s *Store) Delete(ctx context.Context, keys []tiers.Key) error {
	if err := s.batches.Usable(ctx, "delete"); err != nil {
		return err
	}
	index := make(map[string]int, len(keys))
	objects := make(chan minio.ObjectInfo, len(keys))
	for i, k := range keys {
		index[s.name(k)] = i
		objects <- minio.ObjectInfo{Key: s.name(k)}
	}
	close(objects)
	errs := make([]error, len(keys))
	for e := range s.client.RemoveObjects(ctx, s.bucket, objects, minio.RemoveObjectsOptions{}) {
		if err := s.classify("delete", e.ObjectName, e.Err); err != nil && !errors.Is(err, tiers.ErrNotFound) {
			if i, ok := index[e.ObjectName]; ok {
				errs[i] = err
			} else {
				return err // a failure of the request itself
			}
		}
	}
	return tiers.Batch(errs)
}

// classify maps a client error to the tiers errors, keeping the service's
// code and message (which never carry the secret key).
func (s *Store) classify(op, name string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey" || (resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket"):
		return fmt.Errorf("s3 %s %s: %w", op, name, tiers.ErrNotFound)
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("s3 %s: bucket %q does not exist: %w", op, s.bucket, tiers.ErrUnavailable)
	case resp.Code == "AccessDenied" || resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" ||
		resp.Code == "ExpiredToken" || resp.Code == "InvalidToken" || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("s3 %s %s: %s (%s): %w: %w", op, name, resp.Code, resp.Message, tiers.ErrAccessDenied, tiers.ErrUnavailable)
	}
	return fmt.Errorf("s3 %s %s: %w: %w", op, name, tiers.ErrUnavailable, err)
}

// Stats: a shared bucket's size is not this node's to know.
func (s *Store) Stats() tiers.Stats { return tiers.Stats{Blocks: -1, Bytes: -1} }

// Close makes later calls fail; idle connections are released.
func (s *Store) Close() error {
	if s.batches.Close() {
		if t, ok := s.transport.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
	}
	return nil
}
