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
