// Package redis is the shared store: several keygate instances behind one
// load balancer keep their keys, team limits, last-used times, pepper and
// signing keys in one Redis (single node, Sentinel or Cluster), through
// github.com/redis/go-redis/v9.
//
// # Layout
//
// P is the configurable prefix (Options.Prefix, default "keygate:"); the
// braces mark a Cluster hash tag, the part of a name Cluster hashes to pick
// its slot. records.go builds every one of these names.
//
//	P{t}:k                 hash: the records of the keys whose client IDs
//	                       carry tag t, in chunks of at most 64 bytes, and
//	                       so the team index too (compact.go)
//	Psx:<4 hex>            hash: the secret index in 65 536 buckets
//	                       (compact.go)
//	P{t}:key:<client_id>   the old layout, read until the migration to the
//	                       compact one is done (compactmigrate.go):
//	                       hash: rec (JSON), team, lu (last use, unix ms)
//	P{t}:team:<team_id>    (old layout) sorted set: client IDs scored by
//	                       creation (ms)
//	P{kg}:single:<name>    string: a create-if-absent singleton (pepper)
//	P{kg}:signing          string: the signing key set (JSON)
//	P{kg}:status:next      counter: the last status list index handed out
//	P{kg}:status:bits      bitmap: revoked status indices
//	P{kg}:keys:changed     pub/sub channel: IDs of changed keys (cache.go)
//	P{kg}:keys:created     pub/sub channel: IDs of created keys (cache.go)
//	P{kg}:webhook:<id>     string: a webhook endpoint's delivery state (JSON)
//	Pdeny:<jti>            string with expiry: a revoked access token
//	                       (no hash tag: deny entries spread over the cluster)
//	Psecret:<hex hash>     (old layout) string: the client ID holding that
//	                       secret hash, current or previous (no hash tag;
//	                       secrets.go says why it is written before and
//	                       removed after the key)
//	P{kg}:secret:indexed   string: "1" once every key has its entries
//	P{kg}:statuschecks     sorted set: the status schedule, "<unix ns>|
//	                       <client_id>" scored by unix ms (schedule.go)
//	P{kg}:schema…, P{kg}:instances…, P{kg}:formats
//	                       the schema version, migration progress and
//	                       lease, heartbeats and the formats the store may
//	                       hold (schema.go)
//	P{kg}:keys:compact…, P{kg}:formats:since
//	                       the compact layout's migration (compactmigrate.go)
//	P{t}:usage:<h|d>:<start>:<team_id>
//	                       hash with expiry: usage of a team's keys in one
//	                       hour or UTC day (start in unix seconds); fields
//	                       t:<client_id> (tokens), f:<client_id> (failed
//	                       authentications); usage.go
//	P{kg}:session:<id>     string with expiry: a management session (JSON)
//	P{kg}:session-code:<hex hash>
//	                       string with expiry: a console session's one-time
//	                       code → "<session id>|<expiry ms>", taken by GETDEL
//	P{kg}:sessions:<team_id>
//	                       sorted set: the team's session IDs by creation
//	P{kg}:sessions         sorted set: every session ID by expiry (pruning);
//	                       sessions.go
//	Pquota:<k|t>:<id>:<window>[:over]
//	                       counter with expiry: tokens leased against an
//	                       issuance quota of a key (k, client ID) or a team
//	                       (t, team ID) in one window, and whether its first
//	                       token over the limit was reported; quota.go
//	                       (no hash tag: one key per call)
//
// The audit trail (audit.go); s is a slot's tag (on Cluster one tag per
// slot that hashes to it, else kg):
//
//	P{t}:audit:<team_id>   sorted set: the team's events (JSON) scored by
//	                       their slot sequence number, the cursor
//	P{s}:audit:seq         counter: the slot's last sequence number
//	P{s}:audit:outbox      sorted set: events not yet in the stream
//	P{s}:audit:teams       sorted set: teams with events, scored by the
//	                       time of their oldest one (unix ms), for pruning
//	P{kg}:audit:all        sorted set: the operator-wide stream, scored by
//	                       P{kg}:audit:next (counter)
//	P{kg}:audit:moved      hash: slot tag → highest slot sequence moved
//
// The tag t of a key is credential.TagOf(client_id): the team-derived tag
// that keygate's client IDs carry. So the token endpoint finds a key from
// its ID alone, in one round trip (HMGET), and the key and its team's index
// (its bucket; in the old layout its team's sorted set) always share a hash
// slot, which lets one Lua script check the team limit and insert
// atomically even on Redis Cluster. Admin keys (team "") are in the empty
// team's tag's bucket (old layout: indexed under P{t}:team: with an empty
// team ID). The fixed tag kg puts the process-wide state in one slot, so the
// status counter and bitmap are read together in one MGET. Every multi-key
// change (create, delete) is a script; read-modify-writes (UpdateKey,
// UpdateSigningKeys) use WATCH/MULTI and retry.
//
// Durability: a create is acknowledged only after Redis executed it. That
// survives a Redis crash only with AOF and appendfsync always; with
// everysec the last second of writes can be lost.
//
// # Files
//
//	redis.go    Store, Options, Open/New/Close/Ping, client construction and
//	            the call policy: timeouts, retries, the WATCH retry loop,
//	            error wrapping, script loading
//	records.go  the names above and the old layout's key record (JSON)
//	compact.go  the compact layout: its names, its record, its Lua helpers
//	compactmigrate.go
//	            the migration from the old layout to the compact one
//	keys.go     CreateKey, GetKey, ListKeys, ForEachKey, UpdateKey,
//	            DeleteKey, TouchKeys, and the Lua scripts they run (each
//	            handles a key in either layout)
//	teams.go    Teams
//	signing.go  CreateSingleton, CompareAndSwapSingleton, SigningKeys, UpdateSigningKeys
//	status.go   the status list (NextStatusIndex, RevokeStatus, StatusList)
//	            and the deny list (DenyToken, TokenDenied)
//	bulk.go     store.BulkLoader, for seeding
//	audit.go    the audit trail: team trails, outboxes, the stream
//	webhook.go  webhook delivery state (WebhookState, SaveWebhookState)
//	cache.go    the optional local key cache and its pub/sub invalidation
//	secrets.go  the secret index (KeyBySecretHash) and its backfill
//	usage.go    usage per key (store.UsageStore)
//	sessions.go store.Sessions (management sessions) and store.TeamEraser
//	quota.go    the shared counters of issuance quotas (quota.Shared)
//	schema.go   the schema version, online migrations, heartbeats and the
//	            compatibility record (store.CompatChecker)
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// DefaultTimeout bounds one store call unless Options.Timeout says otherwise.
const DefaultTimeout = time.Second

// Options configures Open.
type Options struct {
	// URL is redis://[user:password@]host:port[/db] or rediss://… . A
	// master_name query parameter selects Sentinel (the host and addr
	// parameters are the sentinels); addr parameters without master_name
	// select Cluster (seed nodes).
	URL string
	// Cluster forces Cluster mode for a URL with a single seed node.
	Cluster bool
	// Prefix starts every key; it must not contain braces. Default "keygate:".
	Prefix string
	// KeyCache, when > 0, keeps key records in memory for up to this long,
	// invalidated through Redis pub/sub (see cache.go), so the token path
	// usually needs no round trip. 0 disables it.
	KeyCache time.Duration
	// KeyCacheSize bounds the records that cache holds (least recently
	// used give way); 0 means DefaultKeyCacheSize.
	KeyCacheSize int
	// Timeout bounds each call (dial, read, write and the whole operation);
	// it replaces any timeouts given in the URL. Zero means DefaultTimeout.
	Timeout time.Duration
	// ReadOnly opens without the writes Open otherwise makes (the secret
	// index's backfill), for `keygate store export`; it does not stop the
	// caller from writing.
	ReadOnly bool
	// Schema tunes the compatibility record (schema.go); zero: defaults.
	Schema SchemaOptions
}

// Store is a store.Store on Redis.
type Store struct {
	rdb     goredis.UniversalClient
	cache   *keyCache // nil: every GetKey reads Redis
	prefix  string
	timeout time.Duration
	owned   bool // Close closes rdb
	// cluster: rdb is a Cluster client, so the audit trail keeps an outbox
	// per slot (audit.go).
	cluster bool
	// singleNode: rdb talks to one Redis server, neither Cluster nor
	// Sentinel, so the key cache may keep records longer (cache.go).
	singleNode bool
	compat     *compat // schema.go; nil until first used (schema())
	compatMu   sync.Mutex
	// compactOnly: the migration to the compact layout is done
	// (compactmigrate.go), so reads skip the old one.
	compactOnly atomic.Bool
	// reads coalesces the token path's reads into pipelines (readbatch.go).
	reads *readBatcher
}

var _ store.Store = (*Store)(nil)

// Open connects to Redis as opts says and checks that it answers.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	rdb, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	s, err := New(rdb, opts.Prefix, opts.Timeout)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	s.owned = true
	// Before anything is written, so a refusal leaves nothing to undo.
	if err := s.checkKeyCacheAge(opts.KeyCache); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("open redis store at %s: %w", redact(opts.URL), err)
	}
	if err := s.Ping(ctx); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("open redis store at %s: %w", redact(opts.URL), err)
	}
	// A newer schema is refused before anything is written; then this
	// instance joins the compatibility record (refused if the store may
	// hold a format it cannot read) and migrates an older store (schema.go).
	// Read-only (export) checks the same and writes nothing: no heartbeat,
	// no migration. Check runs without ctx's deadline (serve gives
	// connecting 10 s): a first start may migrate a large store, each call
	// still bounded by the store's timeout, its progress kept if it fails.
	// The compact layout's migration (compactmigrate.go) is left to the
	// periodic checks: it walks the keyspace, and a start must not wait
	// for that.
	s.SetSchemaOptions(opts.Schema)
	if _, err := s.SchemaVersion(ctx); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("open redis store at %s: %w", redact(opts.URL), err)
	}
	if opts.ReadOnly {
		if err := s.checkFormatsReadOnly(ctx); err != nil {
			rdb.Close()
			return nil, fmt.Errorf("open redis store at %s: %w", redact(opts.URL), err)
		}
	} else if err := s.check(context.WithoutCancel(ctx), false); err != nil {
		if !errors.Is(err, store.ErrUnreadableFormat) {
			_ = s.Leave(ctx)
		}
		rdb.Close()
		return nil, fmt.Errorf("open redis store at %s: %w", redact(opts.URL), err)
	}
	if opts.KeyCache > 0 {
		s.startKeyCache(opts.KeyCache, opts.KeyCacheSize) // its age checked above
	}
	return s, nil
}

// New wraps an existing client (tests, or callers with their own options).
// Close does not close rdb.
func New(rdb goredis.UniversalClient, prefix string, timeout time.Duration) (*Store, error) {
	if prefix == "" {
		prefix = "keygate:"
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redis prefix %q must not contain braces (they are Cluster hash tags)", prefix)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	_, cluster := rdb.(*goredis.ClusterClient)
	// A Sentinel client is a *goredis.Client too; go-redis gives it the
	// address "FailoverClient" (FailoverOptions.clientOptions).
	c, single := rdb.(*goredis.Client)
	single = single && c.Options().Addr != "FailoverClient"
	return &Store{rdb: rdb, prefix: prefix, timeout: timeout, cluster: cluster, singleNode: single,
		reads: newReadBatcher()}, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.reads.close()
	if s.cache != nil {
		s.cache.close()
	}
	if s.owned {
		return s.rdb.Close()
	}
	return nil
}

// Ping implements store.Store: every master must answer.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var err error
	if cc, ok := s.rdb.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = s.rdb.Ping(ctx).Err()
	}
	if err != nil {
		return fail(ctx, "ping redis", err)
	}
	return nil
}

// op bounds one store call by the store's timeout, so a hung Redis turns
// into ErrUnavailable instead of a hung request.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// fail wraps a Redis error: cancellation stays what it is, anything else
// (refused, timed out, cluster down, loading…) means the backend did not
// answer as it should.
func fail(ctx context.Context, what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, store.ErrUnavailable, err)
}

// maxWatchRetries bounds how often a read-modify-write is retried when
// concurrent writes keep invalidating its WATCH.
const maxWatchRetries = 100

// watch runs txf under WATCH name (optimistic locking) and runs it again
// whenever a concurrent write to name made its transaction fail. A txf that
// refuses the change returns nil and reports why on its own, so the refusal
// ends the loop like a success.
// updateValue is the optimistic read-modify-write of the one string key
// name (WATCH, read, MULTI SET, retried by watch): next reads the current
// value through tx and returns the new encoding; its refusal (the
// caller's update function failing) comes back as refused, with nothing
// written. what names the value in errors.
func (s *Store) updateValue(ctx context.Context, name, what string, next func(tx *goredis.Tx) (b []byte, refused, err error)) ([]byte, error) {
	var out []byte
	var refusal error
	err := s.watch(ctx, func(tx *goredis.Tx) error {
		b, refused, err := next(tx)
		if err != nil {
			return err
		}
		if refused != nil {
			refusal = refused
			return nil
		}
		if _, err := tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, name, b, 0)
			return nil
		}); err != nil {
			return err
		}
		out = b
		return nil
	}, name)
	switch {
	case refusal != nil:
		return nil, refusal
	case errors.Is(err, store.ErrUnavailable):
		return nil, err
	case err != nil:
		return nil, fail(ctx, "update "+what, err)
	}
	return out, nil
}

func (s *Store) watch(ctx context.Context, txf func(*goredis.Tx) error, names ...string) error {
	for attempt := 0; ; attempt++ {
		err := s.rdb.Watch(ctx, txf, names...)
		if !errors.Is(err, goredis.TxFailedErr) || attempt >= maxWatchRetries {
			return err
		}
	}
}

func (s *Store) loadScript(ctx context.Context, sc *goredis.Script) error {
	if cc, ok := s.rdb.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return sc.Load(ctx, c).Err()
		})
	}
	return sc.Load(ctx, s.rdb).Err()
}

// limits points at the timeout and retry fields that every go-redis options
// type has, so the one policy below applies to single, Sentinel and Cluster
// clients alike.
type limits struct {
	dial, read, write, pool *time.Duration
	contextTimeouts         *bool
	retries, dialerRetries  *int
}

// apply bounds every step of a call by t, honours context deadlines, retries
// a failed command once, and dials once: a refused connection fails at once
// instead of after four 100 ms backoffs (unless ?dialer_retries= says
// otherwise).
func (l limits) apply(t time.Duration) {
	*l.dial, *l.read, *l.write, *l.pool = t, t, t, t
	*l.contextTimeouts, *l.retries = true, 1
	if *l.dialerRetries == 0 {
		*l.dialerRetries = 1
	}
}

func newClient(opts Options) (goredis.UniversalClient, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return nil, fmt.Errorf("redis URL %s: want redis:// or rediss://", redact(opts.URL))
	}
	q := u.Query()
	t := opts.Timeout
	switch {
	case q.Has("master_name"):
		fo, err := goredis.ParseFailoverURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("redis URL %s: %w", redact(opts.URL), err)
		}
		limits{&fo.DialTimeout, &fo.ReadTimeout, &fo.WriteTimeout, &fo.PoolTimeout,
			&fo.ContextTimeoutEnabled, &fo.MaxRetries, &fo.DialerRetries}.apply(t)
		return goredis.NewFailoverClient(fo), nil
	case q.Has("addr") || opts.Cluster:
		co, err := goredis.ParseClusterURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("redis URL %s: %w", redact(opts.URL), err)
		}
		limits{&co.DialTimeout, &co.ReadTimeout, &co.WriteTimeout, &co.PoolTimeout,
			&co.ContextTimeoutEnabled, &co.MaxRetries, &co.DialerRetries}.apply(t)
		return goredis.NewClusterClient(co), nil
	default:
		o, err := goredis.ParseURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("redis URL %s: %w", redact(opts.URL), err)
		}
		limits{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries}.apply(t)
		return goredis.NewClient(o), nil
	}
}

func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// SetLogger sends go-redis's own diagnostics (process-wide: go-redis has one
// logger) to log, so they follow keygate's log level and format.
func SetLogger(log *slog.Logger) { goredis.SetLogger(slogPrintf{log}) }

type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
