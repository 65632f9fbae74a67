package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// restoreCopy writes a backup to a new directory as keygate.db and opens it,
// as an operator restoring it would.
func restoreCopy(t *testing.T, r io.Reader, size int64) *Store {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("backup gave %d bytes, announced %d", len(b), size)
	}
	path := filepath.Join(t.TempDir(), "keygate.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if problems, err := Check(path, DefaultLockTimeout); err != nil || len(problems) > 0 {
		t.Fatalf("the backup file is not sound: %v %v", problems, err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatalf("open the restored backup: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestBackupIsConsistentUnderWrites: backups taken while a writer commits
// key after key each hold a prefix of the writer's keys (every commit before
// some moment, none after: no gap), at least every key committed before
// Backup was called, each with its team index and secret index entry, and
// the store's signing keys, pepper and status list.
func TestBackupIsConsistentUnderWrites(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if _, err := s.CreateSingleton(ctx, "pepper", []byte("sealed-pepper")); err != nil {
		t.Fatal(err)
	}
	sk := store.SigningKeys{Active: &store.SigningKey{KID: "k1", Alg: "EdDSA", PrivateKeySealed: []byte("sealed-private")}}
	if _, err := s.UpdateSigningKeys(ctx, func(store.SigningKeys) (store.SigningKeys, error) { return sk, nil }); err != nil {
		t.Fatal(err)
	}
	idx, err := s.NextStatusIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeStatus(ctx, idx); err != nil {
		t.Fatal(err)
	}

	key := func(i int) store.Key {
		return store.Key{ClientID: storetest.ID("acme", fmt.Sprintf("k%05d", i)), TeamID: "acme", Name: "k",
			CreatedAt: time.Unix(1700000000, 0).UTC(), SecretHash: []byte(fmt.Sprintf("hash-%05d-0123456789abcdef0123", i))}
	}
	var committed atomic.Int64 // keys 0…committed-1 are committed
	done, first := make(chan struct{}), make(chan struct{})
	writerErr := make(chan error, 1)
	go func() {
		defer close(writerErr)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := s.CreateKey(ctx, key(i), 0); err != nil {
				writerErr <- err
				return
			}
			committed.Store(int64(i + 1))
			if i == 0 {
				close(first)
			}
		}
	}()
	select {
	case <-first:
	case err := <-writerErr:
		t.Fatal(err)
	}

	if size, err := s.BackupSize(ctx); err != nil || size <= 0 {
		t.Fatalf("BackupSize: %d, %v", size, err)
	}
	last := 0
	for round := range 5 {
		before := int(committed.Load())
		r, size, err := s.Backup(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := restoreCopy(t, r, size)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		keys, err := c.ListKeys(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		n := len(keys)
		if n < before || n < last {
			t.Fatalf("round %d: the backup holds %d keys; %d were committed before it began, the previous backup held %d", round, n, before, last)
		}
		for i := range n {
			want := key(i)
			got, err := c.GetKey(ctx, want.ClientID)
			if err != nil {
				t.Fatalf("round %d: the backup holds %d keys but not key %d (%v): not one moment's copy", round, n, i, err)
			}
			assertSameKey(t, want, got)
			if byHash, err := c.KeyBySecretHash(ctx, want.SecretHash); err != nil || byHash.ClientID != want.ClientID {
				t.Fatalf("round %d: key %d by its secret hash in the backup: %q, %v", round, i, byHash.ClientID, err)
			}
		}
		teams, err := c.Teams(ctx, store.TeamQuery{})
		if err != nil || len(teams) != 1 || teams[0].Keys != n {
			t.Fatalf("round %d: the team index of the backup says %+v (%v), want acme with %d keys", round, teams, err, n)
		}
		if p, err := c.CreateSingleton(ctx, "pepper", []byte("other")); err != nil || string(p) != "sealed-pepper" {
			t.Fatalf("round %d: the backup's pepper: %q, %v", round, p, err)
		}
		if got, err := c.SigningKeys(ctx); err != nil || got.Active == nil || got.Active.KID != "k1" || !bytes.Equal(got.Active.PrivateKeySealed, sk.Active.PrivateKeySealed) {
			t.Fatalf("round %d: the backup's signing keys: %+v, %v", round, got, err)
		}
		if sl, err := c.StatusList(ctx); err != nil || sl.Entry(int64(idx)) != store.StatusInvalid {
			t.Fatalf("round %d: status index %d is not revoked in the backup (%v)", round, idx, err)
		}
		last = n
	}
	close(done)
	if err := <-writerErr; err != nil {
		t.Fatal(err)
	}
	if last == 0 {
		t.Fatal("the writer committed nothing while the backups ran")
	}
}

// TestBackupLeavesNothingBehind: the spool file is gone once the backup is
// closed, and a backup refused by a cancelled context leaves nothing
// either.
func TestBackupLeavesNothingBehind(t *testing.T) {
	s, path := openTemp(t)
	dir := filepath.Dir(path)
	want, err := s.BackupSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, size, err := s.Backup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if size != want {
		t.Fatalf("Backup wrote %d bytes, BackupSize said %d", size, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Backup(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("a backup with a cancelled context: %v, want context.Canceled", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "keygate.db" {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("the data directory holds %v after the backups, want only keygate.db", names)
	}
}
