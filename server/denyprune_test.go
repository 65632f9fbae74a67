package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/server/servertest"
)

// TestDenyListPrunedInTheBackground: a revoked token's deny entry stays
// while the token could be used and is removed by the background round
// once it expired — not by a later revocation or lookup (issue 14: the
// deny list's cost must not grow with it).
func TestDenyListPrunedInTheBackground(t *testing.T) {
	ctx := context.Background()
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	e := startEnv(t, servertest.Config{Clock: clk})
	k := e.CreateKey(t, "acme", "revoker", permAccounting)
	tok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	if r := e.revoke(t, k.ClientID, k.ClientSecret, tok); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	jti := jtiOf(t, tok)
	denied := func() bool {
		t.Helper()
		d, err := e.Store.TokenDenied(ctx, jti)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	e.AuditTick(t) // the token is still valid: its entry stays
	if !denied() {
		t.Fatal("the background round removed the entry of a token that can still be used")
	}
	clk.Set(clk.Now().Add(time.Hour)) // past the token's expiry
	if !denied() {
		t.Fatal("the entry went before the background round ran")
	}
	e.AuditTick(t)
	if denied() {
		t.Fatal("the background round left the expired token's deny entry")
	}
}
