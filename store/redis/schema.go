package redis

// Schema versions, migrations and the compatibility record (issue 15 item
// 5). Every name is in the {kg} slot, so each script below sees them all:
//
//	P{kg}:schema             string: the schema version (decimal)
//	P{kg}:schema:migration   hash: progress of the running step
//	                         (step, after: the last client ID done)
//	P{kg}:schema:lease       string with expiry: the instance migrating
//	P{kg}:instances          sorted set: live instances' IDs scored by the
//	                         expiry of their heartbeat (unix ms)
//	P{kg}:instances:formats  hash: instance ID → JSON array of the formats
//	                         it reads
//	P{kg}:formats            set: the formats the store may hold, ever
//	                         written or allowed to be; it only grows
//
// Migrations run online: a Cluster's keys live in many slots, so a step
// cannot be one transaction. One instance at a time runs them (the lease,
// renewed with each batch); a step walks the keys in client-ID order and
// records the last one done after each batch, so an instance that takes
// over after a crash or a restart starts after it; every step is
// idempotent, so the batch in flight at a crash, done again, does no harm.
// The version is raised when the last step is done.
//
// The compatibility record: at start and at every Check (server runs it
// every few seconds), an instance prunes expired heartbeats, refuses to
// join if the store may hold a format it cannot read, renews its own
// heartbeat with the formats it reads, and computes the formats every
// live instance reads: those may be written, and join P{kg}:formats in the
// same script. So an instance that starts after a format became writable
// is refused before it reads a record, and one that is seen reading only
// older formats holds every newer one back until it is gone (it left, or
// its heartbeat expired).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// schemaVersion is the layout Migrate brings a store to. Version 0 (no
// record) is every store written before versions were recorded.
//
// schemaKnown is the newest version this build reads: 2 (level
// store.SchemaLevelAdminRoles) adds read-only admin keys (Key.Role) and
// management sessions, which a version-1 keygate would misread (a read-only
// key as a full admin). Opening a version-1 store leaves it at 1; only
// RaiseSchema raises it, before the first such record is written, so a
// store that never holds one can still go back to the previous release.
const schemaVersion = 1

// Version 3 (store.SchemaLevelKeyPolicy) adds key policies and SUSPENDED
// status entries, which a version-2 keygate would ignore.
//
// schemaKnown is a variable only so that tests can play a keygate of a
// previous release (which knew 1, or 2).
var schemaKnown = 1 + store.SchemaLevelKeyPolicy

// Defaults of SchemaOptions.
const (
	DefaultHeartbeatTTL = 30 * time.Second
	DefaultLeaseTTL     = 30 * time.Second
	// CheckEvery is how often serve runs Check: well inside the heartbeat
	// TTL, so a live instance never drops out between two checks.
	CheckEvery = 5 * time.Second
)

// SchemaOptions tune the compatibility record; the zero value is what
// keygate uses.
type SchemaOptions struct {
	// InstanceID names this instance's heartbeat. Default: random.
	InstanceID string
	// Formats are the formats this instance announces it reads. nil:
	// store.ReadableFormats and FormatCompactKeys. (Tests set fewer to
	// play an older build.)
	Formats []store.Format
	// Now is the clock of heartbeats. Default time.Now. Heartbeats expire
	// by the clocks of the instances that read them, so clock skew between
	// instances must stay well under HeartbeatTTL.
	Now func() time.Time
	// HeartbeatTTL is how long an instance counts as live after its last
	// Check. Default DefaultHeartbeatTTL.
	HeartbeatTTL time.Duration
	// LeaseTTL is how long a migration lease lasts without renewal.
	// Default DefaultLeaseTTL.
	LeaseTTL time.Duration
}

// compat is an instance's side of the compatibility record.
type compat struct {
	opts     SchemaOptions
	mu       sync.Mutex
	writable []store.Format // from the last Check
	migrated bool           // the store is at schemaVersion
	// batch is how many keys a migration step does between progress
	// records; hook, when set (tests), runs before each batch is written.
	batch int
	hook  func(ids []string) error
	// budget bounds the records one Check moves to the compact layout
	// (0: DefaultMigrationBudget); moved counts those found to move, for
	// tests (compactmigrate.go).
	budget int
	moved  int
}

// SetSchemaOptions replaces the options of the compatibility record; call
// it before the first Check (Open calls Check; New does not).
func (s *Store) SetSchemaOptions(o SchemaOptions) {
	c := newCompat(o)
	s.compatMu.Lock()
	s.compat = c
	s.compatMu.Unlock()
}

// newCompat is the compatibility record's state for o, its zero fields
// defaulted.
func newCompat(o SchemaOptions) *compat {
	if o.InstanceID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		o.InstanceID = hex.EncodeToString(b[:])
	}
	if o.Formats == nil {
		o.Formats = readableFormats()
	}
	o.Formats = slices.Clone(o.Formats)
	slices.Sort(o.Formats)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HeartbeatTTL <= 0 {
		o.HeartbeatTTL = DefaultHeartbeatTTL
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	return &compat{opts: o, batch: 500}
}

// schema is the compatibility record's state, made with the default
// options on first use. Writes ask it (Writable) from any goroutine, so
// it is made under the lock: two first uses at once share one state.
func (s *Store) schema() *compat {
	s.compatMu.Lock()
	defer s.compatMu.Unlock()
	if s.compat == nil {
		s.compat = newCompat(SchemaOptions{})
	}
	return s.compat
}

func (s *Store) schemaKey() string          { return s.prefix + "{kg}:schema" }
func (s *Store) migrationKey() string       { return s.prefix + "{kg}:schema:migration" }
func (s *Store) leaseKey() string           { return s.prefix + "{kg}:schema:lease" }
func (s *Store) instancesKey() string       { return s.prefix + "{kg}:instances" }
func (s *Store) instanceFormatsKey() string { return s.prefix + "{kg}:instances:formats" }
func (s *Store) formatsKey() string         { return s.prefix + "{kg}:formats" }

// SchemaVersion reads the store's schema version (0: none recorded) and
// refuses a newer one.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	v, err := s.rdb.Get(octx, s.schemaKey()).Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fail(octx, "read schema version", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("schema version %q at %s is not a version number", v, s.schemaKey())
	}
	if n > schemaKnown {
		return n, &store.SchemaError{Store: n, Known: schemaKnown}
	}
	return n, nil
}

// redisMigration is one step from version from to from+1.
type redisMigration struct {
	from int
	name string // recorded as the progress's step
	run  func(ctx context.Context, s *Store, c *compat, after string) error
}

var redisMigrations = []redisMigration{
	{0, "secret-index", migrateSecretIndex},
}

// errLeaseLost: another instance holds the migration lease now (ours
// expired); this one stops and leaves the rest to it.
var errLeaseLost = errors.New("migration lease lost to another instance")

// Migrate brings the store to schemaVersion if this instance gets the
// migration lease; without it (another instance migrates) it returns nil
// and a later Check tries again. A failure leaves the progress recorded
// for the next attempt, by this instance or another.
func (s *Store) Migrate(ctx context.Context) error {
	c := s.schema()
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if v >= schemaVersion {
		c.setMigrated()
		return nil
	}
	release, err := s.takeLease(ctx, s.leaseKey())
	if err != nil || release == nil {
		return err
	}
	defer release()
	// Read again under the lease: another instance may have finished.
	if v, err = s.SchemaVersion(ctx); err != nil {
		return err
	}
	for _, m := range redisMigrations {
		if m.from < v {
			continue
		}
		octx, cancel := s.op(ctx)
		prog, err := s.rdb.HGetAll(octx, s.migrationKey()).Result()
		cancel()
		if err != nil {
			return fail(octx, "read migration progress", err)
		}
		after := ""
		if prog["step"] == m.name {
			after = prog["after"]
		}
		if err := m.run(ctx, s, c, after); err != nil {
			return fmt.Errorf("migrate schema %d to %d (%s): %w", m.from, m.from+1, m.name, err)
		}
		octx, cancel = s.op(ctx)
		n, err := finishStepScript.Run(octx, s.rdb, []string{s.leaseKey(), s.schemaKey(), s.migrationKey()}, c.opts.InstanceID, m.from+1).Int()
		cancel()
		if err != nil {
			return fail(octx, "record schema version", err)
		}
		if n == 0 {
			return fmt.Errorf("migrate schema %d to %d: %w", m.from, m.from+1, errLeaseLost)
		}
		v = m.from + 1
	}
	c.setMigrated()
	return nil
}

func (c *compat) setMigrated() {
	c.mu.Lock()
	c.migrated = true
	c.mu.Unlock()
}

// takeLease takes the lease name for this instance, for LeaseTTL; it
// returns nil, nil when another instance holds it. release drops it only
// while it is still this instance's.
func (s *Store) takeLease(ctx context.Context, name string) (release func(), err error) {
	c := s.schema()
	octx, cancel := s.op(ctx)
	ok, err := s.rdb.SetNX(octx, name, c.opts.InstanceID, c.opts.LeaseTTL).Result()
	cancel()
	if err != nil {
		return nil, fail(octx, "take the lease "+name, err)
	}
	if !ok {
		return nil, nil
	}
	return func() {
		octx, cancel := s.op(context.WithoutCancel(ctx))
		defer cancel()
		_ = releaseLeaseScript.Run(octx, s.rdb, []string{name}, c.opts.InstanceID).Err()
	}, nil
}

// releaseLeaseScript drops the lease only while it is ours.
// KEYS: lease. ARGV: instance ID.
var releaseLeaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// progressScript records a step's progress and renews the lease, only
// while the lease is ours. KEYS: lease, progress. ARGV: instance ID, lease
// ms, step, after.
var progressScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'step', ARGV[3], 'after', ARGV[4])
return 1
`)

// finishStepScript raises the version and clears the progress, only while
// the lease is ours. KEYS: lease, schema, progress. ARGV: instance ID,
// version.
var finishStepScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
return 1
`)

// migrateSecretIndex (0 → 1) gives every key its secret index entries:
// the walk an earlier keygate made at every start of a store without
// P{kg}:secret:indexed, now once and resumable. A store whose index a
// keygate already built (the marker set) needs only its version recorded.
func migrateSecretIndex(ctx context.Context, s *Store, c *compat, after string) error {
	octx, cancel := s.op(ctx)
	done, err := s.rdb.Exists(octx, s.secretIndexedKey()).Result()
	cancel()
	if err != nil {
		return fail(octx, "check secret index", err)
	}
	if done == 1 {
		return nil
	}
	ids, err := s.scanIDs(ctx, "key", "")
	if err != nil {
		return fail(ctx, "walk keys", err)
	}
	sort.Strings(ids)
	i := sort.SearchStrings(ids, after)
	if i < len(ids) && ids[i] == after {
		i++
	}
	for ids = ids[i:]; len(ids) > 0; {
		batch := ids[:min(c.batch, len(ids))]
		ids = ids[len(batch):]
		if c.hook != nil {
			if err := c.hook(batch); err != nil {
				return err
			}
		}
		octx, cancel := s.op(ctx)
		keys, err := s.getMany(octx, batch)
		if err == nil {
			_, err = s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
				for _, k := range keys {
					for _, h := range store.SecretHashes(k) {
						p.Set(octx, s.secretKey(h), k.ClientID, 0)
					}
				}
				return nil
			})
		}
		if err != nil {
			cancel()
			return fail(octx, "write secret index", err)
		}
		n, err := progressScript.Run(octx, s.rdb, []string{s.leaseKey(), s.migrationKey()},
			c.opts.InstanceID, c.opts.LeaseTTL.Milliseconds(), "secret-index", batch[len(batch)-1]).Int()
		cancel()
		if err != nil {
			return fail(octx, "record migration progress", err)
		}
		if n == 0 {
			return errLeaseLost
		}
	}
	octx, cancel = s.op(ctx)
	defer cancel()
	if err := s.rdb.Set(octx, s.secretIndexedKey(), "1", 0).Err(); err != nil {
		return fail(octx, "mark secret index built", err)
	}
	return nil
}

// checkScript is one Check. KEYS: instances, instance formats, store
// formats. ARGV: instance ID, now (ms), heartbeat expiry (ms), JSON of the
// formats it reads. Returns {1, JSON of the writable formats} or {0, JSON
// of the store's formats it cannot read} (then it is not registered).
var checkScript = goredis.NewScript(`
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for _, id in ipairs(dead) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local mine = {}
for _, f in ipairs(cjson.decode(ARGV[4])) do mine[f] = true end
local missing = {}
for _, f in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if not mine[f] then table.insert(missing, f) end
end
if #missing > 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {0, cjson.encode(missing)}
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local count = {}
for _, id in ipairs(ids) do
  local fs = redis.call('HGET', KEYS[2], id)
  if fs then
    for _, f in ipairs(cjson.decode(fs)) do count[f] = (count[f] or 0) + 1 end
  end
end
local writable = {}
for f, n in pairs(count) do
  if n == #ids then
    table.insert(writable, f)
    redis.call('SADD', KEYS[3], f)
  end
end
return {1, cjson.encode(writable)}
`)

// Check implements store.CompatChecker: the heartbeat and the writable
// formats, then the migration if the store is behind and no other
// instance is running it. The refusal (a *store.FormatError) drops the
// writable formats too.
func (s *Store) Check(ctx context.Context) error { return s.check(ctx, true) }

// check is Check; move says whether it may move records to the compact
// layout (not in Open: a start must not wait for a walk of the keyspace).
func (s *Store) check(ctx context.Context, move bool) error {
	c := s.schema()
	now := c.opts.Now()
	// cjson encodes an empty Lua table as {}, so the arrays travel as
	// JSON built here and are read back leniently.
	mine, err := json.Marshal(append([]store.Format{}, c.opts.Formats...))
	if err != nil {
		return err
	}
	octx, cancel := s.op(ctx)
	res, err := checkScript.Run(octx, s.rdb, []string{s.instancesKey(), s.instanceFormatsKey(), s.formatsKey()},
		c.opts.InstanceID, now.UnixMilli(), now.Add(c.opts.HeartbeatTTL).UnixMilli(), string(mine)).Slice()
	cancel()
	if err != nil {
		return fail(octx, "check store compatibility", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("check store compatibility: unexpected answer %v", res)
	}
	ok, _ := res[0].(int64)
	raw, _ := res[1].(string)
	var formats []store.Format
	if raw != "{}" {
		if err := json.Unmarshal([]byte(raw), &formats); err != nil {
			return fmt.Errorf("check store compatibility: %w", err)
		}
	}
	slices.Sort(formats)
	c.mu.Lock()
	if ok == 1 {
		c.writable = formats
	} else {
		c.writable = nil
	}
	migrated := c.migrated
	c.mu.Unlock()
	if ok != 1 {
		return &store.FormatError{Missing: formats}
	}
	if !migrated {
		if err := s.Migrate(ctx); err != nil {
			return err
		}
	}
	return s.migrateCompact(ctx, move)
}

// checkFormatsReadOnly refuses, without writing, a store that may hold a
// format this build cannot read (Open with ReadOnly).
func (s *Store) checkFormatsReadOnly(ctx context.Context) error {
	octx, cancel := s.op(ctx)
	defer cancel()
	got, err := s.rdb.SMembers(octx, s.formatsKey()).Result()
	if err != nil {
		return fail(octx, "read the store's formats", err)
	}
	held := make([]store.Format, len(got))
	for i, f := range got {
		held[i] = store.Format(f)
	}
	if missing := store.MissingFormats(held, s.schema().opts.Formats); len(missing) > 0 {
		return &store.FormatError{Missing: missing}
	}
	return nil
}

// Writable implements store.FormatGate: the formats every live instance
// reads, as of the last Check.
func (s *Store) Writable(f store.Format) bool {
	c := s.schema()
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.writable, f)
}

// Leave implements store.CompatChecker.
func (s *Store) Leave(ctx context.Context) error {
	c := s.schema()
	octx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.rdb.TxPipelined(octx, func(p goredis.Pipeliner) error {
		p.ZRem(octx, s.instancesKey(), c.opts.InstanceID)
		p.HDel(octx, s.instanceFormatsKey(), c.opts.InstanceID)
		return nil
	})
	if err != nil {
		return fail(octx, "leave the compatibility record", err)
	}
	return nil
}

var _ store.CompatChecker = (*Store)(nil)

var _ store.SchemaRaiser = (*Store)(nil)

// raiseSchemaScript sets the version to ARGV[1] unless it is already as
// high, and never raises an unmigrated store (below ARGV[2]): the
// migration's own steps must run first. Returns the version it left.
var raiseSchemaScript = goredis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v < tonumber(ARGV[2]) then return -v - 1 end
if v < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]); return tonumber(ARGV[1]) end
return v
`)

// RaiseSchema implements store.SchemaRaiser: level L is version 1 + L.
// A keygate that knows only version 1 refuses the raised store with
// store.SchemaError at its next start (SchemaVersion). A running one is
// not told: its periodic Check compares formats and heartbeats, not the
// version (see docs/redis.md).
func (s *Store) RaiseSchema(ctx context.Context, level int) error {
	target := 1 + level
	if level < 0 || target > schemaKnown {
		return fmt.Errorf("raise schema to level %d: %w: this build knows version %d at most", level, store.ErrInvalid, schemaKnown)
	}
	raise := func() (int, error) {
		octx, cancel := s.op(ctx)
		defer cancel()
		n, err := raiseSchemaScript.Run(octx, s.rdb, []string{s.schemaKey()}, target, schemaVersion).Int()
		if err != nil {
			return 0, fail(octx, "raise schema", err)
		}
		return n, nil
	}
	n, err := raise()
	if err == nil && n < 0 {
		// Below version 1 the migration's steps have not run: run them
		// first (a version-2 store must hold version 1's secret index).
		if err := s.Migrate(ctx); err != nil {
			return fmt.Errorf("raise schema to version %d: %w", target, err)
		}
		n, err = raise()
	}
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("raise schema to version %d: the store is at version %d, not migrated yet", target, -n-1)
	}
	return nil
}
