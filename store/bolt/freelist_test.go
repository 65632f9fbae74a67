package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// newestMeta reads the meta page bbolt would open path with.
func newestMeta(t *testing.T, path string) metaPage {
	t.Helper()
	c, m, err := fileContents(path)
	if err != nil || c != Fresh {
		t.Fatalf("store file %s: %v, %v", path, c, err)
	}
	return m
}

// churn creates n keys in team, deletes every other one and touches the
// rest, in separate commits, so the file has pages to free; it returns the
// client IDs it kept.
func churn(t *testing.T, s *Store, team string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var kept []string
	touched := map[string]time.Time{}
	for i := range n {
		id := storetest.ID(team, fmt.Sprintf("kg_%04d", i))
		k := store.Key{ClientID: id, TeamID: team, Name: fmt.Sprintf("key %d with a name long enough to fill pages", i),
			Permissions: []string{"accounting_api"}, CreatedAt: time.Unix(1_700_000_000, 0).UTC(), SecretHash: []byte("hash")}
		if err := s.CreateKey(ctx, k, n); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			if err := s.DeleteKey(ctx, team, id); err != nil {
				t.Fatal(err)
			}
			continue
		}
		kept = append(kept, id)
		touched[id] = time.Unix(1_700_000_100, 0).UTC()
	}
	if err := s.TouchKeys(ctx, touched); err != nil {
		t.Fatal(err)
	}
	return kept
}

// checkPages runs bbolt's own consistency check: every page is reachable
// from a tree or on the free-page list, and none is both.
func checkPages(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error { return errors.Join(pageProblems(tx)...) })
	if err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
}

// TestCommitsLeaveTheFreePageListToClose: while the store is open its
// commits write no free-page list (on a large store the list is megabytes,
// written and fsynced at every commit otherwise); Close writes it, so the
// next Open reads it instead of walking the file.
func TestCommitsLeaveTheFreePageListToClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.RebuiltFreePages() {
		t.Fatal("a new file reported as not closed cleanly")
	}
	churn(t, s, "team-a", 200)
	if m := newestMeta(t, path); m.freelist != noFreelist {
		t.Fatalf("after commits, the newest meta page names free-page list page %d; want none written", m.freelist)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m := newestMeta(t, path)
	if m.freelist == noFreelist {
		t.Fatal("Close left the file without its free-page list")
	}

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.RebuiltFreePages() {
		t.Fatal("a cleanly closed file reported as rebuilt")
	}
	checkPages(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing was committed, so Close wrote nothing: the same meta page.
	if again := newestMeta(t, path); again != m {
		t.Fatalf("a session without commits changed the meta page: %+v, then %+v", m, again)
	}
}

// TestOpenAfterCrashFindsFreePages: a file as a crash leaves it (every
// acknowledged commit on disk, no free-page list) opens with every
// acknowledged write, finds its free pages by walking the file, and reuses
// them without corrupting anything; its next Close writes the list again.
func TestOpenAfterCrashFindsFreePages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.db")
	live, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	kept := churn(t, live, "team-a", 200)
	// The crash: the file as it is on disk now, with no Close. Commits
	// fsync before they return, so the copy holds every one of them.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	s, err := Open(crashed)
	if err != nil {
		t.Fatalf("open after a crash: %v", err)
	}
	if !s.RebuiltFreePages() {
		t.Fatal("a file without its free-page list not reported as rebuilt")
	}
	if st := s.db.Stats(); st.FreePageN == 0 {
		t.Fatal("the walk found no free pages in a file where keys were deleted and rewritten")
	}
	checkPages(t, s)
	keys, err := s.ListKeys(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(kept) {
		t.Fatalf("after the crash: %d keys, want the %d acknowledged", len(keys), len(kept))
	}
	for _, k := range keys {
		if !k.LastUsedAt.Equal(time.Unix(1_700_000_100, 0)) {
			t.Fatalf("key %s after the crash: last used %v, want the acknowledged touch", k.ClientID, k.LastUsedAt)
		}
	}
	// Writes after the walk take pages from what it found: the file keeps
	// its size, and bbolt's check still holds.
	size := int64(len(raw))
	churn(t, s, "team-b", 20)
	checkPages(t, s)
	if fi, err := os.Stat(crashed); err != nil || fi.Size() > size {
		t.Fatalf("writes after the walk grew the file from %d to %v bytes (err %v): the free pages were not reused", size, fi.Size(), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.RebuiltFreePages() {
		t.Fatal("reopened after a clean Close, the file was walked again")
	}
	checkPages(t, s)
	if keys, err := s.ListKeys(ctx, "team-b"); err != nil || len(keys) != 10 {
		t.Fatalf("team-b after reopening: %d keys (err %v), want 10", len(keys), err)
	}
}

// TestLargeFlushReusesPages: a last-use flush and a usage flush of many
// keys at once (the usage counted twice: the first makes its buckets) (the flush on Close after a load over a million keys) are
// written in transactions of writeChunk keys, each reusing the pages the
// one before it freed, so the file does not grow by the keys' pages. In
// one transaction the same flush grew it by about all of them: bbolt
// cannot reuse a page in the transaction that frees it.
func TestLargeFlushReusesPages(t *testing.T) {
	const n = 6000
	growth := func(chunk int) (keysPages, grew int64) {
		t.Helper()
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "keygate.db")
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		keys := make([]store.Key, n)
		for i := range keys {
			keys[i] = cacheKey(fmt.Sprintf("team-%04d", i), "k", fmt.Sprint("hash-", i))
		}
		if err := s.CreateKeys(ctx, keys); err != nil {
			t.Fatal(err)
		}
		// Pages to reuse for the first chunk, as a store in use has.
		churn(t, s, "team-churn", 100)
		s.writeChunk = chunk
		pageSize := int64(s.db.Info().PageSize)
		size := func() int64 {
			var sz int64
			if err := s.db.View(func(tx *bbolt.Tx) error {
				sz = tx.Size()
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return sz
		}
		before := size()
		if err := s.db.View(func(tx *bbolt.Tx) error {
			st := tx.Bucket(bucketKeys).Stats()
			keysPages = int64(st.LeafPageN + st.BranchPageN)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		used := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
		touch := map[string]time.Time{}
		var deltas []store.UsageDelta
		for _, k := range keys {
			touch[k.ClientID] = used
			deltas = append(deltas, store.UsageDelta{TeamID: k.TeamID, ClientID: k.ClientID, Hour: used.Truncate(time.Hour), Tokens: 3})
		}
		if err := s.TouchKeys(ctx, touch); err != nil {
			t.Fatal(err)
		}
		grew = size() - before
		// The first counts make the usage buckets, which is growth of
		// another kind; the second change what is there.
		for range 2 {
			before = size()
			if err := s.AddUsage(ctx, used, deltas); err != nil {
				t.Fatal(err)
			}
		}
		grew += size() - before
		// Every key was written, whatever the chunks.
		for _, k := range keys {
			got, err := s.GetKey(ctx, k.ClientID)
			if err != nil || !got.LastUsedAt.Equal(used) {
				t.Fatalf("chunk %d: key %s: last used %v, %v; want %v", chunk, k.ClientID, got.LastUsedAt, err, used)
			}
		}
		for _, k := range []store.Key{keys[0], keys[n/2], keys[n-1]} {
			b, err := s.Usage(ctx, store.UsageQuery{TeamID: k.TeamID, Granularity: store.Day, From: used.Truncate(24 * time.Hour), To: used.Add(time.Hour), Now: used})
			if err != nil || len(b) != 1 || b[0].Tokens != 6 {
				t.Fatalf("chunk %d: usage of %s: %+v, %v; want one bucket of 6 tokens", chunk, k.ClientID, b, err)
			}
		}
		checkPages(t, s)
		return keysPages, grew / pageSize
	}
	keysPages, whole := growth(n)
	if whole < keysPages/2 {
		t.Fatalf("in one transaction the flush grew the file by %d pages; the keys take %d: the test no longer shows what chunks save", whole, keysPages)
	}
	_, chunked := growth(n / 20)
	if chunked > keysPages/10 {
		t.Fatalf("in chunks of %d the flush grew the file by %d pages, the keys bucket being %d (%d in one transaction)", n/20, chunked, keysPages, whole)
	}
	t.Logf("keys bucket %d pages; the flush grew the file by %d pages in one transaction, %d in chunks", keysPages, whole, chunked)
}
