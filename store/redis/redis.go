// Package redis is the shared store: several keygate instances behind one
// load balancer keep their keys, team limits, last-used times, pepper and
// signing keys in one Redis (single node, Sentinel or Cluster), through
// github.com/redis/go-redis/v9.
//
// Layout (P is the configurable prefix, {t} a Cluster hash tag):
//
//	P{t}:key:<client_id>   hash: rec (JSON), team, lu (last use, unix ms)
//	P{t}:team:<team_id>    sorted set: client IDs scored by creation (ms)
//	P{kg}:single:<name>    string: a create-if-absent singleton (pepper)
//	P{kg}:signing          string: the signing key set (JSON)
//	P{kg}:status:next      counter: the last status list index handed out
//	P{kg}:status:bits      bitmap: revoked status indices
//	Pdeny:<jti>            string with expiry: a revoked access token
//	                       (no hash tag: deny entries spread over the cluster)
//
// The tag t of a key is credential.TagOf(client_id): the team-derived tag
// that keygate's client IDs carry. So the token endpoint finds a key from
// its ID alone, in one round trip (HMGET), and the key and its team's index
// always share a hash slot, which lets one Lua script check the team limit
// and insert atomically even on Redis Cluster. Every multi-key change
// (create, delete) is a script; read-modify-writes (UpdateKey,
// UpdateSigningKeys) use WATCH/MULTI and retry.
//
// Durability: a create is acknowledged only after Redis executed it. That
// survives a Redis crash only with AOF and appendfsync always; with
// everysec the last second of writes can be lost.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
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
	// Timeout bounds each call (dial, read, write and the whole operation);
	// it replaces any timeouts given in the URL. Zero means DefaultTimeout.
	Timeout time.Duration
}

// Store is a store.Store on Redis.
type Store struct {
	rdb     goredis.UniversalClient
	cache   *keyCache // nil: every GetKey reads Redis
	prefix  string
	timeout time.Duration
	owned   bool // Close closes rdb
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
	if err := s.Ping(ctx); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("open redis store at %s: %w", redact(opts.URL), err)
	}
	if opts.KeyCache > 0 {
		s.EnableKeyCache(opts.KeyCache)
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
	return &Store{rdb: rdb, prefix: prefix, timeout: timeout}, nil
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

// Close implements store.Store.
func (s *Store) Close() error {
	if s.cache != nil {
		s.cache.close()
	}
	if s.owned {
		return s.rdb.Close()
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

func (s *Store) keyKey(clientID string) string {
	return s.prefix + "{" + credential.TagOf(clientID) + "}:key:" + clientID
}

func (s *Store) teamKey(teamID string) string {
	return s.prefix + "{" + credential.TeamTag(teamID) + "}:team:" + teamID
}

func (s *Store) singletonKey(name string) string { return s.prefix + "{kg}:single:" + name }
func (s *Store) signingKey() string              { return s.prefix + "{kg}:signing" }

// record is the stored JSON of a key, without the fields that live beside
// it in the hash (team, last use) and without the client ID (the key name).
// A private type: a change to store.Key's JSON tags cannot change the data.
type record struct {
	Name                    string    `json:"name"`
	Permissions             []string  `json:"permissions"`
	CreatedAt               time.Time `json:"created_at"`
	SecretHash              []byte    `json:"secret_hash"`
	PreviousSecretHash      []byte    `json:"previous_secret_hash,omitempty"`
	PreviousSecretExpiresAt time.Time `json:"previous_secret_expires_at"`
	SecretRotatedAt         time.Time `json:"secret_rotated_at"`
	StatusIndex             int64     `json:"status_index,omitempty"`
}

func encodeRecord(k store.Key) (string, error) {
	b, err := json.Marshal(record{
		Name:                    k.Name,
		Permissions:             k.Permissions,
		CreatedAt:               k.CreatedAt.UTC(),
		SecretHash:              k.SecretHash,
		PreviousSecretHash:      k.PreviousSecretHash,
		PreviousSecretExpiresAt: k.PreviousSecretExpiresAt.UTC(),
		SecretRotatedAt:         k.SecretRotatedAt.UTC(),
		StatusIndex:             k.StatusIndex,
	})
	return string(b), err
}

// decodeKey rebuilds a key from its hash fields (rec, team, lu).
func decodeKey(clientID string, vals []any) (store.Key, error) {
	rec, ok := vals[0].(string)
	if !ok {
		return store.Key{}, store.ErrNotFound
	}
	var r record
	if err := json.Unmarshal([]byte(rec), &r); err != nil {
		return store.Key{}, fmt.Errorf("decode key %s: %w", clientID, err)
	}
	team, _ := vals[1].(string)
	k := store.Key{
		ClientID:                clientID,
		TeamID:                  team,
		Name:                    r.Name,
		Permissions:             r.Permissions,
		CreatedAt:               utc(r.CreatedAt),
		SecretHash:              r.SecretHash,
		PreviousSecretHash:      r.PreviousSecretHash,
		PreviousSecretExpiresAt: utc(r.PreviousSecretExpiresAt),
		SecretRotatedAt:         utc(r.SecretRotatedAt),
		StatusIndex:             r.StatusIndex,
	}
	if lu, ok := vals[2].(string); ok && lu != "" {
		ms, err := strconv.ParseInt(lu, 10, 64)
		if err != nil {
			return store.Key{}, fmt.Errorf("decode key %s: last use: %w", clientID, err)
		}
		k.LastUsedAt = time.UnixMilli(ms).UTC()
	}
	return k, nil
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// createScript inserts a key unless its ID exists or its team is full.
// KEYS: key hash, team index. ARGV: rec, team, lu, score, client ID, max.
var createScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
local max = tonumber(ARGV[6])
if max > 0 and redis.call('ZCARD', KEYS[2]) >= max then return 'limit' end
if ARGV[3] == '' then
  redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'team', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'team', ARGV[2], 'lu', ARGV[3])
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
return 'ok'
`)

// CreateKey implements store.Store.
func (s *Store) CreateKey(ctx context.Context, k store.Key, maxPerTeam int) error {
	if err := store.CheckClientID(k); err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	rec, err := encodeRecord(k)
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ClientID, err)
	}
	lu := ""
	if !k.LastUsedAt.IsZero() {
		lu = strconv.FormatInt(k.LastUsedAt.UnixMilli(), 10)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	res, err := createScript.Run(ctx, s.rdb, []string{s.keyKey(k.ClientID), s.teamKey(k.TeamID)},
		rec, k.TeamID, lu, millis(k.CreatedAt), k.ClientID, max(maxPerTeam, 0)).Text()
	if err != nil {
		return fail(ctx, "create key "+k.ClientID, err)
	}
	switch res {
	case "ok":
		return nil
	case "exists":
		return fmt.Errorf("create key %s: %w", k.ClientID, store.ErrAlreadyExists)
	case "limit":
		if k.TeamID == "" {
			return fmt.Errorf("create key %s: %w: there are already %d admin keys", k.ClientID, store.ErrTeamLimit, maxPerTeam)
		}
		return fmt.Errorf("create key %s: %w: team %q already has %d keys", k.ClientID, store.ErrTeamLimit, k.TeamID, maxPerTeam)
	default:
		return fmt.Errorf("create key %s: unexpected script answer %q", k.ClientID, res)
	}
}

// GetKey implements store.Store: one HMGET, the token endpoint's only
// round trip.
func (s *Store) GetKey(ctx context.Context, clientID string) (store.Key, error) {
	if c := s.cache; c != nil {
		now := time.Now()
		if k, ok := c.get(clientID, now); ok {
			return k, nil
		}
		epoch := c.epoch.Load()
		k, err := s.readKey(ctx, clientID)
		if err == nil {
			c.put(k, epoch, now)
		}
		return k, err
	}
	return s.readKey(ctx, clientID)
}

// readKey is GetKey without the cache.
func (s *Store) readKey(ctx context.Context, clientID string) (store.Key, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	vals, err := s.rdb.HMGet(ctx, s.keyKey(clientID), "rec", "team", "lu").Result()
	if err != nil {
		return store.Key{}, fail(ctx, "get key "+clientID, err)
	}
	k, err := decodeKey(clientID, vals)
	if errors.Is(err, store.ErrNotFound) {
		return store.Key{}, fmt.Errorf("get key %s: %w", clientID, store.ErrNotFound)
	}
	return k, err
}

// ListKeys implements store.Store: the team index, then the keys in one
// pipeline (they share the team's slot).
func (s *Store) ListKeys(ctx context.Context, teamID string) ([]store.Key, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	ids, err := s.rdb.ZRange(ctx, s.teamKey(teamID), 0, -1).Result()
	if err != nil {
		return nil, fail(ctx, "list keys of team "+teamID, err)
	}
	keys, err := s.getMany(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list keys of team %s: %w", teamID, err)
	}
	// Deleted between the two reads, or a key of another team filed here
	// (impossible through this package): skip.
	out := make([]store.Key, 0, len(keys))
	for _, k := range keys {
		if k.TeamID == teamID {
			out = append(out, k)
		}
	}
	return out, nil
}

// getMany loads keys by ID in one pipeline, skipping missing ones, in order.
func (s *Store) getMany(ctx context.Context, ids []string) ([]store.Key, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*goredis.SliceCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.keyKey(id), "rec", "team", "lu")
		}
		return nil
	})
	if err != nil {
		return nil, fail(ctx, "load keys", err)
	}
	out := make([]store.Key, 0, len(ids))
	for i, c := range cmds {
		k, err := decodeKey(ids[i], c.Val())
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// ForEachKey implements store.Store. It SCANs every master for key hashes,
// then loads and visits them outside any Redis operation (fn may call the
// store). SCAN may report a key twice; each is visited once.
func (s *Store) ForEachKey(ctx context.Context, fn func(store.Key) error) error {
	ids, err := s.scanIDs(ctx, "key", "")
	if err != nil {
		return fail(ctx, "walk keys", err)
	}
	const batch = 200
	for len(ids) > 0 {
		n := min(batch, len(ids))
		octx, cancel := s.op(ctx)
		keys, err := s.getMany(octx, ids[:n])
		cancel()
		if err != nil {
			return fmt.Errorf("walk keys: %w", err)
		}
		for _, k := range keys {
			if err := fn(k); err != nil {
				return err
			}
		}
		ids = ids[n:]
	}
	return nil
}

// scanIDs SCANs every master (all of them on Cluster) for this store's
// names of one kind, P{t}:<kind>:<id>, whose ID starts with idPrefix ("" for
// all), and returns those IDs, each once: SCAN may report a name twice. The
// prefix is part of the MATCH pattern, so Redis filters the names itself and
// only matching ones travel; it still visits every name of the keyspace. The
// walk as a whole has no deadline beyond ctx (its length grows with the
// keyspace); each SCAN command is bounded by the client's timeouts.
func (s *Store) scanIDs(ctx context.Context, kind, idPrefix string) ([]string, error) {
	pattern := globEscape(s.prefix) + "{*}:" + kind + ":" + globEscape(idPrefix) + "*"
	head := s.prefix + "{"
	marker := "}:" + kind + ":"
	seen := map[string]bool{}
	var ids []string
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			// The glob's {*} may stretch past the tag's "}" (a name whose ID
			// holds the marker): the tag ends at the first "}", as Cluster
			// reads it, and the marker must follow right there.
			rest, ok := strings.CutPrefix(iter.Val(), head)
			if !ok {
				continue
			}
			i := strings.IndexByte(rest, '}')
			if i < 0 || !strings.HasPrefix(rest[i:], marker) {
				continue
			}
			if id := rest[i+len(marker):]; strings.HasPrefix(id, idPrefix) && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		return iter.Err()
	}
	if cc, ok := s.rdb.(*goredis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster runs concurrently; ids is shared
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
		return ids, err
	}
	return ids, scan(ctx, s.rdb)
}

// Teams implements store.Store by SCANning for team indexes, then counting
// the page's teams with ZCARD. Teams are implicit (a team exists while its
// index holds a key), and no list of them can be kept atomically beside the
// indexes: on Cluster each team's index lives in its own team's slot, and a
// script may only touch one slot. So each call walks the keyspace once,
// with q.Prefix in the SCAN's MATCH pattern, and that walk grows with the
// whole keyspace, not with the page or the number of teams: about 2 s at
// 1.2M Redis names (1M keys, 200k teams), measured. Fine for an admin-only
// call, not for a hot path.
//
// The IDs found are filtered (the admin index, P{t}:team: with no team ID,
// and IDs not after q.After are dropped), sorted, and only then counted, in
// order, by pipelined ZCARDs of twice the teams still missing at a time
// (at most 1000; 500 without a limit), until q.Limit teams are collected:
// a page costs one SCAN and about q.Limit ZCARDs, not one per team. An
// index emptied between the SCAN and its ZCARD (Redis deletes an emptied
// sorted set) counts 0 and is skipped without taking a place in the page.
//
// It always reads Redis, never the key cache, so it reflects creates and
// deletes made through any instance.
func (s *Store) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	teams, err := s.scanIDs(ctx, "team", q.Prefix)
	if err != nil {
		return nil, fail(ctx, "list teams", err)
	}
	teams = slices.DeleteFunc(teams, func(id string) bool { return id == "" || id <= q.After })
	slices.Sort(teams) // byte order, as strings compare
	out := []store.TeamCount{}
	// On Cluster the client routes each ZCARD to its slot's node.
	for len(teams) > 0 && (q.Limit <= 0 || len(out) < q.Limit) {
		batch := 500
		if q.Limit > 0 {
			batch = min(2*(q.Limit-len(out)), 1000)
		}
		chunk := teams[:min(batch, len(teams))]
		teams = teams[len(chunk):]
		octx, cancel := s.op(ctx)
		cmds := make([]*goredis.IntCmd, len(chunk))
		_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
			for i, id := range chunk {
				cmds[i] = p.ZCard(octx, s.teamKey(id))
			}
			return nil
		})
		cancel()
		if err != nil {
			return nil, fail(ctx, "list teams", err)
		}
		for i, c := range cmds {
			if q.Limit > 0 && len(out) >= q.Limit {
				break
			}
			if n := c.Val(); n > 0 {
				out = append(out, store.TeamCount{TeamID: chunk[i], Keys: int(n)})
			}
		}
	}
	return out, nil
}

// globEscape escapes the glob metacharacters of s byte by byte, so that any
// bytes (not only valid UTF-8) match themselves in a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[]\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UpdateKey implements store.Store with WATCH/MULTI: if the key changes
// between the read and the write (a concurrent update or last-use write),
// the transaction fails and is retried with the new value.
func (s *Store) UpdateKey(ctx context.Context, clientID string, update func(store.Key) (store.Key, error)) (store.Key, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	name := s.keyKey(clientID)
	var out store.Key
	var updateErr error
	txf := func(tx *goredis.Tx) error {
		vals, err := tx.HMGet(ctx, name, "rec", "team", "lu").Result()
		if err != nil {
			return err
		}
		cur, err := decodeKey(clientID, vals)
		if err != nil {
			return err
		}
		next, err := update(cur)
		if err != nil {
			updateErr = err
			return nil
		}
		if next.ClientID != cur.ClientID || next.TeamID != cur.TeamID {
			return fmt.Errorf("%w: client ID and team cannot change", store.ErrInvalid)
		}
		rec, err := encodeRecord(next)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			if next.LastUsedAt.IsZero() {
				p.HSet(ctx, name, "rec", rec)
				p.HDel(ctx, name, "lu")
			} else {
				p.HSet(ctx, name, "rec", rec, "lu", next.LastUsedAt.UnixMilli())
			}
			// In the same transaction: every instance's cache drops it.
			p.Publish(ctx, s.keysChannel(), clientID)
			return nil
		})
		if err != nil {
			return err
		}
		out = next
		return nil
	}
	if s.cache != nil {
		defer s.cache.invalidate(clientID)
	}
	err := s.watch(ctx, name, txf)
	switch {
	case updateErr != nil:
		return store.Key{}, updateErr
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		return store.Key{}, fmt.Errorf("update key %s: %w", clientID, err)
	case err != nil:
		return store.Key{}, fail(ctx, "update key "+clientID, err)
	}
	return roundTrip(out)
}

// maxWatchRetries bounds how often a read-modify-write is retried when
// concurrent writes keep invalidating its WATCH.
const maxWatchRetries = 100

// watch runs txf under WATCH name (optimistic locking) and runs it again
// whenever a concurrent write to name made its transaction fail. A txf that
// refuses the change returns nil and reports why on its own, so the refusal
// ends the loop like a success.
func (s *Store) watch(ctx context.Context, name string, txf func(*goredis.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := s.rdb.Watch(ctx, txf, name)
		if !errors.Is(err, goredis.TxFailedErr) || attempt >= maxWatchRetries {
			return err
		}
	}
}

// roundTrip returns k as GetKey would (times at stored precision), sharing
// no memory with the caller's value.
func roundTrip(k store.Key) (store.Key, error) {
	rec, err := encodeRecord(k)
	if err != nil {
		return store.Key{}, err
	}
	lu := ""
	if !k.LastUsedAt.IsZero() {
		lu = strconv.FormatInt(k.LastUsedAt.UnixMilli(), 10)
	}
	return decodeKey(k.ClientID, []any{rec, k.TeamID, lu})
}

// deleteScript removes a key only if it belongs to the given team.
// KEYS: key hash, team index. ARGV: team, client ID.
// ARGV[3] is the invalidation channel: the delete and its announcement are
// one atomic step.
var deleteScript = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 'team') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
`)

// DeleteKey implements store.Store.
func (s *Store) DeleteKey(ctx context.Context, teamID, clientID string) error {
	if credential.TagOf(clientID) != credential.TeamTag(teamID) {
		// Keys are filed under their team's tag (store.CheckClientID), so
		// this ID cannot belong to this team — and the two Redis keys would
		// be in different Cluster slots.
		return fmt.Errorf("delete key %s: %w", clientID, store.ErrNotFound)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if s.cache != nil {
		defer s.cache.invalidate(clientID)
	}
	n, err := deleteScript.Run(ctx, s.rdb, []string{s.keyKey(clientID), s.teamKey(teamID)}, teamID, clientID, s.keysChannel()).Int()
	if err != nil {
		return fail(ctx, "delete key "+clientID, err)
	}
	if n == 0 {
		return fmt.Errorf("delete key %s: %w", clientID, store.ErrNotFound)
	}
	return nil
}

// touchScript moves lu forward, never back, and never recreates a key
// deleted since its use. KEYS: key hash. ARGV: unix ms.
// ARGV[2] is the invalidation channel, ARGV[3] the client ID.
var touchScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'lu', ARGV[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 1
`)

// TouchKeys implements store.Store: one script per key, all in one pipeline.
func (s *Store) TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	if len(lastUsed) == 0 {
		return ctx.Err()
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	// Make sure the script is cached on every node the pipeline reaches, so
	// EVALSHA inside it cannot fail with NOSCRIPT.
	if err := s.loadScript(ctx, touchScript); err != nil {
		return fail(ctx, "touch keys", err)
	}
	if s.cache != nil {
		defer func() {
			for id := range lastUsed {
				s.cache.invalidate(id)
			}
		}()
	}
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for id, t := range lastUsed {
			touchScript.EvalSha(ctx, p, []string{s.keyKey(id)}, t.UnixMilli(), s.keysChannel(), id)
		}
		return nil
	})
	if err != nil {
		return fail(ctx, "touch keys", err)
	}
	return nil
}

func (s *Store) loadScript(ctx context.Context, sc *goredis.Script) error {
	if cc, ok := s.rdb.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return sc.Load(ctx, c).Err()
		})
	}
	return sc.Load(ctx, s.rdb).Err()
}

// singletonScript: SET NX, then return whatever is stored.
var singletonScript = goredis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// CreateSingleton implements store.Store.
func (s *Store) CreateSingleton(ctx context.Context, name string, value []byte) ([]byte, error) {
	if len(value) == 0 {
		return nil, fmt.Errorf("create singleton %s: %w: empty value", name, store.ErrInvalid)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	v, err := singletonScript.Run(ctx, s.rdb, []string{s.singletonKey(name)}, value).Text()
	if err != nil {
		return nil, fail(ctx, "create singleton "+name, err)
	}
	return []byte(v), nil
}

// SigningKeys implements store.Store.
func (s *Store) SigningKeys(ctx context.Context) (store.SigningKeys, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return s.readSigning(ctx, s.rdb)
}

func (s *Store) readSigning(ctx context.Context, c goredis.Cmdable) (store.SigningKeys, error) {
	b, err := c.Get(ctx, s.signingKey()).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.SigningKeys{}, nil
	}
	if err != nil {
		return store.SigningKeys{}, fail(ctx, "load signing keys", err)
	}
	var ks store.SigningKeys
	if err := json.Unmarshal(b, &ks); err != nil {
		return store.SigningKeys{}, fmt.Errorf("decode signing keys: %w", err)
	}
	normalizeSigning(&ks)
	return ks, nil
}

func normalizeSigning(ks *store.SigningKeys) {
	if ks.Active != nil {
		ks.Active.CreatedAt = utc(ks.Active.CreatedAt)
	}
	for i := range ks.Retired {
		ks.Retired[i].CreatedAt = utc(ks.Retired[i].CreatedAt)
		ks.Retired[i].PublishUntil = utc(ks.Retired[i].PublishUntil)
	}
}

// UpdateSigningKeys implements store.Store with WATCH/MULTI and retries.
func (s *Store) UpdateSigningKeys(ctx context.Context, update func(store.SigningKeys) (store.SigningKeys, error)) (store.SigningKeys, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	name := s.signingKey()
	var out []byte
	var updateErr error
	txf := func(tx *goredis.Tx) error {
		cur, err := s.readSigning(ctx, tx)
		if err != nil {
			return err
		}
		next, err := update(cur)
		if err != nil {
			updateErr = err
			return nil
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		if _, err := tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, name, b, 0)
			return nil
		}); err != nil {
			return err
		}
		out = b
		return nil
	}
	err := s.watch(ctx, name, txf)
	switch {
	case updateErr != nil:
		return store.SigningKeys{}, updateErr
	case errors.Is(err, store.ErrUnavailable):
		return store.SigningKeys{}, err
	case err != nil:
		return store.SigningKeys{}, fail(ctx, "update signing keys", err)
	}
	var ks store.SigningKeys
	if err := json.Unmarshal(out, &ks); err != nil {
		return store.SigningKeys{}, err
	}
	normalizeSigning(&ks)
	return ks, nil
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
