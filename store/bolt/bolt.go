// Package bolt is keygate's embedded default store: a single bbolt file in
// the data directory, for the common case of one keygate instance with no
// database to run. Several instances sharing keys need store/redis instead;
// a bbolt file is locked by the one process that opened it.
//
// # Why bbolt fits the contract
//
// bbolt runs one writable transaction at a time, so every read-modify-write
// here (the team limit, create-if-absent, UpdateKey, singletons, signing
// keys) is simply one Update transaction: the check and the write cannot be
// interleaved with another writer. Commits fsync before returning, so a call
// that returned nil survives a crash or restart; NoSync is never set.
//
// # The free-page list
//
// Commits do not write bbolt's free-page list (NoFreelistSync); Close
// writes it once. bbolt writes the whole list at every commit otherwise, and
// on a large store that has churned the list is large: on 10 000 000 keys
// under the last-use flush (two commits every 250 ms) it reached 770 000 pages
// (6 MB per commit, written and fsynced), and each commit needs a
// contiguous run of pages for it, which the fragmented file seldom has, so
// the file grew at its end: from 7.7 to 11 GB within minutes
// (docs/scale.md). Nothing durable depends on the list: it is the pages no
// tree reaches, so a store that was not closed cleanly (a crash, a kill) is
// opened by walking every page to find them, which takes seconds on millions
// of keys (RebuiltFreePages).
//
// # Layout
//
// Open creates these top-level buckets:
//
//	meta        "schema" → "2" (or "3")        schema version and the record
//	            "formats" → JSON array         formats the file may hold,
//	                                           checked on open (schema.go)
//	keys        client ID → JSON key record    the source of truth
//	teams       "t"+team ID → nested bucket    per-team index: client ID → ""
//	singletons  name → raw bytes               create-if-absent (the pepper)
//	signing     "set" → JSON signing key set   one record, so rotation is atomic
//	status      "bits" → bitmap                revoked status indices, LSB first
//	            (bucket sequence)              the last status index handed out
//	deny        jti → expiry                   revoked access tokens; expiry is
//	                                           unix ms, 8 bytes big-endian
//	deny_expiry expiry ‖ jti → ""              the deny list by expiry, so the
//	                                           background prune reads only
//	                                           what it removes (status.go)
//	usage       "t"+team ID → nested bucket    usage per key (usage.go), made on
//	            'h'|'d' + start (unix s, 8 B   first use: hourly and daily counters,
//	            big-endian) + client ID →      outside the key records; pruned by
//	            tokens, failures (8 B each)    PruneUsage
//	audit       seq → audit event              the audit trail of every team
//	            (bucket sequence)              (audit.go); seq is 8 bytes
//	                                           big-endian, the event's cursor
//	auditteams  "t"+team ID → nested bucket    per-team index: seq → ""
//	webhooks    endpoint ID → JSON state       webhook delivery positions
//	            (created by the first save)    (webhook.go)
//	status_checks                              the status schedule
//	            at (unix ns, 8 B big-endian)   (schedule.go), made by its
//	            ‖ client ID → ""               first entry
//	secrets     HMAC(pepper, secret) → client  the secret index for
//	            ID, current and previous       KeyBySecretHash (secrets.go),
//	            secret of every key            written with each key change;
//	                                           built by the first Open of a
//	                                           file that lacks it
//	sessions,   management sessions, their     made by the first session
//	session_codes, one-time codes and a team   (sessions.go); a file holding
//	session_teams  index                       one, or a read-only admin
//	                                           key, is version 3
//
// The team index exists so that counting a team's keys (for the limit) and
// listing them cost the size of the team, not of the whole store. Admin keys
// (team "") live in the index bucket named "t"; the prefix is there because
// bbolt refuses empty bucket names. Nested buckets rather than composite
// "team\x00client" keys keep team IDs that contain any byte unambiguous. A
// team's bucket is dropped when its last key is deleted.
//
// The status counter is the status bucket's own bbolt sequence, not a
// stored value, so it is incremented inside the write transaction and never
// reused. Deny entries whose expiry has passed are pruned by the next
// DenyToken, so the bucket holds only tokens that could still be used.
//
// Records are encoded from private structs, not from store.Key's own JSON
// tags, so that an edit to the API types cannot silently change what is on
// disk.
//
// # Files
//
//	bolt.go     Open, Close, Ping; keys, teams, singletons and signing keys
//	records.go  the on-disk records and their encoding
//	status.go   the status list and the deny list
//	bulk.go     store.BulkLoader, for seeding
//	usage.go    usage per key (store.UsageStore)
//	audit.go    the audit trail
//	webhook.go  webhook delivery state
//	backup.go   online backup: a consistent copy of the file
//	schema.go   schema versions, migrations and the formats record
//	sessions.go management sessions, team erasure, schema levels
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

var _ store.Store = (*Store)(nil)

// DefaultLockTimeout is how long Open waits for the file lock. A second
// keygate on the same data directory should fail fast and say why, rather
// than hang (bbolt's own default is to wait forever).
const DefaultLockTimeout = time.Second

// ErrLocked is returned (wrapped) by Open when another process holds the
// file.
var ErrLocked = errors.New("in use by another keygate")

// Options tunes Open. The zero value is what keygate uses.
type Options struct {
	// LockTimeout bounds the wait for the exclusive file lock; zero or
	// negative means DefaultLockTimeout.
	LockTimeout time.Duration
	// KeyCacheSize is how many key records GetKey keeps decoded in memory
	// (keycache.go): 0 means DefaultKeyCacheSize, negative turns the cache
	// off.
	KeyCacheSize int
}

var (
	bucketMeta       = []byte("meta")
	bucketKeys       = []byte("keys")
	bucketTeams      = []byte("teams")
	bucketSingletons = []byte("singletons")
	bucketSigning    = []byte("signing")
	bucketStatus     = []byte("status") // "bits": revoked bitmap; sequence: last index
	bucketDeny       = []byte("deny")   // jti → expiry (unix ms, 8 bytes big-endian)
	// bucketDenyExpiry indexes the deny list by expiry: expiry (8 bytes
	// big-endian) ‖ jti → nothing, so pruning reads expired entries in
	// order from the first, never the whole list (status.go).
	bucketDenyExpiry = []byte("deny_expiry")

	metaSchema    = []byte("schema")
	signingRecKey = []byte("set")
)

// defaultForEachBatch is how many keys ForEachKey reads per read
// transaction. fn runs outside any transaction (see ForEachKey), so batches
// bound both the memory held and how long a reader pins old pages.
const defaultForEachBatch = 256

// defaultWriteChunk bounds how many keys one write transaction of
// TouchKeys, or deltas one of AddUsage, changes. bbolt cannot reuse a page
// within the transaction that freed it: every page a transaction copies on
// write comes from the free-page list as it was when the transaction began,
// or from the end of the file. The last-use flush on Close writes every
// pending key at once; at 10 000 000 keys with a million in use that was
// one transaction copying about a million leaf pages, and each stop grew
// the file by 3.4 GB, left as free pages that every later commit's
// free-page bookkeeping then paid for (docs/scale.md). In chunks, each
// transaction reuses the pages the one before it freed. A flush under load
// (at most last_used_write_rate keys a second) fits in one chunk.
const defaultWriteChunk = 4096

// Store is a store.Store on one bbolt file. It is safe for concurrent use.
type Store struct {
	db   *bbolt.DB
	path string
	// forEachBatch is a field, not the constant, so tests can cross batch
	// boundaries without writing hundreds of keys.
	forEachBatch int
	// writeChunk is defaultWriteChunk, a field for the same reason.
	writeChunk int
	// formats are the record formats the file may hold (schema.go).
	formats []store.Format
	// cache answers GetKey (the token path's read) from memory while no
	// write has happened since (keycache.go).
	cache *keyCache
	// listOwed is set once a commit has left the file without its
	// free-page list, which Close then writes ("The free-page list" above);
	// a process that only read leaves the file as it found it.
	listOwed         atomic.Bool
	rebuiltFreePages bool
}

// Open opens or creates the store file at path (mode 0600: it holds secret
// hashes and sealed private keys). Pass at most one Options; none means
// defaults. The parent directory must exist.
func Open(path string, opts ...Options) (*Store, error) {
	var o Options
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		return nil, fmt.Errorf("open store %s: got %d Options, want at most one", path, len(opts))
	}
	timeout := o.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}

	// A damaged file is refused before bbolt maps it: reading a page past
	// the end of a truncated file would be a SIGBUS, not an error.
	contents, meta, err := fileContents(path)
	if err != nil {
		return nil, err
	}
	rebuilt := contents == Fresh && meta.freelist == noFreelist
	// NoFreelistSync: see "The free-page list" above. A file without the
	// list (its last commit did not write it) is walked here, inside
	// bbolt.Open.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: timeout, NoFreelistSync: true})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (gave up waiting for the file lock after %v)", path, ErrLocked, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}

	// Read first (schema.go): a newer or unreadable file is refused
	// without a byte written, and a file that is up to date is not written
	// at all (a write transaction commits a new meta page even when it
	// changes nothing): opening a store to read it, or for a change that is
	// then refused (a master-key rotation with the wrong key), leaves the
	// file as it was, byte for byte.
	var formats []store.Format
	ready := false
	err = db.View(func(tx *bbolt.Tx) error {
		st, err := readSchema(tx)
		if err != nil {
			return err
		}
		ready, formats = upToDate(tx, st), st.formats
		return nil
	})
	st := &Store{db: db, path: path, forEachBatch: defaultForEachBatch, writeChunk: defaultWriteChunk, formats: formats,
		cache: newKeyCache(o.KeyCacheSize), rebuiltFreePages: rebuilt}
	if err == nil && !ready {
		err = st.commit(context.Background(), func(tx *bbolt.Tx) error {
			var err error
			formats, err = setUp(tx)
			return err
		})
		st.formats = formats
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return st, nil
}

// RebuiltFreePages reports whether Open found the file without its
// free-page list, because the process that wrote it last did not Close it,
// and so walked every page of the file to find the free ones: seconds on
// millions of keys, where a clean start reads one list.
func (s *Store) RebuiltFreePages() bool { return s.rebuiltFreePages }

// Close writes the free-page list if this process committed anything (so
// the next Open reads it instead of walking the file) and releases the file
// lock. It waits for running transactions.
func (s *Store) Close() error {
	var err error
	if s.listOwed.Swap(false) {
		err = s.db.Update(func(tx *bbolt.Tx) error {
			// Under the writer lock, as every commit reads it: this
			// commit, changing nothing else, writes the list.
			tx.DB().NoFreelistSync = false
			return nil
		})
		if err != nil {
			err = fmt.Errorf("write the free-page list: %w", err)
		}
	}
	if cerr := s.db.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Ping checks that the file is open and readable; with an embedded store
// that is all "reachable" can mean.
func (s *Store) Ping(ctx context.Context) error {
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketKeys) == nil {
			return errors.New("keys bucket missing")
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("ping store %s: %w", s.path, err)
		}
		return fmt.Errorf("ping store %s: %w: %w", s.path, store.ErrUnavailable, err)
	}
	return nil
}

// view and update refuse to start once ctx is done. They check again inside
// the transaction because Update may have waited for the writer lock: work
// the caller has given up on should not be committed behind its back. A
// started bbolt transaction cannot be interrupted, but none here does I/O
// beyond the final fsync, so none runs long.
func (s *Store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	return inTx(ctx, s.db.View, fn)
}

func (s *Store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	var keysRoot uint64
	err := s.commit(ctx, func(tx *bbolt.Tx) error {
		keysRoot = uint64(tx.Bucket(bucketKeys).Root())
		return fn(tx)
	})
	// Every cached key is stale once a write that changed a key record has
	// ended (keycache.go): bumped before update returns, so no caller that
	// saw the write acknowledged can be served what it replaced.
	if err != nil || s.keysChangedSince(keysRoot) {
		s.cache.writes.Add(1)
	}
	return err
}

// commit runs fn in a write transaction unless ctx is done, before or once
// the transaction holds the writer lock. Every write starts here: through
// update, or TouchKeys, which keeps the key cache valid its own way.
func (s *Store) commit(ctx context.Context, fn func(*bbolt.Tx) error) error {
	err := inTx(ctx, s.db.Update, fn)
	if err == nil {
		s.listOwed.Store(true)
	}
	return err
}

// inTx runs fn in a transaction of kind (bbolt's View or Update) unless
// ctx is done, before it starts or once it holds its lock.
func inTx(ctx context.Context, kind func(func(*bbolt.Tx) error) error, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return kind(func(tx *bbolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(tx)
	})
}

// keysChangedSince reports whether the keys bucket may differ from the one
// whose root page was root. bbolt copies on write: a transaction that
// changes a bucket gives it a new root page, never the one it replaced
// (freed pages are reused only by later transactions). So an unchanged root
// means no record changed — the usage counts, the audit trail, the deny
// list and the rest are written without making a single cached key stale.
// A bucket kept inline in its parent (root 0: a small store) has no root
// page to compare, and counts as changed; so does anything unreadable.
func (s *Store) keysChangedSince(root uint64) bool {
	if root == 0 {
		return true
	}
	changed := true
	_ = s.db.View(func(tx *bbolt.Tx) error {
		changed = uint64(tx.Bucket(bucketKeys).Root()) != root
		return nil
	})
	return changed
}

// CreateKey implements store.Store. The existence check, the team count and
// both writes happen in one write transaction, which is what makes the limit
// hold under concurrency.
func (s *Store) CreateKey(ctx context.Context, k store.Key, maxPerTeam int, audit ...store.AuditEvent) error {
	if err := store.CheckClientID(k); err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	ev, err := store.OneAuditEvent(audit)
	if err == nil && ev != nil {
		err = store.CheckAuditEvent(*ev, &k.TeamID, &k.ClientID)
	}
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ClientID, err)
	}
	val, err := encodeKey(k)
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ClientID, err)
	}
	id := []byte(k.ClientID)
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		keys := tx.Bucket(bucketKeys)
		if keys.Get(id) != nil {
			return store.ErrAlreadyExists
		}
		team, err := tx.Bucket(bucketTeams).CreateBucketIfNotExists(teamBucket(k.TeamID))
		if err != nil {
			return err
		}
		if maxPerTeam > 0 && countUpTo(team, maxPerTeam) >= maxPerTeam {
			if k.TeamID == "" {
				return fmt.Errorf("%w: there are already %d admin keys", store.ErrTeamLimit, maxPerTeam)
			}
			return fmt.Errorf("%w: team %q already has %d keys", store.ErrTeamLimit, k.TeamID, maxPerTeam)
		}
		if err := team.Put(id, []byte{}); err != nil {
			return err
		}
		if err := keys.Put(id, val); err != nil {
			return err
		}
		if err := indexSecrets(tx, store.Key{}, k); err != nil {
			return err
		}
		return appendAudit(tx, ev)
	})
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ClientID, err)
	}
	return nil
}

// countUpTo counts b's keys but stops at limit: the caller only needs to
// know whether the limit is reached.
func countUpTo(b *bbolt.Bucket, limit int) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil && n < limit; k, _ = c.Next() {
		n++
	}
	return n
}

// GetKey implements store.Store. It answers from the key cache when no
// write has ended since the entry was read (keycache.go), else from a read
// transaction.
func (s *Store) GetKey(ctx context.Context, clientID string) (store.Key, error) {
	if err := ctx.Err(); err != nil {
		return store.Key{}, fmt.Errorf("get key %s: %w", clientID, err)
	}
	epoch := s.cache.writes.Load() // before the transaction: see keycache.go
	touches := s.cache.touches.Load()
	rec, abs := s.cache.lookup(clientID, epoch)
	switch {
	case rec.found && rec.epoch == epoch:
		if k, err := rec.key(clientID); err == nil {
			return k, nil
		} // a value this cache wrote always decodes; else the file decides
	case abs.found && abs.epoch == epoch:
		// A missing key costs what a present one does: a copy and a
		// decode, of the decoy (store.Store's GetKey).
		_, _ = abs.key(clientID)
		return store.Key{}, store.KeyNotFound(clientID)
	}
	var k store.Key
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKeys).Get([]byte(clientID))
		if v == nil {
			// The same steps as a record: a memcmp or a decode, of the
			// decoy, remembered as an absence.
			_, _ = s.cache.fill(clientID, decoyRecords[b2i(store.DecoyAdmin(clientID))], abs, epoch, touches, true)
			return store.ErrNotFound
		}
		var err error
		k, err = s.cache.fill(clientID, v, rec, epoch, touches, false)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Key{}, store.KeyNotFound(clientID)
	case err != nil:
		return store.Key{}, fmt.Errorf("get key %s: %w", clientID, err)
	}
	return k, nil
}

// decoyRecords are store.DecoyKey(false) and (true) as this package
// stores keys.
var decoyRecords = [2][]byte{must(encodeKey(store.DecoyKey(false))), must(encodeKey(store.DecoyKey(true)))}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// getKey decodes the stored record, which yields a copy: nothing returned
// aliases bbolt's memory map, which is only valid inside the transaction.
func getKey(tx *bbolt.Tx, clientID string) (store.Key, error) {
	v := tx.Bucket(bucketKeys).Get([]byte(clientID))
	if v == nil {
		return store.Key{}, store.ErrNotFound
	}
	return decodeKey(v)
}

// ListKeys implements store.Store. Keys are sorted here rather than kept in
// creation order on disk: teams are small, and UpdateKey may change
// CreatedAt.
func (s *Store) ListKeys(ctx context.Context, teamID string) ([]store.Key, error) {
	out := []store.Key{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		team := tx.Bucket(bucketTeams).Bucket(teamBucket(teamID))
		if team == nil {
			return nil
		}
		return team.ForEach(func(id, _ []byte) error {
			k, err := getKey(tx, string(id))
			if err != nil {
				return fmt.Errorf("team index names key %s: %w (store file damaged?)", id, err)
			}
			out = append(out, k)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list keys of team %q: %w", teamID, err)
	}
	slices.SortStableFunc(out, func(a, b store.Key) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return compareStrings(a.ClientID, b.ClientID)
	})
	return out, nil
}

// Teams implements store.Store: one read transaction over the team index.
// Its buckets are named "t"+team ID and bbolt keeps keys in byte order, so
// they come out ordered by team ID already, and a page is a range of them:
// the cursor seeks to "t"+start, where start is the larger of q.Prefix and
// the least ID after q.After (q.After+"\x00"), and walks on while names
// still begin with "t"+q.Prefix, until q.Limit teams are collected. So a
// page costs the teams it lists and their keys, not every team in the
// store. The admin bucket ("t") is skipped; so is an empty team bucket
// (DeleteKey drops them, so none should be there), which does not count
// toward q.Limit. Each team is counted with a cursor, which sees exactly
// the entries the transaction sees, inline bucket or not; Bucket.Stats is
// page accounting (it reads committed pages and sums sub-buckets in), not a
// count this code should depend on.
func (s *Store) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	prefix := teamBucket(q.Prefix)
	seek := prefix
	if after := teamBucket(q.After + "\x00"); bytes.Compare(after, seek) > 0 {
		seek = after
	}
	out := []store.TeamCount{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		teams := tx.Bucket(bucketTeams)
		c := teams.Cursor()
		for name, v := c.Seek(seek); name != nil && bytes.HasPrefix(name, prefix); name, v = c.Next() {
			if q.Limit > 0 && len(out) >= q.Limit {
				break
			}
			if len(name) <= 1 {
				continue // "t": admin keys, not a team
			}
			team := teams.Bucket(name)
			if v != nil || team == nil {
				return fmt.Errorf("team index entry %q is not a bucket (store file damaged?)", name)
			}
			if n := countUpTo(team, math.MaxInt); n > 0 {
				out = append(out, store.TeamCount{TeamID: string(name[1:]), Keys: n})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ForEachKey implements store.Store. fn runs outside any transaction, on
// batches read one after another, so that fn may itself call the store
// (even write: a bbolt write transaction opened while the same goroutine
// holds a read transaction can deadlock on a remap). The price: a key
// created or deleted during the walk may or may not be visited; every key
// present throughout is visited exactly once.
func (s *Store) ForEachKey(ctx context.Context, fn func(store.Key) error) error {
	var after []byte
	// One batch's memory serves every batch: fn gets each key by value, and
	// a walk of every key each round should not hand the collector a
	// batch of large structs per batch as well.
	batch := make([]store.Key, 0, s.forEachBatch)
	for {
		clear(batch)
		batch = batch[:0]
		err := s.view(ctx, func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketKeys).Cursor()
			var id, v []byte
			if after == nil {
				id, v = c.First()
			} else if id, v = c.Seek(after); id != nil && bytes.Equal(id, after) {
				id, v = c.Next()
			}
			var last []byte // valid only inside the transaction
			for ; id != nil && len(batch) < s.forEachBatch; id, v = c.Next() {
				k, err := decodeKey(v)
				if err != nil {
					return fmt.Errorf("key %s: %w", id, err)
				}
				batch = append(batch, k)
				last = id
			}
			if last != nil {
				after = bytes.Clone(last)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("for each key: %w", err)
		}
		for _, k := range batch {
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(batch) < s.forEachBatch {
			return nil
		}
	}
}

// errIdentity refuses updates that would move a key: the team index is
// keyed by both IDs, and a "rename" would really be a delete plus a create
// that must go through the limit check.
var errIdentity = errors.New("client ID and team ID cannot be changed")

// UpdateKey implements store.Store. update runs inside the write
// transaction, so it must be quick and must not call the store (that would
// deadlock on bbolt's single writer lock). An error from update is returned
// as it is, unwrapped, since it is the caller's own.
func (s *Store) UpdateKey(ctx context.Context, clientID string, update func(store.Key) (store.Key, error), audit ...store.AuditEvent) (store.Key, error) {
	ev, err := store.OneAuditEvent(audit)
	if err != nil {
		return store.Key{}, fmt.Errorf("update key %s: %w", clientID, err)
	}
	var out store.Key
	var updateErr error
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		cur, err := getKey(tx, clientID)
		if err != nil {
			return err
		}
		next, err := update(cur)
		if err != nil {
			updateErr = err
			return err
		}
		if next.ClientID != cur.ClientID || next.TeamID != cur.TeamID {
			return errIdentity
		}
		val, err := encodeKey(next)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketKeys).Put([]byte(clientID), val); err != nil {
			return err
		}
		if err := indexSecrets(tx, cur, next); err != nil {
			return err
		}
		if ev != nil {
			e := *ev
			if err := store.CheckAuditEvent(e, &cur.TeamID, &clientID); err != nil {
				return err
			}
			e.Fields = store.ChangedFields(cur, next)
			if err := appendAudit(tx, &e); err != nil {
				return err
			}
		}
		// Decoding what was written returns exactly what GetKey would (UTC
		// times) and shares no memory with update's result.
		out, err = decodeKey(val)
		return err
	})
	if updateErr != nil {
		return store.Key{}, updateErr
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("update key %s: %w", clientID, err)
	}
	return out, nil
}

// DeleteKey implements store.Store. The team check uses the record itself,
// not the index, so a wrong team can never delete anything.
func (s *Store) DeleteKey(ctx context.Context, teamID, clientID string, audit ...store.AuditEvent) error {
	ev, err := store.OneAuditEvent(audit)
	if err == nil && ev != nil {
		err = store.CheckAuditEvent(*ev, &teamID, &clientID)
	}
	if err != nil {
		return fmt.Errorf("delete key %s of team %q: %w", clientID, teamID, err)
	}
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		k, err := getKey(tx, clientID)
		if err != nil {
			return err
		}
		if k.TeamID != teamID {
			return store.ErrNotFound
		}
		if k.IsFullAdmin() {
			// The count and the removal share this transaction.
			if n, err := fullAdmins(tx, 2); err != nil {
				return err
			} else if n < 2 {
				return store.ErrLastAdmin
			}
		}
		id := []byte(clientID)
		if err := tx.Bucket(bucketKeys).Delete(id); err != nil {
			return err
		}
		if err := indexSecrets(tx, k, store.Key{}); err != nil {
			return err
		}
		if ev != nil {
			e := *ev
			e.StatusIndex = k.StatusIndex
			if err := appendAudit(tx, &e); err != nil {
				return err
			}
		}
		teams := tx.Bucket(bucketTeams)
		name := teamBucket(teamID)
		team := teams.Bucket(name)
		if team == nil {
			return nil
		}
		if err := team.Delete(id); err != nil {
			return err
		}
		// Drop emptied team buckets so that teams that come and go do not
		// leave a trail behind.
		if first, _ := team.Cursor().First(); first == nil {
			return teams.DeleteBucket(name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete key %s of team %q: %w", clientID, teamID, err)
	}
	return nil
}

// TouchKeys implements store.Store in one write transaction (one fsync for
// the flush of many keys) per defaultWriteChunk keys, the keys in order
// (neighbouring records share pages); keys whose time would not advance
// are not rewritten. A chunk that fails leaves the ones before it written:
// the times only move forward, so the caller's retry of them all is safe.
// It is the one write that does not go through Store.update: it changes
// nothing but last-use times and keeps the key cache valid by replacing the
// entries of what it wrote (keycache.go), where update would make every
// entry stale.
func (s *Store) TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("touch keys: %w", err)
	}
	ids := slices.Sorted(maps.Keys(lastUsed))
	for chunk := range slices.Chunk(ids, s.writeChunk) {
		if err := s.touchKeys(ctx, chunk, lastUsed); err != nil {
			return err
		}
	}
	return nil
}

// touchKeys is TouchKeys for ids, in one transaction.
func (s *Store) touchKeys(ctx context.Context, ids []string, lastUsed map[string]time.Time) error {
	type written struct {
		id  string
		raw []byte
		key store.Key
	}
	var done []written
	err := s.commit(ctx, func(tx *bbolt.Tx) error {
		done = done[:0]
		keys := tx.Bucket(bucketKeys)
		for _, id := range ids {
			v := keys.Get([]byte(id))
			if v == nil {
				continue // deleted since it was used
			}
			k, ok := s.cache.decoded(id, v)
			if !ok {
				var err error
				if k, err = decodeKey(v); err != nil {
					return fmt.Errorf("key %s: %w", id, err)
				}
			}
			used := lastUsed[id]
			if !used.After(k.LastUsedAt) {
				continue
			}
			k.LastUsedAt = utc(used) // as decoding val would give it: the cache keeps k
			val, err := encodeKey(k)
			if err != nil {
				return fmt.Errorf("key %s: %w", id, err)
			}
			if err := keys.Put([]byte(id), val); err != nil {
				return err
			}
			done = append(done, written{id, val, k})
		}
		return nil
	})
	if err != nil {
		// Nothing was written; stale entries cost a re-read at most.
		s.cache.writes.Add(1)
		return fmt.Errorf("touch keys: %w", err)
	}
	s.cache.touches.Add(1)
	for _, w := range done {
		s.cache.touched(w.id, w.raw, w.key)
	}
	return nil
}

// CreateSingleton implements store.Store. An empty value is refused: it
// would be indistinguishable from "not set" on some backends, and no
// singleton keygate keeps (a pepper) may be empty.
func (s *Store) CreateSingleton(ctx context.Context, name string, value []byte) ([]byte, error) {
	if name == "" {
		return nil, errors.New("create singleton: empty name")
	}
	if len(value) == 0 {
		return nil, fmt.Errorf("create singleton %s: empty value", name)
	}
	var out []byte
	// Read first: a singleton is created once and read at every start,
	// and a read writes nothing to the file.
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketSingletons).Get([]byte(name)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	if err != nil || out != nil {
		if err != nil {
			return nil, fmt.Errorf("create singleton %s: %w", name, err)
		}
		return out, nil
	}
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSingletons)
		if v := b.Get([]byte(name)); v != nil {
			out = bytes.Clone(v)
			return nil
		}
		// bbolt keeps a reference to the value until commit; a private copy
		// means the caller's buffer cannot change what is written.
		out = bytes.Clone(value)
		return b.Put([]byte(name), bytes.Clone(value))
	})
	if err != nil {
		return nil, fmt.Errorf("create singleton %s: %w", name, err)
	}
	return out, nil
}

// CompareAndSwapSingleton implements store.Store: the comparison and the
// write are one write transaction.
func (s *Store) CompareAndSwapSingleton(ctx context.Context, name string, old, value []byte) (bool, error) {
	if name == "" {
		return false, fmt.Errorf("swap singleton: %w: empty name", store.ErrInvalid)
	}
	if len(value) == 0 {
		return false, fmt.Errorf("swap singleton %s: %w: empty value", name, store.ErrInvalid)
	}
	swapped := false
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSingletons)
		cur := b.Get([]byte(name))
		if cur == nil {
			return store.ErrNotFound
		}
		if !bytes.Equal(cur, old) {
			return nil
		}
		swapped = true
		return b.Put([]byte(name), bytes.Clone(value))
	})
	if err != nil {
		return false, fmt.Errorf("swap singleton %s: %w", name, err)
	}
	return swapped, nil
}

// SigningKeys implements store.Store.
func (s *Store) SigningKeys(ctx context.Context) (store.SigningKeys, error) {
	var out store.SigningKeys
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		out, err = getSigning(tx)
		return err
	})
	if err != nil {
		return store.SigningKeys{}, fmt.Errorf("get signing keys: %w", err)
	}
	return out, nil
}

func getSigning(tx *bbolt.Tx) (store.SigningKeys, error) {
	v := tx.Bucket(bucketSigning).Get(signingRecKey)
	if v == nil {
		return store.SigningKeys{}, nil
	}
	return decodeSigning(v)
}

// UpdateSigningKeys implements store.Store. As with UpdateKey, update runs
// inside the write transaction and must not call the store; its error is
// returned unwrapped. Concurrent first starts are safe because each one's
// update sees the previous one's result.
func (s *Store) UpdateSigningKeys(ctx context.Context, update func(store.SigningKeys) (store.SigningKeys, error)) (store.SigningKeys, error) {
	var out store.SigningKeys
	var updateErr error
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		cur, err := getSigning(tx)
		if err != nil {
			return err
		}
		next, err := update(cur)
		if err != nil {
			updateErr = err
			return err
		}
		val, err := encodeSigning(next)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketSigning).Put(signingRecKey, val); err != nil {
			return err
		}
		out, err = decodeSigning(val)
		return err
	})
	if updateErr != nil {
		return store.SigningKeys{}, updateErr
	}
	if err != nil {
		return store.SigningKeys{}, fmt.Errorf("update signing keys: %w", err)
	}
	return out, nil
}

// teamBucket names the index bucket of a team; see the package comment for
// the prefix.
func teamBucket(teamID string) []byte {
	return append([]byte{'t'}, teamID...)
}
