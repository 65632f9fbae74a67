package server_test

import (
	"context"
	"reflect"
	"strings"

	"net/http"
	"net/url"
	"testing"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

// TestTokenThrottledPair: after auth_failure_burst wrong secrets from one
// address, the (address, client ID) pair is refused with 429, Retry-After
// and a §5.2 body — its correct secret included — and a guesser of another
// key from the same address is not (source bucket off here).
func TestTokenThrottledPair(t *testing.T) {
	e := newTestEnv(t, server.Options{AuthFailureBurst: 3, AuthFailureRate: 1, AuthFailureSourceBurst: -1})
	k := e.CreateKey(t, "acme", "sync", permAccounting)
	other := e.CreateKey(t, "acme", "other", permAccounting)
	for i := range 3 {
		if r := e.TokenRequest(t, k.ClientID, "kgs_wrong", url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: %s, want 401", i+1, r)
		}
	}
	r := e.TokenRequest(t, k.ClientID, k.ClientSecret, url.Values{"grant_type": {"client_credentials"}})
	want := `{"error":"invalid_request","error_description":"too many failed client authentications from this address; retry later"}` + "\n"
	if r.Status != http.StatusTooManyRequests || string(r.Body) != want || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("correct secret while throttled: %d %q Retry-After %q; want 429 %q Retry-After 1", r.Status, r.Body, r.Header.Get("Retry-After"), want)
	}
	if r := e.TokenRequest(t, other.ClientID, other.ClientSecret, url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusOK {
		t.Fatalf("another key from the same address: %s, want 200", r)
	}
}

// TestManagementThrottle: at the management API, forged and garbage
// bearer tokens are failures of the pair (source, claimed client_id);
// once its burst is spent every request of the pair — a valid token
// included — is refused with 429 problem+json and Retry-After, before
// any verification. Expired and revoked tokens are no guesses and never
// count. The only change to the store is the one auth.throttled event.
func TestManagementThrottle(t *testing.T) {
	e := newTestEnv(t, server.Options{AuthFailureBurst: 3, AuthFailureRate: 1, AuthFailureSourceBurst: -1})
	admin := e.AdminToken(t)
	get := func(tok string) servertest.Response {
		t.Helper()
		req := e.NewRequest(t, http.MethodGet, "/v1/teams", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return e.Do(t, req)
	}
	// A revoked admin token, many times: never throttled.
	revoked := e.AdminToken(t)
	req := e.NewRequest(t, http.MethodPost, "/oauth/revoke", strings.NewReader(url.Values{"token": {revoked}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", servertest.BasicAuth(e.AdminID, e.AdminSecret))
	if r := e.Do(t, req); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	before, err := e.Store.GetKey(context.Background(), e.AdminID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if r := get(revoked); r.Status != http.StatusUnauthorized {
			t.Fatalf("revoked token %d: %s, want 401", i+1, r)
		}
	}
	if r := get(admin); r.Status != http.StatusOK {
		t.Fatalf("valid token after revoked ones: %s, want 200 (revoked tokens must not count)", r)
	}
	// A forged token claiming the admin's client_id: three, then the pair
	// is throttled — the valid token of that client_id too.
	parts := strings.Split(admin, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	for i := range 3 {
		if r := get(forged); r.Status != http.StatusUnauthorized {
			t.Fatalf("forged token %d: %s, want 401", i+1, r)
		}
	}
	r := get(admin)
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "1" ||
		!strings.Contains(string(r.Body), `"type":"urn:keygate:problem:rate-limited"`) ||
		!strings.Contains(string(r.Body), "too many failed client authentications from this address") {
		t.Fatalf("valid token of a throttled pair: %d %s Retry-After %q; want 429 rate-limited, Retry-After 1", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	page, err := e.Store.(store.AuditStore).AllAuditEvents(context.Background(), store.AuditQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) == 0 || page.Events[0].Action != store.AuditAuthThrottled {
		t.Fatalf("newest audit event: %+v, want auth.throttled", page.Events)
	}
	if page.Events[1].Action != store.AuditTokenRevoked {
		t.Fatalf("more than one event since the revocation: %+v", page.Events[:2])
	}
	after, err := e.Store.GetKey(context.Background(), e.AdminID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("the admin key changed:\n%+v\n%+v", before, after)
	}
}
