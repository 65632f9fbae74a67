package apikey

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// countingHasher counts the HMACs the Service computes.
type countingHasher struct {
	secretHasher
	n atomic.Int64
}

func (h *countingHasher) Hash(secret string) []byte {
	h.n.Add(1)
	return h.secretHasher.Hash(secret)
}

func (h *countingHasher) AppendHash(dst []byte, secret string) []byte {
	h.n.Add(1)
	return h.secretHasher.AppendHash(dst, secret)
}

// failingGets makes GetKey fail with err once armed.
type failingGets struct {
	store.Store
	err atomic.Pointer[error]
}

func (f *failingGets) GetKey(ctx context.Context, id string) (store.Key, error) {
	if e := f.err.Load(); e != nil {
		return store.Key{}, *e
	}
	return f.Store.GetKey(ctx, id)
}

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

// FreshStore is an empty bbolt store no keygate has opened, and a new
// master key. It is exported for this package's external tests (seed_test.go).
func FreshStore(t *testing.T) (*bolt.Store, *masterkey.Key) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	mk, err := masterkey.Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	return st, mk
}

func openTestService(t *testing.T) (*Service, *failingGets, *clock) {
	t.Helper()
	st, mk := FreshStore(t)
	clk := &clock{}
	clk.t.Store(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano())
	fs := &failingGets{Store: st}
	svc, err := Open(context.Background(), Config{Store: fs, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return svc, fs, clk
}

// TestAuthenticateGuards holds the two guards of client authentication at
// the one function every endpoint uses: each refusal is ErrInvalidClient
// (the caller cannot tell which part was wrong), and an unknown client ID
// costs exactly the one HMAC a known one does.
func TestAuthenticateGuards(t *testing.T) {
	ctx := context.Background()
	svc, _, clk := openTestService(t)
	acct, acctSecret, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "accounting", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	viz, vizSecret, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "viz", Permissions: []string{"visualization_sdk"}})
	if err != nil {
		t.Fatal(err)
	}
	gone, goneSecret, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "gone", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete(ctx, testReq, "acme", gone.ClientID); err != nil {
		t.Fatal(err)
	}
	h := &countingHasher{secretHasher: svc.hasher}
	svc.hasher = h

	for _, tc := range []struct {
		name, id, secret string
		hmacs            int64
		want             error
	}{
		{"right secret", acct.ClientID, acctSecret, 1, nil},
		{"another key's secret", acct.ClientID, vizSecret, 1, ErrInvalidClient},
		{"unknown client ID", "acme.unknown", acctSecret, 1, ErrInvalidClient},
		{"unknown client ID of another shape", "kgc_nobody", vizSecret, 1, ErrInvalidClient},
		{"deleted key", gone.ClientID, goneSecret, 1, ErrInvalidClient},
		{"empty secret", acct.ClientID, "", 0, ErrInvalidClient},
		{"empty client ID", "", acctSecret, 0, ErrInvalidClient},
		{"secret with a trailing newline", viz.ClientID, vizSecret + "\n", 1, ErrInvalidClient},
	} {
		h.n.Store(0)
		k, _, err := svc.Authenticate(ctx, tc.id, tc.secret)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if err == nil && k.ClientID != tc.id {
			t.Errorf("%s: authenticated as %s", tc.name, k.ClientID)
		}
		// A refused known key comes back as its identity only (to count the
		// failure against it); an unknown one as nothing.
		known := err != nil && tc.secret != "" && (tc.id == acct.ClientID || tc.id == viz.ClientID)
		switch {
		case known && (k.ClientID != tc.id || k.TeamID != "acme" || k.SecretHash != nil || k.Name != "" || k.Permissions != nil):
			t.Errorf("%s: refused known key returned %+v, want its client ID and team only", tc.name, k)
		case err != nil && !known && k.ClientID != "":
			t.Errorf("%s: a refused authentication of an unknown key returned key %s", tc.name, k.ClientID)
		}
		if got := h.n.Load(); got != tc.hmacs {
			t.Errorf("%s: %d HMACs, want %d", tc.name, got, tc.hmacs)
		}
	}

	// A rotation's previous secret works until its grace period ends, on
	// the Service's clock, and the reading returned is that clock's.
	_, newSecret, err := svc.Rotate(ctx, testReq, "acme", acct.ClientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{acctSecret, newSecret} {
		if _, now, err := svc.Authenticate(ctx, acct.ClientID, secret); err != nil || !now.Now.Equal(clk.now()) {
			t.Fatalf("during grace: err %v, now %v (clock %v)", err, now, clk.now())
		}
	}
	clk.advance(time.Hour)
	if _, _, err := svc.Authenticate(ctx, acct.ClientID, acctSecret); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("previous secret at the end of grace: %v", err)
	}
	if _, _, err := svc.Authenticate(ctx, acct.ClientID, newSecret); err != nil {
		t.Fatalf("new secret after grace: %v", err)
	}
}

// TestAuthenticateStoreFailure: a store that fails is not a wrong secret.
// The error is the store's, wrapped, so front ends answer 503 or 500, never
// invalid_client.
func TestAuthenticateStoreFailure(t *testing.T) {
	ctx := context.Background()
	svc, fs, _ := openTestService(t)
	k, secret, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{fmt.Errorf("redis: %w", store.ErrUnavailable), true},
		{context.DeadlineExceeded, true},
		{errors.New("disk on fire"), false},
	} {
		fs.err.Store(&tc.err)
		_, _, err := svc.Authenticate(ctx, k.ClientID, secret)
		if errors.Is(err, ErrInvalidClient) || !errors.Is(err, tc.err) || Unavailable(err) != tc.unavailable {
			t.Errorf("store error %v: got %v (unavailable %v)", tc.err, err, Unavailable(err))
		}
	}
}
