// Package apikey holds the rules of keygate's API keys and their
// credentials, for every front end alike: the HTTP API and the console that
// calls it, the CLI, and later the audit log. It knows nothing of HTTP.
//
// A Service is opened once per process on a store.Store. Opening prepares
// the store on a first start (pepper, signing key, admin key), checks that
// stored keys fit the permission catalog, and gives pre-status-list keys a
// status index. After that the Service answers:
//
//	Authenticate   a client ID and secret → the key, or ErrInvalidClient
//	               (the one authentication of /oauth/token, /oauth/introspect
//	               and /oauth/revoke)
//	GrantScope     the scope a token for a key may carry
//	Create, Get, List, Rotate, Delete, Teams   the lifecycle of team keys
//	ReportLeaked   cut off the generations of reported secrets (leaked.go)
//	Seed           millions of keys through the store's bulk path
//	TeamEvents, AllEvents, AuthFailed, StartAudit   the audit trail (audit.go):
//	               every change above also records who made it, atomically
//
// Errors callers branch on are sentinels (ErrInvalidClient, ErrNotFound,
// ErrTeamLimit, ErrConflict) or *InvalidError, whose message is written for
// the person who sent the input. Every other error is the store's, wrapped:
// Unavailable tells "try again later" from a real failure. See
// docs/ARCHITECTURE.md for where each rule lives.
package apikey

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
)

// MasterKey is the key that seals the pepper and the signing keys at rest.
// Front ends pass it through; only this package opens what it seals.
type MasterKey = masterkey.Key

// Errors callers branch on.
var (
	// ErrInvalidClient: unknown client, wrong or empty secret, or a
	// deleted key. Deliberately one error: the caller must not learn which.
	ErrInvalidClient = errors.New("client authentication failed")
	// ErrNotFound: the team has no such key (a key of another team is not
	// found either: the team is the scope).
	ErrNotFound = errors.New("no such key in this team")
	// ErrTeamLimit: the team holds the maximum number of keys.
	ErrTeamLimit = errors.New("team key limit reached")
	// ErrConflict: a generated client ID already exists (128 random bits
	// collided); the request may simply be retried.
	ErrConflict = errors.New("generated client ID exists")
	// ErrInvalidScope: the requested scope is malformed or not granted.
	ErrInvalidScope = errors.New("requested scope is malformed or not granted")
)

// InvalidError is input that breaks a rule of keys; Error is a sentence
// for the person who sent it, naming the rule.
type InvalidError struct{ Detail string }

func (e *InvalidError) Error() string { return e.Detail }

func invalid(format string, args ...any) error {
	return &InvalidError{Detail: fmt.Sprintf(format, args...)}
}

// Unavailable reports whether err means the store did not answer in time:
// the caller should try again later, not treat it as a failure.
func Unavailable(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// Config configures a Service. Store and MasterKey are required; every
// other zero value means the default in package config.
type Config struct {
	Store     store.Store
	MasterKey *MasterKey

	// Catalog is the permission catalog. Default scopes.Default().
	Catalog *scopes.Catalog
	// MaxKeysPerTeam bounds a team's keys. Default config.DefaultMaxKeysPerTeam.
	MaxKeysPerTeam int
	// SigningAlg is the algorithm of the active signing key. Default
	// config.DefaultSigningAlg.
	SigningAlg string
	// TokenTTL is the access token lifetime; a retired signing key stays
	// published at least this long. Default config.DefaultTokenTTL.
	TokenTTL time.Duration
	// MaxKeyTokenTTL is the longest token_ttl a key may be given. Default
	// TokenTTL.
	MaxKeyTokenTTL time.Duration
	// AudiencesAllowed are the audiences keys may be given (none: keys
	// cannot have audiences of their own).
	AudiencesAllowed []string
	// MaxKeyLifetime, when not 0, bounds new keys' expires_at
	// (checkExpiresAt).
	MaxKeyLifetime time.Duration
	// LongestTokenLifetime is the longest lifetime of anything signed with
	// a signing key (access tokens, status list tokens): a retired key
	// stays published that long plus a margin. Default TokenTTL; never
	// less than it.
	LongestTokenLifetime time.Duration
	// SigningKeyRotation is how long a signing key signs before a
	// scheduled rotation; 0 means config.DefaultSigningKeyRotation,
	// negative rotates only when asked or when SigningAlg changes.
	SigningKeyRotation time.Duration
	// SigningKeyPrepublish is how long a next signing key is published
	// before it signs. Default config.DefaultSigningKeyPrepublish.
	SigningKeyPrepublish time.Duration

	// AdminClientID and AdminClientSecret, when either is set, make sure this
	// admin key exists with this secret. Otherwise an admin key is generated
	// on the first start (see Service.GeneratedAdmin).
	AdminClientID     string
	AdminClientSecret string
	// KeepNewAdmin, when set, is given a generated first admin's
	// credentials before the key is stored, to keep the secret durably (a
	// 0600 file): a crash after the key is stored must not leave an admin
	// whose secret nobody has. An error stops Open with no key stored.
	// undo is called when the key is then not stored (another instance
	// created the first admin first, or the store failed), to take back
	// what was kept.
	KeepNewAdmin func(AdminCredentials) (undo func() error, err error)

	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// AdminCredentials are an admin key's client ID and its secret.
type AdminCredentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// Service applies the rules of keys to a store. It is safe for concurrent
// use; its methods on the token path take no process-wide lock.
type Service struct {
	cfg    Config
	store  store.Store
	hasher secretHasher
	keys   atomic.Pointer[signing.KeySet]
	log    *slog.Logger

	schedule signing.Schedule
	// schemaLevel is the store schema level this process raised
	// (requireSchemaLevel, schema.go).
	schemaLevel atomic.Int32
	// reloadMu serialises reloads of the signing key set from the store;
	// lastKIDReload is when an unknown kid last caused one.
	reloadMu      sync.Mutex
	lastKIDReload time.Time

	scopeCache sync.Map // permission set → resolved

	generatedAdmin *AdminCredentials

	failures failures // refused management calls not yet stored (audit.go)

	catalogWarnings outsideCatalogWarnings // keycheck.go
}

// secretHasher is credential.Hasher as the Service uses it; a test counts
// its HMACs through it.
type secretHasher interface {
	Hash(secret string) []byte
	AppendHash(dst []byte, secret string) []byte
}

var _ secretHasher = (*credential.Hasher)(nil)

// Open prepares the store and returns the Service: it loads (or on a first
// start creates) the pepper and a signing key of the configured algorithm,
// makes sure an admin key exists and that admin keys have a status index.
// Its cost does not grow with the number of keys: the checks of team keys
// run in the background and on the token path (keycheck.go).
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.MasterKey == nil {
		return nil, errors.New("apikey: Store and MasterKey are required")
	}
	if cfg.Catalog == nil {
		cfg.Catalog = scopes.Default()
	}
	if cfg.MaxKeysPerTeam <= 0 {
		cfg.MaxKeysPerTeam = config.DefaultMaxKeysPerTeam
	}
	if cfg.SigningAlg == "" {
		cfg.SigningAlg = config.DefaultSigningAlg
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = config.DefaultTokenTTL
	}
	cfg.MaxKeyTokenTTL = max(cfg.MaxKeyTokenTTL, cfg.TokenTTL)
	cfg.LongestTokenLifetime = max(cfg.LongestTokenLifetime, cfg.MaxKeyTokenTTL)
	switch {
	case cfg.SigningKeyRotation == 0:
		cfg.SigningKeyRotation = config.DefaultSigningKeyRotation
	case cfg.SigningKeyRotation < 0:
		cfg.SigningKeyRotation = 0
	}
	if cfg.SigningKeyPrepublish <= 0 {
		cfg.SigningKeyPrepublish = config.DefaultSigningKeyPrepublish
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, store: cfg.Store, log: cfg.Logger, schedule: signing.Schedule{
		Rotation:   cfg.SigningKeyRotation,
		Prepublish: cfg.SigningKeyPrepublish,
		Retain:     signing.RetainFor(cfg.LongestTokenLifetime),
	}}

	var err error
	if s.hasher, err = loadPepper(ctx, cfg.Store, cfg.MasterKey); err != nil {
		return nil, err
	}
	if err := s.loadSigningKeys(ctx); err != nil {
		return nil, err
	}
	if err := s.ensureAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.indexAdminKeys(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// GeneratedAdmin returns the admin credentials this start created, if it
// created any. The secret exists nowhere else: show it once.
func (s *Service) GeneratedAdmin() (AdminCredentials, bool) {
	if s.generatedAdmin == nil {
		return AdminCredentials{}, false
	}
	return *s.generatedAdmin, true
}

// MaxKeysPerTeam is the team limit in force.
func (s *Service) MaxKeysPerTeam() int { return s.cfg.MaxKeysPerTeam }

// Catalog is the permission catalog in force.
func (s *Service) Catalog() *scopes.Catalog { return s.cfg.Catalog }

// resolved is a permission set's scopes, as a list and joined.
type resolved struct {
	list   []string
	joined string
}

var (
	adminScopes     = resolved{list: []string{scopes.AdminScope}, joined: scopes.AdminScope}
	readAdminScopes = resolved{list: []string{scopes.ReadScope}, joined: scopes.ReadScope}
)

// Scopes are the OAuth scopes a key holds, resolved from the catalog at
// issue time, so a catalog change applies to existing keys at once. The
// result may be shared: callers must not modify it.
func (s *Service) Scopes(k store.Key) ([]string, error) {
	r, err := s.resolvedScopes(k)
	return r.list, err
}

// resolvedScopes memoises Catalog.Resolve per permission set: the catalog
// never changes while the process runs, and the token path should not
// rebuild the same list for every request.
func (s *Service) resolvedScopes(k store.Key) (resolved, error) {
	if k.IsAdmin() {
		// A read-only admin key never gets keys:admin, whatever it asks.
		if k.Role == store.RoleRead {
			return readAdminScopes, nil
		}
		return adminScopes, nil
	}
	var key string
	if len(k.Permissions) == 1 {
		key = k.Permissions[0]
	} else {
		key = strings.Join(k.Permissions, "\x00")
	}
	if v, ok := s.scopeCache.Load(key); ok {
		return v.(resolved), nil
	}
	list, err := s.cfg.Catalog.Resolve(k.Permissions)
	if err != nil {
		if p, bad := s.permissionOutsideCatalog(k); bad {
			s.warnOutsideCatalog(k, p)
			return resolved{}, fmt.Errorf("resolve permissions of key %s: %w", k.ClientID, ErrPermissionNotInCatalog)
		}
		return resolved{}, fmt.Errorf("resolve permissions of key %s: %w", k.ClientID, err)
	}
	r := resolved{list: list, joined: scopes.Join(list)}
	s.scopeCache.Store(key, r)
	return r, nil
}

// GrantScope decides the scope of a token for k: all its scopes when
// requested is empty, else exactly the requested ones, which must be a
// well-formed subset (RFC 6749 §3.3) — ErrInvalidScope otherwise. Call it
// only after k authenticated, so an unauthenticated caller learns nothing
// about a key's scopes.
func (s *Service) GrantScope(k store.Key, requested string) (string, error) {
	all, err := s.resolvedScopes(k)
	if err != nil {
		return "", err
	}
	if requested == "" {
		return all.joined, nil
	}
	want, err := scopes.ParseScope(requested)
	if err != nil || !scopes.Subset(want, all.list) {
		return "", ErrInvalidScope
	}
	return scopes.Join(want), nil
}

// hasScope reports whether k holds scope sc.
func (s *Service) hasScope(k store.Key, sc string) bool {
	list, err := s.Scopes(k)
	if err != nil {
		return false
	}
	for _, have := range list {
		if have == sc {
			return true
		}
	}
	return false
}
