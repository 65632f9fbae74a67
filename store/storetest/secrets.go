package storetest

// The secret index (store.Store.KeyBySecretHash): every backend finds a key
// by its current or previous secret hash, and by nothing else, across every
// change of a key's hashes.

import (
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/store"
)

var secretCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"SecretIndex/FollowsCreateRotateGraceEndSuspendDelete", testSecretIndexLifecycle},
	{"SecretIndex/RefusedChangesKeepIt", testSecretIndexRefused},
}

// findsBySecret asserts what KeyBySecretHash answers for hash: want's
// client ID and the key as stored, or ErrNotFound when want is "".
func findsBySecret(t *testing.T, s store.Store, what string, hash []byte, want string) {
	t.Helper()
	k, err := s.KeyBySecretHash(context.Background(), hash)
	switch {
	case want == "" && !errors.Is(err, store.ErrNotFound):
		t.Fatalf("%s: KeyBySecretHash found %q (err %v), want ErrNotFound", what, k.ClientID, err)
	case want == "":
	case err != nil:
		t.Fatalf("%s: KeyBySecretHash: %v, want key %s", what, err, want)
	case k.ClientID != want:
		t.Fatalf("%s: KeyBySecretHash found %s, want %s", what, k.ClientID, want)
	default:
		assertKey(t, what+": the key found", mustGet(t, s, want), k)
	}
}

func testSecretIndexLifecycle(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "idx", "team-a", at(0))
	other := newKey(t, "other", "team-a", at(1))
	admin := newKey(t, "admin", "", at(2))
	admin.PreviousSecretHash = nil
	admin.Role = store.RoleRead // deletable: not the last full admin
	for _, x := range []store.Key{k, other, admin} {
		mustCreate(t, s, x, 0)
	}
	findsBySecret(t, s, "created: current secret", k.SecretHash, k.ClientID)
	findsBySecret(t, s, "created: previous secret", k.PreviousSecretHash, k.ClientID)
	findsBySecret(t, s, "created: another key", other.SecretHash, other.ClientID)
	findsBySecret(t, s, "created: admin key", admin.SecretHash, admin.ClientID)
	findsBySecret(t, s, "an unknown hash", randomBytes(t, 32), "")
	findsBySecret(t, s, "an empty hash", nil, "")

	// A change that leaves the hashes alone leaves the index alone.
	if _, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) { c.Name = "renamed"; return c, nil }); err != nil {
		t.Fatal(err)
	}
	findsBySecret(t, s, "renamed: current secret", k.SecretHash, k.ClientID)

	// Rotate: the current hash becomes the previous one, the old previous
	// one goes.
	gen1, gen2 := k.SecretHash, randomBytes(t, 32)
	oldPrev := k.PreviousSecretHash
	if _, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.PreviousSecretHash, c.SecretHash = c.SecretHash, gen2
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	findsBySecret(t, s, "rotated: new secret", gen2, k.ClientID)
	findsBySecret(t, s, "rotated: the replaced secret, now previous", gen1, k.ClientID)
	findsBySecret(t, s, "rotated: the secret rotated out", oldPrev, "")

	// Grace end: the previous hash is cleared.
	if _, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.PreviousSecretHash, c.PreviousSecretExpiresAt = nil, at(0)
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	findsBySecret(t, s, "grace ended: the previous secret", gen1, "")
	findsBySecret(t, s, "grace ended: the current secret", gen2, k.ClientID)

	// Suspension replaces the current hash with one no secret has.
	tomb := randomBytes(t, 32)
	if _, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.SecretHash, c.SecretSuspendedAt = tomb, at(5)
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	findsBySecret(t, s, "suspended: the leaked secret", gen2, "")

	// Delete: nothing of the key is found; the other keys still are.
	if err := s.DeleteKey(ctx, k.TeamID, k.ClientID); err != nil {
		t.Fatal(err)
	}
	findsBySecret(t, s, "deleted: its current hash", tomb, "")
	findsBySecret(t, s, "deleted: another key of the team", other.SecretHash, other.ClientID)
	findsBySecret(t, s, "deleted: another key's previous secret", other.PreviousSecretHash, other.ClientID)
	if err := s.DeleteKey(ctx, "", admin.ClientID); err != nil {
		t.Fatal(err)
	}
	findsBySecret(t, s, "deleted admin key", admin.SecretHash, "")
}

func testSecretIndexRefused(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "refused", "team-r", at(0))
	mustCreate(t, s, k, 0)
	fresh := randomBytes(t, 32)
	_, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.SecretHash = fresh
		return store.Key{}, errBoom
	})
	wantErr(t, "a refused update", err, errBoom)
	findsBySecret(t, s, "after a refused update: the kept secret", k.SecretHash, k.ClientID)
	findsBySecret(t, s, "after a refused update: the secret it would have set", fresh, "")

	// A key refused for the team limit is not found by its hash; the one
	// that holds the ID or the place keeps its entries.
	full := newKey(t, "full", "team-r", at(1))
	wantErr(t, "create over the limit", s.CreateKey(ctx, full, 1), store.ErrTeamLimit)
	findsBySecret(t, s, "a key refused for the limit", full.SecretHash, "")
	dup := newKey(t, "refused", "team-r", at(2))
	wantErr(t, "create with a taken ID", s.CreateKey(ctx, dup, 0), store.ErrAlreadyExists)
	findsBySecret(t, s, "a duplicate's hash", dup.SecretHash, "")
	findsBySecret(t, s, "the original after a duplicate", k.SecretHash, k.ClientID)

	// A wrong-team delete removes nothing.
	wantErr(t, "delete from another team", s.DeleteKey(ctx, "team-x", k.ClientID), store.ErrNotFound)
	findsBySecret(t, s, "after a refused delete", k.SecretHash, k.ClientID)
}
