// Package azure is the remote tier on Azure Blob Storage (or Azurite)
// through azblob: one block blob per block, named <prefix>/<scope>/<hash>
// in one container, each a record (package record) verified on read, so a
// corrupt blob is deleted and never served.
//
// Credentials, the first that is set: a connection string, an account name
// and key, or a SAS token, each given in the Config, in a file the Config
// names (a secret mounted for the agent), or in the environment
// (AZURE_STORAGE_CONNECTION_STRING; AZURE_STORAGE_ACCOUNT and
// AZURE_STORAGE_KEY; AZURE_STORAGE_SAS_TOKEN). Secrets never appear in logs
// or errors: Config's LogValue leaves them out and errors name the blob,
// the service's error code and the HTTP status, never a URL's query.
//
// Ownership: Put does not keep the caller's bytes; Get returns a fresh
// buffer the caller owns.
package azure

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/strata-llm/strata/tiers"
	"github.com/strata-llm/strata/tiers/internal/objname"
	"github.com/strata-llm/strata/tiers/internal/objstore"
	"github.com/strata-llm/strata/tiers/internal/record"
)

// Config configures an Azure Blob store.
type Config struct {
	// ServiceURL is the account's blob endpoint
	// (https://ACCOUNT.blob.core.windows.net, or an emulator's
	// http://127.0.0.1:10000/devstoreaccount1); a connection string
	// carries its own.
	ServiceURL string
	// Container holds the blocks.
	Container string
	// Prefix is prepended to every blob name ("strata/kv"); may be empty.
	Prefix string

	// ConnectionString, or the file holding it.
	ConnectionString, ConnectionStringFile string
	// AccountName and AccountKey (or the file holding the key): shared key.
	AccountName, AccountKey, AccountKeyFile string
	// SASToken (or the file holding it): a shared access signature for the
	// container or account, with or without its leading '?'.
	SASToken, SASTokenFile string

	// CreateContainer makes Check create the container when it is missing.
	CreateContainer bool
	// Parallel is how many blobs of a batch are transferred at once
	// (default 8).
	Parallel int
	// MaxRetries is the SDK's retries of one request (default 0: none; the
	// Hierarchy retries the tier as a whole, with backoff).
	MaxRetries int
	// HTTPClient overrides the HTTP client (nil: one with idle connections
	// kept for Parallel transfers).
	HTTPClient *http.Client
}

// LogValue is the config without its secrets, for slog.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("service_url", c.ServiceURL), slog.String("container", c.Container), slog.String("prefix", c.Prefix),
		slog.String("account", c.AccountName), slog.String("auth", c.authKind()),
	)
}

func (c Config) authKind() string {
	switch {
	case c.ConnectionString != "" || c.ConnectionStringFile != "":
		return "connection string"
	case c.AccountKey != "" || c.AccountKeyFile != "":
		return "account key"
	case c.SASToken != "" || c.SASTokenFile != "":
		return "sas"
	}
	return "environment"
}

// Store is the Azure Blob tier.
type Store struct {
	container *container.Client
	names     objname.Namer
	create    bool
	secrets   []string // redacted from every error message
	batches   *objstore.Batches
}

var _ tiers.Store = (*Store)(nil)

// New makes the client; it does no I/O (Check does).
func New(cfg Config) (*Store, error) {
	if cfg.Container == "" {
		return nil, errors.New("azure tier: want a container")
	}
	names, err := objname.New(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("azure tier: %w", err)
	}
	if err := cfg.resolveSecrets(); err != nil {
		return nil, fmt.Errorf("azure tier: %w", err)
	}
	parallel := cmp.Or(cfg.Parallel, 8)
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 2 * parallel
		httpClient = &http.Client{Transport: t}
	}
	opts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry:     policy.RetryOptions{MaxRetries: int32(cmp.Or(cfg.MaxRetries, -1))},
		Transport: httpClient,
	}}
	s := &Store{names: names, create: cfg.CreateContainer, batches: &objstore.Batches{Name: "azure", Parallel: parallel}}
	switch {
	case cfg.ConnectionString != "":
		s.secrets = []string{cfg.ConnectionString}
		if k := connStringField(cfg.ConnectionString, "AccountKey"); k != "" {
			s.secrets = append(s.secrets, k)
		}
		if sig := connStringField(cfg.ConnectionString, "SharedAccessSignature"); sig != "" {
			s.secrets = append(s.secrets, sig)
		}
		s.container, err = container.NewClientFromConnectionString(cfg.ConnectionString, cfg.Container, opts)
	case cfg.AccountKey != "":
		if cfg.AccountName == "" || cfg.ServiceURL == "" {
			return nil, errors.New("azure tier: an account key needs the account name and the service URL")
		}
		s.secrets = []string{cfg.AccountKey}
		var cred *container.SharedKeyCredential
		if cred, err = container.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey); err != nil {
			return nil, errors.New("azure tier: the account key is not valid base64")
		}
		s.container, err = container.NewClientWithSharedKeyCredential(joinURL(cfg.ServiceURL, cfg.Container), cred, opts)
	case cfg.SASToken != "":
		if cfg.ServiceURL == "" {
			return nil, errors.New("azure tier: a SAS token needs the service URL")
		}
		sas := strings.TrimPrefix(cfg.SASToken, "?")
		s.secrets = []string{sas}
		if v, perr := url.ParseQuery(sas); perr == nil && v.Get("sig") != "" {
			s.secrets = append(s.secrets, v.Get("sig"), url.QueryEscape(v.Get("sig")))
		}
		s.container, err = container.NewClientWithNoCredential(joinURL(cfg.ServiceURL, cfg.Container)+"?"+sas, opts)
	default:
		return nil, errors.New("azure tier: no credentials: set a connection string, an account key or a SAS token (in the config, a file, or AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN)")
	}
	if err != nil {
		return nil, fmt.Errorf("azure tier: %s", s.redact(err.Error()))
	}
	return s, nil
}

// resolveSecrets fills the secrets from their files, then from the
// environment, for the first kind of credential given.
func (c *Config) resolveSecrets() error {
	for _, f := range []struct {
		value *string
		file  string
	}{{&c.ConnectionString, c.ConnectionStringFile}, {&c.AccountKey, c.AccountKeyFile}, {&c.SASToken, c.SASTokenFile}} {
		if *f.value != "" || f.file == "" {
			continue
		}
		b, err := os.ReadFile(f.file)
		if err != nil {
			return fmt.Errorf("read a credentials file: %w", err) // names the file, not its content
		}
		*f.value = strings.TrimSpace(string(b))
	}
	if c.ConnectionString != "" || c.AccountKey != "" || c.SASToken != "" {
		return nil
	}
	c.ConnectionString = os.Getenv("AZURE_STORAGE_CONNECTION_STRING")
	if c.ConnectionString == "" {
		c.AccountName = cmp.Or(c.AccountName, os.Getenv("AZURE_STORAGE_ACCOUNT"))
		c.AccountKey = os.Getenv("AZURE_STORAGE_KEY")
		c.SASToken = os.Getenv("AZURE_STORAGE_SAS_TOKEN")
	}
	return nil
}

func connStringField(cs, name string) string {
	for part := range strings.SplitSeq(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return v
		}
	}
	return ""
}

func joinURL(service, name string) string { return strings.TrimRight(service, "/") + "/" + name }

// Check verifies that the container exists and the credentials may use it
// (creating it with CreateContainer). Its error says which failed. It asks
// for a blob no block has: a container SAS may read blobs but not the
// container's own properties.
func (s *Store) Check(ctx context.Context) error {
	_, err := s.container.NewBlobClient(s.names.Name(tiers.Key{})).GetProperties(ctx, nil)
	switch {
	case err == nil || bloberror.HasCode(err, bloberror.BlobNotFound):
		return nil
	case !bloberror.HasCode(err, bloberror.ContainerNotFound) || !s.create:
		return s.classify("check container", "", err)
	}
	if _, err := s.container.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return s.classify("create container", "", err)
	}
	return nil
}

// Put uploads each block as one block blob, Parallel at a time.
func (s *Store) Put(ctx context.Context, blocks []tiers.Block) error {
	return s.batches.Put(ctx, blocks, func(ctx context.Context, b tiers.Block) error {
		name := s.names.Name(b.Key)
		_, err := s.container.NewBlockBlobClient(name).Upload(ctx, streaming.NopCloser(record.NewReader(b.Key, b.Data)), &blockblob.UploadOptions{
			HTTPHeaders: &blob.HTTPHeaders{BlobContentType: ptr("application/octet-stream")},
		})
		return s.classify("put", name, err)
	})
}

func ptr[T any](v T) *T { return &v }

// Get downloads and verifies each block; a corrupt blob is deleted.
func (s *Store) Get(ctx context.Context, keys []tiers.Key) []tiers.Result {
	return s.batches.Get(ctx, keys, s.get)
}

func (s *Store) get(ctx context.Context, k tiers.Key) ([]byte, error) {
	name := s.names.Name(k)
	bc := s.container.NewBlobClient(name)
	resp, err := bc.DownloadStream(ctx, nil)
	if err != nil {
		return nil, s.classify("get", name, err)
	}
	defer resp.Body.Close() //nolint:errcheck // read to the end or abandoned
	if resp.ContentLength == nil {
		return nil, s.classify("get", name, errors.New("no content length"))
	}
	payload, err := record.Read(resp.Body, *resp.ContentLength, k)
	switch {
	case errors.Is(err, tiers.ErrCorrupt):
		_, _ = bc.Delete(ctx, nil)
		return nil, fmt.Errorf("azure get %s: %w", name, err)
	case err != nil:
		return nil, s.classify("get", name, err)
	}
	return payload, nil
}

// Has asks for each blob's properties.
func (s *Store) Has(ctx context.Context, keys []tiers.Key) ([]bool, error) {
	return s.batches.Has(ctx, keys, func(ctx context.Context, k tiers.Key) error {
		_, err := s.container.NewBlobClient(s.names.Name(k)).GetProperties(ctx, nil)
		return s.classify("has", s.names.Name(k), err)
	})
}

// Delete removes the blobs.
func (s *Store) Delete(ctx context.Context, keys []tiers.Key) error {
	return s.batches.Delete(ctx, keys, func(ctx context.Context, k tiers.Key) error {
		_, err := s.container.NewBlobClient(s.names.Name(k)).Delete(ctx, nil)
		return s.classify("delete", s.names.Name(k), err)
	})
}

// classify maps an SDK error to the tiers errors with a message that names
// the blob, the service's code and the status, and nothing secret.
func (s *Store) classify(op, name string, err error) error {
	if err == nil {
		return nil
	}
	where := fmt.Sprintf("azure %s %s", op, name)
	var resp *azcore.ResponseError
	if errors.As(err, &resp) {
		detail := fmt.Sprintf("%s: %s (HTTP %d)", where, resp.ErrorCode, resp.StatusCode)
		switch {
		case bloberror.HasCode(err, bloberror.BlobNotFound) || (resp.StatusCode == http.StatusNotFound && resp.ErrorCode == ""):
			return s.wrap(detail, err, tiers.ErrNotFound)
		case bloberror.HasCode(err, bloberror.ContainerNotFound):
			return s.wrap(detail+": the container does not exist", err, tiers.ErrUnavailable)
		case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized ||
			bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.AuthorizationFailure,
				bloberror.AuthorizationPermissionMismatch, bloberror.InsufficientAccountPermissions, bloberror.InvalidAuthenticationInfo):
			return s.wrap(detail+": "+tiers.ErrAccessDenied.Error(), err, tiers.ErrAccessDenied, tiers.ErrUnavailable)
		}
		return s.wrap(detail, err, tiers.ErrUnavailable)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return s.wrap(where+": "+err.Error(), err, tiers.ErrUnavailable)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		// A url.Error prints its URL, SAS query included: keep the cause only.
		return s.wrap(fmt.Sprintf("%s: %s: %v", where, uerr.Op, uerr.Err), err, tiers.ErrUnavailable)
	}
	return s.wrap(where+": "+err.Error(), err, tiers.ErrUnavailable)
}

// wrap is an error whose message is msg, redacted, and that matches the
// sentinels and cause with errors.Is.
func (s *Store) wrap(msg string, cause error, sentinels ...error) error {
	return &storeError{msg: s.redact(msg), is: append(sentinels, cause)}
}

func (s *Store) redact(msg string) string {
	for _, secret := range s.secrets {
		if len(secret) >= 8 {
			msg = strings.ReplaceAll(msg, secret, "[redacted]")
		}
	}
	return msg
}

type storeError struct {
	msg string
	is  []error
}

func (e *storeError) Error() string   { return e.msg }
func (e *storeError) Unwrap() []error { return e.is }

// Stats: a shared container's size is not this node's to know.
func (s *Store) Stats() tiers.Stats { return tiers.Stats{Blocks: -1, Bytes: -1} }

// Close makes later calls fail.
func (s *Store) Close() error {
	s.batches.Close()
	return nil
}
