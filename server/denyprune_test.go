package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/server"
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

// TestRevokeThrottle: revocations are limited per caller like
// introspection (revocation_rate): over the limit a caller gets 429 with
// Retry-After and its token is not denied; another caller is not affected.
func TestRevokeThrottle(t *testing.T) {
	ctx := context.Background()
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second)) // stopped: buckets do not refill
	met := metrics.New(metrics.BuildInfo{})
	e := startEnv(t, servertest.Config{Clock: clk, Options: server.Options{RevocationRate: 1, Metrics: met}})
	a := e.CreateKey(t, "acme", "a", permAccounting)
	b := e.CreateKey(t, "acme", "b", permAccounting)
	first, second := e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken, e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken
	if r := e.revoke(t, a.ClientID, a.ClientSecret, first); r.Status != http.StatusOK {
		t.Fatalf("first revocation: %s", r)
	}
	r := e.revoke(t, a.ClientID, a.ClientSecret, second)
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "1" || !strings.Contains(string(r.Body), `"too many revocation requests from this client; retry later"`) {
		t.Fatalf("second revocation in the same instant at 1/s: %s (Retry-After %q)", r, r.Header.Get("Retry-After"))
	}
	if d, err := e.Store.TokenDenied(ctx, jtiOf(t, second)); err != nil || d {
		t.Fatalf("a throttled revocation denied the token anyway (%v, %v)", d, err)
	}
	if r := e.revoke(t, b.ClientID, b.ClientSecret, e.Token(t, b.ClientID, b.ClientSecret, "").AccessToken); r.Status != http.StatusOK {
		t.Fatalf("another caller: %s", r)
	}
	clk.Set(clk.Now().Add(time.Second))
	if r := e.revoke(t, a.ClientID, a.ClientSecret, second); r.Status != http.StatusOK {
		t.Fatalf("a second later: %s", r)
	}
	w := httptest.NewRecorder()
	met.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(w.Body.String(), `keygate_throttled_requests_total{endpoint="revoke"} 1`) {
		t.Errorf("the throttled revocation is not counted:\n%s", w.Body.String())
	}
}
