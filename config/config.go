// Package config is keygate's typed configuration.
//
// Settings come in four layers, each overriding the one before:
//
//	defaults < YAML file (--config / KEYGATE_CONFIG) < KEYGATE_* environment < command-line flags
//
// so that a packaged config file can be adjusted per deployment by the
// environment (containers, systemd) and per run by flags, without editing
// the file. Only flags the user actually typed count: a flag's default never
// overrides the file or the environment.
//
// Settings derived from others (issuer from listen, audience from issuer)
// are computed after all layers, so `--listen :9000` alone moves the issuer
// too. Every rejected value produces one line naming the setting as the
// user wrote it, the value, where it came from and what is allowed.
//
// The package reads nothing by itself: the environment arrives as a getenv
// function and flags as a *pflag.FlagSet, so tests and the cmd control both.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/keygate/keygate/clientaddr"
	"github.com/keygate/keygate/lastused"
	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/signing"
)

// Defaults of the settings. They are the one source for every package that
// needs a default (server.New, the CLI's default URL, help text), so that
// a zero value elsewhere means the same thing as an unset setting here;
// Default() is built from them.
// DefaultKeyExpiryWarning: a key is marked as expiring soon a week before
// its expires_at.
const DefaultKeyExpiryWarning = 7 * Day

const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultDataDir         = "./keygate-data"
	DefaultTokenTTL        = 15 * time.Minute
	DefaultSigningAlg      = signing.DefaultAlg
	DefaultMaxKeysPerTeam  = 5
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultShutdownTimeout = 10 * time.Second
	DefaultStore           = StoreBolt
	DefaultRedisPrefix     = "keygate:"
	DefaultStoreTimeout    = time.Second
	DefaultRedisKeyCache   = 10 * time.Second
	// DefaultBoltKeyCacheSize is how many key records the embedded store
	// keeps in memory (bolt.DefaultKeyCacheSize): a buffer of 768 bytes
	// each (store/bolt/keycache.go), 73 MiB.
	DefaultBoltKeyCacheSize = 100_000
	// DefaultRedisKeyCacheSize is how many key records an instance keeps
	// cached on Redis: a buffer of 256 bytes each (store/redis/cache.go),
	// 49 MiB.
	DefaultRedisKeyCacheSize = 200_000
	DefaultStatusListTTL     = time.Minute
	// DefaultSigningKeyRotation is how long a signing key signs before a
	// scheduled rotation replaces it (signing_key_rotation; 0: manual).
	DefaultSigningKeyRotation = 90 * 24 * time.Hour
	// DefaultSigningKeyPrepublish is how long a next signing key is in the
	// JWKS before it signs: at least MinSigningKeyPrepublish, never under
	// an hour.
	DefaultSigningKeyPrepublish = time.Hour
	// MinSigningKeyPrepublish is twice the JWKS max-age keygate sends
	// (300 s, server/discovery.go) plus verify's default
	// MinRefreshInterval (30 s): a verifier that fetched the JWKS just
	// before a next key appeared has fetched it again, with one failed
	// attempt to spare, before the key signs.
	MinSigningKeyPrepublish = 2*5*time.Minute + 30*time.Second
	MaxSigningKeyPrepublish = 30 * 24 * time.Hour
	// MinSigningKeyRotation and MaxSigningKeyRotation bound a scheduled
	// rotation (0 turns it off).
	MinSigningKeyRotation    = 24 * time.Hour
	MaxSigningKeyRotation    = 3650 * 24 * time.Hour
	DefaultIntrospectionRate = 100
	// DefaultLastUsedWriteRate is last_used_write_rate's default: the
	// tracker's own (lastused.DefaultWriteRate, which says why).
	DefaultLastUsedWriteRate = lastused.DefaultWriteRate
	// DefaultRevocationRate is revocation_rate's default: a revocation is
	// a store write, so it is limited per caller like introspection.
	DefaultRevocationRate = 100
	// Throttling of failed client authentication (package throttle): a
	// (source, client ID) pair may fail DefaultAuthFailureBurst times at
	// once, then DefaultAuthFailureRate times a second; a source, for any
	// client IDs, DefaultAuthFailureSourceBurst at once, then
	// DefaultAuthFailureSourceRate a second. A working integration fails
	// never, so it never meets them.
	DefaultAuthFailureBurst       = 20
	DefaultAuthFailureRate        = 1
	DefaultAuthFailureSourceBurst = 200
	DefaultAuthFailureSourceRate  = 10
	// DefaultAccessLog logs every management API request: few, and each
	// one changes or reads keys.
	DefaultAccessLog = AccessLogAll
	// DefaultAccessLogOAuth logs only refused /oauth/* requests: a line per
	// issued token would cost the token path its throughput.
	DefaultAccessLogOAuth = AccessLogErrors
	DefaultAuditRetention = 90 * Day
	// DefaultHSTSMaxAge is a year, the least the browsers' preload lists
	// accept.
	DefaultHSTSMaxAge = 365 * Day
	// DefaultMaxConnections stays well below the file descriptors a
	// process gets (Go raises the soft limit to the hard one, 524288 under
	// systemd), so connections alone cannot take the descriptors the store
	// needs, and far above what a busy deployment holds: clients and load
	// balancers keep a few pooled connections each.
	DefaultMaxConnections = 10000
	// DefaultIdleTimeout is how long a keep-alive connection may wait for
	// its next request.
	DefaultIdleTimeout = 2 * time.Minute
)

// The audit trail's background work (apikey.AuditWorker): how often it
// stores folded refused calls and feeds the operator-wide event stream
// (the stream's lag), and the least time between two prunes.
const (
	AuditTick       = 5 * time.Second
	AuditPruneEvery = time.Hour
)

// Values of access_log and access_log_oauth.
const (
	AccessLogAll    = "all"    // every request
	AccessLogErrors = "errors" // requests answered with a status of 400 or more
	AccessLogOff    = "off"    // none
)

// AccessLogModes are the allowed values of access_log and access_log_oauth.
var AccessLogModes = []string{AccessLogAll, AccessLogErrors, AccessLogOff}

// Store backends that config knows settings for. Which backends a program
// can actually open is its own business: it passes their names to
// BindFlagsFor and LoadFor (cmd/keygate takes them from its registry).
const (
	StoreBolt  = "bolt"
	StoreRedis = "redis"
)

// DefaultStores are the store backends Load and BindFlags accept: the ones
// keygate ships.
var DefaultStores = []string{StoreBolt, StoreRedis}

// Bounds of the numeric settings, exported so that help text and docs can
// quote them instead of repeating numbers.
const (
	// MinTokenTTL stops lifetimes so short that clock skew between keygate
	// and resource servers would reject fresh tokens.
	MinTokenTTL = time.Minute
	// MaxTokenTTL keeps access tokens short-lived (RFC 9068 tokens cannot be
	// recalled from resource servers that verify offline; deleting a key
	// only stops new tokens).
	MaxTokenTTL = 24 * time.Hour
	// MinMaxKeyLifetime and MaxMaxKeyLifetime bound max_key_lifetime.
	MinMaxKeyLifetime = Day
	MaxMaxKeyLifetime = 3650 * Day
	// MaxKeyExpiryWarning bounds key_expiry_warning.
	MaxKeyExpiryWarning = 365 * Day

	MinMaxKeysPerTeam = 1
	MaxMaxKeysPerTeam = 1000

	MinStatusListTTL = time.Second
	MaxStatusListTTL = time.Hour

	MinLastUsedWriteRate = 10
	MaxLastUsedWriteRate = 1_000_000
	MinIntrospectionRate = 1
	MaxIntrospectionRate = 100000
	MinRevocationRate    = 1
	MaxRevocationRate    = 100000
	// auth_failure_burst and auth_failure_source_burst: 0 turns the bucket
	// off (the pair's 0 turns throttling off altogether).
	MaxAuthFailureBurst = 100000
	MinAuthFailureRate  = 1
	MaxAuthFailureRate  = 100000

	// MaxRedisKeyCache bounds redis_key_cache; on Cluster and Sentinel the
	// store allows a minute at most (redis.MaxReplicatedKeyCacheAge), since
	// an invalidation can be lost there unnoticed (store/redis/cache.go).
	MaxRedisKeyCache = time.Hour
	// MinRedisKeyCacheSize and MaxRedisKeyCacheSize bound
	// redis_key_cache_size and bolt_key_cache_size (a buffer of about
	// 4 GiB on Redis and 11 GiB on bbolt at the most).
	MinRedisKeyCacheSize = 1_000
	MaxRedisKeyCacheSize = 16_000_000

	MinAuditRetention = Day
	MaxAuditRetention = 3650 * Day

	MaxHSTSMaxAge     = 730 * Day
	MaxMaxConnections = 1000000
	MinIdleTimeout    = time.Second
	MaxIdleTimeout    = time.Hour

	MinStoreTimeout = 50 * time.Millisecond
	MaxStoreTimeout = 30 * time.Second

	// Shutdown waits at least long enough for in-flight token requests and at
	// most what an orchestrator would tolerate before killing the process.
	MinShutdownTimeout = time.Second
	MaxShutdownTimeout = 5 * time.Minute
)

// DefaultIssuer is the issuer derived from a listen address, as the issuer
// setting's default: "http://" + listen, with "localhost" for an empty or
// unspecified host (0.0.0.0, ::), which listens everywhere and so has no one
// name. An address without a port is used as it is.
func DefaultIssuer(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Allowed values for the enumerated settings. Input is matched without
// regard to case and stored in the spelling shown here, so that
// KEYGATE_LOG_LEVEL=INFO works and other packages can compare exactly.
// The signing algorithms are signing.Algorithms, the stores the caller's.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// Config is keygate's configuration. Fields hold what the user asked for
// until Validate completes them; after Load, every field is final.
type Config struct {
	// Listen is the host:port the HTTP server binds.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files of the certificate (with its chain)
	// and its private key: when set, keygate serves HTTPS on Listen, and
	// reloads them when they change (package certfile). Both or neither.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// HSTSMaxAge is the max-age of the Strict-Transport-Security header,
	// sent only as HSTS says; 0 sends none.
	HSTSMaxAge time.Duration `yaml:"hsts_max_age"`
	// HSTSIncludeSubdomains adds includeSubDomains to it.
	HSTSIncludeSubdomains bool `yaml:"hsts_include_subdomains"`
	// MaxConnections bounds the connections open at once on Listen; past
	// it new ones wait to be accepted. 0 is unlimited.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout is how long a keep-alive connection may stay idle.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DataDir holds the embedded database and generated files.
	DataDir string `yaml:"data_dir"`
	// Issuer is the iss of tokens and of RFC 8414 metadata. Empty means
	// "http://" + Listen ("https://" with TLSCert), with "localhost" for
	// an unspecified host. Validate
	// removes a trailing slash, because RFC 8414 builds the metadata URL
	// from it and resource servers compare iss byte for byte: one canonical
	// spelling avoids a mismatch that depends on how someone typed it.
	Issuer string `yaml:"issuer"`
	// Audience is the aud of tokens. Empty means the issuer.
	Audience string `yaml:"audience"`
	// TokenTTL is the lifetime of access tokens, MinTokenTTL..MaxTokenTTL.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// MaxKeyTokenTTL is the longest token_ttl a key of its own may have,
	// TokenTTL..MaxTokenTTL; 0 (the default) is TokenTTL itself, so no key
	// gets longer-lived tokens than the server's unless an operator says so.
	// Validate fills it in.
	MaxKeyTokenTTL time.Duration `yaml:"max_token_ttl"`
	// AudiencesAllowed are the audiences keys may be given (a key's
	// audiences, a token request's RFC 8707 resource): absolute URIs
	// without a fragment. Empty: every token carries Audience.
	AudiencesAllowed []string `yaml:"audiences_allowed"`
	// MaxKeyLifetime, when not 0, bounds every new key's expires_at to its
	// creation plus this; keys that exist are left as they are.
	MaxKeyLifetime time.Duration `yaml:"max_key_lifetime"`
	// KeyExpiryWarning is how long before its expires_at a key is marked
	// as expiring soon (the API's expiring_soon, the console); 0: never.
	KeyExpiryWarning time.Duration `yaml:"key_expiry_warning"`
	// MetadataClaims are the members of a key's metadata copied into its
	// tokens, under the one claim "metadata". Empty (the default): metadata
	// never reaches a token.
	MetadataClaims []string `yaml:"metadata_claims"`
	// SigningAlg is ES256, RS256 or EdDSA, in that spelling.
	SigningAlg string `yaml:"signing_alg"`
	// SigningKeyRotation is how long a signing key signs before a scheduled
	// rotation replaces it; 0 rotates only when asked (keygate
	// signing-keys rotate) or when signing_alg changes.
	SigningKeyRotation time.Duration `yaml:"signing_key_rotation"`
	// SigningKeyPrepublish is how long a next signing key is in the JWKS
	// before it signs, MinSigningKeyPrepublish..MaxSigningKeyPrepublish.
	SigningKeyPrepublish time.Duration `yaml:"signing_key_prepublish"`
	// MaxKeysPerTeam is the per-team key limit.
	MaxKeysPerTeam int `yaml:"max_keys_per_team"`
	// LogLevel is debug, info, warn or error; LogFormat text or json.
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// Store is "bolt" (the embedded default, in DataDir) or "redis" (shared
	// by several instances).
	Store string `yaml:"store"`
	// RedisURL locates Redis: redis:// or rediss://; a master_name query
	// parameter selects Sentinel, addr parameters (or RedisCluster) Cluster.
	RedisURL string `yaml:"redis_url"`
	// RedisPrefix starts every Redis key, so deployments can share a Redis.
	RedisPrefix string `yaml:"redis_prefix"`
	// StoreTimeout bounds each store call on the request path; past it the
	// token endpoint answers 503 temporarily_unavailable.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// RedisKeyCache is how long an instance may keep a key record in memory
	// (invalidated at once through Redis pub/sub on any change); 0 turns the
	// cache off, so every token request reads Redis.
	RedisKeyCache time.Duration `yaml:"redis_key_cache"`
	// RedisKeyCacheSize bounds the records kept by that cache: a buffer of
	// 256 bytes per record (store/redis/cache.go); past it the least
	// recently used give way, so memory stays bounded however many keys
	// are active.
	RedisKeyCacheSize int `yaml:"redis_key_cache_size"`
	// BoltKeyCacheSize bounds the key records the embedded store keeps
	// in memory for the token path, 768 bytes of buffer each
	// (store/bolt/keycache.go).
	BoltKeyCacheSize int `yaml:"bolt_key_cache_size"`
	// StatusListTTL is how long resource servers may cache the token status
	// list: the longest a deleted key's unexpired tokens are still accepted
	// offline.
	StatusListTTL time.Duration `yaml:"status_list_ttl"`
	// LastUsedWriteRate bounds the last_used_at writes of keys used before,
	// and the usage writes, per instance, in keys per second
	// (lastused.Options.WriteRate).
	LastUsedWriteRate int `yaml:"last_used_write_rate"`
	// IntrospectionRate is the per-caller limit of /oauth/introspect, in
	// requests per second.
	IntrospectionRate int `yaml:"introspection_rate"`
	// RevocationRate is the per-caller limit of /oauth/revoke, in requests
	// per second.
	RevocationRate int `yaml:"revocation_rate"`
	// TokenQuotaPerKey is the issuance quota of every team key without one
	// of its own, TokenQuotaPerTeam the quota of each team's keys
	// together, in quota.Parse's syntax ("1000/hour", "100000/day:log");
	// empty or "off" is none. Validate parses them into KeyQuota and
	// TeamQuota.
	TokenQuotaPerKey  string `yaml:"token_quota_per_key"`
	TokenQuotaPerTeam string `yaml:"token_quota_per_team"`
	// AuthFailureBurst and AuthFailureRate are the token bucket of failed
	// client authentications per (source address, client ID) at
	// /oauth/token, /oauth/introspect, /oauth/revoke and the management
	// API (package throttle): failures at once, then per second. A
	// burst of 0 turns throttling off.
	AuthFailureBurst int `yaml:"auth_failure_burst"`
	AuthFailureRate  int `yaml:"auth_failure_rate"`
	// AuthFailureSourceBurst and AuthFailureSourceRate are the looser
	// bucket per source address, for failures of any client IDs; it never
	// blocks a pair that succeeded recently. A burst of 0 turns it off.
	AuthFailureSourceBurst int `yaml:"auth_failure_source_burst"`
	AuthFailureSourceRate  int `yaml:"auth_failure_source_rate"`
	// AuditRetention is how long audit events are kept (docs/audit.md);
	// older ones are pruned in the background.
	AuditRetention time.Duration `yaml:"audit_retention"`
	// PprofListen, when set, serves net/http/pprof on its own listener
	// (never on the public one). Off by default; bind it to loopback.
	PprofListen string `yaml:"pprof_listen"`
	// MetricsListen, when set, serves Prometheus metrics at /metrics on its
	// own listener, so the public address never exposes them. Off by
	// default (docs/metrics.md).
	MetricsListen string `yaml:"metrics_listen"`
	// TrustedProxies are the proxies (CIDRs or single addresses) whose
	// X-Forwarded-For and X-Request-Id keygate believes (package
	// clientaddr has the rule). Empty: the TCP peer is the source of every
	// request.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ConsoleFrameAncestors is the console's CSP frame-ancestors source
	// list: 'none' (the default) or origins allowed to embed the console
	// in an iframe (config/frameancestors.go has the rule).
	ConsoleFrameAncestors string `yaml:"console_frame_ancestors"`
	// AccessLog logs management API requests at info: all, errors or off.
	AccessLog string `yaml:"access_log"`
	// AccessLogOAuth is AccessLog for /oauth/*; by default only refusals.
	AccessLogOAuth string `yaml:"access_log_oauth"`
	// WebhookGiveUp is how long a webhook endpoint may fail every attempt
	// before it is disabled (docs/webhooks.md).
	WebhookGiveUp time.Duration `yaml:"webhook_give_up"`
	// Permissions, when non-nil, replaces the default permission catalog.
	// It can only come from the file: a catalog does not fit in a flag.
	Permissions []scopes.Permission `yaml:"permissions,omitempty"`
	// Webhooks are the endpoints the audit event stream is delivered to
	// (config/webhook.go). Only from the file.
	Webhooks []Webhook `yaml:"webhooks,omitempty"`
	// TrustedIssuers are the identity providers whose JWTs may be exchanged
	// for team-bound management tokens (config/trustedissuer.go). Only from
	// the file.
	TrustedIssuers []TrustedIssuer `yaml:"trusted_issuers,omitempty"`

	// KeyQuota and TeamQuota are TokenQuotaPerKey and TokenQuotaPerTeam
	// parsed, built by Validate (the zero quota.Policy: none).
	KeyQuota  quota.Policy `yaml:"-"`
	TeamQuota quota.Policy `yaml:"-"`
	// TrustedProxyPrefixes is TrustedProxies parsed, built by Validate.
	TrustedProxyPrefixes []netip.Prefix `yaml:"-"`
	// Catalog is built by Validate: from Permissions when set, else the
	// default catalog (a Catalog set by hand is kept when Permissions is nil).
	Catalog *scopes.Catalog `yaml:"-"`
	// File is the config file Load read, empty if none; for start-up logs.
	File string `yaml:"-"`

	// origins remembers which layer set each setting and to what, so that
	// an error can say where to fix it.
	origins map[string]origin
}

type origin struct {
	where string // "KEYGATE_LISTEN", "--listen", "config file x.yaml, line 3"
	value string // the value as it was set, see display
}

// Default returns the built-in defaults. Issuer and Audience are left empty
// because they derive from the final Listen; Validate fills them in.
func Default() Config {
	return Config{
		Listen:                 DefaultListen,
		HSTSMaxAge:             DefaultHSTSMaxAge,
		MaxConnections:         DefaultMaxConnections,
		IdleTimeout:            DefaultIdleTimeout,
		DataDir:                DefaultDataDir,
		TokenTTL:               DefaultTokenTTL,
		KeyExpiryWarning:       DefaultKeyExpiryWarning,
		SigningAlg:             DefaultSigningAlg,
		SigningKeyRotation:     DefaultSigningKeyRotation,
		SigningKeyPrepublish:   DefaultSigningKeyPrepublish,
		MaxKeysPerTeam:         DefaultMaxKeysPerTeam,
		LogLevel:               DefaultLogLevel,
		LogFormat:              DefaultLogFormat,
		ShutdownTimeout:        DefaultShutdownTimeout,
		Store:                  DefaultStore,
		RedisPrefix:            DefaultRedisPrefix,
		StoreTimeout:           DefaultStoreTimeout,
		RedisKeyCache:          DefaultRedisKeyCache,
		RedisKeyCacheSize:      DefaultRedisKeyCacheSize,
		BoltKeyCacheSize:       DefaultBoltKeyCacheSize,
		StatusListTTL:          DefaultStatusListTTL,
		IntrospectionRate:      DefaultIntrospectionRate,
		LastUsedWriteRate:      DefaultLastUsedWriteRate,
		RevocationRate:         DefaultRevocationRate,
		AccessLog:              DefaultAccessLog,
		ConsoleFrameAncestors:  FrameAncestorsNone,
		AccessLogOAuth:         DefaultAccessLogOAuth,
		AuditRetention:         DefaultAuditRetention,
		WebhookGiveUp:          DefaultWebhookGiveUp,
		AuthFailureBurst:       DefaultAuthFailureBurst,
		AuthFailureRate:        DefaultAuthFailureRate,
		AuthFailureSourceBurst: DefaultAuthFailureSourceBurst,
		AuthFailureSourceRate:  DefaultAuthFailureSourceRate,
	}
}

// setting ties one field to its YAML key, flag and environment variable, so
// that the three layers cannot drift apart.
type setting struct {
	key, usage string // key is the YAML key, and the name errors use
	str        func(*Config) *string
	dur        func(*Config) *time.Duration
	num        func(*Config) *int
	// list is a list setting: a YAML sequence (or one comma-separated
	// string), comma-separated in the environment, a repeatable flag.
	list func(*Config) *[]string
	// flag is a yes/no setting: true or false, a flag without a value.
	flag func(*Config) *bool
}

var settings = []setting{
	{key: "listen", usage: "host:port to serve HTTP on", str: func(c *Config) *string { return &c.Listen }},
	{key: "tls_cert", usage: "PEM file of the TLS certificate (and chain): serve HTTPS, reloading it when it changes or on SIGHUP (needs tls_key)", str: func(c *Config) *string { return &c.TLSCert }},
	{key: "tls_key", usage: "PEM file of the TLS certificate's private key (needs tls_cert)", str: func(c *Config) *string { return &c.TLSKey }},
	{key: "hsts_max_age", usage: "max-age of Strict-Transport-Security, sent when serving TLS for an https issuer named by a host name (0 = none), up to 730d", dur: func(c *Config) *time.Duration { return &c.HSTSMaxAge }},
	{key: "hsts_include_subdomains", usage: "add includeSubDomains to Strict-Transport-Security", flag: func(c *Config) *bool { return &c.HSTSIncludeSubdomains }},
	{key: "max_connections", usage: fmt.Sprintf("connections open at once on listen, 0 (unlimited) to %d", MaxMaxConnections), num: func(c *Config) *int { return &c.MaxConnections }},
	{key: "idle_timeout", usage: "how long a keep-alive connection may stay idle, " + MinIdleTimeout.String() + " to " + MaxIdleTimeout.String(), dur: func(c *Config) *time.Duration { return &c.IdleTimeout }},
	{key: "data_dir", usage: "directory for the embedded database", str: func(c *Config) *string { return &c.DataDir }},
	{key: "issuer", usage: "token and metadata issuer URL (default http://<listen>)", str: func(c *Config) *string { return &c.Issuer }},
	{key: "audience", usage: "aud claim of access tokens (default: the issuer)", str: func(c *Config) *string { return &c.Audience }},
	{key: "token_ttl", usage: "access token lifetime, " + MinTokenTTL.String() + " to " + MaxTokenTTL.String(), dur: func(c *Config) *time.Duration { return &c.TokenTTL }},
	{key: "max_token_ttl", usage: "longest token_ttl a key may be given, token_ttl (the default) to " + MaxTokenTTL.String(), dur: func(c *Config) *time.Duration { return &c.MaxKeyTokenTTL }},
	{key: "audiences_allowed", usage: "audiences keys may be given and token requests may name as resource (absolute URIs, comma-separated; default none: every token carries audience)", list: func(c *Config) *[]string { return &c.AudiencesAllowed }},
	{key: "max_key_lifetime", usage: "longest lifetime of a new key (its expires_at), 0 (none, the default) or " + days(MinMaxKeyLifetime) + " to " + days(MaxMaxKeyLifetime), dur: func(c *Config) *time.Duration { return &c.MaxKeyLifetime }},
	{key: "key_expiry_warning", usage: "how long before its expiry a key is marked as expiring soon, 0 (never) to " + days(MaxKeyExpiryWarning) + " (default 7d)", dur: func(c *Config) *time.Duration { return &c.KeyExpiryWarning }},
	{key: "metadata_claims", usage: "key metadata members copied into tokens under the claim metadata (comma-separated; default none)", list: func(c *Config) *[]string { return &c.MetadataClaims }},
	{key: "signing_alg", usage: "JWT signing algorithm: " + strings.Join(signing.Algorithms, ", "), str: func(c *Config) *string { return &c.SigningAlg }},
	{key: "signing_key_rotation", usage: "how long a signing key signs before a scheduled rotation, 0 (manual only) or " + days(MinSigningKeyRotation) + " to " + days(MaxSigningKeyRotation), dur: func(c *Config) *time.Duration { return &c.SigningKeyRotation }},
	{key: "signing_key_prepublish", usage: "how long a next signing key is published before it signs, " + MinSigningKeyPrepublish.String() + " to " + days(MaxSigningKeyPrepublish), dur: func(c *Config) *time.Duration { return &c.SigningKeyPrepublish }},
	{key: "max_keys_per_team", usage: fmt.Sprintf("API keys a team may hold, %d to %d", MinMaxKeysPerTeam, MaxMaxKeysPerTeam), num: func(c *Config) *int { return &c.MaxKeysPerTeam }},
	{key: "log_level", usage: "log level: " + strings.Join(logLevels, ", "), str: func(c *Config) *string { return &c.LogLevel }},
	{key: "log_format", usage: "log format: " + strings.Join(logFormats, ", "), str: func(c *Config) *string { return &c.LogFormat }},
	{key: "shutdown_timeout", usage: "graceful shutdown limit, " + MinShutdownTimeout.String() + " to " + MaxShutdownTimeout.String(), dur: func(c *Config) *time.Duration { return &c.ShutdownTimeout }},
	{key: "store", usage: "key store", str: func(c *Config) *string { return &c.Store }}, // BindFlagsFor adds the stores
	{key: "redis_url", usage: "Redis URL (redis:// or rediss://) when store is redis", str: func(c *Config) *string { return &c.RedisURL }},
	{key: "redis_prefix", usage: "prefix of every Redis key", str: func(c *Config) *string { return &c.RedisPrefix }},
	{key: "store_timeout", usage: "limit for one store call, " + MinStoreTimeout.String() + " to " + MaxStoreTimeout.String(), dur: func(c *Config) *time.Duration { return &c.StoreTimeout }},
	{key: "redis_key_cache", usage: "how long a key record may be cached in memory on Redis (invalidated by pub/sub; 0 = off), up to " + MaxRedisKeyCache.String() + " on a single Redis node, 1m0s on Cluster or Sentinel", dur: func(c *Config) *time.Duration { return &c.RedisKeyCache }},
	{key: "redis_key_cache_size", usage: fmt.Sprintf("how many key records that cache holds (256 bytes of buffer each), %d to %d; past it the least recently used give way", MinRedisKeyCacheSize, MaxRedisKeyCacheSize), num: func(c *Config) *int { return &c.RedisKeyCacheSize }},
	{key: "bolt_key_cache_size", usage: fmt.Sprintf("how many key records the embedded store keeps in memory (768 bytes of buffer each), %d to %d; past it the least recently used give way", MinRedisKeyCacheSize, MaxRedisKeyCacheSize), num: func(c *Config) *int { return &c.BoltKeyCacheSize }},
	{key: "status_list_ttl", usage: "how long resource servers may cache the token status list, " + MinStatusListTTL.String() + " to " + MaxStatusListTTL.String(), dur: func(c *Config) *time.Duration { return &c.StatusListTTL }},
	{key: "last_used_write_rate", usage: fmt.Sprintf("last_used_at writes of keys used before, and usage writes, per second per instance, %d to %d; past it both lag by up to the keys in use divided by it", MinLastUsedWriteRate, MaxLastUsedWriteRate), num: func(c *Config) *int { return &c.LastUsedWriteRate }},
	{key: "introspection_rate", usage: fmt.Sprintf("introspection requests per second per caller, %d to %d", MinIntrospectionRate, MaxIntrospectionRate), num: func(c *Config) *int { return &c.IntrospectionRate }},
	{key: "revocation_rate", usage: fmt.Sprintf("revocation requests per second per caller, %d to %d", MinRevocationRate, MaxRevocationRate), num: func(c *Config) *int { return &c.RevocationRate }},
	{key: "token_quota_per_key", usage: "issuance quota of each team key without its own: N/hour or N/day, :log to only log (default off)", str: func(c *Config) *string { return &c.TokenQuotaPerKey }},
	{key: "token_quota_per_team", usage: "issuance quota of each team's keys together: N/hour or N/day, :log to only log (default off)", str: func(c *Config) *string { return &c.TokenQuotaPerTeam }},
	{key: "auth_failure_burst", usage: fmt.Sprintf("failed client authentications a (source address, client ID) may make at once before it is throttled, 0 (throttling off) to %d", MaxAuthFailureBurst), num: func(c *Config) *int { return &c.AuthFailureBurst }},
	{key: "auth_failure_rate", usage: fmt.Sprintf("failed client authentications per second a throttled (source address, client ID) may make, %d to %d", MinAuthFailureRate, MaxAuthFailureRate), num: func(c *Config) *int { return &c.AuthFailureRate }},
	{key: "auth_failure_source_burst", usage: fmt.Sprintf("failed client authentications of any client IDs a source address may make at once, 0 (off) to %d", MaxAuthFailureBurst), num: func(c *Config) *int { return &c.AuthFailureSourceBurst }},
	{key: "auth_failure_source_rate", usage: fmt.Sprintf("failed client authentications per second a throttled source address may make, %d to %d", MinAuthFailureRate, MaxAuthFailureRate), num: func(c *Config) *int { return &c.AuthFailureSourceRate }},
	{key: "audit_retention", usage: "how long audit events are kept, 1d to 3650d (days: 90d)", dur: func(c *Config) *time.Duration { return &c.AuditRetention }},
	{key: "pprof_listen", usage: "host:port for a separate /debug/pprof listener (off when empty; use loopback)", str: func(c *Config) *string { return &c.PprofListen }},
	{key: "metrics_listen", usage: "host:port for a separate Prometheus /metrics listener (off when empty)", str: func(c *Config) *string { return &c.MetricsListen }},
	{key: "trusted_proxies", usage: "proxies (CIDRs or addresses, comma-separated) whose X-Forwarded-For and X-Request-Id are believed (default none)", list: func(c *Config) *[]string { return &c.TrustedProxies }},
	{key: "console_frame_ancestors", usage: "origins (space-separated https://host[:port], or http loopback) that may embed the console in an iframe (default 'none')", str: func(c *Config) *string { return &c.ConsoleFrameAncestors }},
	{key: "access_log", usage: "info-level access log of the management API: " + strings.Join(AccessLogModes, ", "), str: func(c *Config) *string { return &c.AccessLog }},
	{key: "access_log_oauth", usage: "info-level access log of /oauth/*: " + strings.Join(AccessLogModes, ", "), str: func(c *Config) *string { return &c.AccessLogOAuth }},
	{key: "webhook_give_up", usage: "how long a webhook endpoint may fail before it is disabled, " + MinWebhookGiveUp.String() + " to 30d", dur: func(c *Config) *time.Duration { return &c.WebhookGiveUp }},
}

func (s setting) flagName() string { return strings.ReplaceAll(s.key, "_", "-") }
func (s setting) envName() string  { return EnvPrefix + strings.ToUpper(s.key) }

// EnvPrefix starts every environment variable keygate reads.
const EnvPrefix = "KEYGATE_"

// ConfigFileEnv and ConfigFileFlag name the config file; they are read
// before everything else because the file is a layer of its own.
const (
	ConfigFileEnv  = EnvPrefix + "CONFIG"
	ConfigFileFlag = "config"
)

// BindFlags registers keygate's settings on fs (typically a cobra command's
// flags). The flags only record what the user typed; Load applies them on
// top of the other layers.
func BindFlags(fs *pflag.FlagSet) { BindFlagsFor(fs, DefaultStores) }

// BindFlagsFor is BindFlags for a program that can open the store backends
// named in stores, which the store flag's help lists.
func BindFlagsFor(fs *pflag.FlagSet, stores []string) {
	d := Default()
	fs.String(ConfigFileFlag, "", "YAML config file (env "+ConfigFileEnv+")")
	for _, s := range settings {
		usage := s.usage
		if s.key == "store" {
			usage += ": " + strings.Join(stores, ", ")
		}
		usage += " (env " + s.envName() + ")"
		switch {
		case s.str != nil:
			fs.String(s.flagName(), *s.str(&d), usage)
		case s.dur != nil:
			fs.Var(NewDurationValue(*s.dur(&d), new(time.Duration)), s.flagName(), usage)
		case s.num != nil:
			fs.Int(s.flagName(), *s.num(&d), usage)
		case s.list != nil:
			fs.StringSlice(s.flagName(), *s.list(&d), usage)
		case s.flag != nil:
			fs.Bool(s.flagName(), *s.flag(&d), usage)
		}
	}
}

// Load builds the configuration from defaults, the config file, the
// environment and the flags that were set on fs, then validates it.
//
// fs may be nil (no flags) and need not hold every flag of BindFlags.
// getenv is usually os.Getenv; nil means an empty environment. An empty
// variable counts as unset, and `--config ""` means no file even when
// KEYGATE_CONFIG names one.
func Load(fs *pflag.FlagSet, getenv func(string) string) (Config, error) {
	return LoadFor(fs, getenv, DefaultStores)
}

// LoadFor is Load for a program that can open the store backends named in
// stores: the store setting must be one of them. The names come from the
// caller so that config need not import the backends, and a test can offer
// one of its own.
func LoadFor(fs *pflag.FlagSet, getenv func(string) string, stores []string) (Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	c := Default()
	c.origins = make(map[string]origin)

	path := strings.TrimSpace(getenv(ConfigFileEnv))
	if fs != nil && fs.Changed(ConfigFileFlag) {
		var err error
		if path, err = fs.GetString(ConfigFileFlag); err != nil {
			return Config{}, err
		}
	}
	if path != "" {
		if err := c.loadFile(path); err != nil {
			return Config{}, err
		}
		c.File = path
	}

	for _, s := range settings {
		raw := strings.TrimSpace(getenv(s.envName()))
		if raw == "" {
			continue
		}
		if err := s.parse(&c, raw); err != nil {
			return Config{}, fmt.Errorf("invalid %s %q: %v", s.envName(), raw, err)
		}
		c.setOrigin(s, s.envName())
	}

	if fs != nil {
		for _, s := range settings {
			if !fs.Changed(s.flagName()) {
				continue
			}
			var err error
			switch {
			case s.str != nil:
				*s.str(&c), err = fs.GetString(s.flagName())
			case s.dur != nil:
				// BindFlags's flags take days too; a caller's own
				// pflag duration flag is read as pflag reads it.
				if dv, ok := fs.Lookup(s.flagName()).Value.(*DurationValue); ok {
					*s.dur(&c) = dv.Duration()
				} else {
					*s.dur(&c), err = fs.GetDuration(s.flagName())
				}
			case s.num != nil:
				*s.num(&c), err = fs.GetInt(s.flagName())
			case s.list != nil:
				var l []string
				if l, err = fs.GetStringSlice(s.flagName()); err == nil {
					*s.list(&c) = splitList(strings.Join(l, ","))
				}
			case s.flag != nil:
				*s.flag(&c), err = fs.GetBool(s.flagName())
			}
			if err != nil {
				return Config{}, fmt.Errorf("flag --%s: %v", s.flagName(), err)
			}
			c.setOrigin(s, "--"+s.flagName())
		}
	}

	if err := c.loadWebhookSecrets(getenv); err != nil {
		return Config{}, err
	}
	if err := c.validate(stores); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parse sets the setting from text (environment or YAML scalar). The error
// says what was wanted; the caller adds which setting and where.
func (s setting) parse(c *Config, raw string) error {
	switch {
	case s.dur != nil:
		d, err := ParseDuration(raw)
		if err != nil {
			return err
		}
		*s.dur(c) = d
	case s.num != nil:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("want a whole number such as 5")
		}
		*s.num(c) = n
	case s.list != nil:
		*s.list(c) = splitList(raw)
	case s.flag != nil:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		*s.flag(c) = b
	default:
		*s.str(c) = raw
	}
	return nil
}

func (c *Config) setOrigin(s setting, where string) {
	c.origins[s.key] = origin{where: where, value: c.display(s)}
}

// splitList reads a list setting's text: comma-separated, blanks around
// entries and empty entries dropped.
func splitList(raw string) []string {
	var out []string
	for _, e := range strings.Split(raw, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// display renders a setting's current value the way errors quote it.
func (c *Config) display(s setting) string {
	switch {
	case s.list != nil:
		return strconv.Quote(strings.Join(*s.list(c), ","))
	case s.dur != nil:
		return strconv.Quote(s.dur(c).String())
	case s.num != nil:
		return strconv.Itoa(*s.num(c))
	case s.flag != nil:
		return strconv.FormatBool(*s.flag(c))
	case s.key == "redis_url":
		return strconv.Quote(redactURL(*s.str(c)))
	default:
		return strconv.Quote(*s.str(c))
	}
}

// redactURL hides a password in a URL so that errors and logs never show it.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return "(unparsable URL with credentials)"
		}
		return raw
	}
	return u.Redacted()
}

// invalid formats a validation error. The origin is named only while the
// value is still the one that layer set, so that a value changed in code
// after Load is not blamed on the environment.
func (c *Config) invalid(key, why string) error {
	s, _ := lookupSetting(key)
	v := c.display(s)
	if o, ok := c.origins[key]; ok && o.value == v {
		return fmt.Errorf("invalid %s %s (from %s): %s", key, v, o.where, why)
	}
	return fmt.Errorf("invalid %s %s: %s", key, v, why)
}

// Validate checks every setting, puts enumerated values in their canonical
// spelling and fills in the derived ones (Issuer, Audience, Catalog). It
// stops at the first problem so that the message is one actionable line.
//
// Derived settings are filled only while empty: after changing Listen on
// a validated Config, clear Issuer (and Audience) to derive them again.
// The store must be one of DefaultStores.
func (c *Config) Validate() error { return c.validate(DefaultStores) }

// validate is Validate with the store backends the caller can open.
func (c *Config) validate(stores []string) error {
	if err := checkListen(c.Listen); err != nil {
		return c.invalid("listen", "want host:port, e.g. 127.0.0.1:8080"+err.Error())
	}
	if strings.TrimSpace(c.DataDir) == "" || strings.ContainsRune(c.DataDir, 0) {
		return c.invalid("data_dir", "must be a directory path")
	}

	if err := c.validateServing(); err != nil {
		return err
	}

	if c.Issuer == "" {
		c.Issuer = DefaultIssuer(c.Listen)
		if c.TLSCert != "" {
			c.Issuer = "https://" + strings.TrimPrefix(c.Issuer, "http://")
		}
	} else {
		iss, ok := canonicalIssuer(c.Issuer)
		if !ok {
			return c.invalid("issuer", "must be an absolute http or https URL without query or fragment, e.g. https://auth.example.com")
		}
		c.Issuer = iss
	}
	if c.Audience == "" {
		c.Audience = c.Issuer
	} else if !printable(c.Audience) {
		return c.invalid("audience", "must be printable ASCII without spaces, usually the URL of the API")
	}

	if c.TokenTTL < MinTokenTTL || c.TokenTTL > MaxTokenTTL {
		return c.invalid("token_ttl", fmt.Sprintf("must be between %s and %s", MinTokenTTL, MaxTokenTTL))
	}
	if c.MaxKeyTokenTTL == 0 {
		c.MaxKeyTokenTTL = c.TokenTTL
	}
	if c.MaxKeyTokenTTL < c.TokenTTL || c.MaxKeyTokenTTL > MaxTokenTTL {
		return c.invalid("max_token_ttl", fmt.Sprintf("must be between token_ttl (%s) and %s", c.TokenTTL, MaxTokenTTL))
	}
	if err := checkAudiencesAllowed(c.AudiencesAllowed); err != nil {
		return c.invalid("audiences_allowed", err.Error())
	}
	if c.MaxKeyLifetime != 0 && (c.MaxKeyLifetime < MinMaxKeyLifetime || c.MaxKeyLifetime > MaxMaxKeyLifetime) {
		return c.invalid("max_key_lifetime", "must be 0 (none) or between "+days(MinMaxKeyLifetime)+" and "+days(MaxMaxKeyLifetime)+", e.g. 90d")
	}
	if c.KeyExpiryWarning < 0 || c.KeyExpiryWarning > MaxKeyExpiryWarning {
		return c.invalid("key_expiry_warning", "must be between 0 (never) and "+days(MaxKeyExpiryWarning)+", e.g. 7d")
	}
	if err := checkMetadataClaims(c.MetadataClaims); err != nil {
		return c.invalid("metadata_claims", err.Error())
	}
	if !canonical(&c.SigningAlg, signing.Algorithms) {
		return c.invalid("signing_alg", "allowed values are "+strings.Join(signing.Algorithms, ", "))
	}
	if c.SigningKeyPrepublish < MinSigningKeyPrepublish || c.SigningKeyPrepublish > MaxSigningKeyPrepublish {
		return c.invalid("signing_key_prepublish", fmt.Sprintf("must be between %s (twice the JWKS max-age plus verify's refresh interval) and %s", MinSigningKeyPrepublish, days(MaxSigningKeyPrepublish)))
	}
	if r := c.SigningKeyRotation; r != 0 && (r < MinSigningKeyRotation || r > MaxSigningKeyRotation || r <= c.SigningKeyPrepublish) {
		return c.invalid("signing_key_rotation", fmt.Sprintf("must be 0 (manual only) or between %s and %s, and longer than signing_key_prepublish", days(MinSigningKeyRotation), days(MaxSigningKeyRotation)))
	}
	if c.MaxKeysPerTeam < MinMaxKeysPerTeam || c.MaxKeysPerTeam > MaxMaxKeysPerTeam {
		return c.invalid("max_keys_per_team", fmt.Sprintf("must be between %d and %d", MinMaxKeysPerTeam, MaxMaxKeysPerTeam))
	}
	if !canonical(&c.LogLevel, logLevels) {
		return c.invalid("log_level", "allowed values are "+strings.Join(logLevels, ", "))
	}
	if !canonical(&c.LogFormat, logFormats) {
		return c.invalid("log_format", "allowed values are "+strings.Join(logFormats, ", "))
	}
	if c.ShutdownTimeout < MinShutdownTimeout || c.ShutdownTimeout > MaxShutdownTimeout {
		return c.invalid("shutdown_timeout", fmt.Sprintf("must be between %s and %s", MinShutdownTimeout, MaxShutdownTimeout))
	}

	if !canonical(&c.Store, stores) {
		return c.invalid("store", "allowed values are "+strings.Join(stores, ", "))
	}
	if c.StoreTimeout < MinStoreTimeout || c.StoreTimeout > MaxStoreTimeout {
		return c.invalid("store_timeout", fmt.Sprintf("must be between %s and %s", MinStoreTimeout, MaxStoreTimeout))
	}
	if c.PprofListen != "" {
		if err := checkListen(c.PprofListen); err != nil {
			return c.invalid("pprof_listen", "want host:port, e.g. 127.0.0.1:6060")
		}
	}
	if c.MetricsListen != "" {
		if err := checkListen(c.MetricsListen); err != nil {
			return c.invalid("metrics_listen", "want host:port, e.g. 127.0.0.1:9090"+err.Error())
		}
		if c.MetricsListen == c.Listen || c.MetricsListen == c.PprofListen {
			return c.invalid("metrics_listen", "must differ from listen and pprof_listen: metrics need a listener of their own")
		}
	}
	if c.RedisKeyCache < 0 || c.RedisKeyCache > MaxRedisKeyCache {
		return c.invalid("redis_key_cache", fmt.Sprintf("must be between 0s (off) and %s", MaxRedisKeyCache))
	}
	if c.BoltKeyCacheSize < MinRedisKeyCacheSize || c.BoltKeyCacheSize > MaxRedisKeyCacheSize {
		return c.invalid("bolt_key_cache_size", fmt.Sprintf("must be between %d and %d", MinRedisKeyCacheSize, MaxRedisKeyCacheSize))
	}
	if c.RedisKeyCacheSize < MinRedisKeyCacheSize || c.RedisKeyCacheSize > MaxRedisKeyCacheSize {
		return c.invalid("redis_key_cache_size", fmt.Sprintf("must be between %d and %d (redis_key_cache: 0s turns the cache off)", MinRedisKeyCacheSize, MaxRedisKeyCacheSize))
	}
	if c.StatusListTTL < MinStatusListTTL || c.StatusListTTL > MaxStatusListTTL {
		return c.invalid("status_list_ttl", fmt.Sprintf("must be between %s and %s", MinStatusListTTL, MaxStatusListTTL))
	}
	if c.AuditRetention < MinAuditRetention || c.AuditRetention > MaxAuditRetention {
		return c.invalid("audit_retention", "must be between 1d and 3650d, e.g. 90d")
	}
	if c.LastUsedWriteRate < MinLastUsedWriteRate || c.LastUsedWriteRate > MaxLastUsedWriteRate {
		return c.invalid("last_used_write_rate", fmt.Sprintf("must be between %d and %d", MinLastUsedWriteRate, MaxLastUsedWriteRate))
	}
	if c.IntrospectionRate < MinIntrospectionRate || c.IntrospectionRate > MaxIntrospectionRate {
		return c.invalid("introspection_rate", fmt.Sprintf("must be between %d and %d", MinIntrospectionRate, MaxIntrospectionRate))
	}
	if c.RevocationRate < MinRevocationRate || c.RevocationRate > MaxRevocationRate {
		return c.invalid("revocation_rate", fmt.Sprintf("must be between %d and %d", MinRevocationRate, MaxRevocationRate))
	}
	for _, q := range []struct {
		key string
		raw string
		out *quota.Policy
	}{{"token_quota_per_key", c.TokenQuotaPerKey, &c.KeyQuota}, {"token_quota_per_team", c.TokenQuotaPerTeam, &c.TeamQuota}} {
		p, err := quota.Parse(q.raw)
		if err != nil {
			return c.invalid(q.key, "want "+quota.Syntax)
		}
		*q.out = p
	}
	for _, b := range []struct {
		key string
		v   int
	}{{"auth_failure_burst", c.AuthFailureBurst}, {"auth_failure_source_burst", c.AuthFailureSourceBurst}} {
		if b.v < 0 || b.v > MaxAuthFailureBurst {
			return c.invalid(b.key, fmt.Sprintf("must be between 0 (off) and %d", MaxAuthFailureBurst))
		}
	}
	for _, r := range []struct {
		key string
		v   int
	}{{"auth_failure_rate", c.AuthFailureRate}, {"auth_failure_source_rate", c.AuthFailureSourceRate}} {
		if r.v < MinAuthFailureRate || r.v > MaxAuthFailureRate {
			return c.invalid(r.key, fmt.Sprintf("must be between %d and %d", MinAuthFailureRate, MaxAuthFailureRate))
		}
	}
	c.TrustedProxyPrefixes = nil
	for _, e := range c.TrustedProxies {
		p, err := clientaddr.ParsePrefix(e)
		if err != nil {
			return c.invalid("trusted_proxies", "entry "+err.Error())
		}
		c.TrustedProxyPrefixes = append(c.TrustedProxyPrefixes, p)
	}
	if err := checkFrameAncestors(&c.ConsoleFrameAncestors); err != nil {
		return c.invalid("console_frame_ancestors", err.Error())
	}
	if !canonical(&c.AccessLog, AccessLogModes) {
		return c.invalid("access_log", "allowed values are "+strings.Join(AccessLogModes, ", "))
	}
	if !canonical(&c.AccessLogOAuth, AccessLogModes) {
		return c.invalid("access_log_oauth", "allowed values are "+strings.Join(AccessLogModes, ", "))
	}
	if !validRedisPrefix(c.RedisPrefix) {
		return c.invalid("redis_prefix", "use 1–64 characters of A-Z a-z 0-9 : . _ - (no braces: they would break Redis Cluster hash tags)")
	}
	if c.Store == StoreRedis {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return c.invalid("redis_url", "store redis needs a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0")
		}
		if _, explicit := c.origins["issuer"]; !explicit {
			return fmt.Errorf("issuer is required with store redis: every instance behind one load balancer must use the same issuer (set KEYGATE_ISSUER or --issuer)")
		}
	}

	if err := c.validateWebhooks(); err != nil {
		return err
	}
	if err := c.validateTrustedIssuers(); err != nil {
		return err
	}

	switch {
	case c.Permissions != nil:
		cat, err := scopes.New(c.Permissions)
		if err != nil {
			return fmt.Errorf("invalid permissions: %w", err)
		}
		c.Catalog = cat
	case c.Catalog == nil:
		c.Catalog = scopes.Default()
	}
	return nil
}

func validRedisPrefix(p string) bool {
	if p == "" || len(p) > 64 {
		return false
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == ':' || b == '.' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// checkListen checks a host:port to listen on whose host DefaultIssuer can
// put in an issuer. A non-nil error carries a hint to append to the
// standard message.
func checkListen(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return errHint("")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' {
		return errHint(" (the port must be a number from 1 to 65535)")
	}
	if host == "" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return errHint(" (an IPv6 zone cannot appear in the issuer; set issuer explicitly)")
		}
		return nil
	}
	for i := 0; i < len(host); i++ {
		b := host[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.') {
			return errHint("")
		}
	}
	return nil
}

type errHint string

func (e errHint) Error() string { return string(e) }

// canonicalIssuer accepts what RFC 8414 §2 allows for an issuer (an http(s)
// URL with no query or fragment; plain http is tolerated for local use)
// and returns it without trailing slashes.
func canonicalIssuer(raw string) (string, bool) {
	if !printable(raw) || !(strings.HasPrefix(raw, "https://") || strings.HasPrefix(raw, "http://")) ||
		strings.ContainsAny(raw, "?#") {
		return "", false
	}
	iss := strings.TrimRight(raw, "/")
	u, err := url.Parse(iss)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	return iss, true
}

// printable: non-empty visible ASCII, the safe subset for values that end
// up in JWT claims and HTTP headers.
func printable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// canonical replaces *v by its spelling in allowed, ignoring case, and
// reports whether it was found.
func canonical(v *string, allowed []string) bool {
	for _, a := range allowed {
		if strings.EqualFold(*v, a) {
			*v = a
			return true
		}
	}
	return false
}

// days spells a whole number of days as the settings take it ("90d").
func days(d time.Duration) string { return fmt.Sprintf("%dd", d/(24*time.Hour)) }
