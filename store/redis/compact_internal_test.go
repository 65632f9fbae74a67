package redis

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// richKey is a key with every field set: a record of more than firstRead
// chunks.
func richKey(t testing.TB, team string) store.Key {
	t.Helper()
	id, err := credential.NewClientID(team)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.UTC)
	return store.Key{
		ClientID: id, TeamID: team, Name: "every field set", Permissions: []string{"accounting_api", "banking_api"},
		CreatedAt: at, LastUsedAt: at.Add(time.Hour).Truncate(time.Millisecond),
		SecretHash: hash32("current " + team), PreviousSecretHash: hash32("previous " + team),
		PreviousSecretExpiresAt: at.Add(24 * time.Hour), SecretRotatedAt: at.Add(time.Minute),
		StatusIndex: 1 << 40, PreviousStatusIndex: 7, SecretSuspendedAt: at.Add(2 * time.Minute),
		TokenQuota: store.TokenQuota{Limit: 1000, Per: "hour", Mode: "hard"},
		ExpiresAt:  at.Add(365 * 24 * time.Hour), DisabledAt: at.Add(3 * time.Minute), TokenTTL: 90 * time.Second,
		Audiences:    []string{"https://api.example", "https://other.example"},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
		Metadata:     []byte(`{"tenant":"acme","plan":"enterprise","region":"eu-west-1","owner":"ops@example.com"}`),
	}
}

func hash32(s string) []byte { return []byte((s + strings.Repeat(".", 32))[:32]) }

// TestCompactRecordRoundTrip: every field survives the compact encoding,
// a long record takes more than firstRead chunks of at most chunkLen
// bytes, and a damaged record is refused, never misread.
func TestCompactRecordRoundTrip(t *testing.T) {
	rich := richKey(t, "team-rich")
	plain := storetest.BulkKeys(t, 1, 1, 0)[0]
	admin := store.Key{ClientID: "operator-named-admin", Role: store.RoleRead, Name: "ro", Permissions: []string{}, CreatedAt: time.Unix(1, 0).UTC()}
	for _, k := range []store.Key{rich, plain, admin} {
		chunks, err := encodeCompact(k)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range chunks {
			if i > 0 && len(c) > chunkLen || i == 0 && len(c) > chunkLen && len(c) > headerFixed+2+len(k.TeamID)+len(k.Role) {
				t.Errorf("%s: chunk %d is %d bytes", k.Name, i, len(c))
			}
		}
		got, err := decodeCompact(k.ClientID, chunks)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, k) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", k.Name, got, k)
		}
		if _, err := decodeCompact(k.ClientID, chunks[:len(chunks)-1]); !errors.Is(err, store.ErrBadRecord) && len(chunks) > 1 {
			t.Errorf("%s: a record missing its last chunk: %v, want ErrBadRecord", k.Name, err)
		}
		cut := slices.Clone(chunks)
		last := cut[len(cut)-1]
		cut[len(cut)-1] = last[:len(last)-1]
		if _, err := decodeCompact(k.ClientID, cut); !errors.Is(err, store.ErrBadRecord) {
			t.Errorf("%s: a record cut by one byte: %v, want ErrBadRecord", k.Name, err)
		}
	}
	if chunks, _ := encodeCompact(rich); len(chunks) <= firstRead {
		t.Errorf("the rich key takes %d chunks: the test wants one that needs a second read", len(chunks))
	}
	if chunks, _ := encodeCompact(plain); len(chunks) > 2 {
		t.Errorf("a plain key takes %d chunks, want at most 2 (docs/scale.md's figure)", len(chunks))
	}
	// Field names: injective, and none starts with a later chunk's 0 byte.
	tag := credential.TeamTag("")
	for _, id := range []string{"kgc_" + tag + "abc", "abc", "~abc", "kgc_" + tag + "~abc", "kgc_" + tag, "kgc_" + tag + "\x00x"} {
		f := fieldOf(tag, id)
		if f == "" || f[0] == 0 || idOf(tag, f) != id {
			t.Errorf("field of %q is %q, read back as %q", id, f, idOf(tag, f))
		}
	}
}

// clockAt is a settable clock for SchemaOptions.Now.
type clockAt struct{ now time.Time }

func (c *clockAt) Now() time.Time { return c.now }

// TestCompactMigration walks a store through both phases: keys written
// by an instance of the previous release (old layout only), then a
// release that reads both writes old records while that instance lives,
// compact ones once it is gone, and after the grace moves every old record
// in batches. Every key reads the same (GetKey, ListKeys, KeyBySecretHash,
// Teams) before, between every two batches and after; once done nothing of
// the old layout is left and the team limit and last-admin rule still hold.
func TestCompactMigration(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	clock := &clockAt{now: time.Now()}
	older := instance(t, c, prefix, SchemaOptions{InstanceID: "older", Formats: []store.Format{}, Now: clock.Now})
	if err := older.Check(ctx); err != nil {
		t.Fatal(err)
	}
	keys := storetest.BulkKeys(t, 3, 3, 1)
	keys = append(keys, richKey(t, "team-rich"), store.Key{ClientID: credential.ClientIDPrefix + credential.TeamTag("") + "readonlyadmin00000000000", Name: "ro", Role: store.RoleRead, Permissions: []string{}, CreatedAt: time.Now().UTC(), SecretHash: []byte(strings.Repeat("r", 32))})
	if err := older.CreateKeys(ctx, keys[:4]); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys[4:] {
		if err := older.CreateKey(ctx, k, 0); err != nil {
			t.Fatal(err)
		}
	}

	// Phase 1: the new release beside the older one writes the old layout.
	newer := instance(t, c, prefix, SchemaOptions{InstanceID: "newer", Now: clock.Now})
	if err := newer.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if newer.Writable(FormatCompactKeys) {
		t.Fatal("compact layout writable while an instance that cannot read it lives")
	}
	late := storetest.BulkKeys(t, 1, 1, 0)[0]
	late.TeamID, late.ClientID = "team-late", mustID(t, "team-late")
	if err := newer.CreateKey(ctx, late, 5); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, late)
	if n, _ := c.Exists(ctx, newer.keyKey(late.ClientID)).Result(); n != 1 {
		t.Fatal("a key created beside an older instance is not in the old layout")
	}
	want := map[string]store.Key{}
	for _, k := range keys {
		got, err := newer.GetKey(ctx, k.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		want[k.ClientID] = got
	}

	// Phase 2: the older instance leaves; the format becomes writable and
	// an instance of the older release is refused from now on.
	if err := older.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := newer.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if !newer.Writable(FormatCompactKeys) {
		t.Fatal("compact layout not writable once every live instance reads it")
	}
	if err := older.Check(ctx); !errors.Is(err, store.ErrUnreadableFormat) {
		t.Fatalf("an older instance's check after the format became writable: %v, want ErrUnreadableFormat", err)
	}
	fresh := richKey(t, "team-fresh")
	if err := newer.CreateKey(ctx, fresh, 5); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, fresh)
	want[fresh.ClientID], _ = newer.GetKey(ctx, fresh.ClientID)
	if n, _ := c.Exists(ctx, newer.keyKey(fresh.ClientID)).Result(); n != 0 {
		t.Fatal("a key created once the format is writable went to the old layout")
	}
	if err := newer.Check(ctx); err != nil || newer.compat.moved != 0 {
		t.Fatalf("a check within the grace: %v, %d records moved; want none", err, newer.compat.moved)
	}

	// Batches of 3, with every key read through a second instance too.
	other := instance(t, c, prefix, SchemaOptions{InstanceID: "other", Now: clock.Now})
	if err := other.EnableKeyCache(0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	if err := other.Check(ctx); err != nil {
		t.Fatal(err)
	}
	clock.now = clock.now.Add(DefaultHeartbeatTTL)
	newer.compat.budget = 3
	checks := 0
	for !newer.CompactOnly() {
		if checks++; checks > 20 {
			t.Fatal("the migration did not finish in 20 checks")
		}
		if err := newer.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if checks == 2 {
			// A change between batches: an old record updated (and so
			// moved by the update) and one used.
			k := keys[1]
			// Through the instance with the key cache: its own writes drop
			// its entries at once, others' only when their message arrives.
			up, err := other.UpdateKey(ctx, k.ClientID, func(k store.Key) (store.Key, error) { k.Name = "renamed mid-migration"; return k, nil })
			if err != nil {
				t.Fatal(err)
			}
			want[k.ClientID] = up
			used := keys[2]
			if err := other.TouchKeys(ctx, map[string]time.Time{used.ClientID: clock.now.Truncate(time.Millisecond)}); err != nil {
				t.Fatal(err)
			}
			w := want[used.ClientID]
			w.LastUsedAt = clock.now.Truncate(time.Millisecond).UTC()
			want[used.ClientID] = w
		}
		for _, s := range []*Store{newer, other} {
			assertKeys(t, s, want, keys)
		}
	}
	if checks < 4 {
		t.Errorf("the migration took %d checks with a budget of 3 for %d keys: not batched", checks, len(keys))
	}
	if err := other.Check(ctx); err != nil || !other.CompactOnly() {
		t.Fatalf("another instance after the migration: %v, compact only %v", err, other.CompactOnly())
	}
	for _, pattern := range []string{prefix + "{*}:key:*", prefix + "{*}:team:*", prefix + "secret:*"} {
		if left, _ := c.Keys(ctx, pattern).Result(); len(left) != 0 {
			t.Errorf("%d names of the old layout left (%s): %v", len(left), pattern, left)
		}
	}
	assertKeys(t, other, want, keys)

	// The rules still hold on migrated keys.
	team := keys[0].TeamID
	extra := storetest.BulkKeys(t, 1, 1, 0)[0]
	extra.TeamID, extra.ClientID = team, mustID(t, team)
	if err := other.CreateKey(ctx, extra, 3); !errors.Is(err, store.ErrTeamLimit) {
		t.Errorf("a fourth key in a migrated team of 3 with a limit of 3: %v, want ErrTeamLimit", err)
	}
	var fullAdmin store.Key
	for _, k := range keys {
		if k.TeamID == "" && k.Role == "" {
			fullAdmin = k
		}
	}
	if err := other.DeleteKey(ctx, "", fullAdmin.ClientID); !errors.Is(err, store.ErrLastAdmin) {
		t.Errorf("deleting the last full admin after the migration: %v, want ErrLastAdmin", err)
	}
	if err := other.DeleteKey(ctx, team, keys[0].ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := newer.GetKey(ctx, keys[0].ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted migrated key: %v, want ErrNotFound", err)
	}
	if _, err := newer.KeyBySecretHash(ctx, keys[0].SecretHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted migrated key by its hash: %v, want ErrNotFound", err)
	}
}

// emptyAsNil drops the difference between an empty and an absent
// permission list, which these checks do not look at.
func emptyAsNil(k store.Key) store.Key {
	if len(k.Permissions) == 0 {
		k.Permissions = nil
	}
	return k
}

func mustID(t *testing.T, team string) string {
	t.Helper()
	id, err := credential.NewClientID(team)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// assertKeys checks every key reads as want through s: by ID, in its
// team's list and count, by each of its secret hashes, and in a walk.
func assertKeys(t *testing.T, s *Store, want map[string]store.Key, keys []store.Key) {
	t.Helper()
	ctx := context.Background()
	teams := map[string][]string{}
	for _, k := range keys {
		w := want[k.ClientID]
		got, err := s.GetKey(ctx, k.ClientID)
		if err != nil || !reflect.DeepEqual(emptyAsNil(got), emptyAsNil(w)) {
			t.Fatalf("%s reads\n %#v, %v\nwant %#v", k.ClientID, got, err, w)
		}
		for _, h := range store.SecretHashes(w) {
			if got, err := s.KeyBySecretHash(ctx, h); err != nil || got.ClientID != k.ClientID {
				t.Fatalf("%s by a secret hash: %q, %v", k.ClientID, got.ClientID, err)
			}
		}
		teams[k.TeamID] = append(teams[k.TeamID], k.ClientID)
	}
	for team, ids := range teams {
		listed, err := s.ListKeys(ctx, team)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range listed {
			got = append(got, k.ClientID)
		}
		slices.Sort(ids)
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			t.Fatalf("team %q lists %v, want %v", team, got, ids)
		}
		if n, err := s.teamKeyCount(ctx, team); err != nil || n != len(ids) {
			t.Fatalf("team %q counts %d keys, %v; want %d", team, n, err, len(ids))
		}
	}
	seen := map[string]int{}
	if err := s.ForEachKey(ctx, func(k store.Key) error { seen[k.ClientID]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if seen[k.ClientID] != 1 {
			t.Fatalf("a walk visited %s %d times, want once", k.ClientID, seen[k.ClientID])
		}
	}
	if len(seen) != len(keys) {
		t.Fatalf("a walk visited %d keys, want %d", len(seen), len(keys))
	}
}

// BenchmarkDecodeRecord: what a token request without the key cache pays
// to decode a typical key (a seeded one: one permission, no policy) in
// each layout.
func BenchmarkDecodeRecord(b *testing.B) {
	k := storetest.BulkKeys(b, 1, 1, 0)[0]
	b.Run("old-json", func(b *testing.B) {
		rec, err := encodeRecord(k)
		if err != nil {
			b.Fatal(err)
		}
		vals := []any{rec, k.TeamID, "1700000000000"}
		b.SetBytes(int64(len(rec)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeKey(k.ClientID, vals); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compact", func(b *testing.B) {
		chunks, err := encodeCompact(k)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(strings.Join(chunks, ""))))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeCompact(k.ClientID, chunks); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzDecodeCompact: a compact record, however damaged (Redis holds what
// any client with access wrote), decodes to a key or to an error, never a
// panic; a key it decodes to encodes and decodes back to itself.
func FuzzDecodeCompact(f *testing.F) {
	for _, k := range []store.Key{storetest.BulkKeys(f, 1, 1, 0)[0], richKey(f, "team-fuzz")} {
		chunks, err := encodeCompact(k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(strings.Join(chunks, "")), uint8(chunkLen))
	}
	f.Fuzz(func(t *testing.T, rec []byte, size uint8) {
		var chunks []string
		for n := max(int(size), 1); len(rec) > 0; rec = rec[min(n, len(rec)):] {
			chunks = append(chunks, string(rec[:min(n, len(rec))]))
		}
		k, err := decodeCompact("kgc_fuzz", chunks)
		if err != nil {
			return
		}
		again, err := encodeCompact(k)
		if err != nil {
			return // a field the encoder refuses (an empty permission)
		}
		back, err := decodeCompact("kgc_fuzz", again)
		if err != nil || !reflect.DeepEqual(back, k) {
			t.Fatalf("decoded %+v, encoded again and decoded: %+v, %v", k, back, err)
		}
	})
}

// TestOpenLeavesTheMoveToChecks: a start never waits for the migration's
// walk. Open of a store whose old records are due to move (the format
// writable, the grace long over) moves none of them and only learns the
// state; the next periodic Check moves them.
func TestOpenLeavesTheMoveToChecks(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	old := instance(t, c, prefix, SchemaOptions{InstanceID: "older", Formats: []store.Format{}})
	keys := storetest.BulkKeys(t, 2, 2, 0)
	if err := old.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, old.formatsSinceKey(), string(FormatCompactKeys), time.Now().Add(-time.Hour).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, Options{URL: redistest.URL(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	oldNames := func() int {
		names, err := c.Keys(ctx, prefix+"{*}:key:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(names)
	}
	if !s.Writable(FormatCompactKeys) {
		t.Fatal("the compact layout is not writable after Open by the only instance")
	}
	if n := oldNames(); n != len(keys) {
		t.Fatalf("%d old key hashes after Open, want all %d (Open must not move records)", n, len(keys))
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if n := oldNames(); n != 0 {
		t.Fatalf("%d old key hashes after a Check past the grace, want 0", n)
	}
	if err := s.Check(ctx); err != nil || !s.CompactOnly() {
		t.Fatalf("the check after the move: %v, compact only %v", err, s.CompactOnly())
	}
}

// TestCompactMigrationUnderWrites: the migration's batches (of 5) run
// between the writes of another instance, which creates, renames, uses
// and deletes keys of the same teams; afterwards every key reads as that
// instance's last write left it, deleted keys stay deleted, and nothing
// of the old layout is left.
func TestCompactMigrationUnderWrites(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	clock := &clockAt{now: time.Now()}
	older := instance(t, c, prefix, SchemaOptions{InstanceID: "older", Formats: []store.Format{}})
	keys := storetest.BulkKeys(t, 40, 4, 0)
	if err := older.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	migrator := instance(t, c, prefix, SchemaOptions{InstanceID: "migrator", Now: clock.Now})
	writer := instance(t, c, prefix, SchemaOptions{InstanceID: "writer", Now: clock.Now})
	for _, s := range []*Store{migrator, writer} {
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	clock.now = clock.now.Add(DefaultHeartbeatTTL)
	migrator.compat.budget = 5
	// A batch between every four writes, so that writes land on keys
	// already moved, keys not moved yet and keys in the batch after.
	migrate := func() {
		t.Helper()
		if err := migrator.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}

	want := map[string]store.Key{}
	for _, k := range keys {
		want[k.ClientID] = k
	}
	deleted := map[string]bool{}
	for i, k := range keys {
		if i%4 == 0 {
			migrate()
		}
		switch i % 4 {
		case 0:
			up, err := writer.UpdateKey(ctx, k.ClientID, func(k store.Key) (store.Key, error) {
				k.Name = fmt.Sprintf("renamed %d", i)
				return k, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want[k.ClientID] = up
		case 1:
			at := time.UnixMilli(2_000_000_000_000 + int64(i)).UTC()
			if err := writer.TouchKeys(ctx, map[string]time.Time{k.ClientID: at}); err != nil {
				t.Fatal(err)
			}
			w := want[k.ClientID]
			w.LastUsedAt = at
			want[k.ClientID] = w
		case 2:
			if err := writer.DeleteKey(ctx, k.TeamID, k.ClientID); err != nil {
				t.Fatal(err)
			}
			delete(want, k.ClientID)
			deleted[k.ClientID] = true
		case 3:
			n := storetest.BulkKeys(t, 1, 1, 0)[0]
			n.TeamID, n.ClientID = k.TeamID, mustID(t, k.TeamID)
			if err := writer.CreateKey(ctx, n, 5); err != nil {
				t.Fatal(err)
			}
			want[n.ClientID] = n
		}
	}
	if migrator.CompactOnly() {
		t.Fatal("the migration finished before the last write: the writes did not interleave with it")
	}
	for i := 0; !migrator.CompactOnly(); i++ {
		if i == 100 {
			t.Fatal("the migration did not finish in 100 more checks")
		}
		migrate()
	}
	var left []store.Key
	for _, k := range want {
		left = append(left, k)
	}
	for id := range deleted {
		if _, err := migrator.GetKey(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleted key %s after the migration: %v, want ErrNotFound", id, err)
		}
	}
	for _, pattern := range []string{prefix + "{*}:key:*", prefix + "{*}:team:*", prefix + "secret:*"} {
		if names, _ := c.Keys(ctx, pattern).Result(); len(names) != 0 {
			t.Errorf("%d names of the old layout left (%s)", len(names), pattern)
		}
	}
	assertKeys(t, migrator, want, left)
}
