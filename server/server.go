// Package server is keygate's HTTP face: the OAuth 2.0 token endpoint,
// introspection and revocation, the JWKS and RFC 8414 metadata, the Token
// Status List, the management API for API keys, the web console and health
// checks. Handlers decode a request, call package apikey (the rules of
// keys), and map its errors to RFC 6749 §5.2 or RFC 9457 answers; no rule
// of keys lives here. docs/ARCHITECTURE.md draws the whole.
//
// Where to look:
//
//	token.go       POST /oauth/token, the hot path, start to finish
//	oauth2.go      the one error type of the OAuth endpoints, and go-oauth2
//	form.go        the OAuth endpoints' form parsing
//	introspect.go  POST /oauth/introspect and /oauth/revoke
//	discovery.go   /.well-known/jwks.json and /.well-known/oauth-authorization-server
//	statuslist.go  /statuslists/1, /statuslists/2bit/{shard} and the aggregation document
//	management.go  /v1/teams, /v1/permissions, /v1/teams/{team_id}/keys…,
//	               admin bearer-token checks
//	rotate.go      POST /v1/teams/{team_id}/keys/{client_id}/rotate
//	update.go      PATCH /v1/teams/{team_id}/keys/{client_id} (merge patch)
//	quota.go       issuance quotas at the token endpoint (package quota)
//	strictjson.go  the check every management body passes: one object,
//	               exact member names, no duplicates, no lone surrogates
//	events.go      GET /v1/events, /v1/teams/{team_id}/events (the audit
//	               trail) and requestMeta, who and where for its events
//	problem.go     RFC 9457 answers of the management API
//	httplog.go     access log (rate-limited for refusals) and panic recovery
//	requestid.go   request IDs, X-Request-Id, source addresses
//	webhooks.go    the audit stream delivered to webhooks (package webhook)
//
// The web console (package console) is mounted at /console/, the OpenAPI
// description (package openapi) at /openapi.json.
package server

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/clientaddr"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/console"
	"github.com/keygate/keygate/lastused"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/openapi"
	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/throttle"
	"github.com/keygate/keygate/trustedissuer"
	"github.com/keygate/keygate/verify"
	"github.com/keygate/keygate/webhook"
)

// Options configures a Server. Store and MasterKey are required; every other
// zero value means the default in package config.
type Options struct {
	Store     store.Store
	MasterKey *apikey.MasterKey

	// ConsoleFrameAncestors is config's console_frame_ancestors (checked
	// there): the origins that may frame the console; "" is 'none'.
	ConsoleFrameAncestors string

	// Issuer is the iss of every token and the base of advertised URLs.
	// Default config.DefaultIssuer(config.DefaultListen).
	Issuer string
	// Audience is the aud of every token. Default: the issuer.
	Audience string
	// TokenTTL is the access token lifetime. Default config.DefaultTokenTTL.
	TokenTTL time.Duration
	// MaxKeyTokenTTL is the longest token_ttl a key may have (config's
	// max_token_ttl). Default TokenTTL.
	MaxKeyTokenTTL time.Duration
	// AudiencesAllowed are the audiences keys may be given and token
	// requests may name as resource (config's audiences_allowed).
	AudiencesAllowed []string
	// MaxKeyLifetime bounds new keys' expires_at (config's
	// max_key_lifetime); 0: no bound.
	MaxKeyLifetime time.Duration
	// KeyExpiryWarning is how long before its expiry a key is shown as
	// expiring soon. Default config.DefaultKeyExpiryWarning; negative:
	// never (config's 0).
	KeyExpiryWarning time.Duration
	// MetadataClaims are the metadata members copied into tokens under
	// the claim "metadata" (config's metadata_claims); none by default.
	MetadataClaims []string
	// SigningAlg is ES256 (default), RS256 or EdDSA. A change goes through
	// a rotation: a key of the new algorithm is published first and signs
	// after SigningKeyPrepublish.
	SigningAlg string
	// SigningKeyRotation is how long a signing key signs before a scheduled
	// rotation. Default config.DefaultSigningKeyRotation; negative: only
	// manual rotations (config's 0).
	SigningKeyRotation time.Duration
	// SigningKeyPrepublish is how long a next signing key is in the JWKS
	// before it signs. Default config.DefaultSigningKeyPrepublish.
	SigningKeyPrepublish time.Duration
	// SigningKeyTicks drives the signing keys' background work
	// (apikey.Service.SigningKeysTick: due transitions, picking up other
	// instances' changes): each value is one round. nil means a real
	// ticker of SigningKeyTick.
	SigningKeyTicks <-chan time.Time
	// MaxKeysPerTeam bounds a team's keys. Default config.DefaultMaxKeysPerTeam.
	MaxKeysPerTeam int
	// StatusListTTL is the ttl of the status list: how long resource
	// servers may cache it, so how long a deleted key's tokens may still be
	// accepted offline. Default config.DefaultStatusListTTL.
	StatusListTTL time.Duration
	// Catalog is the permission catalog. Default scopes.Default().
	Catalog *scopes.Catalog

	// AdminClientID and AdminClientSecret, when either is set, make sure
	// this admin key exists with this secret (both must then be valid). Otherwise an admin key is generated
	// on the first start (see GeneratedAdmin).
	AdminClientID     string
	AdminClientSecret string
	// KeepNewAdmin keeps a generated first admin's secret before
	// the key is stored: see apikey.Config.KeepNewAdmin.
	KeepNewAdmin func(AdminCredentials) (undo func() error, err error)

	// IntrospectionRate is the per-caller request limit of
	// /oauth/introspect, per second. Default config.DefaultIntrospectionRate.
	IntrospectionRate int
	// LastUsedWriteRate bounds the last-used writes of keys used before, in
	// keys per second (lastused.Options.WriteRate). Default
	// lastused.DefaultWriteRate.
	LastUsedWriteRate int
	// RevocationRate is the per-caller request limit of /oauth/revoke, per
	// second. Default config.DefaultRevocationRate.
	RevocationRate int
	// TokenQuotaPerKey is the issuance quota of every team key without one
	// of its own, TokenQuotaPerTeam the quota of each team's keys together
	// (server/quota.go); the zero quota.Policy is none.
	TokenQuotaPerKey, TokenQuotaPerTeam quota.Policy

	// AuthFailureBurst and AuthFailureRate are the token bucket of failed
	// client authentications per (source address, client ID), per second
	// (package throttle, throttle.go here). Defaults
	// config.DefaultAuthFailureBurst, …Rate; a negative burst turns
	// throttling off. AuthFailureSourceBurst and AuthFailureSourceRate are
	// the looser bucket per source address (defaults config's; negative:
	// off). On a store shared by instances (Redis) the instances count
	// failures together (server/throttle.go).
	AuthFailureBurst, AuthFailureRate             int
	AuthFailureSourceBurst, AuthFailureSourceRate int

	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
	// LastUsedTicks drives the last-used flushes: each value is one flush at
	// that time. nil means a real ticker. The tracker takes the next tick
	// only after the previous flush returned, so a test that sends a second
	// tick on an unbuffered channel knows the first flush has completed.
	LastUsedTicks <-chan time.Time

	// TrustedProxies are the proxies whose X-Forwarded-For and X-Request-Id
	// are believed (config's trusted_proxies, parsed). Empty: none; the
	// TCP peer is the source of every request.
	TrustedProxies []netip.Prefix
	// AccessLog and AccessLogOAuth are the modes of the info-level access
	// log (config.AccessLogAll, …Errors, …Off) for the management API and
	// for /oauth/*. Default config.DefaultAccessLog, …OAuth.
	AccessLog      string
	AccessLogOAuth string
	// HSTS, when set, is the Strict-Transport-Security value of every
	// answer, errors included (config.Config.HSTS says when; cmd/keygate
	// passes it). Empty sends none.
	HSTS string
	// AuditRetention is how long audit events are kept. Default
	// config.DefaultAuditRetention.
	AuditRetention time.Duration
	// AuditTicks drives the audit trail's background work (apikey.AuditWorker:
	// folded refused calls, the operator-wide stream, pruning): each value is
	// one round at that time. nil means a real ticker of config.AuditTick.
	AuditTicks <-chan time.Time
	// CompatTicks drives the checks of a shared store's compatibility
	// record (compat.go): each value is one check. nil means a real ticker
	// of DefaultCompatTick. OnIncompatible is called once if a check finds
	// the store requires a format this build cannot read.
	CompatTicks    <-chan time.Time
	OnIncompatible func(error)

	// Webhooks are the endpoints the operator-wide audit event stream is
	// delivered to (package webhook, docs/webhooks.md); none when empty.
	Webhooks []config.Webhook
	// TrustedIssuers are the identity providers whose JWTs a client holding
	// token_exchange may exchange for team-bound management tokens (RFC
	// 8693, server/exchange.go); none: that grant is unsupported. Checked
	// again by New (config.TrustedIssuer.Validate). Their keys are fetched
	// on first use, never at start.
	TrustedIssuers []config.TrustedIssuer
	// Webhook tunes their delivery (GiveUp, Ticks, Timeout…). Its Now,
	// Logger, Observer and OnDisabled default to the server's clock, logger,
	// metrics and an audit event.
	Webhook webhook.Options

	// Metrics, when set, records HTTP, token, status-list and last-used
	// metrics (served by the caller on a listener of its own: see
	// cmd/keygate/serve.go). nil records nothing and adds no middleware.
	Metrics *metrics.Metrics
}

// Server serves keygate's HTTP API. Create it with New; call Close after the
// HTTP server has stopped so pending last-used times are written.
type Server struct {
	cfg      Options
	keys     *apikey.Service
	store    store.Store // what the rules of keys do not cover: readiness, the status list
	log      *slog.Logger
	lastUsed *lastused.Tracker
	audit    *apikey.AuditWorker
	webhooks *webhook.Service
	events   webhook.AuditSource // the stream webhooks deliver
	verifier *verify.Verifier
	// mgmtVerifier verifies management API tokens: audience issuer/v1 only
	// (server/mgmttoken.go).
	mgmtVerifier *verify.Verifier
	keyCheck     *keyCheck // server/keycheck.go
	mgmtAudience string    // issuer/v1, computed once (the token path compares it per token)
	handler      http.Handler

	statusLists statusLists
	// shardURIs are the URIs of the 2-bit status lists, by shard
	// (statusRef in statuslist.go).
	shardURIs        atomic.Pointer[[]string]
	metadataClaims   metadataClaims // the "metadata" claim of each key metadata (keypolicy.go)
	introspectLimits *callerLimits
	revokeLimits     *callerLimits
	leakedLimits     *sourceLimits // POST /v1/leaked-secrets (leaked.go)
	token            tokenEndpoint
	quotas           *quotas
	// stopSigningKeys ends the signing keys' background loop and waits.
	stopSigningKeys func()
	// authThrottle throttles failed client authentication (nil: off);
	// stopThrottle ends its listener of other instances' notices.
	authThrottle *throttle.Limiter
	stopThrottle context.CancelFunc
	compat       *compatWatch // nil: the store has no compatibility record

	proxies    *clientaddr.Proxies
	requestIDs *requestIDs
	access     *accessLog

	// exchanger verifies subject tokens of trusted issuers; nil: none.
	exchanger *trustedissuer.Verifier
}

// AdminCredentials are an admin key's client ID and its secret.
type AdminCredentials = apikey.AdminCredentials

// New opens the rules of keys on the store (first-start secrets, checks of
// stored keys: see apikey.Open) and builds the HTTP handler.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Store == nil || opts.MasterKey == nil {
		return nil, errors.New("server: Store and MasterKey are required")
	}
	if opts.Issuer == "" {
		opts.Issuer = config.DefaultIssuer(config.DefaultListen)
	}
	if opts.Audience == "" {
		opts.Audience = opts.Issuer
	}
	if opts.Audience == opts.Issuer+"/v1" {
		// Resource servers would then accept management tokens.
		return nil, fmt.Errorf("server: audience %q is the management API's own audience (issuer + \"/v1\"); choose another", opts.Audience)
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = config.DefaultTokenTTL
	}
	opts.MaxKeyTokenTTL = max(opts.MaxKeyTokenTTL, opts.TokenTTL)
	if opts.KeyExpiryWarning == 0 {
		opts.KeyExpiryWarning = config.DefaultKeyExpiryWarning
	}
	for _, a := range opts.AudiencesAllowed {
		if a == opts.Issuer+"/v1" {
			return nil, fmt.Errorf("server: audiences_allowed entry %q is the management API's own audience; choose another", a)
		}
	}
	if opts.IntrospectionRate <= 0 {
		opts.IntrospectionRate = config.DefaultIntrospectionRate
	}
	if opts.RevocationRate <= 0 {
		opts.RevocationRate = config.DefaultRevocationRate
	}
	if opts.StatusListTTL <= 0 {
		opts.StatusListTTL = config.DefaultStatusListTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AccessLog == "" {
		opts.AccessLog = config.DefaultAccessLog
	}
	if opts.AccessLogOAuth == "" {
		opts.AccessLogOAuth = config.DefaultAccessLogOAuth
	}
	for _, mode := range []string{opts.AccessLog, opts.AccessLogOAuth} {
		if !slices.Contains(config.AccessLogModes, mode) {
			return nil, fmt.Errorf("server: access log mode %q is not one of %v", mode, config.AccessLogModes)
		}
	}
	ids, err := newRequestIDs()
	if err != nil {
		return nil, err
	}
	// The rules of keys fill in their own defaults (catalog, team limit,
	// signing algorithm); the server reads them back from the Service.
	keys, err := apikey.Open(ctx, apikey.Config{
		Store:          opts.Store,
		MasterKey:      opts.MasterKey,
		Catalog:        opts.Catalog,
		MaxKeysPerTeam: opts.MaxKeysPerTeam,
		SigningAlg:     opts.SigningAlg,
		TokenTTL:       opts.TokenTTL,
		MaxKeyTokenTTL: opts.MaxKeyTokenTTL,
		// Status list tokens are signed with the same keys and live
		// longest when the status list ttl is long (statuslist.go).
		LongestTokenLifetime: max(opts.MaxKeyTokenTTL, statusListLifetime, 2*opts.StatusListTTL),
		AudiencesAllowed:     opts.AudiencesAllowed,
		MaxKeyLifetime:       opts.MaxKeyLifetime,
		SigningKeyRotation:   opts.SigningKeyRotation,
		SigningKeyPrepublish: opts.SigningKeyPrepublish,
		AdminClientID:        opts.AdminClientID,
		AdminClientSecret:    opts.AdminClientSecret,
		KeepNewAdmin:         opts.KeepNewAdmin,
		Logger:               opts.Logger,
		Now:                  opts.Now,
	})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: opts, keys: keys, store: opts.Store, log: opts.Logger,
		introspectLimits: &callerLimits{perSecond: rate.Limit(opts.IntrospectionRate), burst: opts.IntrospectionRate},
		revokeLimits:     &callerLimits{perSecond: rate.Limit(opts.RevocationRate), burst: opts.RevocationRate},
		proxies:          clientaddr.FromPrefixes(opts.TrustedProxies), requestIDs: ids}
	s.access = newAccessLog(s)
	if s.exchanger, err = newExchanger(opts); err != nil {
		return nil, err
	}
	s.verifier, err = verify.New(ctx, verify.Options{
		Issuer:   opts.Issuer,
		Audience: opts.Audience,
		// Introspection and revocation know tokens of every audience a
		// key may be given (keypolicy.go).
		OtherAudiences: opts.AudiencesAllowed,
		Keys:           ownKeys{keys},
		Now:            opts.Now,
		// keygate checks deletion against its own store (admin tokens,
		// introspection), never by fetching its own status list over HTTP.
		IgnoreStatus: true,
	})
	if err != nil {
		return nil, err
	}
	if err := s.newManagementVerifier(ctx); err != nil {
		return nil, err
	}
	luOpts := lastused.Options{Now: opts.Now, Ticks: opts.LastUsedTicks, Logger: opts.Logger, WriteRate: opts.LastUsedWriteRate}
	if opts.Metrics != nil {
		luOpts.Observer = opts.Metrics // not a typed nil in an interface: lastused checks for nil
	}
	s.lastUsed = lastused.New(opts.Store, luOpts)
	auditOpts := apikey.AuditOptions{Retention: opts.AuditRetention, Ticks: opts.AuditTicks}
	if len(opts.Webhooks) > 0 {
		if err := s.startWebhooks(); err != nil {
			s.lastUsed.Close()
			return nil, err
		}
		auditOpts.Hold = s.undelivered
	}
	s.audit = keys.StartAudit(auditOpts)
	s.stopSigningKeys = s.startSigningKeys(opts.SigningKeyTicks)
	s.startAuthThrottle()
	s.startCompat()
	s.startKeyCheck()
	s.token = tokenEndpoint{s: s}
	s.quotas = newQuotas(s, opts.Store)
	s.handler = s.routes()
	if opts.HSTS != "" {
		s.handler = strictTransportSecurity(opts.HSTS, s.handler)
	}
	return s, nil
}

// strictTransportSecurity sets the header before anything else runs, so
// that every answer has it: gin's 404 and 405, a recovered panic's 500,
// the console's files.
func strictTransportSecurity(value string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", value)
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// GeneratedAdmin returns the admin credentials this start created, if it
// created any. The secret exists nowhere else: show it once.
func (s *Server) GeneratedAdmin() (AdminCredentials, bool) { return s.keys.GeneratedAdmin() }

// Close writes pending last-used times and folded audit events. Call it
// after the HTTP server has drained; the store stays open (its owner
// closes it).
func (s *Server) Close() {
	if s.webhooks != nil {
		s.webhooks.Close() // aborts a delivery in flight; it is retried on the next start
	}
	s.stopKeyCheck()
	s.lastUsed.Close()
	s.stopSigningKeys()
	s.stopThrottle()
	s.closeCompat()
	s.access.flush()
	s.audit.Close()
}

func (s *Server) routes() http.Handler {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// No redirect from /v1/teams/ to /v1/teams: gin's is a bare 301 or
	// 307, without problem+json or no-store, and a 307 invites a client
	// to send its body (and credentials) again. A path with a stray slash
	// is a 404 problem like any other unknown path; /console alone is
	// redirected (NoRoute below).
	r.RedirectTrailingSlash = false
	// gin trusts no proxy and c.ClientIP() is never called: the source
	// address is sourceAddr's (package clientaddr, trusted_proxies), whose
	// rule gin does not implement.
	if err := r.SetTrustedProxies(nil); err != nil {
		panic(err) // nil is always valid
	}
	// The access log first, so the request has its ID before anything
	// else runs and a panic caught by recovery is still logged with it.
	r.Use(s.access.handle, s.recovery)
	var routeMetrics map[string]*metrics.Route
	if s.cfg.Metrics != nil {
		// Filled below, once every route is registered and before the
		// first request; read-only afterwards.
		routeMetrics = map[string]*metrics.Route{}
		r.Use(httpMetrics(routeMetrics, s.cfg.Metrics.Route(metrics.Unmatched)))
	}

	r.Any("/oauth/token", s.token.handle)
	r.Any("/oauth/introspect", s.token.introspect)
	r.Any("/oauth/revoke", s.token.revoke)

	getHead(r, "/.well-known/jwks.json", s.jwks)
	getHead(r, "/.well-known/oauth-authorization-server", s.metadata)
	getHead(r, legacyListPath, s.statusList)
	getHead(r, shardPathPrefix+":shard", s.statusShard)
	getHead(r, "/statuslists", s.statusListAggregation)
	getHead(r, "/healthz", s.healthz)
	getHead(r, "/readyz", s.readyz)
	// The OpenAPI description of all of the above and the management API;
	// server/openapi_test.go holds it to these routes.
	getHead(r, openapi.Path, gin.WrapH(openapi.Handler()))

	s.mountManagement(r)

	// The console is static files that call the API above like any other
	// client; its security headers are set by its own handler, so they
	// cost the token path nothing.
	con := gin.WrapH(console.HandlerFor(s.cfg.ConsoleFrameAncestors))
	getHead(r, "/console/*file", con)
	s.mountSessionRedeem(r)
	getHead(r, "/", func(c *gin.Context) { c.Redirect(http.StatusFound, console.Prefix) })
	r.NoRoute(func(c *gin.Context) {
		// The one trailing-slash redirect kept: a browser typing /console
		// gets the console. It is not a route, so it needs no OpenAPI entry.
		if m := c.Request.Method; c.Request.URL.Path+"/" == console.Prefix && (m == http.MethodGet || m == http.MethodHead) {
			c.Redirect(http.StatusMovedPermanently, console.Prefix)
			return
		}
		problem(c, http.StatusNotFound, "urn:keygate:problem:not-found", "no such endpoint: "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		problem(c, http.StatusMethodNotAllowed, "urn:keygate:problem:method-not-allowed",
			c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	if routeMetrics != nil {
		for _, ri := range r.Routes() {
			if _, ok := routeMetrics[ri.Path]; !ok {
				routeMetrics[ri.Path] = s.cfg.Metrics.Route(ri.Path)
			}
		}
	}
	return r
}

// getHead mounts handlers for GET and for HEAD, which RFC 9110 §9.3.2
// requires wherever GET is served and gin does not derive. The handlers
// run as for GET; net/http drops the body of a HEAD answer and keeps its
// headers (Content-Length included when the body fits its buffer).
func getHead(r gin.IRoutes, path string, handlers ...gin.HandlerFunc) {
	r.Match([]string{http.MethodGet, http.MethodHead}, path, handlers...)
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
	if s.incompatible() {
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "detail": "the store requires a record format this keygate cannot read"})
		return
	}
	if err := s.store.Ping(ctx); err != nil {
		s.reqLog(c).Warn("readiness: store does not answer", "err", err)
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "detail": "the key store does not answer"})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// verifyOwn verifies a token keygate issued, for either audience. The verifier's leeway stays,
// for clock skew between instances on iat and nbf; exp is exact, so an
// expired token neither introspects as active nor opens the admin API.
func (s *Server) verifyOwn(ctx context.Context, token string) (*verify.Claims, error) {
	claims, err := s.verifier.Verify(ctx, token)
	if errors.Is(err, verify.ErrWrongAudience) {
		// Genuine (the audience is judged after the signature) and maybe a
		// management token (aud issuer/v1): introspection and revocation
		// know those too.
		claims, err = s.mgmtVerifier.Verify(ctx, token)
	}
	if err == nil && !s.cfg.Now().Before(claims.ExpiresAt) {
		return nil, verify.ErrExpired
	}
	return claims, err
}

// tokenOf is what the rules of tokens need of verified claims. The status
// index is the generation's, counted over every shard: a token names its
// shard and the index within it (server/statuslist.go), and comparing that
// with a key's StatusIndex would refuse every token of a generation past
// the first shard's 2^23 as revoked.
func (s *Server) tokenOf(c *verify.Claims) apikey.Token {
	return apikey.Token{ID: c.ID, ClientID: c.ClientID, TeamID: c.TeamID, ExpiresAt: c.ExpiresAt, StatusIndex: s.generationOf(c.StatusList, c.StatusIndex)}
}

// ownKeys lets the management API verify admin tokens against this
// server's own key set, with no HTTP round trip.
type ownKeys struct{ keys *apikey.Service }

func (o ownKeys) VerificationKey(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	p, ok := o.keys.KeySet().PublicKey(kid)
	if !ok {
		// Perhaps another instance just made this key (a rotation now):
		// read the stored set, at most once a second.
		if !o.keys.ReloadSigningKeys(ctx) {
			return nil, "", verify.ErrUnknownKey
		}
		if p, ok = o.keys.KeySet().PublicKey(kid); !ok {
			return nil, "", verify.ErrUnknownKey
		}
	}
	return p.Key, p.Alg, nil
}
