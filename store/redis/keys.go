package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// createScript inserts a key unless its ID exists in either layout or its
// team is full (its keys in both counted). KEYS: old key hash, old team
// index, bucket. ARGV: team, client ID, max, the creation channel (the
// creation is announced in the same atomic step, so every key cache drops
// a record of the ID's absence: cache.go), the key's field in the bucket,
// score (creation, ms), n: 0 writes the old layout with ARGV[8] the JSON
// record and ARGV[9] the last use, n > 0 writes the compact record whose
// n chunks follow. With an audit event, KEYS[4..7] and the ARGV after
// those are auditLua's.
var createScript = goredis.NewScript(auditLua + compactLua + `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[5]) == 1 then return 'exists' end
local max = tonumber(ARGV[3])
if max > 0 and redis.call('ZCARD', KEYS[2]) + kg_count(KEYS[3], ARGV[1]) >= max then return 'limit' end
local n = tonumber(ARGV[7])
local after
if n == 0 then
  if ARGV[9] == '' then
    redis.call('HSET', KEYS[1], 'rec', ARGV[8], 'team', ARGV[1])
  else
    redis.call('HSET', KEYS[1], 'rec', ARGV[8], 'team', ARGV[1], 'lu', ARGV[9])
  end
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2])
  after = 10
else
  local fs, kv = kg_fields(ARGV[5], n), {}
  for i = 1, n do kv[2 * i - 1] = fs[i]; kv[2 * i] = ARGV[7 + i] end
  redis.call('HSET', KEYS[3], unpack(kv))
  after = 8 + n
end
redis.call('PUBLISH', ARGV[4], ARGV[2])
if #KEYS > 3 then audit(4, after) end
return 'ok'
`)

// writeCompact reports whether new records go in the compact layout: once
// every live instance reads it (schema.go's compatibility record).
func (s *Store) writeCompact() bool { return s.Writable(FormatCompactKeys) }

// createArgs are createScript's KEYS and ARGV for k, without an audit
// event.
func (s *Store) createArgs(k store.Key, maxPerTeam int) ([]string, []any, error) {
	bucket, field := s.bucketOf(k.ClientID)
	keys := []string{s.keyKey(k.ClientID), s.teamKey(k.TeamID), bucket}
	args := []any{k.TeamID, k.ClientID, max(maxPerTeam, 0), s.keysCreatedChannel(), field, millis(k.CreatedAt)}
	if !s.writeCompact() {
		rec, err := encodeRecord(k)
		if err != nil {
			return nil, nil, err
		}
		lu := ""
		if !k.LastUsedAt.IsZero() {
			lu = strconv.FormatInt(k.LastUsedAt.UnixMilli(), 10)
		}
		return keys, append(args, 0, rec, lu), nil
	}
	chunks, err := encodeCompact(k)
	if err != nil {
		return nil, nil, err
	}
	args = append(args, len(chunks))
	for _, c := range chunks {
		args = append(args, c)
	}
	return keys, args, nil
}

// CreateKey implements store.Store.
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
	keys, args, err := s.createArgs(k, maxPerTeam)
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ClientID, err)
	}
	if ev != nil {
		a, err := auditArgs(*ev)
		if err != nil {
			return fmt.Errorf("create key %s: %w", k.ClientID, err)
		}
		keys, args = append(keys, s.auditKeys(k.TeamID)...), append(args, a...)
	}
	// The secret index first (another slot: see secrets.go), and the team
	// in the registry (teamregistry.go): a create that fails after them
	// leaves entries that find nothing, never a key they miss.
	if err := s.writeSecretIndex(ctx, k.ClientID, store.SecretHashes(k)); err != nil {
		return fmt.Errorf("create key %s: %w", k.ClientID, err)
	}
	if err := s.registerTeams(ctx, k.TeamID); err != nil {
		return fmt.Errorf("create key %s: %w", k.ClientID, err)
	}
	if s.cache != nil {
		// This instance reads its own write at once, message or not.
		defer s.cache.created(k.ClientID)
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	res, err := createScript.Run(octx, s.rdb, keys, args...).Text()
	if err != nil {
		return fail(octx, "create key "+k.ClientID, err)
	}
	switch res {
	case "ok":
		return nil
	case "exists":
		// The entries may be the existing key's own (an admin key
		// ensured on every start): left as they are.
		return fmt.Errorf("create key %s: %w", k.ClientID, store.ErrAlreadyExists)
	case "limit":
		// Fresh hashes of a key that is not stored: best effort (an entry
		// left behind finds nothing).
		_ = s.dropSecretIndex(ctx, k.ClientID, store.SecretHashes(k))
		if k.TeamID == "" {
			return fmt.Errorf("create key %s: %w: there are already %d admin keys", k.ClientID, store.ErrTeamLimit, maxPerTeam)
		}
		return fmt.Errorf("create key %s: %w: team %q already has %d keys", k.ClientID, store.ErrTeamLimit, k.TeamID, maxPerTeam)
	default:
		return fmt.Errorf("create key %s: unexpected script answer %q", k.ClientID, res)
	}
}

// GetKey implements store.Store: the token endpoint's only round trip (an
// HMGET of the key's first chunks, and of its old-layout hash in the same
// pipeline until the migration is done), shared with the reads of other
// requests of the moment (readbatch.go).
//
// A missing key costs what a present one does (store.Store's GetKey): the
// same round trip and decode (of the decoy) without the cache, and with it
// the same cache read and copy, since the cache keeps absences too.
func (s *Store) GetKey(ctx context.Context, clientID string) (store.Key, error) {
	if c := s.cache; c != nil {
		now := time.Now()
		switch k, r := c.get(clientID, now); r {
		case cachedKey:
			return k, nil
		case cachedAbsent:
			return store.Key{}, store.KeyNotFound(clientID)
		}
		epoch, absentEpoch := c.epoch.Load(), c.absentEpoch.Load()
		k, err := s.readKey(ctx, clientID)
		switch {
		case err == nil:
			c.put(k, epoch, now)
		case errors.Is(err, store.ErrNotFound):
			c.putAbsent(clientID, absentEpoch, now)
		}
		return k, err
	}
	return s.readKey(ctx, clientID)
}

// readKey is GetKey without the cache.
func (s *Store) readKey(ctx context.Context, clientID string) (store.Key, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	k, at, err := s.readBatched(ctx, clientID)
	missing := errors.Is(err, store.ErrNotFound)
	if err == nil || missing {
		// A missing key gets a found record's work, on the decoy. While a
		// key may be in either layout (until the migration is done), every
		// read does both layouts' decoding, the one it did not find on the
		// decoy: an old record's JSON decodes ten times slower than a
		// compact one, and that must not tell an ID that exists from one
		// that does not.
		d := b2i(store.DecoyAdmin(clientID))
		if !s.compactOnly.Load() && (missing || !at.old) {
			_, _ = decodeKey(decoyKeys[d].ClientID, decoyFields[d])
		}
		if missing || at.old {
			_, _ = decodeCompact(decoyKeys[d].ClientID, decoyChunks[d])
		}
	}
	if missing {
		return store.Key{}, store.KeyNotFound(clientID)
	}
	return k, err
}

// decoyKeys are store.DecoyKey(false) and (true), decoyChunks their
// compact records, decoyFields their old-layout hash fields as HMGET
// returns them (rec, team, lu).
var (
	decoyKeys   = [2]store.Key{store.DecoyKey(false), store.DecoyKey(true)}
	decoyChunks = [2][]string{mustCompact(decoyKeys[0]), mustCompact(decoyKeys[1])}
	decoyFields = [2][]any{decoyHash(decoyKeys[0]), decoyHash(decoyKeys[1])}
)

func decoyHash(k store.Key) []any {
	rec, err := encodeRecord(k)
	if err != nil {
		panic(err)
	}
	return []any{rec, k.TeamID, strconv.FormatInt(k.LastUsedAt.UnixMilli(), 10)}
}

func mustCompact(k store.Key) []string {
	c, err := encodeCompact(k)
	if err != nil {
		panic(err)
	}
	return c
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// keyRead is one key's read in flight: its first chunks, and its
// old-layout hash unless the migration is done.
type keyRead struct {
	id, bucket, field string
	chunks, old       *goredis.SliceCmd
}

// keyFound is where a read found a key: old is the old layout, chunks the
// compact record's (nil for old).
type keyFound struct {
	old    bool
	chunks []string
}

// queueRead sends (on a client) or queues (on a pipeline) the reads of id.
func (s *Store) queueRead(ctx context.Context, c goredis.Cmdable, id string) keyRead {
	r := keyRead{id: id}
	r.bucket, r.field = s.bucketOf(id)
	r.chunks = c.HMGet(ctx, r.bucket, chunkFields(r.field, firstRead)...)
	if !s.compactOnly.Load() {
		r.old = c.HMGet(ctx, s.keyKey(id), "rec", "team", "lu")
	}
	return r
}

// finishRead decodes what queueRead got, reading through c the chunks of a
// record longer than firstRead; store.ErrNotFound when the key is in
// neither layout.
func (s *Store) finishRead(ctx context.Context, c goredis.Cmdable, r keyRead) (store.Key, keyFound, error) {
	if err := r.chunks.Err(); err != nil {
		return store.Key{}, keyFound{}, err
	}
	vals := r.chunks.Val()
	for range 3 {
		c0, ok := vals[0].(string)
		if !ok || c0 == "" {
			break
		}
		n := int(c0[0])
		if n > len(vals) {
			// A long record: all its chunks again, in one HMGET, so that
			// they are of one version.
			var err error
			if vals, err = c.HMGet(ctx, r.bucket, chunkFields(r.field, n)...).Result(); err != nil {
				return store.Key{}, keyFound{}, err
			}
			continue
		}
		chunks := make([]string, n)
		for i := range n {
			chunks[i], _ = vals[i].(string)
		}
		k, err := decodeCompact(r.id, chunks)
		return k, keyFound{chunks: chunks}, err
	}
	if c0, ok := vals[0].(string); ok && c0 != "" {
		return store.Key{}, keyFound{}, fmt.Errorf("read key %s: its record kept growing under the read", r.id)
	}
	if r.old == nil {
		return store.Key{}, keyFound{}, store.ErrNotFound
	}
	if err := r.old.Err(); err != nil {
		return store.Key{}, keyFound{}, err
	}
	k, err := decodeKey(r.id, r.old.Val())
	return k, keyFound{old: true}, err
}

// readOne reads one key in both layouts, in one round trip.
func (s *Store) readOne(ctx context.Context, c goredis.Cmdable, id string) (store.Key, keyFound, error) {
	var r keyRead
	if s.compactOnly.Load() {
		r = s.queueRead(ctx, c, id)
	} else if _, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		r = s.queueRead(ctx, p, id)
		return nil
	}); err != nil {
		return store.Key{}, keyFound{}, fail(ctx, "get key "+id, err)
	}
	k, at, err := s.finishRead(ctx, c, r)
	return k, at, readErr(ctx, id, err)
}

// readErr is a read's error as callers get it: a missing key and a
// malformed record as they are, anything else (Redis did not answer as it
// should) through fail.
func readErr(ctx context.Context, id string, err error) error {
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadRecord) {
		return err
	}
	return fail(ctx, "get key "+id, err)
}

// readResult is one key's read: the key, where it was found, or readErr's
// error.
type readResult struct {
	k   store.Key
	at  keyFound
	err error
}

// readMany reads ids in one pipeline, each answered as readOne answers.
func (s *Store) readMany(ctx context.Context, ids []string) []readResult {
	reads := make([]keyRead, len(ids))
	// Each command carries its own error, which finishRead reports.
	_, _ = s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			reads[i] = s.queueRead(ctx, p, id)
		}
		return nil
	})
	out := make([]readResult, len(ids))
	for i, r := range reads {
		k, at, err := s.finishRead(ctx, s.rdb, r)
		out[i] = readResult{k, at, readErr(ctx, r.id, err)}
	}
	return out
}

// ListKeys implements store.Store: the team's old index and its bucket in
// one pipeline, then the old-layout keys (they share the team's slot),
// oldest first.
func (s *Store) ListKeys(ctx context.Context, teamID string) ([]store.Key, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	tag := credential.TeamTag(teamID)
	var idx *goredis.StringSliceCmd
	var all *goredis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if !s.compactOnly.Load() {
			idx = p.ZRange(ctx, s.teamKey(teamID), 0, -1)
		}
		all = p.HGetAll(ctx, s.bucketKey(tag))
		return nil
	})
	if err != nil {
		return nil, fail(ctx, "list keys of team "+teamID, err)
	}
	keys, err := appendBucketKeys(make([]store.Key, 0, bucketRecords(all.Val())), tag, all.Val())
	if err != nil {
		return nil, fmt.Errorf("list keys of team %s: %w", teamID, err)
	}
	if idx != nil {
		var ids []string
		for _, id := range idx.Val() {
			if !slices.ContainsFunc(keys, func(k store.Key) bool { return k.ClientID == id }) {
				ids = append(ids, id)
			}
		}
		old, err := s.getMany(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("list keys of team %s: %w", teamID, err)
		}
		keys = append(keys, old...)
	}
	// Another team whose tag collides shares the bucket; deleted between
	// the two reads, or a key of another team filed here (impossible
	// through this package): skip.
	keys = slices.DeleteFunc(keys, func(k store.Key) bool { return k.TeamID != teamID })
	slices.SortFunc(keys, func(a, b store.Key) int {
		if c := cmp.Compare(millis(a.CreatedAt), millis(b.CreatedAt)); c != 0 {
			return c
		}
		return strings.Compare(a.ClientID, b.ClientID)
	})
	return keys, nil
}

// bucketRecords is how many records a bucket (HGETALL) holds: its fields
// that are a record's first chunk.
func bucketRecords(all map[string]string) int {
	n := 0
	for f, c0 := range all {
		if f != "" && f[0] != 0 && c0 != "" {
			n++
		}
	}
	return n
}

// appendBucketKeys decodes every record of a bucket (HGETALL) of tag onto
// out. The walks beside the token path decode every key of the store each
// round: callers size out with bucketRecords first, since a slice of
// store.Key grown by doubling allocated several times what the keys
// themselves do (BenchmarkWalkBuckets).
func appendBucketKeys(out []store.Key, tag string, all map[string]string) ([]store.Key, error) {
	var chunks []string
	var name []byte // a later chunk's field (appendChunkField)
	for f, c0 := range all {
		if f == "" || f[0] == 0 || c0 == "" {
			continue
		}
		chunks = append(chunks[:0], c0)
		for i := 1; i < int(c0[0]); i++ {
			name = appendChunkField(name[:0], f, i)
			chunks = append(chunks, all[string(name)])
		}
		k, err := decodeCompact(idOf(tag, f), chunks)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// getMany loads keys by ID in one pipeline, skipping missing ones, in order.
func (s *Store) getMany(ctx context.Context, ids []string) ([]store.Key, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out := make([]store.Key, 0, len(ids))
	for _, r := range s.readMany(ctx, ids) {
		switch {
		case errors.Is(r.err, store.ErrNotFound):
			continue
		case r.err != nil:
			return nil, r.err
		}
		out = append(out, r.k)
	}
	return out, nil
}

// ForEachKey implements store.Store. It SCANs every master, first (until
// the migration is done) for old-layout key hashes, then for buckets, and
// visits each page's keys as it comes, loading them outside any Redis
// operation (fn may call the store). Memory during a walk is one page plus
// the set of IDs already visited (walkSeen), not the list of every ID.
// The old layout goes first: a key the migration moves mid-walk moves to
// a bucket, so it is either read where it was or found in its bucket
// later, and the seen set keeps it from being visited twice.
func (s *Store) ForEachKey(ctx context.Context, fn func(store.Key) error) error {
	const batch = 200
	// visitErr is fn's error (returned as it is, store.Store's contract) or
	// a failed load: anything else the scan returns is the SCAN's own.
	var visitErr error
	var seen *walkSeen
	visit := func(keys []store.Key) error {
		for _, k := range keys {
			if seen != nil && !seen.add(k.ClientID) {
				continue
			}
			if err := fn(k); err != nil {
				visitErr = err
				return err
			}
		}
		return nil
	}
	// phase is one SCAN walk: each page's names loaded, size at a time.
	phase := func(scan func(page func([]string) error) error, size int, load func(context.Context, []string) ([]store.Key, error)) error {
		err := scan(func(names []string) error {
			for len(names) > 0 {
				n := min(size, len(names))
				octx, cancel := s.op(ctx)
				keys, err := load(octx, names[:n])
				cancel()
				if err != nil {
					visitErr = fmt.Errorf("walk keys: %w", err)
					return visitErr
				}
				if err := visit(keys); err != nil {
					return err
				}
				names = names[n:]
			}
			return nil
		})
		switch {
		case visitErr != nil:
			return visitErr
		case err != nil:
			return fail(ctx, "walk keys", err)
		}
		return nil
	}
	if !s.compactOnly.Load() {
		seen = newWalkSeen()
		oldKeys := func(page func([]string) error) error { return s.scanKind(ctx, "key", "", page) }
		if err := phase(oldKeys, batch, s.getMany); err != nil {
			return err
		}
	}
	// A bucket holds a team's keys: a quarter as many buckets per load.
	buckets := func(page func([]string) error) error { return s.scanBuckets(ctx, page) }
	return phase(buckets, batch/4, s.loadBuckets)
}

// scanBuckets SCANs for this store's buckets (P{t}:k) and calls page with
// each page's tags.
func (s *Store) scanBuckets(ctx context.Context, page func(tags []string) error) error {
	head := s.prefix + "{"
	return s.scanPages(ctx, globEscape(head)+"*}:k", func(names []string) error {
		tags := names[:0]
		for _, name := range names {
			// The tag ends at the first "}", as Cluster reads it.
			rest, ok := strings.CutPrefix(name, head)
			if !ok {
				continue
			}
			if i := strings.IndexByte(rest, '}'); i >= 0 && rest[i:] == "}:k" {
				tags = append(tags, rest[:i])
			}
		}
		if len(tags) == 0 {
			return nil
		}
		return page(tags)
	})
}

// loadBuckets reads the buckets of tags in one pipeline.
func (s *Store) loadBuckets(ctx context.Context, tags []string) ([]store.Key, error) {
	cmds := make([]*goredis.MapStringStringCmd, len(tags))
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, t := range tags {
			cmds[i] = p.HGetAll(ctx, s.bucketKey(t))
		}
		return nil
	})
	if err != nil {
		return nil, fail(ctx, "load buckets", err)
	}
	n := 0
	for _, c := range cmds {
		n += bucketRecords(c.Val())
	}
	out := make([]store.Key, 0, n)
	for i, c := range cmds {
		if out, err = appendBucketKeys(out, tags[i], c.Val()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scanIDs is scanKind collected: every ID of one kind, each once. For
// the team walks, whose callers sort what they find; ForEachKey streams.
func (s *Store) scanIDs(ctx context.Context, kind, idPrefix string) ([]string, error) {
	return collectPages(func(page func([]string) error) error { return s.scanKind(ctx, kind, idPrefix, page) })
}

// collectPages gathers what a paged walk reports into one slice.
func collectPages(walk func(page func([]string) error) error) ([]string, error) {
	var all []string
	err := walk(func(page []string) error {
		all = append(all, page...)
		return nil
	})
	return all, err
}

// scanKind SCANs (scanPages) for this store's names of one kind,
// P{t}:<kind>:<id>, whose ID starts with idPrefix ("" for all), and calls
// page with each page's IDs, each ID once. The prefix is part of the MATCH
// pattern, so Redis filters the names itself and only matching ones travel;
// it still visits every name of the keyspace.
func (s *Store) scanKind(ctx context.Context, kind, idPrefix string, page func([]string) error) error {
	pattern := globEscape(s.prefix) + "{*}:" + kind + ":" + globEscape(idPrefix) + "*"
	head := s.prefix + "{"
	marker := "}:" + kind + ":"
	return s.scanPages(ctx, pattern, func(names []string) error {
		ids := names[:0]
		for _, name := range names {
			// The glob's {*} may stretch past the tag's "}" (a name whose ID
			// holds the marker): the tag ends at the first "}", as Cluster
			// reads it, and the marker must follow right there.
			rest, ok := strings.CutPrefix(name, head)
			if !ok {
				continue
			}
			i := strings.IndexByte(rest, '}')
			if i < 0 || !strings.HasPrefix(rest[i:], marker) {
				continue
			}
			if id := rest[i+len(marker):]; strings.HasPrefix(id, idPrefix) {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		return page(ids)
	})
}

// scanPages SCANs every master (all of them on Cluster) for the names
// matching pattern and calls page with each SCAN page's names not reported
// before, one call at a time (page may call the store; it may reuse the
// slice). SCAN may report a name twice (when Redis resizes its table
// mid-walk); walkSeen drops the repeats. The walk as a whole has no
// deadline beyond ctx (its length grows with the keyspace); each SCAN
// command is bounded by the client's timeouts.
func (s *Store) scanPages(ctx context.Context, pattern string, page func([]string) error) error {
	seen := newWalkSeen()
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		var cursor uint64
		for {
			names, next, err := c.Scan(ctx, cursor, pattern, 500).Result()
			if err != nil {
				return err
			}
			fresh := names[:0]
			for _, n := range names {
				if seen.add(n) {
					fresh = append(fresh, n)
				}
			}
			if len(fresh) > 0 {
				if err := page(fresh); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := s.rdb.(*goredis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster runs concurrently; seen and page are not safe for that
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
	}
	return scan(ctx, s.rdb)
}

// walkSeen is the set of IDs a walk has reported, kept as 128-bit hashes
// (two maphash sums under seeds of this walk's own) rather than as the IDs:
// the newest in a map, the rest in one sorted slice they are merged into
// every walkSeenRun IDs. That is 16 bytes per ID (32 while a merge copies
// the slice), against 100 and more for the IDs in a map, which is what
// bounds a walk's memory at 10 million keys (docs/scale.md). Two distinct
// IDs of one walk share a hash with probability about n²/2¹²⁹, 10⁻²⁵ at
// n = 10⁷; the seeds are random per walk, so no set of IDs can be chosen
// to collide.
type walkSeen struct {
	a, b   maphash.Seed
	recent map[[2]uint64]struct{}
	old    [][2]uint64 // sorted
}

const walkSeenRun = 1 << 16

func newWalkSeen() *walkSeen {
	return &walkSeen{a: maphash.MakeSeed(), b: maphash.MakeSeed(), recent: map[[2]uint64]struct{}{}}
}

func compareHash(x, y [2]uint64) int {
	if c := cmp.Compare(x[0], y[0]); c != 0 {
		return c
	}
	return cmp.Compare(x[1], y[1])
}

// add records id and reports whether it is new.
func (w *walkSeen) add(id string) bool {
	h := [2]uint64{maphash.String(w.a, id), maphash.String(w.b, id)}
	if _, dup := w.recent[h]; dup {
		return false
	}
	if _, dup := slices.BinarySearchFunc(w.old, h, compareHash); dup {
		return false
	}
	w.recent[h] = struct{}{}
	if len(w.recent) >= walkSeenRun {
		w.merge()
	}
	return true
}

// merge moves the recent hashes into the sorted slice.
func (w *walkSeen) merge() {
	run := make([][2]uint64, 0, len(w.recent))
	for h := range w.recent {
		run = append(run, h)
	}
	slices.SortFunc(run, compareHash)
	merged := make([][2]uint64, 0, len(w.old)+len(run))
	i, j := 0, 0
	for i < len(w.old) && j < len(run) {
		if compareHash(w.old[i], run[j]) < 0 {
			merged = append(merged, w.old[i])
			i++
		} else {
			merged = append(merged, run[j])
			j++
		}
	}
	merged = append(append(merged, w.old[i:]...), run[j:]...)
	w.old = merged
	clear(w.recent)
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

// UpdateKey implements store.Store with WATCH/MULTI on both of the key's
// places (its old hash and its bucket): if the key changes between the
// read and the write (a concurrent update, a last-use write, the
// migration moving it, or a change to another key of its bucket), the
// transaction fails and is retried with the new value. A key still in the
// old layout is moved to its bucket by the same transaction once the
// compact layout is writable.
func (s *Store) UpdateKey(ctx context.Context, clientID string, update func(store.Key) (store.Key, error), audit ...store.AuditEvent) (store.Key, error) {
	ev, err := store.OneAuditEvent(audit)
	if err != nil {
		return store.Key{}, fmt.Errorf("update key %s: %w", clientID, err)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	name := s.keyKey(clientID)
	bucket, field := s.bucketOf(clientID)
	var out store.Key
	var updateErr error
	var dropped [][]byte // the committed run's hashes the key let go of
	txf := func(tx *goredis.Tx) error {
		dropped = nil
		r := s.queueRead(ctx, tx, clientID)
		cur, at, err := s.finishRead(ctx, tx, r)
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
		compact := !at.old || s.writeCompact()
		var rec string
		var chunks []string
		if compact {
			chunks, err = encodeCompact(next)
		} else {
			rec, err = encodeRecord(next)
		}
		if err != nil {
			return err
		}
		// New hashes are indexed before the key holds them, old ones
		// dropped after it let go of them (secrets.go).
		add, remove := store.SecretIndexChanges(cur, next)
		if err := s.writeSecretIndex(ctx, clientID, add); err != nil {
			return err
		}
		dropped = remove
		var auditArgv []any
		if ev != nil {
			e := *ev
			if err := store.CheckAuditEvent(e, &cur.TeamID, &clientID); err != nil {
				return err
			}
			e.Fields = store.ChangedFields(cur, next)
			if auditArgv, err = auditArgs(e); err != nil {
				return err
			}
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			switch {
			case compact:
				fields := chunkFields(field, max(len(chunks), len(at.chunks)))
				kv := make([]any, 0, 2*len(chunks))
				for i, c := range chunks {
					kv = append(kv, fields[i], c)
				}
				p.HSet(ctx, bucket, kv...)
				if len(at.chunks) > len(chunks) {
					p.HDel(ctx, bucket, fields[len(chunks):]...)
				}
				if at.old {
					p.Del(ctx, name)
					p.ZRem(ctx, s.teamKey(cur.TeamID), clientID)
				}
			case next.LastUsedAt.IsZero():
				p.HSet(ctx, name, "rec", rec)
				p.HDel(ctx, name, "lu")
			default:
				p.HSet(ctx, name, "rec", rec, "lu", next.LastUsedAt.UnixMilli())
			}
			// In the same transaction: every instance's cache drops it.
			p.Publish(ctx, s.keysChannel(), clientID)
			if auditArgv != nil {
				// The event's keys share the key's slot; EVAL (not EVALSHA,
				// which could fail NOSCRIPT inside MULTI) runs in the
				// transaction, so change and event commit together.
				appendAuditScript.Eval(ctx, p, s.auditKeys(cur.TeamID), auditArgv...)
			}
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
	err = s.watch(ctx, txf, name, bucket)
	switch {
	case updateErr != nil:
		return store.Key{}, updateErr
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		return store.Key{}, fmt.Errorf("update key %s: %w", clientID, err)
	case err != nil:
		return store.Key{}, fail(ctx, "update key "+clientID, err)
	}
	// The change is committed: an entry this fails to drop names a key
	// without that hash, which finds nothing (KeyBySecretHash checks).
	_ = s.dropSecretIndex(ctx, clientID, dropped)
	return roundTrip(out)
}

// deleteScript removes a key, in whichever layout it is, only if it
// belongs to the given team. KEYS: old key hash, old team index, bucket.
// ARGV: team, client ID, the invalidation channel (the delete and its
// announcement are one atomic step), the key's field in the bucket.
// With an audit event, ARGV[5] is the status index the event names
// (checked against an old-layout record) and ARGV[6] the compact record as
// read, without its last use: the key must still be as read (else 2: read
// again); KEYS[4..7] and ARGV[7..9] are auditLua's, and the removal writes
// its own key.deleted event.
var deleteScript = goredis.NewScript(auditLua + compactLua + `
local c0 = redis.call('HGET', KEYS[3], ARGV[4])
local team
if c0 then team = kg_team(c0) else team = redis.call('HGET', KEYS[1], 'team') end
if team ~= ARGV[1] then return 0 end
if #KEYS > 3 then
  if c0 then
    if kg_record(KEYS[3], ARGV[4]) ~= ARGV[6] then return 2 end
  else
    local r = cjson.decode(redis.call('HGET', KEYS[1], 'rec'))
    if (tonumber(r.status_index) or 0) ~= tonumber(ARGV[5]) then return 2 end
  end
end
if ARGV[1] == '' then
  -- Admin keys share one slot (their IDs carry the empty team's tag):
  -- refuse to remove the last full admin (role absent or "").
  local function full(name)
    local v = redis.call('HGET', name, 'rec')
    if not v then return false end
    local r = cjson.decode(v)
    return r.role == nil or r.role == ''
  end
  local self
  if c0 then self = kg_role(c0) == '' else self = full(KEYS[1]) end
  if self then
    local others = false
    local head = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[2])
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      if id ~= ARGV[2] and full(head .. id) then others = true; break end
    end
    if not others then
      kg_each(KEYS[3], function(f, c)
        if f ~= ARGV[4] and kg_team(c) == '' and kg_role(c) == '' then others = true end
      end)
    end
    if not others then return 3 end
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
kg_del(KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[3], ARGV[2])
if #KEYS > 3 then audit(4, 7) end
return 1
`)

// withoutLastUse is a compact record as deleteScript's kg_record reads it.
func withoutLastUse(chunks []string) string {
	rec := strings.Join(chunks, "")
	return rec[:1] + rec[headerFixed:]
}

// maxDeleteReads bounds how often DeleteKey reads a key again whose status
// index changed under it (only the start-up backfill gives one).
const maxDeleteReads = 3

// DeleteKey implements store.Store. With an audit event, the key is read
// first for the status index the event names, and the script removes it
// only if it is still as read.
func (s *Store) DeleteKey(ctx context.Context, teamID, clientID string, audit ...store.AuditEvent) error {
	if credential.TagOf(clientID) != credential.TeamTag(teamID) {
		// Keys are filed under their team's tag (store.CheckClientID), so
		// this ID cannot belong to this team — and the Redis keys would be
		// in different Cluster slots.
		return fmt.Errorf("delete key %s: %w", clientID, store.ErrNotFound)
	}
	ev, err := store.OneAuditEvent(audit)
	if err == nil && ev != nil {
		err = store.CheckAuditEvent(*ev, &teamID, &clientID)
	}
	if err != nil {
		return fmt.Errorf("delete key %s: %w", clientID, err)
	}
	if s.cache != nil {
		defer s.cache.invalidate(clientID)
	}
	bucket, field := s.bucketOf(clientID)
	for range maxDeleteReads {
		keys := []string{s.keyKey(clientID), s.teamKey(teamID), bucket}
		args := []any{teamID, clientID, s.keysChannel(), field}
		// Read first: for the status index the event names, and for the
		// secret index entries to drop after the removal (secrets.go).
		octx, cancel := s.op(ctx)
		k, at, err := s.readOne(octx, s.rdb, clientID)
		cancel()
		if errors.Is(err, store.ErrNotFound) || (err == nil && k.TeamID != teamID) {
			return fmt.Errorf("delete key %s: %w", clientID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("delete key %s: %w", clientID, err)
		}
		if ev != nil {
			e := *ev
			e.StatusIndex = k.StatusIndex
			a, err := auditArgs(e)
			if err != nil {
				return fmt.Errorf("delete key %s: %w", clientID, err)
			}
			rec := ""
			if !at.old {
				rec = withoutLastUse(at.chunks)
			}
			keys = append(keys, s.auditKeys(teamID)...)
			args = append(append(args, k.StatusIndex, rec), a...)
		}
		octx, cancel = s.op(ctx)
		n, err := deleteScript.Run(octx, s.rdb, keys, args...).Int()
		cancel()
		switch {
		case err != nil:
			return fail(octx, "delete key "+clientID, err)
		case n == 0:
			return fmt.Errorf("delete key %s: %w", clientID, store.ErrNotFound)
		case n == 3:
			return fmt.Errorf("delete key %s: %w", clientID, store.ErrLastAdmin)
		case n == 1:
			// Best effort: an entry left behind names a deleted key and
			// finds nothing.
			_ = s.dropSecretIndex(ctx, clientID, store.SecretHashes(k))
			// Best effort too: a registry entry left behind lists a team
			// without keys, which Teams skips and RepairTeams removes.
			_ = s.unregisterIfEmpty(ctx, teamID)
			return nil
		}
	}
	return fmt.Errorf("delete key %s: %w (status index kept changing)", clientID, errAuditChanged)
}

// touchScript moves a key's last use forward, never back, in whichever
// layout the key is, and never recreates a key deleted since its use.
// KEYS: old key hash, bucket. ARGV: unix ms, the key's field. It publishes
// no invalidation (cache.go says why).
var touchScript = goredis.NewScript(compactLua + `
local ms = tonumber(ARGV[1])
local c0 = redis.call('HGET', KEYS[2], ARGV[2])
if c0 then
  if ms > kg_lu(c0) then redis.call('HSET', KEYS[2], ARGV[2], kg_setlu(c0, ms)) end
  return 1
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if ms > cur then
  redis.call('HSET', KEYS[1], 'lu', ARGV[1])
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
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for id, t := range lastUsed {
			bucket, field := s.bucketOf(id)
			touchScript.EvalSha(ctx, p, []string{s.keyKey(id), bucket}, t.UnixMilli(), field)
		}
		return nil
	})
	if c := s.cache; c != nil {
		// Written: the cached records show it (cache.go says why they stay).
		// Failed, perhaps in part: drop them, so none shows a last use the
		// store may not have.
		for id, t := range lastUsed {
			if err == nil {
				c.touched(id, t)
			} else {
				c.invalidate(id)
			}
		}
	}
	if err != nil {
		return fail(ctx, "touch keys", err)
	}
	return nil
}
