package bolt

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// bulkKeys makes perTeam keys for each of teams teams ("bulk-000001", …)
// plus admins admin keys, all with distinct contents.
func bulkKeys(t *testing.T, teams, perTeam, admins int) []store.Key {
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
		for j := 0; j < perTeam; j++ {
			add(fmt.Sprintf("bulk-%06d", tm), len(out))
		}
	}
	for j := 0; j < admins; j++ {
		add("", len(out))
	}
	return out
}

func sameKey(want, got store.Key) bool {
	return got.ClientID == want.ClientID && got.TeamID == want.TeamID && got.Name == want.Name &&
		slices.Equal(got.Permissions, want.Permissions) &&
		bytes.Equal(got.SecretHash, want.SecretHash) && bytes.Equal(got.PreviousSecretHash, want.PreviousSecretHash) &&
		got.CreatedAt.Equal(want.CreatedAt) && got.LastUsedAt.Equal(want.LastUsedAt) &&
		got.PreviousSecretExpiresAt.Equal(want.PreviousSecretExpiresAt) && got.SecretRotatedAt.Equal(want.SecretRotatedAt) &&
		got.StatusIndex == want.StatusIndex && got.CreatedAt.Location() == time.UTC
}

func TestBulkCreateKeys(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)

	// Indices handed out one by one before the bulk load.
	var prev int64
	for range 3 {
		var err error
		if prev, err = s.NextStatusIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}

	keys := bulkKeys(t, 4990, 5, 50) // 25 000 keys
	type span struct{ first, n int64 }
	var spans []span
	for start, size := 0, 10000; start < len(keys); start += size {
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

	check := func(s *Store) {
		t.Helper()
		byTeam := map[string][]store.Key{}
		for _, want := range keys {
			got, err := s.GetKey(ctx, want.ClientID)
			if err != nil {
				t.Fatal(err)
			}
			if !sameKey(want, got) {
				t.Fatalf("key %s:\n got  %+v\n want %+v", want.ClientID, got, want)
			}
			byTeam[want.TeamID] = append(byTeam[want.TeamID], want)
		}
		for team, want := range byTeam {
			got, err := s.ListKeys(ctx, team)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("team %q lists %d keys, want %d", team, len(got), len(want))
			}
			for i := range want { // bulkKeys made them oldest first
				if !sameKey(want[i], got[i]) {
					t.Fatalf("team %q key %d: got %+v, want %+v", team, i, got[i], want[i])
				}
			}
		}
		n := 0
		if err := s.ForEachKey(ctx, func(store.Key) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != len(keys) {
			t.Fatalf("ForEachKey visits %d keys, want %d", n, len(keys))
		}
	}
	// Acknowledged means durable: all of it is there after a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2)
	sl, err := s2.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sl.Allocated != next {
		t.Fatalf("StatusList.Allocated = %d, want %d", sl.Allocated, next)
	}
}

func TestBulkCreateKeysAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	existing := bulkKeys(t, 1, 1, 0)[0]
	if err := s.CreateKey(ctx, existing, 0); err != nil {
		t.Fatal(err)
	}
	fresh := bulkKeys(t, 20, 5, 2)
	assertNoneWritten := func(what string) {
		t.Helper()
		for _, k := range fresh {
			if _, err := s.GetKey(ctx, k.ClientID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("%s: key %s: err %v, want ErrNotFound (nothing of a failed batch written)", what, k.ClientID, err)
			}
		}
		for tm := 1; tm <= 20; tm++ {
			team := fmt.Sprintf("bulk-%06d", tm)
			got, err := s.ListKeys(ctx, team)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if tm == 1 {
				want = 1 // existing belongs to bulk-000001
			}
			if len(got) != want {
				t.Fatalf("%s: team %s lists %d keys, want %d", what, team, len(got), want)
			}
		}
	}

	// An ID that exists already, in the middle of the batch.
	batch := slices.Concat(fresh[:50], []store.Key{existing}, fresh[50:])
	if err := s.CreateKeys(ctx, batch); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("batch with an existing ID: err %v, want ErrAlreadyExists", err)
	}
	assertNoneWritten("existing ID")
	got, err := s.GetKey(ctx, existing.ClientID)
	if err != nil || !sameKey(existing, got) {
		t.Fatalf("existing key after the refused batch: %+v, %v", got, err)
	}

	// The same ID twice in one batch.
	if err := s.CreateKeys(ctx, slices.Concat(fresh, fresh[3:4])); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("ID given twice: err %v, want ErrAlreadyExists", err)
	}
	assertNoneWritten("ID twice")

	// An ID without its team's tag.
	bad := fresh[7]
	bad.TeamID = "another-team"
	if err := s.CreateKeys(ctx, slices.Concat(fresh[:7], []store.Key{bad}, fresh[8:])); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ID without its team tag: err %v, want ErrInvalid", err)
	}
	assertNoneWritten("tag rule")

	// A cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.CreateKeys(cctx, fresh); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err %v, want context.Canceled", err)
	}
	assertNoneWritten("cancelled")

	if _, err := s.NextStatusIndices(ctx, 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("NextStatusIndices(0): err %v, want ErrInvalid", err)
	}

	// And the batch itself is fine.
	if err := s.CreateKeys(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKeys(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
}
