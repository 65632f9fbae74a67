// Package server is keygate's HTTP face: the OAuth 2.0 token endpoint, the
// JWKS and RFC 8414 metadata, the management API for API keys, and health
// checks. It turns a store.Store plus a master key into an http.Handler.
//
// Where to look:
//
//	token.go       POST /oauth/token, the hot path, start to finish
//	discovery.go   /.well-known/jwks.json and /.well-known/oauth-authorization-server
//	management.go  /v1/teams, /v1/permissions, /v1/teams/{team_id}/keys…,
//	               admin bearer-token checks
//	bootstrap.go   first-start secrets: pepper, signing key, admin key
//	lastused.go    last_used_at without a write per token
//
// The web console (package console) is mounted at /console/.
package server

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/console"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/verify"
)

// Options configures a Server. Store and MasterKey are required; every other
// zero value means the documented default.
type Options struct {
	Store     store.Store
	MasterKey *masterkey.Key

	// Issuer is the iss of every token and the base of advertised URLs.
	// Default "http://localhost:8080".
	Issuer string
	// Audience is the aud of every token. Default: the issuer.
	Audience string
	// TokenTTL is the access token lifetime. Default 15 minutes.
	TokenTTL time.Duration
	// SigningAlg is ES256 (default), RS256 or EdDSA.
	SigningAlg string
	// MaxKeysPerTeam bounds a team's keys. Default 5.
	MaxKeysPerTeam int
	// StatusListTTL is the ttl of the status list: how long resource
	// servers may cache it, so how long a deleted key's tokens may still be
	// accepted offline. Default 60s.
	StatusListTTL time.Duration
	// Catalog is the permission catalog. Default scopes.Default().
	Catalog *scopes.Catalog

	// AdminClientID and AdminClientSecret, when both set, make sure this
	// admin key exists with this secret. Otherwise an admin key is generated
	// on the first start (see GeneratedAdmin).
	AdminClientID     string
	AdminClientSecret string

	// IntrospectionRate is the per-caller request limit of
	// /oauth/introspect, per second. Default DefaultIntrospectionRate.
	IntrospectionRate int

	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
	// LastUsedTicks drives the last-used flushes: each value is one flush at
	// that time. nil means a real ticker. The tracker takes the next tick
	// only after the previous flush returned, so a test that sends a second
	// tick on an unbuffered channel knows the first flush has completed.
	LastUsedTicks <-chan time.Time
}

// Server serves keygate's HTTP API. Create it with New; call Close after the
// HTTP server has stopped so pending last-used times are written.
type Server struct {
	cfg      Options
	store    store.Store
	hasher   *credential.Hasher
	keys     atomic.Pointer[signing.KeySet]
	log      *slog.Logger
	lastUsed *lastUsedTracker
	verifier *verify.Verifier
	handler  http.Handler

	statusLists statusLists
	// statusListURI is every token's status list uri, built once: the
	// token path should not concatenate it per request.
	statusListURI    string
	scopeCache       sync.Map // permission set → resolved
	introspectLimits *callerLimits

	generatedAdmin *AdminCredentials
}

// AdminCredentials are an admin key's client ID and its secret.
type AdminCredentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// New prepares the store on first start (pepper, signing key, admin key),
// checks that stored keys fit the catalog, and builds the HTTP handler.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Store == nil || opts.MasterKey == nil {
		return nil, errors.New("server: Store and MasterKey are required")
	}
	if opts.Issuer == "" {
		opts.Issuer = "http://localhost:8080"
	}
	if opts.Audience == "" {
		opts.Audience = opts.Issuer
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 15 * time.Minute
	}
	if opts.SigningAlg == "" {
		opts.SigningAlg = signing.ES256
	}
	if opts.MaxKeysPerTeam <= 0 {
		opts.MaxKeysPerTeam = 5
	}
	if opts.IntrospectionRate <= 0 {
		opts.IntrospectionRate = DefaultIntrospectionRate
	}
	if opts.StatusListTTL <= 0 {
		opts.StatusListTTL = time.Minute
	}
	if opts.Catalog == nil {
		opts.Catalog = scopes.Default()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{cfg: opts, store: opts.Store, log: opts.Logger, statusListURI: opts.Issuer + statusListPath,
		introspectLimits: &callerLimits{perSecond: rate.Limit(opts.IntrospectionRate), burst: opts.IntrospectionRate}}

	needIndex, err := s.checkKeys(ctx)
	if err != nil {
		return nil, err
	}
	if s.hasher, err = loadPepper(ctx, opts.Store, opts.MasterKey); err != nil {
		return nil, err
	}
	if err := s.loadSigningKeys(ctx); err != nil {
		return nil, err
	}
	if err := s.ensureAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.backfillStatusIndices(ctx, needIndex); err != nil {
		return nil, err
	}
	s.verifier, err = verify.New(ctx, verify.Options{
		Issuer:   opts.Issuer,
		Audience: opts.Audience,
		Keys:     ownKeys{s},
		Now:      opts.Now,
		// keygate checks deletion against its own store (admin tokens,
		// introspection), never by fetching its own status list over HTTP.
		IgnoreStatus: true,
	})
	if err != nil {
		return nil, err
	}
	s.lastUsed = newLastUsedTracker(opts.Store, opts.Logger, opts.Now, opts.LastUsedTicks)
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// GeneratedAdmin returns the admin credentials this start created, if it
// created any. The secret exists nowhere else: show it once.
func (s *Server) GeneratedAdmin() (AdminCredentials, bool) {
	if s.generatedAdmin == nil {
		return AdminCredentials{}, false
	}
	return *s.generatedAdmin, true
}

// Close writes pending last-used times. Call it after the HTTP server has
// drained; the store stays open (its owner closes it).
func (s *Server) Close() {
	s.lastUsed.close()
}

func (s *Server) routes() http.Handler {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// Trust no proxy headers unless configured: otherwise any client could
	// put an arbitrary address into the logs via X-Forwarded-For.
	if err := r.SetTrustedProxies(nil); err != nil {
		panic(err) // nil is always valid
	}
	r.Use(recovery(s.log), accessLog(s.log))

	tok := newTokenEndpoint(s)
	r.Any("/oauth/token", tok.handle)
	r.Any("/oauth/introspect", tok.introspect)
	r.Any("/oauth/revoke", tok.revoke)

	r.GET("/.well-known/jwks.json", s.jwks)
	r.GET("/.well-known/oauth-authorization-server", s.metadata)
	r.GET(statusListPath, s.statusList)
	r.GET("/statuslists", s.statusListAggregation)
	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)

	s.mountManagement(r)

	// The console is static files that call the API above like any other
	// client; its security headers are set by its own handler, so they
	// cost the token path nothing.
	con := gin.WrapH(console.Handler())
	r.GET("/console/*file", con)
	r.HEAD("/console/*file", con)
	toConsole := func(c *gin.Context) { c.Redirect(http.StatusFound, console.Prefix) }
	r.GET("/", toConsole)
	r.HEAD("/", toConsole)
	r.NoRoute(func(c *gin.Context) {
		problem(c, http.StatusNotFound, "urn:keygate:problem:not-found", "no such endpoint: "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		problem(c, http.StatusMethodNotAllowed, "urn:keygate:problem:method-not-allowed",
			c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	return r
}

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 200 only when the store answers within a second, so a load
// balancer stops sending tokens requests to an instance that cannot serve
// them.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness: store does not answer", "err", err)
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "detail": "the key store does not answer"})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// scopesOf resolves a key's OAuth scopes from the catalog at issue time, so
// a catalog change applies to existing keys at once. Callers must not
// modify the result: it may be shared.
func (s *Server) scopesOf(k store.Key) ([]string, error) {
	r, err := s.resolvedScopes(k)
	return r.list, err
}

// resolved is a permission set's scopes, as a list and joined.
type resolved struct {
	list   []string
	joined string
}

var adminScopes = resolved{list: []string{scopes.AdminScope}, joined: scopes.AdminScope}

// resolvedScopes memoises Catalog.Resolve per permission set: the catalog
// never changes while the server runs, and the token path should not
// rebuild the same list for every request.
func (s *Server) resolvedScopes(k store.Key) (resolved, error) {
	if k.IsAdmin() {
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
		return resolved{}, err
	}
	r := resolved{list: list, joined: scopes.Join(list)}
	s.scopeCache.Store(key, r)
	return r, nil
}

// checkKeys walks every stored key once at start: it refuses to start when
// a key holds a permission the catalog no longer has (its tokens would
// silently lose scopes), and it returns the keys that still need a status
// index.
func (s *Server) checkKeys(ctx context.Context) (needIndex []string, err error) {
	err = s.store.ForEachKey(ctx, func(k store.Key) error {
		if k.StatusIndex == 0 {
			needIndex = append(needIndex, k.ClientID)
		}
		if k.IsAdmin() {
			return nil
		}
		for _, p := range k.Permissions {
			if _, ok := s.cfg.Catalog.Lookup(p); !ok {
				return fmt.Errorf("key %s (team %s) holds permission %q, which the permission catalog no longer has: add it back to the catalog or delete the key", k.ClientID, k.TeamID, p)
			}
		}
		return nil
	})
	return needIndex, err
}

// storeUnavailable tells a store that did not answer (try again later: 503)
// from any other store failure (500), the one rule every endpoint follows.
func storeUnavailable(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// verifyOwn verifies a token keygate issued. The verifier's leeway stays,
// for clock skew between instances on iat and nbf; exp is exact, so an
// expired token neither introspects as active nor opens the admin API.
func (s *Server) verifyOwn(ctx context.Context, token string) (*verify.Claims, error) {
	claims, err := s.verifier.Verify(ctx, token)
	if err == nil && !s.cfg.Now().Before(claims.ExpiresAt) {
		return nil, verify.ErrExpired
	}
	return claims, err
}

// ownKeys lets the management API verify admin tokens against this
// server's own key set, with no HTTP round trip.
type ownKeys struct{ s *Server }

func (o ownKeys) VerificationKey(_ context.Context, kid string) (crypto.PublicKey, string, error) {
	p, ok := o.s.keys.Load().PublicKey(kid)
	if !ok {
		return nil, "", verify.ErrUnknownKey
	}
	return p.Key, p.Alg, nil
}
