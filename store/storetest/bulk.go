package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// BulkStore is a backend that also offers the bulk path of keygate seed.
type BulkStore interface {
	store.Store
	store.BulkLoader
}

// RunBulk runs the conformance tests of the bulk path (store.BulkLoader),
// with the same rules for newStore as Run. What only one backend can show
// (bbolt's durability across a reopen, a Redis write racing the bulk load)
// stays in that backend's own tests, built on BulkKeys and KeyDiff.
func RunBulk(t *testing.T, newStore func(t *testing.T) BulkStore) {
	t.Helper()
	t.Run("Bulk/LoadsEverythingWithFreshIndices", func(t *testing.T) { testBulkRoundTrip(t, newStore(t)) })
	t.Run("Bulk/RefusedCallsWriteNothing", func(t *testing.T) { testBulkRefusals(t, newStore(t)) })
}

// BulkKeys makes perTeam keys for each of teams teams ("bulk-000001", …),
// then admins admin keys, oldest first, with distinct contents and times at
// millisecond precision, ready for CreateKeys (StatusIndex is left 0).
func BulkKeys(t testing.TB, teams, perTeam, admins int) []store.Key {
	t.Helper()
	base := time.Now().UTC().Truncate(time.Millisecond)
	var out []store.Key
	add := func(team string, i int) {
		id, err := credential.NewClientID(team)
		if err != nil {
			t.Fatal(err)
		}
		hash := make([]byte, 32)
		rand.Read(hash)
		k := store.Key{
			ClientID:    id,
			TeamID:      team,
			Name:        fmt.Sprintf("bulk %d", i),
			Permissions: []string{"p1", fmt.Sprintf("p%d", i%7)},
			CreatedAt:   base.Add(time.Duration(i) * time.Millisecond),
			SecretHash:  hash,
		}
		if i%3 == 0 {
			k.LastUsedAt = base.Add(time.Hour)
		}
		out = append(out, k)
	}
	for tm := 1; tm <= teams; tm++ {
		for range perTeam {
			add(BulkTeam(tm), len(out))
		}
	}
	for range admins {
		add("", len(out))
	}
	return out
}

// BulkTeam is the ID of BulkKeys' n-th team (from 1).
func BulkTeam(n int) string { return fmt.Sprintf("bulk-%06d", n) }

// KeyDiff lists every field in which got differs from want under the
// suite's rules (times in UTC, within a millisecond); empty when equal.
func KeyDiff(want, got store.Key) []string { return keyDiff(want, got) }

// inParallel runs fn(i) for i in [0, n) on a few goroutines (each call may
// be a network round trip) and returns the first error; the others stop.
func inParallel(n int, fn func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// checkLoaded reads every key back, by ID, by team and by walking, and the
// team counts.
func checkLoaded(t *testing.T, s store.Store, keys []store.Key) {
	t.Helper()
	ctx := context.Background()
	err := inParallel(len(keys), func(i int) error {
		got, err := s.GetKey(ctx, keys[i].ClientID)
		if err != nil {
			return fmt.Errorf("GetKey(%s): %w", keys[i].ClientID, err)
		}
		if d := keyDiff(keys[i], got); len(d) > 0 {
			return fmt.Errorf("key %s differs:\n  %s", keys[i].ClientID, joinLines(d))
		}
		// CreateKeys keeps the secret index too.
		if byHash, err := s.KeyBySecretHash(ctx, keys[i].SecretHash); err != nil || byHash.ClientID != keys[i].ClientID {
			return fmt.Errorf("KeyBySecretHash of key %s's secret: %q, %v", keys[i].ClientID, byHash.ClientID, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	byTeam := map[string][]store.Key{}
	var teams []string
	for _, k := range keys {
		if _, ok := byTeam[k.TeamID]; !ok {
			teams = append(teams, k.TeamID)
		}
		byTeam[k.TeamID] = append(byTeam[k.TeamID], k)
	}
	err = inParallel(len(teams), func(i int) error {
		want := byTeam[teams[i]]
		got, err := s.ListKeys(ctx, teams[i])
		if err != nil {
			return err
		}
		if !slices.Equal(ids(got), ids(want)) { // BulkKeys made them oldest first
			return fmt.Errorf("team %q lists %v, want %v", teams[i], ids(got), ids(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.ForEachKey(ctx, func(store.Key) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(keys) {
		t.Fatalf("ForEachKey visits %d keys, want %d", n, len(keys))
	}
	counts, err := s.Teams(ctx, store.TeamQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var want []store.TeamCount
	for _, team := range teams {
		if team != "" {
			want = append(want, store.TeamCount{TeamID: team, Keys: len(byTeam[team])})
		}
	}
	if !slices.Equal(counts, want) {
		t.Fatalf("Teams lists %d teams, want %d (BulkKeys' teams sort by ID)", len(counts), len(want))
	}
	// The same teams page by page, each page starting after the last ID of
	// the one before.
	const pageSize = 1000
	var paged []store.TeamCount
	q := store.TeamQuery{Limit: pageSize}
	for pages := 1; ; pages++ {
		page, err := s.Teams(ctx, q)
		if err != nil {
			t.Fatalf("Teams page %d (%+v): %v", pages, q, err)
		}
		if len(page) > pageSize {
			t.Fatalf("Teams page %d (%+v) holds %d teams, more than its limit", pages, q, len(page))
		}
		paged = append(paged, page...)
		if len(page) < pageSize {
			break
		}
		if pages > len(want)/pageSize+1 {
			t.Fatalf("Teams paging did not end after %d pages of %d for %d teams", pages, pageSize, len(want))
		}
		q.After = page[len(page)-1].TeamID
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("Teams paged by %d lists %d teams, want the same %d as one call", pageSize, len(paged), len(want))
	}
}

func testBulkRoundTrip(t *testing.T, s BulkStore) {
	ctx := context.Background()
	// Indices handed out one by one before the bulk load.
	var prev int64
	for range 3 {
		var err error
		if prev, err = s.NextStatusIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}
	keys := BulkKeys(t, 2390, 5, 50) // 12 000 keys
	type span struct{ first, n int64 }
	var spans []span
	for start, size := 0, 5000; start < len(keys); start += size {
		batch := keys[start:min(start+size, len(keys))]
		first, err := s.NextStatusIndices(ctx, len(batch))
		if err != nil {
			t.Fatal(err)
		}
		spans = append(spans, span{first, int64(len(batch))})
		for i := range batch {
			batch[i].StatusIndex = first + int64(i)
		}
		if err := s.CreateKeys(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if len(spans) != 3 {
		t.Fatalf("%d calls, want 3", len(spans))
	}
	for i, sp := range spans {
		if sp.first <= prev {
			t.Fatalf("span %d starts at %d, not beyond the last allocated index %d", i, sp.first, prev)
		}
		prev = sp.first + sp.n - 1
	}
	next, err := s.NextStatusIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next != prev+1 {
		t.Fatalf("NextStatusIndex after the bulk allocations = %d, want %d", next, prev+1)
	}
	if sl, err := s.StatusList(ctx); err != nil || sl.Allocated != next {
		t.Fatalf("StatusList.Allocated = %d (%v), want %d", sl.Allocated, err, next)
	}
	checkLoaded(t, s, keys)
}

func testBulkRefusals(t *testing.T, s BulkStore) {
	ctx := context.Background()
	existing := BulkKeys(t, 1, 1, 0)[0]
	existing.CreatedAt = existing.CreatedAt.Add(-time.Second) // oldest of its team, whatever the clock
	mustCreate(t, s, existing, 0)
	// More than one Redis pipeline chunk, so that a refusal found late
	// must still come before any write.
	fresh := BulkKeys(t, 300, 5, 2)
	assertNoneWritten := func(what string) {
		t.Helper()
		err := inParallel(len(fresh), func(i int) error {
			if _, err := s.GetKey(ctx, fresh[i].ClientID); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%s: key %s: err %v, want ErrNotFound (nothing of a refused call written)", what, fresh[i].ClientID, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := mustList(t, s, BulkTeam(2)); len(got) != 0 {
			t.Fatalf("%s: team %s lists %v, want none", what, BulkTeam(2), ids(got))
		}
		if got := mustList(t, s, BulkTeam(1)); !slices.Equal(ids(got), []string{existing.ClientID}) {
			t.Fatalf("%s: team %s lists %v, want only the key that was there", what, BulkTeam(1), ids(got))
		}
	}

	batch := slices.Concat(fresh[:1200], []store.Key{existing}, fresh[1200:])
	wantErr(t, "CreateKeys with an existing ID", s.CreateKeys(ctx, batch), store.ErrAlreadyExists)
	assertNoneWritten("existing ID")
	assertKey(t, "the existing key after the refused batch", existing, mustGet(t, s, existing.ClientID))

	wantErr(t, "CreateKeys with an ID twice", s.CreateKeys(ctx, slices.Concat(fresh, fresh[3:4])), store.ErrAlreadyExists)
	assertNoneWritten("ID twice")

	bad := fresh[7]
	bad.TeamID = "another-team"
	wantErr(t, "CreateKeys with an ID lacking its team's tag",
		s.CreateKeys(ctx, slices.Concat(fresh[:7], []store.Key{bad}, fresh[8:])), store.ErrInvalid)
	assertNoneWritten("tag rule")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	wantErr(t, "CreateKeys with a cancelled context", s.CreateKeys(cctx, fresh), context.Canceled)
	assertNoneWritten("cancelled")

	_, err := s.NextStatusIndices(ctx, 0)
	wantErr(t, "NextStatusIndices(0)", err, store.ErrInvalid)
	if err := s.CreateKeys(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	// And the batch itself loads.
	if err := s.CreateKeys(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	checkLoaded(t, s, append([]store.Key{existing}, fresh...))
}
