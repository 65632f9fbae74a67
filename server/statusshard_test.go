package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

// TestKeysPastFirstStatusShard: a key whose status index lies past the
// first 2-bit shard (2^23 indices) works everywhere a token is checked
// against its key's generation — the management API for an admin key and
// a manager key, introspection, revocation — though its tokens name the
// index within their shard. (Every key of a store past 8 388 608
// generations; found at 10 000 000 seeded keys, where the management API
// answered an admin's fresh token "revoked".)
func TestKeysPastFirstStatusShard(t *testing.T) {
	t.Parallel()
	for _, b := range append(backends, servertest.Redis()) {
		t.Run(b.Name(), func(t *testing.T) { testKeysPastFirstStatusShard(t, b) })
	}
}

func testKeysPastFirstStatusShard(t *testing.T, b servertest.Backend) {
	e := startEnv(t, servertest.Config{Backend: b})
	bulk, ok := store.Feature[store.BulkLoader](e.Store)
	if !ok {
		t.Skipf("%s has no bulk loader to move the status counter", b.Name())
	}
	if _, err := bulk.NextStatusIndices(context.Background(), 1<<23); err != nil {
		t.Fatal(err)
	}
	admin := e.AdminToken(t) // before the jump: index in shard 0
	mgr := e.CreateManager(t, admin, "acme", "manager")
	key := e.CreateKeyWith(t, admin, "acme", "reader", permAccounting)
	if idx := e.StoredKey(t, mgr.ClientID).StatusIndex; idx <= 1<<23 {
		t.Fatalf("manager key's status index %d, want past the first shard", idx)
	}
	mgrTok := e.Token(t, mgr.ClientID, mgr.ClientSecret, "").AccessToken
	if _, uri := statusRef(t, mgrTok); !strings.HasSuffix(uri, "/statuslists/2bit/1") {
		t.Fatalf("manager token names %s, want shard 1", uri)
	}
	if r := e.API(t, mgrTok, http.MethodGet, "/v1/me", nil); r.Status != http.StatusOK {
		t.Fatalf("manager token on /v1/me: %s", r)
	}
	if r := e.API(t, mgrTok, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != http.StatusOK {
		t.Fatalf("manager token listing its team: %s", r)
	}
	tok := e.Token(t, key.ClientID, key.ClientSecret, "").AccessToken
	if !introspectActive(t, e, mgr, tok) {
		t.Fatal("a live token past the first shard introspects inactive")
	}
	if r := e.revoke(t, key.ClientID, key.ClientSecret, tok); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	if introspectActive(t, e, mgr, tok) {
		t.Fatal("a revoked token past the first shard introspects active")
	}
	// An admin key created past the jump.
	r := e.API(t, admin, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "second admin", "role": "admin"})
	second := decodeAdminKey(t, r, http.StatusCreated)
	adminTok := e.Token(t, second.ClientID, second.ClientSecret, "").AccessToken
	if r := e.API(t, adminTok, http.MethodGet, "/v1/teams", nil); r.Status != http.StatusOK {
		t.Fatalf("admin token past the first shard on /v1/teams: %s", r)
	}
}
