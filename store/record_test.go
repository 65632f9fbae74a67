package store_test

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// everyField is a key with every field of the record set.
func everyField() store.Key {
	at := time.Unix(1_700_000_000, 123_000_000).UTC()
	return store.Key{ClientID: "kgc_abc", TeamID: "team-7", Name: "every field", Role: "",
		Permissions: []string{"accounting_api", "banking_api"}, CreatedAt: at, LastUsedAt: at.Add(time.Hour).Truncate(time.Millisecond),
		SecretHash: []byte{1, 2, 3}, PreviousSecretHash: []byte{4, 5}, PreviousSecretExpiresAt: at.Add(2 * time.Hour),
		SecretRotatedAt: at.Add(-time.Hour), StatusIndex: 7, PreviousStatusIndex: 3, SecretSuspendedAt: at.Add(time.Minute),
		TokenQuota: store.TokenQuota{Limit: 10, Per: "hour", Mode: "strict"}, ExpiresAt: at.Add(48 * time.Hour),
		DisabledAt: at.Add(3 * time.Hour), TokenTTL: 5 * time.Minute, Audiences: []string{"https://api.example.com/a"},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Metadata:     []byte(`{"tenant":"acme"}`)}
}

// TestRecordRoundTrip: every field comes back as it went in, an empty
// permission list stays empty (not absent), and a record appends to what
// dst held.
func TestRecordRoundTrip(t *testing.T) {
	for _, k := range []store.Key{everyField(), {ClientID: "kgc_min", TeamID: "t", Permissions: []string{}}, {ClientID: "kgc_admin", Role: store.RoleRead}} {
		rec, err := store.AppendRecord([]byte("prefix"), k)
		if err != nil {
			t.Fatal(err)
		}
		if string(rec[:6]) != "prefix" {
			t.Fatalf("AppendRecord overwrote dst: %q", rec[:6])
		}
		got, err := store.DecodeRecord(k.ClientID, string(rec[6:]))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, k) {
			t.Fatalf("decoded\n %#v\nwant\n %#v", got, k)
		}
	}
}

// TestRecordRefusesWhatItCannotHold: keys the record cannot hold are
// ErrInvalid; bytes that are not a record (cut short, an unknown field)
// are ErrBadRecord, never a key.
func TestRecordRefusesWhatItCannotHold(t *testing.T) {
	long := everyField()
	long.TeamID = string(make([]byte, 256))
	empty := everyField()
	empty.Permissions = []string{""}
	for _, k := range []store.Key{long, empty} {
		if _, err := store.AppendRecord(nil, k); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("AppendRecord: %v, want ErrInvalid", err)
		}
	}
	rec, err := store.AppendRecord(nil, everyField())
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"empty":         "",
		"cut by a byte": string(rec[:len(rec)-1]),
		"unknown field": string(append(append([]byte(nil), rec...), 200, 1, 'x')),
	} {
		if k, err := store.DecodeRecord("kgc_abc", bad); !errors.Is(err, store.ErrBadRecord) {
			t.Errorf("%s: %+v, %v; want ErrBadRecord", name, k, err)
		}
	}
}
