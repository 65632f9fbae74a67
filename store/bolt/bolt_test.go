package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
		return s
	})
}

// TestReopenKeepsAcknowledgedWrites is the restart half of "an acknowledged
// write is never lost": everything that returned nil before Close is there,
// equal, after Open.
func TestReopenKeepsAcknowledgedWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	team := store.Key{
		ClientID: storetest.ID("team-a", "kg_team"), TeamID: "team-a", Name: "CI", Permissions: []string{"accounting_api"},
		CreatedAt: created, SecretHash: []byte("hash-1"),
	}
	gone := store.Key{ClientID: storetest.ID("team-a", "kg_gone"), TeamID: "team-a", Name: "old", CreatedAt: created, SecretHash: []byte("hash-2")}
	admin := store.Key{ClientID: "kg_admin", Name: "admin", Permissions: []string{"keys:admin"}, CreatedAt: created, SecretHash: []byte("hash-3")}
	for _, k := range []store.Key{team, gone, admin} {
		if err := s.CreateKey(ctx, k, 5); err != nil {
			t.Fatal(err)
		}
	}
	rotated, err := s.UpdateKey(ctx, team.ClientID, func(k store.Key) (store.Key, error) {
		k.PreviousSecretHash, k.SecretHash = k.SecretHash, []byte("hash-4")
		k.PreviousSecretExpiresAt = created.Add(time.Hour)
		k.SecretRotatedAt = created.Add(time.Minute)
		return k, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, "team-a", gone.ClientID); err != nil {
		t.Fatal(err)
	}
	used := created.Add(2 * time.Hour)
	if err := s.TouchKeys(ctx, map[string]time.Time{team.ClientID: used, admin.ClientID: used}); err != nil {
		t.Fatal(err)
	}
	rotated.LastUsedAt = used
	admin.LastUsedAt = used
	pepper, err := s.CreateSingleton(ctx, "pepper", []byte("pepper-bytes"))
	if err != nil {
		t.Fatal(err)
	}
	signing, err := s.UpdateSigningKeys(ctx, func(store.SigningKeys) (store.SigningKeys, error) {
		return store.SigningKeys{
			Active: &store.SigningKey{KID: "k2", Alg: "ES256", PrivateKeySealed: []byte("sealed-2"), CreatedAt: created},
			Retired: []store.RetiredSigningKey{{
				SigningKey:   store.SigningKey{KID: "k1", Alg: "ES256", PrivateKeySealed: []byte("sealed-1"), CreatedAt: created.Add(-time.Hour)},
				PublishUntil: created.Add(time.Hour),
			}},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()

	for _, want := range []store.Key{rotated, admin} {
		got, err := s.GetKey(ctx, want.ClientID)
		if err != nil {
			t.Fatalf("GetKey(%s) after reopen: %v", want.ClientID, err)
		}
		assertSameKey(t, want, got)
	}
	if _, err := s.GetKey(ctx, gone.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key after reopen: got %v, want ErrNotFound", err)
	}
	if ks, err := s.ListKeys(ctx, "team-a"); err != nil || len(ks) != 1 || ks[0].ClientID != team.ClientID {
		t.Fatalf("ListKeys(team-a) after reopen: %v, %v; want just %s", ks, err, team.ClientID)
	}
	// The reopened team index must still count toward the limit.
	if err := s.CreateKey(ctx, store.Key{ClientID: storetest.ID("team-a", "kg_over"), TeamID: "team-a", CreatedAt: created}, 1); !errors.Is(err, store.ErrTeamLimit) {
		t.Fatalf("CreateKey over the limit after reopen: got %v, want ErrTeamLimit", err)
	}
	if got, err := s.CreateSingleton(ctx, "pepper", []byte("another")); err != nil || !bytes.Equal(got, pepper) {
		t.Fatalf("pepper after reopen: err %v, kept %v", err, bytes.Equal(got, pepper))
	}
	got, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Active == nil || got.Active.KID != "k2" || !bytes.Equal(got.Active.PrivateKeySealed, signing.Active.PrivateKeySealed) ||
		len(got.Retired) != 1 || got.Retired[0].KID != "k1" || !got.Retired[0].PublishUntil.Equal(signing.Retired[0].PublishUntil) ||
		!bytes.Equal(got.Retired[0].PrivateKeySealed, signing.Retired[0].PrivateKeySealed) {
		t.Fatalf("signing keys after reopen: got %+v, want %+v", got, signing)
	}
}

func assertSameKey(t *testing.T, want, got store.Key) {
	t.Helper()
	if got.ClientID != want.ClientID || got.TeamID != want.TeamID || got.Name != want.Name ||
		strings.Join(got.Permissions, ",") != strings.Join(want.Permissions, ",") ||
		!bytes.Equal(got.SecretHash, want.SecretHash) || !bytes.Equal(got.PreviousSecretHash, want.PreviousSecretHash) ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.LastUsedAt.Equal(want.LastUsedAt) ||
		!got.PreviousSecretExpiresAt.Equal(want.PreviousSecretExpiresAt) || !got.SecretRotatedAt.Equal(want.SecretRotatedAt) {
		t.Fatalf("key %s after reopen differs:\n got  %+v\n want %+v", want.ClientID, got, want)
	}
}

// TestSecondOpenFailsFast: a second keygate on the same data directory must
// say what is wrong within about a second instead of hanging.
func TestSecondOpenFailsFast(t *testing.T) {
	t.Parallel() // waits out the real default timeout; let it overlap
	s, path := openTemp(t)

	start := time.Now()
	s2, err := Open(path)
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: error %v does not wrap ErrLocked", err)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "in use by another keygate") {
		t.Errorf("second Open: error %q does not name the file and the likely cause", msg)
	}
	if elapsed > DefaultLockTimeout+time.Second {
		t.Errorf("second Open took %v, want about %v", elapsed, DefaultLockTimeout)
	}

	// A shorter timeout is honoured, and the lock is free once the holder
	// closes.
	start = time.Now()
	if _, err := Open(path, Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open with short timeout: got %v, want ErrLocked", err)
	}
	if elapsed := time.Since(start); elapsed > 600*time.Millisecond {
		t.Errorf("Open with 100ms lock timeout took %v", elapsed)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err = Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	s2.Close()
}

func TestFileMode(t *testing.T) {
	_, path := openTemp(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("store file mode %v, want 0600 (it holds secret hashes)", mode)
	}
}

// TestUnknownSchemaRefused: a file from a keygate with another layout must be
// refused rather than misread.
func TestUnknownSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaSchema, []byte(strconv.Itoa(maxKnownVersion+1)))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open of a file with a schema version newer than maxKnownVersion succeeded")
	} else if !strings.Contains(err.Error(), "version") {
		t.Fatalf("Open of a newer file: error %q does not mention the version", err)
	}
}

func TestPingAfterClose(t *testing.T) {
	s, _ := openTemp(t)
	s.Close()
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping after Close: got %v, want ErrUnavailable", err)
	}
}

func TestErrorsDoNotLeakHashes(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	k := store.Key{ClientID: storetest.ID("t", "kg_x"), TeamID: "t", SecretHash: []byte("SECRET-HASH-MARKER")}
	if err := s.CreateKey(ctx, k, 1); err != nil {
		t.Fatal(err)
	}
	k2 := k
	k2.ClientID = storetest.ID("t", "kg_y")
	for _, err := range []error{s.CreateKey(ctx, k, 1), s.CreateKey(ctx, k2, 1)} {
		if err == nil || strings.Contains(err.Error(), "SECRET-HASH-MARKER") || strings.Contains(err.Error(), "U0VDUkVU") {
			t.Fatalf("error %v: want an error without the hash", err)
		}
	}
}

// TestForEachKeyAcrossBatches covers what the shared suite cannot reach
// cheaply: batch boundaries, and fn writing to the store mid-walk (which
// would deadlock if fn ran inside the read transaction).
func TestForEachKeyAcrossBatches(t *testing.T) {
	ctx := context.Background()
	for _, batch := range []int{1, 2, 3, 7, 8} {
		s, _ := openTemp(t)
		s.forEachBatch = batch
		const n = 7
		for i := range n {
			k := store.Key{ClientID: storetest.ID("team-a", fmt.Sprintf("kg_%d", i)), TeamID: "team-a", CreatedAt: time.Unix(int64(i), 0)}
			if err := s.CreateKey(ctx, k, 0); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]int{}
		err := s.ForEachKey(ctx, func(k store.Key) error {
			seen[k.ClientID]++
			_, err := s.UpdateKey(ctx, k.ClientID, func(k store.Key) (store.Key, error) {
				k.Name = "visited"
				return k, nil
			})
			return err
		})
		if err != nil {
			t.Fatalf("batch %d: ForEachKey: %v", batch, err)
		}
		if len(seen) != n {
			t.Fatalf("batch %d: visited %d distinct keys, want %d", batch, len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Fatalf("batch %d: visited %s %d times", batch, id, c)
			}
		}
	}
}

// TestForEachKeyDeletingAsItGoes: when the key a batch ended on is gone by
// the time the next batch starts, the walk must resume at its successor, not
// skip it.
func TestForEachKeyDeletingAsItGoes(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	s.forEachBatch = 1
	const n = 5
	for i := range n {
		if err := s.CreateKey(ctx, store.Key{ClientID: storetest.ID("team-a", fmt.Sprintf("kg_%d", i)), TeamID: "team-a"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	visited := 0
	err := s.ForEachKey(ctx, func(k store.Key) error {
		visited++
		return s.DeleteKey(ctx, k.TeamID, k.ClientID)
	})
	if err != nil {
		t.Fatal(err)
	}
	if visited != n {
		t.Fatalf("visited %d keys while deleting each, want %d", visited, n)
	}
	if ks, _ := s.ListKeys(ctx, "team-a"); len(ks) != 0 {
		t.Fatalf("%d keys left", len(ks))
	}
}

func TestExportConformance(t *testing.T) {
	storetest.RunExport(t, func(t *testing.T) storetest.ExportStore {
		s, _ := openTemp(t)
		return s
	})
}

// TestOpenReadOnly: reads work, writes fail, the file stays byte for byte
// what it was, and a missing or empty file is fs.ErrNotExist naming it.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if _, err := s.CreateSingleton(ctx, "pepper", []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ro.Singletons(ctx)
	if err != nil || string(got["pepper"]) != "sealed" {
		t.Fatalf("Singletons = %q, %v", got, err)
	}
	if _, err := ro.NextStatusIndex(ctx); err == nil {
		t.Error("a write on a read-only store succeeded")
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("OpenReadOnly changed the file")
	}

	dir := t.TempDir()
	missing := filepath.Join(dir, "keygate.db")
	if _, err := OpenReadOnly(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("OpenReadOnly created %d files", len(entries))
	}
	if err := os.WriteFile(missing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
}

// Opening a store that needs no setup, reading it and reading an existing
// singleton write nothing: the file stays the same byte for byte (a
// master-key rotation refused for a wrong key relies on it).
func TestOpenAndReadsDoNotWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSingleton(ctx, "pepper", []byte("pepper-bytes")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.CreateSingleton(ctx, "pepper", []byte("other")); err != nil || string(got) != "pepper-bytes" {
		t.Fatalf("CreateSingleton of an existing singleton: %q, %v", got, err)
	}
	if _, err := s.SigningKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("open, reads and close changed the file (%v)", err)
	}
}
