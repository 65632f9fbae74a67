package server_test

// End to end through the status list: a resource server built with package
// verify (discovery and JWKS over loopback, status list checks on by
// default) accepts two keys' tokens; one key is deleted through the
// management API; within the list's ttl (1 s here) plus keygate's own
// 1 s cache, that key's same, unexpired token is refused with a clear
// reason, while the other key's token is still accepted. keygate and the
// resource server read one test clock, which the test moves instead of
// waiting.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/verify"
)

// rsCall sends a bearer token to the resource server.
func rsCall(tb testing.TB, client *http.Client, url, tok string) (int, http.Header, map[string]string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("resource server: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	var body map[string]string
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, resp.Header, body
}

func TestStatusListEndToEndWithVerify(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, server.Options{StatusListTTL: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	admin := e.AdminToken(t)
	a := e.CreateKeyWith(t, admin, "acme", "a", permAccounting)
	b := e.CreateKeyWith(t, admin, "beta", "b", permVisualization)
	tokA := e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken
	tokB := e.Token(t, b.ClientID, b.ClientSecret, "").AccessToken
	tokB2 := e.Token(t, b.ClientID, b.ClientSecret, "").AccessToken

	v, err := verify.New(ctx, verify.Options{Issuer: e.URL, Audience: e.URL, Now: e.Clock.Now})
	if err != nil {
		t.Fatalf("verify.New over loopback: %v", err)
	}
	rs := httptest.NewServer(verify.Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"client_id": c.ClientID})
	})))
	defer rs.Close()
	client := &http.Client{Timeout: 5 * time.Second}

	for _, c := range []struct{ name, tok, id string }{{"A", tokA, a.ClientID}, {"B", tokB, b.ClientID}, {"B2", tokB2, b.ClientID}} {
		status, _, body := rsCall(t, client, rs.URL, c.tok)
		if status != http.StatusOK || body["client_id"] != c.id {
			t.Fatalf("token %s before any deletion: %d %v", c.name, status, body)
		}
	}
	// Directly, too.
	if _, err := v.Verify(ctx, tokA); err != nil {
		t.Fatalf("Verify(A) before the deletion: %v", err)
	}

	// RFC 7009 revocation does not reach offline verifiers (documented):
	// B revokes B2, the resource server keeps accepting it.
	if r := e.revoke(t, b.ClientID, b.ClientSecret, tokB2); r.Status != http.StatusOK {
		t.Fatalf("revoke B2: %s", r)
	}

	deleted := e.Clock.Now()
	if r := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+a.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete A: %s", r)
	}
	if exp := time.Unix(claimInt(t, irPayload(t, tokA), "exp"), 0); time.Until(exp) < 5*time.Minute {
		t.Fatalf("A's token expires at %v: the test needs it unexpired", exp)
	}

	// ttl 1 s at the resource server + at most 1 s of keygate's own cache;
	// try every 200 ms of the clock for up to 3 s.
	reason := verify.Reason(verify.ErrRevoked)
	var status int
	var hdr http.Header
	var body map[string]string
	refused := false
	for deadline := deleted.Add(3 * time.Second); e.Clock.Now().Before(deadline); e.Clock.Advance(200 * time.Millisecond) {
		status, hdr, body = rsCall(t, client, rs.URL, tokA)
		if status != http.StatusOK {
			refused = true
			break
		}
	}
	took := e.Clock.Now().Sub(deleted)
	if !refused {
		t.Fatalf("A's token still accepted %v after A was deleted (status list ttl 1 s)", took)
	}
	t.Logf("deleted key's token refused by the resource server %v after the delete", took)
	if status != http.StatusUnauthorized {
		t.Errorf("A's token after the delete: %d %v, want 401", status, body)
	}
	if body["error"] != "invalid_token" || body["error_description"] != reason {
		t.Errorf("A's token after the delete: body %v, want error invalid_token, error_description %q", body, reason)
	}
	if ch := hdr.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, `error_description="`+reason+`"`) {
		t.Errorf("WWW-Authenticate %q lacks invalid_token and %q", ch, reason)
	}
	if _, err := v.Verify(ctx, tokA); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("Verify(A) after the delete: %v, want ErrRevoked", err)
	}

	// The other key's tokens are still accepted, the revoked-at-keygate one
	// included (offline verifiers do not see the deny list).
	for _, c := range []struct{ name, tok string }{{"B", tokB}, {"B2 (revoked via /oauth/revoke)", tokB2}} {
		if status, _, body := rsCall(t, client, rs.URL, c.tok); status != http.StatusOK {
			t.Errorf("token %s after A's deletion: %d %v, want 200", c.name, status, body)
		}
	}
	// While keygate's introspection knows better.
	checkInactive(t, "B2 at keygate", e.introspect(t, b.ClientID, b.ClientSecret, tokB2))
	checkInactive(t, "A at keygate", e.introspect(t, e.AdminID, e.AdminSecret, tokA))

	// A key created after the deletion (its index is in the cached list's
	// block) is accepted at once.
	c := e.CreateKeyWith(t, admin, "acme", "c", permAccounting)
	tokC := e.Token(t, c.ClientID, c.ClientSecret, "").AccessToken
	if status, _, body := rsCall(t, client, rs.URL, tokC); status != http.StatusOK {
		t.Errorf("a new key's token: %d %v, want 200", status, body)
	}
	// A stays refused.
	e.Clock.Advance(1100 * time.Millisecond)
	if status, _, _ := rsCall(t, client, rs.URL, tokA); status != http.StatusUnauthorized {
		t.Errorf("A's token a second later: %d, want 401", status)
	}
}

// verifyUntil verifies tok with v while moving e's clock on in 200 ms
// steps, for up to d, until the answer is want (nil: accepted); it fails
// the test otherwise and returns how long it took.
func verifyUntil(t *testing.T, e *testEnv, v *verify.Verifier, tok string, d time.Duration, want error) time.Duration {
	t.Helper()
	start := e.Clock.Now()
	for {
		_, err := v.Verify(context.Background(), tok)
		if want == nil && err == nil || want != nil && errors.Is(err, want) {
			return e.Clock.Now().Sub(start)
		}
		if e.Clock.Now().Sub(start) >= d {
			t.Fatalf("after %v: Verify = %v, want %v", d, err, want)
		}
		e.Clock.Advance(200 * time.Millisecond)
	}
}

// TestStatusListSuspendResumeWithVerify: a key suspended through the API
// has its outstanding token refused by a verify resource server with
// ErrSuspended within the list's ttl (1 s) plus keygate's 1 s cache; resumed,
// the same unexpired token is accepted again; suspended and then deleted,
// it is ErrRevoked for good. Another key's token is accepted throughout.
func TestStatusListSuspendResumeWithVerify(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, server.Options{StatusListTTL: time.Second})
	admin := e.AdminToken(t)
	a := e.CreateKeyWith(t, admin, "acme", "a", permAccounting)
	b := e.CreateKeyWith(t, admin, "acme", "b", permAccounting)
	tokA := e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken
	tokB := e.Token(t, b.ClientID, b.ClientSecret, "").AccessToken
	v, err := verify.New(context.Background(), verify.Options{Issuer: e.URL, Audience: e.URL, Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	verifyUntil(t, e, v, tokA, 0, nil)

	patch := func(body string) {
		t.Helper()
		req := e.NewRequest(t, http.MethodPatch, "/v1/teams/acme/keys/"+a.ClientID, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/merge-patch+json")
		req.Header.Set("Authorization", "Bearer "+e.AdminToken(t))
		if r := e.Do(t, req); r.Status != http.StatusOK {
			t.Fatalf("patch %s: %s", body, r)
		}
	}
	patch(`{"disabled":true}`)
	took := verifyUntil(t, e, v, tokA, 3*time.Second, verify.ErrSuspended)
	t.Logf("suspended key's token refused (ErrSuspended) %v after the suspension", took)
	if _, err := v.Verify(context.Background(), tokA); errors.Is(err, verify.ErrRevoked) {
		t.Errorf("a suspended key's token is ErrRevoked too: %v", err)
	}
	verifyUntil(t, e, v, tokB, 0, nil)

	patch(`{"disabled":false}`)
	took = verifyUntil(t, e, v, tokA, 3*time.Second, nil)
	t.Logf("resumed key's token accepted again %v after the resume", took)

	patch(`{"disabled":true}`)
	verifyUntil(t, e, v, tokA, 3*time.Second, verify.ErrSuspended)
	if r := e.API(t, e.AdminToken(t), http.MethodDelete, "/v1/teams/acme/keys/"+a.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	verifyUntil(t, e, v, tokA, 3*time.Second, verify.ErrRevoked)
	verifyUntil(t, e, v, tokB, 0, nil)
}

// TestStatusListSecondShard: a key whose index is past the first 2^23 is in
// shard 1 at its index there, its token names that list, and verify
// accepts it and then refuses it once the key is deleted.
func TestStatusListSecondShard(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, server.Options{StatusListTTL: time.Second})
	bulk, ok := e.Store.(interface {
		NextStatusIndices(ctx context.Context, n int) (int64, error)
	})
	if !ok {
		t.Fatal("the bbolt store has no NextStatusIndices")
	}
	if _, err := bulk.NextStatusIndices(context.Background(), 1<<23); err != nil {
		t.Fatal(err)
	}
	admin := e.AdminToken(t)
	k := e.CreateKeyWith(t, admin, "acme", "far", permAccounting)
	g := e.StoredKey(t, k.ClientID).StatusIndex
	if g < 1<<23 {
		t.Fatalf("status index %d, want past 2^23", g)
	}
	tok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	idx, uri := statusRef(t, tok)
	if uri != e.URL+"/statuslists/2bit/1" || idx != g-1<<23 {
		t.Fatalf("status claim idx %d uri %s, want idx %d of %s/statuslists/2bit/1", idx, uri, g-1<<23, e.URL)
	}
	v, err := verify.New(context.Background(), verify.Options{Issuer: e.URL, Audience: e.URL, Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	verifyUntil(t, e, v, tok, 0, nil)
	if r := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+k.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	verifyUntil(t, e, v, tok, 3*time.Second, verify.ErrRevoked)
}
