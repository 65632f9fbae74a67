package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// writeSchema1 writes, with bbolt alone, the file a version-1 keygate wrote
// before the secret index and the deny list's expiry index existed: meta
// "schema" = "1", the version-1 buckets, keys with their team index, and
// deny entries (one live, one expired). Records are encoded as version 1
// encoded them (records.go has not changed since).
func writeSchema1(t *testing.T, path string, keys []store.Key, deny map[string]time.Time) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(metaSchema, []byte("1")); err != nil {
			return err
		}
		for _, name := range v1Buckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		for _, k := range keys {
			v, err := encodeKey(k)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketKeys).Put([]byte(k.ClientID), v); err != nil {
				return err
			}
			team, err := tx.Bucket(bucketTeams).CreateBucketIfNotExists(teamBucket(k.TeamID))
			if err != nil {
				return err
			}
			if err := team.Put([]byte(k.ClientID), []byte{}); err != nil {
				return err
			}
		}
		for jti, until := range deny {
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], uint64(until.UnixMilli()))
			if err := tx.Bucket(bucketDeny).Put([]byte(jti), v[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMigrateFromSchema1: a version-1 file opens, is migrated once (the
// indices built, the version and formats recorded), works, and the next
// Open writes nothing.
func TestMigrateFromSchema1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	keys := storetest.BulkKeys(t, 2, 3, 1)
	keys[2].PreviousSecretHash = bytes.Repeat([]byte{7}, 32)
	now := time.Now()
	writeSchema1(t, path, keys, map[string]time.Time{"live-jti": now.Add(time.Hour), "old-jti": now.Add(-time.Hour)})

	s, err := Open(path)
	if err != nil {
		t.Fatalf("open a version-1 file: %v", err)
	}
	if err := s.view(ctx, func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v, f := string(meta.Get(metaSchema)), string(meta.Get(metaFormats)); v != "2" || f != "[]" {
			t.Errorf("after migration: schema %q, formats %q; want 2, []", v, f)
		}
		if n := tx.Bucket(bucketDenyExpiry).Stats().KeyN; n != 2 {
			t.Errorf("deny expiry index: %d entries, want 2", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		for _, h := range store.SecretHashes(k) {
			if got, err := s.KeyBySecretHash(ctx, h); err != nil || got.ClientID != k.ClientID {
				t.Fatalf("migrated key %s by its secret hash: %q, %v", k.ClientID, got.ClientID, err)
			}
		}
		if got, err := s.GetKey(ctx, k.ClientID); err != nil || !bytes.Equal(got.SecretHash, k.SecretHash) {
			t.Fatalf("migrated key %s: %v", k.ClientID, err)
		}
	}
	if got, err := s.ListKeys(ctx, keys[0].TeamID); err != nil || len(got) != 3 {
		t.Fatalf("team of the migrated file: %d keys, %v; want 3", len(got), err)
	}
	if denied, err := s.TokenDenied(ctx, "live-jti"); err != nil || !denied {
		t.Fatalf("a denied token of the migrated file: %v, %v", denied, err)
	}
	// The expiry index built by the migration is what the prune reads.
	if n, err := s.PruneDeniedTokens(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("prune the migrated deny list: removed %d, %v; want 1", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Once: the next Open finds the file up to date and writes nothing.
	before := readFile(t, path)
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, path), before) {
		t.Fatal("the second Open of a migrated file wrote to it")
	}
}

// TestMigrationFailureLeavesFile: a migration that fails half-way (a step
// ran, then the hook fails inside the same transaction) leaves the file at
// version 1 byte for byte; the next Open migrates it.
func TestMigrationFailureLeavesFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	keys := storetest.BulkKeys(t, 1, 2, 0)
	writeSchema1(t, path, keys, nil)
	before := readFile(t, path)

	boom := errors.New("injected failure")
	ran := 0
	migrateHook = func(from int) error { ran++; return boom }
	_, err := Open(path)
	migrateHook = nil
	if !errors.Is(err, boom) || ran != 1 {
		t.Fatalf("Open with a failing migration: %v (hook ran %d times)", err, ran)
	}
	if !bytes.Equal(readFile(t, path), before) {
		t.Fatal("a failed migration changed the file")
	}
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open after the failed migration: %v", err)
	}
	defer s.Close()
	if got, err := s.KeyBySecretHash(ctx, keys[0].SecretHash); err != nil || got.ClientID != keys[0].ClientID {
		t.Fatalf("key by secret hash after the migration: %q, %v", got.ClientID, err)
	}
}

// TestNewerSchemaRefused: a file of a newer version is refused with a
// message naming both versions, and not written.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	setMeta(t, path, metaSchema, "5")
	before := readFile(t, path)

	_, err = Open(path)
	want := "open store " + path + ": the store has schema version 5, newer than this keygate's 4: run the keygate release that wrote it (or a later one); see the upgrade and rollback procedure in README.md"
	if err == nil || err.Error() != want {
		t.Fatalf("Open of a schema 5 file: %v\nwant: %s", err, want)
	}
	var se *store.SchemaError
	if !errors.As(err, &se) || !errors.Is(err, store.ErrNewerSchema) || se.Store != 5 || se.Known != 4 {
		t.Fatalf("error %v is not a SchemaError{5, 4}", err)
	}
	if !bytes.Equal(readFile(t, path), before) {
		t.Fatal("the refused Open changed the file")
	}
}

// TestFormatsGate: a build that reads a new format records it in the file
// and may write it; an older build (which does not read it) then refuses
// the file, unchanged.
func TestFormatsGate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Writable("test-new") {
		t.Fatal("a format this build does not read is writable")
	}
	s.Close()

	defer func(old []store.Format) { store.ReadableFormats = old }(store.ReadableFormats)
	store.ReadableFormats = []store.Format{"test-new"}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Writable("test-new") || s.Writable("test-other") {
		t.Fatalf("Writable: test-new %v, test-other %v; want true, false", s.Writable("test-new"), s.Writable("test-other"))
	}
	if !store.FormatGateOf(s).Writable("test-new") {
		t.Fatal("FormatGateOf does not find the store's gate")
	}
	s.Close()

	before := readFile(t, path)
	store.ReadableFormats = nil // the older build
	_, err = Open(path)
	want := "open store " + path + ": the store may hold records in format test-new, which this keygate cannot read: run a keygate release that reads it; see the upgrade and rollback procedure in README.md"
	if err == nil || err.Error() != want || !errors.Is(err, store.ErrUnreadableFormat) {
		t.Fatalf("older build opening the file: %v\nwant: %s", err, want)
	}
	if !bytes.Equal(readFile(t, path), before) {
		t.Fatal("the refused Open changed the file")
	}
}

func setMeta(t *testing.T, path string, key []byte, value string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(key, []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

// TestRaiseSchema: Open leaves a version-2 file at 2 (a release before
// still opens it); RaiseSchema(level 1) makes it 3, never lowers it, and
// Open keeps 3; a keygate that knows only 2 refuses it (the message a
// release before this one gives: TestNewerSchemaRefused's, for 4 here).
func TestRaiseSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	version := func() string {
		t.Helper()
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v string
		if err := db.View(func(tx *bbolt.Tx) error { v = string(tx.Bucket(bucketMeta).Get(metaSchema)); return nil }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := version(); v != "2" {
		t.Fatalf("a new file is version %s, want 2", v)
	}
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	if err := s.RaiseSchema(ctx, store.SchemaLevelAdminRoles); err != nil {
		t.Fatal(err)
	}
	if err := s.RaiseSchema(ctx, 0); err != nil {
		t.Fatalf("RaiseSchema(0) on a raised file: %v", err)
	}
	if err := s.RaiseSchema(ctx, store.SchemaLevelKeyPolicy+1); err == nil {
		t.Fatal("RaiseSchema to a level this build does not know succeeded")
	}
	s.Close()
	if v := version(); v != "3" {
		t.Fatalf("after RaiseSchema(1) the file is version %s, want 3", v)
	}
	if s, err = Open(path); err != nil {
		t.Fatalf("this build reopening its raised file: %v", err)
	}
	s.Close()
	if v := version(); v != "3" {
		t.Fatalf("Open lowered the raised version to %s", v)
	}
	// Level 2, key policies: version 4, which this build opens and keeps.
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	if err := s.RaiseSchema(ctx, store.SchemaLevelKeyPolicy); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatalf("this build reopening its version-4 file: %v", err)
	}
	s.Close()
	if v := version(); v != "4" {
		t.Fatalf("after RaiseSchema(2) the file is version %s, want 4", v)
	}
}
