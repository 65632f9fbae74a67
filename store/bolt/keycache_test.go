package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// openWithCache opens a store in a temporary directory with a key cache of
// size records.
func openWithCache(t *testing.T, size int) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "keygate.db"), Options{KeyCacheSize: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openWithPagedKeys opens a store holding 300 keys: enough that the keys
// bucket has pages of its own, so whether a write changed it is told by its
// root page (keysChangedSince) rather than assumed.
func openWithPagedKeys(t *testing.T) (*Store, []store.Key) {
	t.Helper()
	s, _ := openTemp(t)
	var keys []store.Key
	for i := range 300 {
		keys = append(keys, cacheKey(fmt.Sprint("team-", i), "k", fmt.Sprint("hash-", i)))
	}
	if err := s.CreateKeys(context.Background(), keys); err != nil {
		t.Fatal(err)
	}
	return s, keys
}

// readTxs is how many read transactions the store has started: a GetKey
// answered from the key cache starts none.
func readTxs(s *Store) int { return s.db.Stats().TxN }

func cacheKey(team, name string, hash string) store.Key {
	return store.Key{
		ClientID: storetest.ID(team, "kg_"+name), TeamID: team, Name: name, Permissions: []string{"accounting_api"},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), SecretHash: []byte(hash), StatusIndex: 7,
	}
}

// TestKeyCacheServesFromMemory: a second GetKey of a key, and of an unknown
// ID, starts no transaction and returns a copy the caller may change.
func TestKeyCacheServesFromMemory(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	k := cacheKey("acme", "a", "hash-a")
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	unknown := storetest.ID("acme", "kg_nobody")
	for _, id := range []string{k.ClientID, unknown} {
		s.GetKey(ctx, id) // fills the cache
		before := readTxs(s)
		got, err := s.GetKey(ctx, id)
		if n := readTxs(s) - before; n != 0 {
			t.Errorf("cached GetKey(%s) started %d read transactions", id, n)
		}
		if id == unknown {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("unknown ID: %v, want ErrNotFound", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got.Permissions[0] = "changed"
		got.SecretHash[0] = 'X'
		again, _ := s.GetKey(ctx, id)
		if again.Permissions[0] != "accounting_api" || !bytes.Equal(again.SecretHash, []byte("hash-a")) {
			t.Errorf("a caller's change to a returned key reached the cache: %+v", again)
		}
	}
	if recs, abs := s.cache.len(); recs != 1 || abs != 1 {
		t.Errorf("cache holds %d records and %d absences, want 1 and 1", recs, abs)
	}
}

// TestKeyCacheInvalidation: after every kind of write that changes a key,
// the next GetKey returns the stored key, never the cached one — a deleted
// key is gone, a rotated secret is the new one — with the cache warm before
// each write.
func TestKeyCacheInvalidation(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	k := cacheKey("acme", "a", "hash-a")
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	warm := func(id string) {
		t.Helper()
		s.GetKey(ctx, id)
		s.GetKey(ctx, id)
	}
	get := func(id string) store.Key {
		t.Helper()
		got, err := s.GetKey(ctx, id)
		if err != nil {
			t.Fatalf("GetKey(%s): %v", id, err)
		}
		return got
	}

	// UpdateKey: a rename and a rotation (new secret, old one kept).
	warm(k.ClientID)
	if _, err := s.UpdateKey(ctx, k.ClientID, func(o store.Key) (store.Key, error) {
		o.Name = "renamed"
		return o, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := get(k.ClientID); got.Name != "renamed" {
		t.Errorf("after UpdateKey: name %q", got.Name)
	}
	warm(k.ClientID)
	if _, err := s.UpdateKey(ctx, k.ClientID, func(o store.Key) (store.Key, error) {
		o.PreviousSecretHash, o.SecretHash = o.SecretHash, []byte("hash-rotated")
		o.PreviousSecretExpiresAt = o.CreatedAt.Add(time.Hour)
		return o, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := get(k.ClientID); !bytes.Equal(got.SecretHash, []byte("hash-rotated")) || !bytes.Equal(got.PreviousSecretHash, []byte("hash-a")) {
		t.Errorf("after a rotation: secret %q, previous %q", got.SecretHash, got.PreviousSecretHash)
	}

	// TouchKeys: the last-used time.
	warm(k.ClientID)
	used := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := s.TouchKeys(ctx, map[string]time.Time{k.ClientID: used}); err != nil {
		t.Fatal(err)
	}
	if got := get(k.ClientID); !got.LastUsedAt.Equal(used) {
		t.Errorf("after TouchKeys: last used %v, want %v", got.LastUsedAt, used)
	}

	// CreateKey and the bulk loader: an ID remembered as absent is found.
	created := cacheKey("acme", "b", "hash-b")
	warm(created.ClientID)
	if err := s.CreateKey(ctx, created, 5); err != nil {
		t.Fatal(err)
	}
	if got := get(created.ClientID); got.Name != "b" {
		t.Errorf("after CreateKey: %+v", got)
	}
	bulk := cacheKey("bulk", "c", "hash-c")
	warm(bulk.ClientID)
	if err := s.CreateKeys(ctx, []store.Key{bulk}); err != nil {
		t.Fatal(err)
	}
	if got := get(bulk.ClientID); got.Name != "c" {
		t.Errorf("after CreateKeys: %+v", got)
	}

	// DeleteKey: the key is gone at once.
	warm(k.ClientID)
	if err := s.DeleteKey(ctx, k.TeamID, k.ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(ctx, k.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted key after DeleteKey: %v, want ErrNotFound", err)
	}

	// Any write transaction at all, including one that writes the record
	// directly as a path added later might: nothing needs to remember the
	// cache.
	warm(created.ClientID)
	other := cacheKey("acme", "b", "hash-direct")
	other.Name = "direct"
	raw, err := encodeKey(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketKeys).Put([]byte(created.ClientID), raw)
	}); err != nil {
		t.Fatal(err)
	}
	if got := get(created.ClientID); got.Name != "direct" || !bytes.Equal(got.SecretHash, []byte("hash-direct")) {
		t.Errorf("after a direct write: %+v", got)
	}
}

// TestKeyCacheRevalidates: a write elsewhere makes entries stale, and a
// stale entry whose record did not change is served again after one read
// of its bytes, without a decode.
func TestKeyCacheRevalidates(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	k := cacheKey("acme", "a", "hash-a")
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	s.GetKey(ctx, k.ClientID)
	rec, _ := s.cache.lookup(k.ClientID, s.cache.writes.Load())
	if err := s.DenyToken(ctx, "some-jti", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	before, decodes := readTxs(s), s.cache.jsonDecodes.Load()
	s.GetKey(ctx, k.ClientID)
	if n := readTxs(s) - before; n != 1 {
		t.Errorf("GetKey after an unrelated write started %d read transactions, want 1", n)
	}
	again, _ := s.cache.lookup(k.ClientID, s.cache.writes.Load())
	if !again.found || again.epoch == rec.epoch || again.epoch != s.cache.writes.Load() {
		t.Fatal("the stale entry was not replaced by one of the current epoch")
	}
	if n := s.cache.jsonDecodes.Load() - decodes; n != 0 {
		t.Errorf("an unchanged record was decoded from its stored bytes %d times instead of reusing the entry", n)
	}
	before = readTxs(s)
	s.GetKey(ctx, k.ClientID)
	if n := readTxs(s) - before; n != 0 {
		t.Errorf("GetKey after revalidation started %d read transactions", n)
	}
}

// TestKeyCacheSurvivesOtherWrites: with a keys bucket of its own pages (a
// store past a few dozen keys), writes that change no key record — usage
// counts, the deny list, the audit trail — leave the cache warm, while a
// change to any key record, even one written straight into the bucket,
// makes the entries stale.
func TestKeyCacheSurvivesOtherWrites(t *testing.T) {
	ctx := context.Background()
	s, keys := openWithPagedKeys(t)
	k := keys[7]
	s.GetKey(ctx, k.ClientID)
	hit := func(what string, want bool) {
		t.Helper()
		before := readTxs(s)
		got, err := s.GetKey(ctx, k.ClientID)
		if err != nil || got.ClientID != k.ClientID {
			t.Fatalf("after %s: %v, %v", what, got.ClientID, err)
		}
		if served := readTxs(s) == before; served != want {
			t.Errorf("after %s: served from memory %v, want %v", what, served, want)
		}
	}
	hit("filling", true)
	if err := s.DenyToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	hit("a deny-list write", true)
	if err := s.AddUsage(ctx, time.Now(), []store.UsageDelta{{TeamID: k.TeamID, ClientID: k.ClientID, Hour: time.Now(), Tokens: 3}}); err != nil {
		t.Fatal(err)
	}
	hit("a usage write", true)
	if err := s.AppendAudit(ctx, store.AuditEvent{ID: "01HZX0000000000000000000AA", Time: time.Now().UTC(), Action: store.AuditTokenRevoked, TeamID: k.TeamID, ClientID: k.ClientID}); err != nil {
		t.Fatal(err)
	}
	hit("an audit write", true)
	other := keys[200]
	if _, err := s.UpdateKey(ctx, other.ClientID, func(o store.Key) (store.Key, error) {
		o.Name = "renamed"
		return o, nil
	}); err != nil {
		t.Fatal(err)
	}
	hit("another key's update", false) // stale, revalidated by its bytes
	hit("the revalidation", true)
	changed := k
	changed.Name = "written directly"
	raw, err := encodeKey(changed)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketKeys).Put([]byte(k.ClientID), raw)
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetKey(ctx, k.ClientID); got.Name != "written directly" {
		t.Fatalf("after a direct write to the keys bucket: name %q", got.Name)
	}
}

// readConcurrently keeps four goroutines reading id (filling the cache)
// until the returned stop is called.
func readConcurrently(s *Store, id string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
					s.GetKey(context.Background(), id)
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

// TestKeyCacheLinearizable: readers filling the cache concurrently never
// make a write invisible: once UpdateKey returns, every GetKey that starts
// afterwards sees it (run with -race).
func TestKeyCacheLinearizable(t *testing.T) {
	ctx := context.Background()
	s, keys := openWithPagedKeys(t)
	k := keys[0]
	defer readConcurrently(s, k.ClientID)()
	for i := range 300 {
		name := fmt.Sprint("name-", i)
		if _, err := s.UpdateKey(ctx, k.ClientID, func(o store.Key) (store.Key, error) {
			o.Name = name
			return o, nil
		}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if got, _ := s.GetKey(ctx, k.ClientID); got.Name != name {
				t.Fatalf("after UpdateKey #%d returned, GetKey read name %q", i, got.Name)
			}
		}
	}
}

// TestKeyCacheBounded: the records and the absences each stay within their
// bound however many IDs are read, and every key is served right, cached
// or not.
func TestKeyCacheBounded(t *testing.T) {
	ctx := context.Background()
	const size = 1000 // records' room: a buffer of size × keyCacheRecordBytes
	s := openWithCache(t, size)
	var keys []store.Key
	for i := range 3 * size {
		keys = append(keys, cacheKey(fmt.Sprint("team-", i), "k", "h"))
	}
	if err := s.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if got, err := s.GetKey(ctx, k.ClientID); err != nil || got.ClientID != k.ClientID {
			t.Fatalf("GetKey(%s): %v, %v", k.ClientID, got.ClientID, err)
		}
	}
	for i := range keyCacheAbsent + 1000 {
		s.GetKey(ctx, storetest.ID("nobody", fmt.Sprint("kg_", i)))
	}
	// The bound is bytes: what the records held take fits the buffer, and
	// most of the buffer is in use.
	k := keys[len(keys)/2]
	raw, err := encodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	v, err := newValue(0, raw, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	const header = 24 // freecache's per entry
	entry, buffer := header+len(k.ClientID)+len(v), size*keyCacheRecordBytes
	recs, abs := s.cache.len()
	if recs*entry > buffer || recs*entry < buffer/2 {
		t.Errorf("cache holds %d records of %d bytes of %d read, in a buffer of %d bytes", recs, entry, len(keys), buffer)
	}
	if abs > keyCacheAbsent {
		t.Errorf("cache holds %d absences, want at most %d", abs, keyCacheAbsent)
	}
	// Every key is still served correctly, cached or not.
	for _, k := range keys {
		if got, err := s.GetKey(ctx, k.ClientID); err != nil || got.ClientID != k.ClientID {
			t.Fatalf("GetKey(%s) after eviction: %v, %v", k.ClientID, got.ClientID, err)
		}
	}
}

// TestKeyCacheOff: a negative size turns the cache off; every GetKey reads
// the file.
func TestKeyCacheOff(t *testing.T) {
	ctx := context.Background()
	s := openWithCache(t, -1)
	k := cacheKey("acme", "a", "hash-a")
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	s.GetKey(ctx, k.ClientID)
	before := readTxs(s)
	if _, err := s.GetKey(ctx, k.ClientID); err != nil {
		t.Fatal(err)
	}
	if n := readTxs(s) - before; n != 1 {
		t.Errorf("GetKey with the cache off started %d read transactions, want 1", n)
	}
}

// BenchmarkKeyCacheBytesPerRecord measures the heap a cached record costs
// (a key as `keygate seed` makes them), for the bound DefaultKeyCacheSize
// sets (docs/scale.md):
//
//	go test -run '^$' -bench KeyCacheBytesPerRecord ./store/bolt/
func BenchmarkKeyCacheBytesPerRecord(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		var c *keyCache
		now := time.Now()
		raws := make([][]byte, n)
		ids := make([]string, n)
		for i := range raws {
			k := store.Key{ClientID: fmt.Sprintf("kgc_bench-%06d_%026d", i/5, i), TeamID: fmt.Sprintf("bench-%06d", i/5),
				Name: fmt.Sprintf("seed %d", i), Permissions: []string{"accounting_api"}, CreatedAt: now,
				SecretHash: make([]byte, 32), StatusIndex: int64(i + 1)}
			raw, err := encodeKey(k)
			if err != nil {
				b.Fatal(err)
			}
			raws[i], ids[i] = raw, k.ClientID
		}
		storetest.ReportRetained(b, n, func() {
			c = newKeyCache(n) // its buffer counts: allocated whole at the start
			for i, raw := range raws {
				// The ID as a request brings it: the cache keeps it.
				if _, err := c.fill(strings.Clone(ids[i]), raw, cachedKey{}, 0, 0, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The records read are the store's, not the cache's: alive through
		// both measurements, so they count in neither (freed between them,
		// they were subtracted from the cache's figure).
		runtime.KeepAlive(raws)
		runtime.KeepAlive(ids)
		runtime.KeepAlive(c)
	}
}

// TestKeyCacheSurvivesTouches: the last-use flush (TouchKeys) leaves the
// cache valid: a key whose time it wrote, and every other, is still served
// from memory, the written one with its new time; a key it wrote that was
// not cached is read with the new time.
func TestKeyCacheSurvivesTouches(t *testing.T) {
	ctx := context.Background()
	s, keys := openWithPagedKeys(t)
	k, other, uncached := keys[7], keys[100], keys[250]
	for _, c := range []store.Key{k, other} {
		if _, err := s.GetKey(ctx, c.ClientID); err != nil {
			t.Fatal(err)
		}
	}
	used := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := s.TouchKeys(ctx, map[string]time.Time{k.ClientID: used, uncached.ClientID: used}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  store.Key
		used time.Time
	}{{k, used}, {other, time.Time{}}} {
		before := readTxs(s)
		got, err := s.GetKey(ctx, c.key.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		if readTxs(s) != before {
			t.Errorf("key %s: read from the file after a touch, want served from memory", c.key.Name)
		}
		if !got.LastUsedAt.Equal(c.used) {
			t.Errorf("key %s: last used %v, want %v", c.key.Name, got.LastUsedAt, c.used)
		}
	}
	if got, err := s.GetKey(ctx, uncached.ClientID); err != nil || !got.LastUsedAt.Equal(used) {
		t.Errorf("a touched key read for the first time: last used %v (%v), want %v", got.LastUsedAt, err, used)
	}
}

// TestKeyCacheReadRacingTouch: a read whose transaction began before a
// touch committed, and that caches what it read after the touch returned,
// must not cache it: otherwise the old last-use time would be served until
// the next write. Driven step by step through the cache's own calls.
func TestKeyCacheReadRacingTouch(t *testing.T) {
	ctx := context.Background()
	s, keys := openWithPagedKeys(t)
	k := keys[9]
	// The reader: counters loaded, the record read, not yet cached.
	epoch, touches := s.cache.writes.Load(), s.cache.touches.Load()
	var raw []byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		raw = bytes.Clone(tx.Bucket(bucketKeys).Get([]byte(k.ClientID)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	used := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := s.TouchKeys(ctx, map[string]time.Time{k.ClientID: used}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cache.fill(k.ClientID, raw, cachedKey{}, epoch, touches, false); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetKey(ctx, k.ClientID)
	if err != nil || !got.LastUsedAt.Equal(used) {
		t.Fatalf("after the touch returned: last used %v (%v), want %v (the racing read's bytes were cached)", got.LastUsedAt, err, used)
	}
}

// TestKeyCacheTouchLinearizable: readers filling the cache concurrently
// never hide a touch: once TouchKeys returns, every GetKey that starts
// afterwards sees the time it wrote (run with -race).
func TestKeyCacheTouchLinearizable(t *testing.T) {
	ctx := context.Background()
	s, keys := openWithPagedKeys(t)
	k := keys[3]
	defer readConcurrently(s, k.ClientID)()
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := range 300 {
		used := base.Add(time.Duration(i+1) * time.Second)
		if err := s.TouchKeys(ctx, map[string]time.Time{k.ClientID: used}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if got, _ := s.GetKey(ctx, k.ClientID); !got.LastUsedAt.Equal(used) {
				t.Fatalf("after TouchKeys #%d returned, GetKey read last use %v, want %v", i, got.LastUsedAt, used)
			}
		}
	}
}

// TestKeyCacheKeepsEveryField: a key with every field set is served from
// the cache as stored, its last use at full precision, and a TouchKeys that
// rewrites it from the cached decoding stores every field as it was.
func TestKeyCacheKeepsEveryField(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	k := cacheKey("acme", "every", "hash-every")
	k.LastUsedAt = at.Add(time.Hour + 789) // nanoseconds: the compact record keeps milliseconds
	k.PreviousSecretHash = []byte("hash-old")
	k.PreviousSecretExpiresAt, k.SecretRotatedAt = at.Add(2*time.Hour), at.Add(-time.Hour)
	k.PreviousStatusIndex = 3
	k.TokenQuota = store.TokenQuota{Limit: 10, Per: "hour", Mode: "strict"}
	k.ExpiresAt, k.TokenTTL = at.Add(48*time.Hour), 5*time.Minute
	k.Audiences = []string{"https://api.example.com/a"}
	k.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	k.Metadata = []byte(`{"tenant":"acme"}`)
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	stored := func() store.Key {
		t.Helper()
		var got store.Key
		if err := s.db.View(func(tx *bbolt.Tx) error {
			var err error
			got, err = getKey(tx, k.ClientID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := stored()
	s.GetKey(ctx, k.ClientID) // cached
	before := readTxs(s)
	got, err := s.GetKey(ctx, k.ClientID)
	if err != nil || readTxs(s) != before {
		t.Fatalf("second GetKey: %v (%d transactions), want it from the cache", err, readTxs(s)-before)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("from the cache\n %#v\nstored\n %#v", got, want)
	}
	used := k.LastUsedAt.Add(time.Minute + 1)
	if err := s.TouchKeys(ctx, map[string]time.Time{k.ClientID: used}); err != nil {
		t.Fatal(err)
	}
	want.LastUsedAt = used
	if after := stored(); !reflect.DeepEqual(after, want) {
		t.Fatalf("stored after TouchKeys\n %#v\nwant\n %#v", after, want)
	}
	if got, _ := s.GetKey(ctx, k.ClientID); !reflect.DeepEqual(got, want) {
		t.Fatalf("from the cache after TouchKeys\n %#v\nwant\n %#v", got, want)
	}
}
