package server_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/keygate/keygate/server"
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
