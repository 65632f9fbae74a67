package store_test

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

func policyKey() store.Key {
	return store.Key{
		ClientID:                "kgc_abc123",
		TeamID:                  "team-1",
		Name:                    "ledger sync",
		Permissions:             []string{"accounting_api", "banking_api"},
		CreatedAt:               time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		LastUsedAt:              time.Date(2026, 2, 2, 3, 4, 5, 6, time.UTC),
		SecretHash:              []byte{1, 2, 3, 4},
		PreviousSecretHash:      []byte{5, 6, 7},
		PreviousSecretExpiresAt: time.Date(2026, 3, 2, 3, 4, 5, 6, time.UTC),
		StatusIndex:             7,
		PreviousStatusIndex:     3,
		TokenQuota:              store.TokenQuota{Limit: 10, Per: "hour", Mode: "enforce"},
		Role:                    "read",
		ExpiresAt:               time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		TokenTTL:                time.Minute,
		Audiences:               []string{"https://a.example", "https://b.example"},
		AllowedCIDRs:            []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Metadata:                []byte(`{"tier":"gold"}`),
	}
}

func TestPackKeyKeepsEveryField(t *testing.T) {
	for name, k := range map[string]store.Key{
		"every field": policyKey(),
		"decoy":       store.DecoyKey(false),
		"admin decoy": store.DecoyKey(true),
		"empty lists": {ClientID: "kgc_x", Permissions: []string{}, Audiences: []string{}, SecretHash: []byte{}},
		"zero":        {},
	} {
		raw := []byte(`{"raw":"record"}`)
		p, praw := store.PackKey(k, raw)
		if !reflect.DeepEqual(p, k) { // DeepEqual tells nil from empty
			t.Errorf("%s: packed %+v, want %+v", name, p, k)
		}
		if string(praw) != string(raw) {
			t.Errorf("%s: raw %q, want %q", name, praw, raw)
		}
		// The copy owns its memory: the original's buffers are the caller's.
		raw[0] = 'X'
		if len(k.SecretHash) > 0 {
			k.SecretHash[0] ^= 0xff
			if p.SecretHash[0] == k.SecretHash[0] {
				t.Errorf("%s: the packed hash shares the original's memory", name)
			}
		}
		if len(k.Permissions) > 0 {
			k.Permissions[0] = "changed"
			if p.Permissions[0] == "changed" {
				t.Errorf("%s: the packed permissions share the original's memory", name)
			}
		}
		if praw[0] == 'X' {
			t.Errorf("%s: the packed raw shares the caller's memory", name)
		}
	}
}

// TestPackKeyIsFewObjects holds PackKey to what it is for: a key with every
// field is four allocations (strings, byte slices, lists, prefixes), a key
// without a policy three, whatever its number of permissions.
func TestPackKeyIsFewObjects(t *testing.T) {
	full, plain := policyKey(), store.DecoyKey(false)
	plain.Permissions = []string{"a", "b", "c", "d", "e"}
	raw := make([]byte, 300)
	for name, c := range map[string]struct {
		k    store.Key
		want float64
	}{"every field": {full, 4}, "no policy": {plain, 3}} {
		got := testing.AllocsPerRun(100, func() { _, _ = store.PackKey(c.k, raw) })
		if got > c.want {
			t.Errorf("%s: %v allocations, want at most %v", name, got, c.want)
		}
	}
}

// A byte slice of the packed key cannot grow into its neighbour: an append
// to it copies.
func TestPackKeySlicesEndAtTheirLength(t *testing.T) {
	p, _ := store.PackKey(policyKey(), []byte("raw"))
	if cap(p.SecretHash) != len(p.SecretHash) || cap(p.PreviousSecretHash) != len(p.PreviousSecretHash) ||
		cap(p.Permissions) != len(p.Permissions) {
		t.Fatalf("capacities %d/%d, %d/%d, %d/%d", cap(p.SecretHash), len(p.SecretHash),
			cap(p.PreviousSecretHash), len(p.PreviousSecretHash), cap(p.Permissions), len(p.Permissions))
	}
	_ = append(p.SecretHash, 0xee)
	if p.PreviousSecretHash[0] != 5 {
		t.Fatal("an append to the secret hash wrote into the previous secret hash")
	}
}
