package apikey

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// TestKeyUsable: the token path's policy check, in its order (expiry,
// suspension, source), with IPv4-mapped sources unmapped, and free of
// allocations.
func TestKeyUsable(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	cidrs := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	v4 := netip.MustParseAddr("203.0.113.9")
	for _, c := range []struct {
		name string
		k    store.Key
		from netip.Addr
		want error
	}{
		{"no policy", store.Key{}, v4, nil},
		{"expires later", store.Key{ExpiresAt: now.Add(time.Second)}, v4, nil},
		{"expires now", store.Key{ExpiresAt: now}, v4, ErrKeyExpired},
		{"expired and suspended: expired first", store.Key{ExpiresAt: now, DisabledAt: now}, v4, ErrKeyExpired},
		{"suspended", store.Key{DisabledAt: now.Add(-time.Hour)}, v4, ErrKeySuspended},
		{"suspended, outside: suspended first", store.Key{DisabledAt: now, AllowedCIDRs: cidrs}, netip.MustParseAddr("198.51.100.1"), ErrKeySuspended},
		{"inside v4", store.Key{AllowedCIDRs: cidrs}, v4, nil},
		{"inside v4, mapped", store.Key{AllowedCIDRs: cidrs}, netip.MustParseAddr("::ffff:203.0.113.9"), nil},
		{"inside v6", store.Key{AllowedCIDRs: cidrs}, netip.MustParseAddr("2001:db8:ffff::1"), nil},
		{"outside v4", store.Key{AllowedCIDRs: cidrs}, netip.MustParseAddr("203.0.114.1"), ErrSourceRefused},
		{"outside v6", store.Key{AllowedCIDRs: cidrs}, netip.MustParseAddr("2001:db9::1"), ErrSourceRefused},
		{"unknown source", store.Key{AllowedCIDRs: cidrs}, netip.Addr{}, ErrSourceRefused},
	} {
		if got := KeyUsable(c.k, now, c.from); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	k := store.Key{ExpiresAt: now.Add(time.Hour), AllowedCIDRs: cidrs}
	from := netip.MustParseAddr("::ffff:203.0.113.9")
	if n := testing.AllocsPerRun(100, func() { _ = KeyUsable(k, now, from) }); n != 0 {
		t.Errorf("KeyUsable allocates %v times", n)
	}
}

// TestTokenExpiryFollowsKey: a token's exp is the earliest of its
// lifetime, the previous secret's end and the key's expiry.
func TestTokenExpiryFollowsKey(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name      string
		prev, key time.Time
		ttl       time.Duration
		want      time.Time
	}{
		{"neither", time.Time{}, time.Time{}, 15 * time.Minute, now.Add(15 * time.Minute)},
		{"key first", time.Time{}, now.Add(5 * time.Minute), 15 * time.Minute, now.Add(5 * time.Minute)},
		{"key later", time.Time{}, now.Add(time.Hour), 15 * time.Minute, now.Add(15 * time.Minute)},
		{"previous first", now.Add(2 * time.Minute), now.Add(5 * time.Minute), 15 * time.Minute, now.Add(2 * time.Minute)},
		{"key before previous", now.Add(9 * time.Minute), now.Add(3 * time.Minute), 15 * time.Minute, now.Add(3 * time.Minute)},
	} {
		a := Auth{Now: now, NotAfter: earliest(c.prev, c.key)}
		if got := a.TokenExpiry(c.ttl); !got.Equal(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// setStatusFails makes SetStatus fail while fail is set.
type setStatusFails struct {
	store.Store
	fail atomic.Bool
}

func (s *setStatusFails) Unwrap() store.Store { return s.Store }

func (s *setStatusFails) SetStatus(ctx context.Context, idx int64, st store.Status) error {
	if s.fail.Load() {
		return errors.New("status list down")
	}
	return s.Store.SetStatus(ctx, idx, st)
}

// TestSuspensionEntriesMended: a suspension whose status entries could not
// be written answers an error, keeps the record (the key gets no token),
// and the background walk writes the entries; a resume likewise.
func TestSuspensionEntriesMended(t *testing.T) {
	ctx := context.Background()
	st := &setStatusFails{Store: storetest.NewMemStore()}
	_, mk := FreshStore(t)
	clk := &clock{}
	clk.t.Store(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	svc, err := Open(ctx, Config{Store: st, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	k, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	entry := func() store.Status {
		l, err := st.StatusList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l.Entry(k.StatusIndex)
	}
	yes, no := true, false
	for _, c := range []struct {
		name     string
		disabled *bool
		want     store.Status
	}{{"suspend", &yes, store.StatusSuspended}, {"resume", &no, store.StatusValid}} {
		st.fail.Store(true)
		if _, _, err := svc.Update(ctx, testReq, "acme", k.ClientID, KeyChange{Disabled: c.disabled}); err == nil {
			t.Fatalf("%s with the status list down: no error", c.name)
		}
		stored, err := st.GetKey(ctx, k.ClientID)
		if err != nil || KeySuspended(stored) != *c.disabled {
			t.Fatalf("%s: the record says suspended=%v (%v), want %v", c.name, KeySuspended(stored), err, *c.disabled)
		}
		if got := entry(); got == c.want {
			t.Fatalf("%s: entry already %d", c.name, got)
		}
		st.fail.Store(false)
		if _, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil {
			t.Fatal(err)
		}
		if got := entry(); got != c.want {
			t.Errorf("%s: after the walk the entry is %d, want %d", c.name, got, c.want)
		}
	}
	// Deleted while suspended: INVALID, and the walk leaves it.
	svc.Update(ctx, testReq, "acme", k.ClientID, KeyChange{Disabled: &yes})
	if err := svc.Delete(ctx, testReq, "acme", k.ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil {
		t.Fatal(err)
	}
	if got := entry(); got != store.StatusInvalid {
		t.Errorf("deleted key's entry %d, want INVALID", got)
	}
}

// TestExpiryChange: the rules of a new expires_at on an existing key.
func TestExpiryChange(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	created := now.Add(-10 * day)
	for _, c := range []struct {
		name   string
		max    time.Duration
		k      store.Key
		t      time.Time
		want   time.Time
		errHas string
		final  bool
	}{
		{"set", 0, store.Key{CreatedAt: created}, now.Add(day), now.Add(day), "", false},
		{"clear", 0, store.Key{CreatedAt: created, ExpiresAt: now.Add(day)}, time.Time{}, time.Time{}, "", false},
		{"past", 0, store.Key{CreatedAt: created}, now.Add(-time.Second), time.Time{}, "not in the future", false},
		{"expired: moved", 0, store.Key{CreatedAt: created, ExpiresAt: now}, now.Add(day), time.Time{}, "", true},
		{"expired: cleared", 0, store.Key{CreatedAt: created, ExpiresAt: now.Add(-day)}, time.Time{}, time.Time{}, "", true},
		{"expired: same value is no change", 0, store.Key{CreatedAt: created, ExpiresAt: now.Add(-day)}, now.Add(-day), now.Add(-day), "", false},
		{"max: within creation + limit", 30 * day, store.Key{CreatedAt: created}, created.Add(30 * day), created.Add(30 * day), "", false},
		{"max: beyond creation + limit", 30 * day, store.Key{CreatedAt: created, ExpiresAt: now.Add(day)}, created.Add(31 * day), time.Time{}, "max_key_lifetime (30d)", false},
		{"max: clear refused", 30 * day, store.Key{CreatedAt: created, ExpiresAt: now.Add(day)}, time.Time{}, time.Time{}, "cannot be cleared", false},
		{"max: an old key without expiry may get now + limit", 30 * day, store.Key{CreatedAt: now.Add(-100 * day)}, now.Add(30 * day), now.Add(30 * day), "", false},
		{"max: an old key without expiry, beyond now + limit", 30 * day, store.Key{CreatedAt: now.Add(-100 * day)}, now.Add(31 * day), time.Time{}, "max_key_lifetime", false},
		{"max: an old key may shorten its long expiry", 30 * day, store.Key{CreatedAt: now.Add(-100 * day), ExpiresAt: now.Add(300 * day)}, now.Add(200 * day), now.Add(200 * day), "", false},
		{"max: an old key may not lengthen it", 30 * day, store.Key{CreatedAt: now.Add(-100 * day), ExpiresAt: now.Add(300 * day)}, now.Add(301 * day), time.Time{}, "max_key_lifetime", false},
	} {
		s := &Service{cfg: Config{MaxKeyLifetime: c.max}}
		got, err := s.expiryChange(c.k, c.t, now)
		switch {
		case c.final:
			if !errors.Is(err, ErrExpiredFinal) {
				t.Errorf("%s: %v, want ErrExpiredFinal", c.name, err)
			}
		case c.errHas != "":
			var inv *InvalidError
			if !errors.As(err, &inv) || !strings.Contains(inv.Detail, c.errHas) {
				t.Errorf("%s: %v, want an InvalidError naming %q", c.name, err, c.errHas)
			}
		case err != nil || !got.Equal(c.want):
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// TestCheckMetadata: stored compact, limits by bytes and members.
func TestCheckMetadata(t *testing.T) {
	got, err := checkMetadata([]byte(` { "tenant" : "acme",  "n": [1, 2] } `))
	if err != nil || string(got) != `{"tenant":"acme","n":[1,2]}` {
		t.Errorf("compact: %s, %v", got, err)
	}
	exactly := `{"a":"` + strings.Repeat("x", MaxMetadataBytes-8) + `"}`
	if _, err := checkMetadata([]byte(exactly)); err != nil || len(exactly) != MaxMetadataBytes {
		t.Errorf("exactly %d bytes (%d): %v", MaxMetadataBytes, len(exactly), err)
	}
	if _, err := checkMetadata([]byte(exactly[:len(exactly)-2] + `x"}`)); err == nil {
		t.Error("one byte over: accepted")
	}
	for _, bad := range []string{`null`, `[]`, `"x"`, `{"a":1,}`, `{"\u0007":1}`} {
		if _, err := checkMetadata([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
