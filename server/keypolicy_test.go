package server_test

// Key policy (issue 17) at the token endpoint and the management API:
// every refusal asserts its status, its error code and that the store did
// not change (keys, signing keys, audit events and the status list).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

const (
	audAccounting = "https://api.example.com/accounting"
	audBanking    = "https://api.example.com/banking"
)

// policyEpoch is where the policy tests' clocks start.
var policyEpoch = time.Date(2027, 1, 10, 9, 0, 0, 0, time.UTC)

// policyEnv is a keygate on b with a clock the test moves and the key
// policy settings of a platform that uses them: two audiences keys may be
// given, a token lifetime ceiling of an hour, loopback as a trusted proxy
// and two metadata members copied into tokens.
func policyEnv(t *testing.T, b servertest.Backend, opts server.Options) *testEnv {
	t.Helper()
	if opts.AudiencesAllowed == nil {
		opts.AudiencesAllowed = []string{audAccounting, audBanking}
	}
	if opts.MaxKeyTokenTTL == 0 {
		opts.MaxKeyTokenTTL = time.Hour
	}
	return startEnv(t, servertest.Config{Backend: b, Clock: servertest.NewClock(policyEpoch), Options: opts})
}

// policySnapshot is everything a token or management request could change:
// the store's keys, signing keys and audit events, and the status list.
func (e *testEnv) policySnapshot(t *testing.T) string {
	t.Helper()
	l, err := e.Store.StatusList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return e.Snapshot(t) + fmt.Sprintf("\nstatus list %x (allocated %d)\n", l.Statuses, l.Allocated)
}

// createPolicyKey creates a key of team acme with accounting_api and the
// given extra members, or fails the test.
func (e *testEnv) createPolicyKey(t *testing.T, admin string, extra map[string]any) keyJSON {
	t.Helper()
	body := map[string]any{"name": "policy", "permissions": []string{permAccounting}}
	for k, v := range extra {
		body[k] = v
	}
	r := e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("create %v: %s", extra, r)
	}
	var k keyJSON
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// patchKey sends a merge patch of team acme's key.
func (e *testEnv) patchKey(t *testing.T, tok, id string, patch string) response {
	t.Helper()
	req := e.NewRequest(t, http.MethodPatch, "/v1/teams/acme/keys/"+id, strings.NewReader(patch))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Authorization", "Bearer "+tok)
	return e.Do(t, req)
}

// tokenFrom sends a token request for id with form and headers.
func (e *testEnv) tokenWith(t *testing.T, id, secret string, form url.Values, header http.Header) response {
	t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("grant_type", "client_credentials")
	req := e.NewRequest(t, http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", servertest.BasicAuth(id, secret))
	for k, v := range header {
		req.Header[k] = v
	}
	return e.Do(t, req)
}

// wantOAuthError asserts a §5.2 answer with status and code; it returns
// the description.
func wantOAuthError(t *testing.T, r response, status int, code string) string {
	t.Helper()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || r.Status != status || body.Error != code {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
	return body.Description
}

// issued decodes a 200 token answer's token claims and expires_in.
func issued(t *testing.T, r response) (map[string]any, int64) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("token: %s", r)
	}
	var tr tokenResponse
	if err := json.Unmarshal(r.Body, &tr); err != nil {
		t.Fatal(err)
	}
	return claimsOf(t, tr.AccessToken), tr.ExpiresIn
}

func numClaim(m map[string]any, name string) int64 {
	f, _ := m[name].(float64)
	return int64(f)
}

// wrongSecretDescription is what any refusal of a bad secret says: the
// policy refusals must not show through it.
const wrongSecretDescription = "client authentication failed: unknown client, wrong secret, or deleted key"

func TestTokenPolicyExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e := policyEnv(t, b, server.Options{})
		admin := e.AdminToken(t)
		expiresAt := policyEpoch.Add(time.Hour)
		k := e.createPolicyKey(t, admin, map[string]any{"expires_at": expiresAt.Format(time.RFC3339)})

		// Far from expiry: the server's lifetime.
		claims, in := issued(t, e.tokenWith(t, k.ClientID, k.ClientSecret, nil, nil))
		if exp := numClaim(claims, "exp"); exp != policyEpoch.Add(15*time.Minute).Unix() || in != 900 {
			t.Errorf("exp %d, expires_in %d; want iat+15m, 900", exp, in)
		}

		// Five minutes before: the token ends with the key.
		e.Clock.Set(expiresAt.Add(-5 * time.Minute))
		claims, in = issued(t, e.tokenWith(t, k.ClientID, k.ClientSecret, nil, nil))
		if exp := numClaim(claims, "exp"); exp != expiresAt.Unix() || in != 300 {
			t.Errorf("exp %d, expires_in %d; want the key's expiry %d, 300", exp, in, expiresAt.Unix())
		}

		// From expires_at on: no token, and nothing written.
		e.Clock.Set(expiresAt)
		before := e.policySnapshot(t)
		desc := wantOAuthError(t, e.tokenWith(t, k.ClientID, k.ClientSecret, nil, nil), http.StatusUnauthorized, "invalid_client")
		if !strings.Contains(desc, "expired") {
			t.Errorf("description %q does not say the key expired", desc)
		}
		if desc := wantOAuthError(t, e.tokenWith(t, k.ClientID, "kgs_"+strings.Repeat("x", 49), nil, nil), http.StatusUnauthorized, "invalid_client"); desc != wrongSecretDescription {
			t.Errorf("a wrong secret on an expired key says %q: the policy shows before the secret verified", desc)
		}
		if after := e.policySnapshot(t); after != before {
			t.Errorf("the refused requests changed the store:\n%s\n%s", before, after)
		}

		admin = e.AdminToken(t) // the first one expired with the clock's move
		r := e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys/"+k.ClientID, nil)
		var view map[string]any
		_ = json.Unmarshal(r.Body, &view)
		if view["status"] != "expired" || view["expiring_soon"] != false {
			t.Errorf("expired key's view: status %v, expiring_soon %v", view["status"], view["expiring_soon"])
		}

		// Expiry is final: neither moved, cleared nor rotated away (409).
		for _, patch := range []string{`{"expires_at":"2030-01-01T00:00:00Z"}`, `{"expires_at":null}`} {
			checkProblem(t, e.patchKey(t, admin, k.ClientID, patch), http.StatusConflict)
		}
		r = e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys/"+k.ClientID+"/rotate", map[string]any{"grace_period": "0s"})
		if p := checkProblem(t, r, http.StatusConflict); p.Type != "urn:keygate:problem:key-expired" {
			t.Errorf("rotate of an expired key: %s", r)
		}
		if after := e.policySnapshot(t); after != before {
			t.Errorf("the refused changes changed the store:\n%s\n%s", before, after)
		}
		_ = r
	})
}

// TestTokenPolicyExpiredKeyInactive: introspection calls a token of an
// expired key inactive, though the token itself has not expired (it was
// issued before the key's expiry was moved closer).
func TestTokenPolicyExpiredKeyInactive(t *testing.T) {
	e := policyEnv(t, servertest.Memory(), server.Options{})
	admin := e.AdminToken(t)
	k := e.createPolicyKey(t, admin, nil)
	tok := e.Token(t, k.ClientID, k.ClientSecret, "")
	if !introspectActive(t, e, k, tok.AccessToken) {
		t.Fatal("fresh token inactive")
	}
	if r := e.patchKey(t, admin, k.ClientID, fmt.Sprintf(`{"expires_at":%q}`, policyEpoch.Add(time.Minute).Format(time.RFC3339))); r.Status != http.StatusOK {
		t.Fatalf("patch: %s", r)
	}
	e.Clock.Advance(2 * time.Minute) // the token (15 min) is unexpired; the key is not
	other := e.createPolicyKey(t, admin, nil)
	if introspectActive(t, e, other, tok.AccessToken) {
		t.Error("a token of an expired key introspects as active")
	}
}

func introspectActive(t *testing.T, e *testEnv, caller keyJSON, token string) bool {
	t.Helper()
	r := e.introspect(t, caller.ClientID, caller.ClientSecret, token)
	var body struct {
		Active bool `json:"active"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &body) != nil {
		t.Fatalf("introspect: %s", r)
	}
	return body.Active
}

func TestTokenPolicySuspendResume(t *testing.T) {
	for _, b := range append(backends, servertest.Redis()) {
		t.Run(b.Name(), func(t *testing.T) {
			e := policyEnv(t, b, server.Options{})
			admin := e.AdminToken(t)
			k := e.createPolicyKey(t, admin, nil)
			resourceServer := e.createPolicyKey(t, admin, nil) // introspects its team's tokens
			before := e.Token(t, k.ClientID, k.ClientSecret, "")
			idx := e.StoredKey(t, k.ClientID).StatusIndex
			entry := func() store.Status {
				l, err := e.Store.StatusList(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return l.Entry(idx)
			}

			r := e.patchKey(t, admin, k.ClientID, `{"disabled":true}`)
			var view map[string]any
			if r.Status != http.StatusOK || json.Unmarshal(r.Body, &view) != nil || view["status"] != "suspended" || view["disabled"] != true || view["disabled_at"] == nil {
				t.Fatalf("suspend: %s", r)
			}
			if got := entry(); got != store.StatusSuspended {
				t.Errorf("status entry after suspend: %d, want SUSPENDED (2)", got)
			}
			snap := e.policySnapshot(t)
			desc := wantOAuthError(t, e.tokenWith(t, k.ClientID, k.ClientSecret, nil, nil), http.StatusUnauthorized, "invalid_client")
			if !strings.Contains(desc, "suspended") {
				t.Errorf("description %q does not say the key is suspended", desc)
			}
			if desc := wantOAuthError(t, e.tokenWith(t, k.ClientID, "kgs_"+strings.Repeat("y", 49), nil, nil), http.StatusUnauthorized, "invalid_client"); desc != wrongSecretDescription {
				t.Errorf("wrong secret on a suspended key: %q", desc)
			}
			if introspectActive(t, e, resourceServer, before.AccessToken) {
				t.Error("a suspended key's token introspects as active")
			}
			if after := e.policySnapshot(t); after != snap {
				t.Errorf("refused token requests changed the store")
			}

			r = e.patchKey(t, admin, k.ClientID, `{"disabled":false}`)
			if r.Status != http.StatusOK || json.Unmarshal(r.Body, &view) != nil || view["status"] != "active" || view["disabled_at"] != nil {
				t.Fatalf("resume: %s", r)
			}
			if got := entry(); got != store.StatusValid {
				t.Errorf("status entry after resume: %d, want VALID (0)", got)
			}
			if !introspectActive(t, e, resourceServer, before.AccessToken) {
				t.Error("a token issued before the suspension is not active again after the resume")
			}
			e.Token(t, k.ClientID, k.ClientSecret, "")

			// Suspended, then deleted: INVALID, for good.
			e.patchKey(t, admin, k.ClientID, `{"disabled":true}`)
			if r := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+k.ClientID, nil); r.Status != http.StatusNoContent {
				t.Fatalf("delete: %s", r)
			}
			if got := entry(); got != store.StatusInvalid {
				t.Errorf("status entry of a suspended key deleted: %d, want INVALID (1)", got)
			}
		})
	}
}

// TestCreateSuspended: a key created disabled gets no token, and its
// entry is SUSPENDED from the start.
func TestCreateSuspended(t *testing.T) {
	e := policyEnv(t, servertest.Memory(), server.Options{})
	admin := e.AdminToken(t)
	k := e.createPolicyKey(t, admin, map[string]any{"disabled": true})
	wantOAuthError(t, e.tokenWith(t, k.ClientID, k.ClientSecret, nil, nil), http.StatusUnauthorized, "invalid_client")
	l, _ := e.Store.StatusList(context.Background())
	if got := l.Entry(e.StoredKey(t, k.ClientID).StatusIndex); got != store.StatusSuspended {
		t.Errorf("entry %d, want SUSPENDED", got)
	}
}

func TestTokenPolicyLifetimeAndAudience(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e := policyEnv(t, b, server.Options{})
		admin := e.AdminToken(t)
		k := e.createPolicyKey(t, admin, map[string]any{"token_ttl": "5m", "audiences": []string{audAccounting, audBanking}})
		plain := e.createPolicyKey(t, admin, nil)
		long := e.createPolicyKey(t, admin, map[string]any{"token_ttl": 3600})

		claims, in := issued(t, e.tokenWith(t, k.ClientID, k.ClientSecret, nil, nil))
		if numClaim(claims, "exp")-numClaim(claims, "iat") != 300 || in != 300 || claims["aud"] != audAccounting {
			t.Errorf("default: exp-iat %d, expires_in %d, aud %v; want 300, 300, %s", numClaim(claims, "exp")-numClaim(claims, "iat"), in, claims["aud"], audAccounting)
		}
		claims, _ = issued(t, e.tokenWith(t, k.ClientID, k.ClientSecret, url.Values{"resource": {audBanking}}, nil))
		if claims["aud"] != audBanking {
			t.Errorf("resource %s: aud %v", audBanking, claims["aud"])
		}
		claims, in = issued(t, e.tokenWith(t, long.ClientID, long.ClientSecret, nil, nil))
		if in != 3600 || numClaim(claims, "exp")-numClaim(claims, "iat") != 3600 {
			t.Errorf("token_ttl 3600 (max_token_ttl 1h): expires_in %d", in)
		}
		claims, _ = issued(t, e.tokenWith(t, plain.ClientID, plain.ClientSecret, url.Values{"resource": {e.URL}}, nil))
		if claims["aud"] != e.URL {
			t.Errorf("a key without audiences, resource = the server's audience: aud %v", claims["aud"])
		}

		before := e.policySnapshot(t)
		for _, c := range []struct {
			name   string
			key    keyJSON
			body   string
			status int
			code   string
		}{
			{"resource not the key's", k, "resource=" + url.QueryEscape("https://api.example.com/commerce"), 400, "invalid_target"},
			{"resource the server's, key with audiences", k, "resource=" + url.QueryEscape(e.URL), 400, "invalid_target"},
			{"resource allowed elsewhere, key without audiences", plain, "resource=" + url.QueryEscape(audAccounting), 400, "invalid_target"},
			{"resource twice", k, "resource=" + url.QueryEscape(audAccounting) + "&resource=" + url.QueryEscape(audBanking), 400, "invalid_target"},
			{"resource with a fragment", k, "resource=" + url.QueryEscape(audAccounting+"#x"), 400, "invalid_target"},
			{"resource relative", k, "resource=%2Faccounting", 400, "invalid_target"},
			{"resource empty", k, "resource=", 400, "invalid_target"},
			{"management token, another resource", keyJSON{ClientID: e.AdminID, ClientSecret: e.AdminSecret}, "resource=" + url.QueryEscape(audAccounting), 400, "invalid_target"},
		} {
			t.Run(c.name, func(t *testing.T) {
				req := e.NewRequest(t, http.MethodPost, "/oauth/token", strings.NewReader("grant_type=client_credentials&"+c.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", servertest.BasicAuth(c.key.ClientID, c.key.ClientSecret))
				wantOAuthError(t, e.Do(t, req), c.status, c.code)
			})
		}
		if after := e.policySnapshot(t); after != before {
			t.Errorf("refused requests changed the store")
		}
		// The management API's audience may be named by a management token.
		claims, _ = issued(t, e.tokenWith(t, e.AdminID, e.AdminSecret, url.Values{"resource": {e.URL + "/v1"}}, nil))
		if claims["aud"] != e.URL+"/v1" {
			t.Errorf("admin token with resource %s/v1: aud %v", e.URL, claims["aud"])
		}
	})
}

func TestTokenPolicySourceAddress(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e := policyEnv(t, b, server.Options{TrustedProxies: loopback})
		admin := e.AdminToken(t)
		k := e.createPolicyKey(t, admin, map[string]any{"allowed_cidrs": []string{"203.0.113.0/24", "2001:db8::/32"}})
		via := func(xff string) http.Header {
			if xff == "" {
				return nil
			}
			return http.Header{"X-Forwarded-For": {xff}}
		}
		before := e.policySnapshot(t)
		for _, c := range []struct {
			name, xff string
			ok        bool
		}{
			{"IPv4 inside, via a trusted proxy", "203.0.113.7", true},
			{"IPv6 inside, via a trusted proxy", "2001:db8::5", true},
			{"IPv4-mapped IPv6 inside", "::ffff:203.0.113.9", true},
			{"inside, behind another hop the proxy added", "198.51.100.9, 203.0.113.7", true},
			{"IPv4 outside", "198.51.100.1", false},
			{"IPv6 outside", "2001:db9::1", false},
			{"the proxy itself (no header)", "", false},
			{"outside, spoofing an inside hop first", "203.0.113.7, 198.51.100.1", false},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := e.tokenWith(t, k.ClientID, k.ClientSecret, nil, via(c.xff))
				if c.ok {
					issued(t, r)
					return
				}
				desc := wantOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
				if strings.Contains(desc, "203.0.113") || strings.Contains(desc, "2001:db8") || !strings.Contains(desc, "address") {
					t.Errorf("description %q: should refuse the address without naming the allowed ranges", desc)
				}
				if desc := wantOAuthError(t, e.tokenWith(t, k.ClientID, "kgs_"+strings.Repeat("z", 49), nil, via(c.xff)), http.StatusUnauthorized, "invalid_client"); desc != wrongSecretDescription {
					t.Errorf("wrong secret from outside: %q", desc)
				}
			})
		}
		// Token answers change nothing stored either (last use is written
		// by the background flush, not driven here).
		if after := e.policySnapshot(t); after != before {
			t.Errorf("token requests changed the store")
		}

		// An untrusted peer's X-Forwarded-For is ignored: the peer decides.
		u := policyEnv(t, b, server.Options{})
		uadmin := u.AdminToken(t)
		inside := u.createPolicyKey(t, uadmin, map[string]any{"allowed_cidrs": []string{"203.0.113.0/24"}})
		wantOAuthError(t, u.tokenWith(t, inside.ClientID, inside.ClientSecret, nil, via("203.0.113.7")), http.StatusUnauthorized, "invalid_client")
		peer := u.createPolicyKey(t, uadmin, map[string]any{"allowed_cidrs": []string{"127.0.0.0/8"}})
		issued(t, u.tokenWith(t, peer.ClientID, peer.ClientSecret, nil, via("198.51.100.1")))
	})
}

func TestTokenPolicyMetadataClaims(t *testing.T) {
	meta := map[string]any{"tenant": "acme", "plan": "pro", "internal_note": "not for tokens", "iss": "https://evil.example"}
	e := policyEnv(t, servertest.Memory(), server.Options{MetadataClaims: []string{"plan", "tenant", "iss"}})
	admin := e.AdminToken(t)
	k := e.createPolicyKey(t, admin, map[string]any{"metadata": meta})
	claims, _ := issued(t, e.tokenWith(t, k.ClientID, k.ClientSecret, nil, nil))
	got, _ := claims["metadata"].(map[string]any)
	if len(got) != 3 || got["plan"] != "pro" || got["tenant"] != "acme" || got["iss"] != "https://evil.example" {
		t.Errorf("metadata claim %v, want plan, tenant and iss of the key's metadata", claims["metadata"])
	}
	if claims["iss"] != e.URL || claims["tenant"] != nil || claims["internal_note"] != nil {
		t.Errorf("metadata leaked into top-level claims: %v", claims)
	}
	var view map[string]any
	_ = json.Unmarshal(e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys/"+k.ClientID, nil).Body, &view)
	if m, _ := view["metadata"].(map[string]any); len(m) != 4 {
		t.Errorf("the key's view shows metadata %v, want all 4 members", view["metadata"])
	}

	// Without metadata_claims, metadata never reaches a token.
	plain := policyEnv(t, servertest.Memory(), server.Options{})
	padmin := plain.AdminToken(t)
	pk := plain.createPolicyKey(t, padmin, map[string]any{"metadata": meta})
	if claims, _ := issued(t, plain.tokenWith(t, pk.ClientID, pk.ClientSecret, nil, nil)); claims["metadata"] != nil {
		t.Errorf("metadata claim %v without metadata_claims", claims["metadata"])
	}
}

// TestKeyPolicyValidation: every policy field's bad values, at create and
// in a merge patch, get a 400 problem naming the field and change nothing.
func TestKeyPolicyValidation(t *testing.T) {
	e := policyEnv(t, servertest.Memory(), server.Options{MaxKeyLifetime: 30 * 24 * time.Hour})
	admin := e.AdminToken(t)
	k := e.createPolicyKey(t, admin, nil)
	many := make([]string, 33)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.%d.0/24", i)
	}
	manyJSON, _ := json.Marshal(many)
	members := make([]string, 17)
	for i := range members {
		members[i] = fmt.Sprintf(`"m%d":%d`, i, i)
	}
	past := policyEpoch.Add(-time.Hour).Format(time.RFC3339)
	beyond := policyEpoch.Add(31 * 24 * time.Hour).Format(time.RFC3339)
	for _, c := range []struct {
		name, member, value string
		detail              string // a part of the problem's detail
	}{
		{"expires_at in the past", "expires_at", `"` + past + `"`, `"expires_at"`},
		{"expires_at now", "expires_at", `"` + policyEpoch.Format(time.RFC3339) + `"`, "not in the future"},
		{"expires_at a number", "expires_at", `1767225600`, `"expires_at" must be a JSON string`},
		{"expires_at not RFC 3339", "expires_at", `"2027-03-01"`, "not an RFC 3339 time"},
		{"expires_at beyond max_key_lifetime", "expires_at", `"` + beyond + `"`, "max_key_lifetime (30d)"},
		{"disabled null", "disabled", `null`, `"disabled" must be true`},
		{"disabled a string", "disabled", `"yes"`, `"disabled" must be true`},
		{"disabled a number", "disabled", `1`, `"disabled" must be true`},
		{"token_ttl too short", "token_ttl", `30`, `"token_ttl"`},
		{"token_ttl above max_token_ttl", "token_ttl", `"2h"`, "max_token_ttl"},
		{"token_ttl not whole seconds", "token_ttl", `"90.5s"`, "whole seconds"},
		{"token_ttl a fraction", "token_ttl", `90.5`, `"token_ttl" must be whole seconds`},
		{"token_ttl negative", "token_ttl", `-60`, `"token_ttl" must be whole seconds`},
		{"token_ttl no duration", "token_ttl", `"soon"`, "not a duration"},
		{"token_ttl a boolean", "token_ttl", `true`, `"token_ttl" must be whole seconds`},
		{"audiences empty", "audiences", `[]`, `"audiences" must not be empty`},
		{"audiences not allowed", "audiences", `["https://api.example.com/commerce"]`, "not one of the audiences this server allows"},
		{"audiences repeated", "audiences", `["` + audAccounting + `","` + audAccounting + `"]`, "listed twice"},
		{"audiences a string", "audiences", `"` + audAccounting + `"`, `"audiences" must be a JSON array`},
		{"audiences of numbers", "audiences", `[1]`, `"audiences" must be a JSON array`},
		{"allowed_cidrs empty", "allowed_cidrs", `[]`, `"allowed_cidrs" must not be empty`},
		{"allowed_cidrs not an address", "allowed_cidrs", `["300.1.1.1"]`, `"allowed_cidrs[0]"`},
		{"allowed_cidrs bad prefix", "allowed_cidrs", `["10.0.0.0/33"]`, `"allowed_cidrs[0]"`},
		{"allowed_cidrs with a zone", "allowed_cidrs", `["fe80::1%eth0"]`, `"allowed_cidrs[0]"`},
		{"allowed_cidrs over 32", "allowed_cidrs", string(manyJSON), "use at most 32"},
		{"allowed_cidrs repeated", "allowed_cidrs", `["10.0.0.0/8","10.1.2.3/8"]`, "listed twice"},
		{"allowed_cidrs a string", "allowed_cidrs", `"10.0.0.0/8"`, `"allowed_cidrs" must be a JSON array`},
		{"metadata an array", "metadata", `[]`, `"metadata" must be a JSON object`},
		{"metadata a string", "metadata", `"x"`, `"metadata" must be a JSON object`},
		{"metadata over 16 members", "metadata", `{` + strings.Join(members, ",") + `}`, "use at most 16"},
		{"metadata over 1 KiB", "metadata", `{"a":"` + strings.Repeat("x", 1100) + `"}`, "use at most 1024"},
		{"metadata empty member name", "metadata", `{"":1}`, "member name"},
	} {
		for _, op := range []string{"create", "patch"} {
			t.Run(op+": "+c.name, func(t *testing.T) {
				before := e.policySnapshot(t)
				var r response
				if op == "create" {
					body := `{"name":"bad","permissions":["accounting_api"],"` + c.member + `":` + c.value + `}`
					req := e.NewRequest(t, http.MethodPost, "/v1/teams/acme/keys", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+admin)
					r = e.Do(t, req)
				} else {
					r = e.patchKey(t, admin, k.ClientID, `{"`+c.member+`":`+c.value+`}`)
				}
				p := checkProblem(t, r, http.StatusBadRequest)
				if p.Type != "urn:keygate:problem:invalid-request" || !strings.Contains(p.Detail, c.detail) {
					t.Errorf("problem %s %q, want invalid-request naming %q", p.Type, p.Detail, c.detail)
				}
				if after := e.policySnapshot(t); after != before {
					t.Errorf("a refused %s changed the store", op)
				}
			})
		}
	}
	// Audiences on a server that allows none.
	plain := policyEnv(t, servertest.Memory(), server.Options{AudiencesAllowed: []string{}})
	padmin := plain.AdminToken(t)
	before := plain.policySnapshot(t)
	r := plain.API(t, padmin, http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": "x", "permissions": []string{permAccounting}, "audiences": []string{audAccounting}})
	if p := checkProblem(t, r, http.StatusBadRequest); !strings.Contains(p.Detail, "no audiences_allowed") {
		t.Errorf("audiences without audiences_allowed: %q", p.Detail)
	}
	if plain.policySnapshot(t) != before {
		t.Error("the refused create changed the store")
	}
}

// TestKeyPolicyPatchRoundTrip: every field set by PATCH shows in the key's
// JSON, null clears it, and an unchanged value writes no event field.
func TestKeyPolicyPatchRoundTrip(t *testing.T) {
	e := policyEnv(t, servertest.Memory(), server.Options{})
	admin := e.AdminToken(t)
	k := e.createPolicyKey(t, admin, nil)
	exp := policyEpoch.Add(48 * time.Hour).Format(time.RFC3339)
	r := e.patchKey(t, admin, k.ClientID, `{"expires_at":"`+exp+`","token_ttl":"10m","audiences":["`+audBanking+`"],"allowed_cidrs":["192.0.2.1","2001:db8:1::/48"],"metadata":{"tenant": "acme"}}`)
	var v map[string]any
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &v) != nil {
		t.Fatalf("patch: %s", r)
	}
	want := map[string]string{
		"expires_at": `"` + exp + `"`, "token_ttl": `600`, "audiences": `["` + audBanking + `"]`,
		"allowed_cidrs": `["192.0.2.1/32","2001:db8:1::/48"]`, "metadata": `{"tenant":"acme"}`, "status": `"active"`,
		"expiring_soon": `true`, // 48 h ahead: within key_expiry_warning (7 days)
	}
	for name, w := range want {
		if got, _ := json.Marshal(v[name]); string(got) != w {
			t.Errorf("%s = %s, want %s", name, got, w)
		}
	}
	// 12 days ahead: past the warning, not marked.
	r = e.patchKey(t, admin, k.ClientID, `{"expires_at":"`+policyEpoch.Add(12*24*time.Hour).Format(time.RFC3339)+`"}`)
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &v) != nil || v["expiring_soon"] != false {
		t.Errorf("12 days ahead: expiring_soon %v (%s)", v["expiring_soon"], r)
	}
	r = e.patchKey(t, admin, k.ClientID, `{"expires_at":null,"token_ttl":null,"audiences":null,"allowed_cidrs":null,"metadata":null}`)
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &v) != nil {
		t.Fatalf("clear: %s", r)
	}
	for _, name := range []string{"expires_at", "token_ttl", "audiences", "allowed_cidrs", "metadata"} {
		if v[name] != nil {
			t.Errorf("%s = %v after null, want null", name, v[name])
		}
	}
	sk := e.StoredKey(t, k.ClientID)
	if sk.HasPolicy() {
		t.Errorf("stored key still holds a policy after clearing: %+v", sk)
	}
}

// TestKeyPolicyMaxLifetime: with max_key_lifetime a key created without an
// expiry gets the limit, one asking for more is refused naming the limit,
// the expiry can neither be cleared nor moved past creation plus the limit,
// and a rotation does not extend it.
func TestKeyPolicyMaxLifetime(t *testing.T) {
	const limit = 30 * 24 * time.Hour
	e := policyEnv(t, servertest.Memory(), server.Options{MaxKeyLifetime: limit})
	admin := e.AdminToken(t)
	k := e.createPolicyKey(t, admin, nil)
	if got := e.StoredKey(t, k.ClientID).ExpiresAt; !got.Equal(policyEpoch.Add(limit)) {
		t.Fatalf("a key created without expires_at expires %v, want creation + 30d", got)
	}
	before := e.policySnapshot(t)
	if p := checkProblem(t, e.patchKey(t, admin, k.ClientID, `{"expires_at":null}`), http.StatusBadRequest); !strings.Contains(p.Detail, "max_key_lifetime (30d)") {
		t.Errorf("clearing under max_key_lifetime: %q", p.Detail)
	}
	e.Clock.Advance(10 * 24 * time.Hour)
	admin = e.AdminToken(t)
	late := policyEpoch.Add(limit + time.Hour).Format(time.RFC3339)
	if p := checkProblem(t, e.patchKey(t, admin, k.ClientID, `{"expires_at":"`+late+`"}`), http.StatusBadRequest); !strings.Contains(p.Detail, "max_key_lifetime") {
		t.Errorf("moving past creation + limit: %q", p.Detail)
	}
	if e.policySnapshot(t) != before {
		t.Error("refused changes changed the store")
	}
	// Shortening is fine; a rotation keeps the expiry.
	earlier := policyEpoch.Add(20 * 24 * time.Hour)
	if r := e.patchKey(t, admin, k.ClientID, `{"expires_at":"`+earlier.Format(time.RFC3339)+`"}`); r.Status != http.StatusOK {
		t.Fatalf("shorten: %s", r)
	}
	if r := e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys/"+k.ClientID+"/rotate", map[string]any{"grace_period": "0s"}); r.Status != http.StatusOK {
		t.Fatalf("rotate: %s", r)
	}
	if got := e.StoredKey(t, k.ClientID).ExpiresAt; !got.Equal(earlier) {
		t.Errorf("after a rotation the key expires %v, want %v (a rotation never extends a key)", got, earlier)
	}
}

// TestKeyPolicyManagers: a team manager suspends and resumes its team's
// keys through PATCH, cannot lift its own key's policy, and a manager key
// that is suspended or expired loses the management API at once.
func TestKeyPolicyManagers(t *testing.T) {
	e := policyEnv(t, servertest.Memory(), server.Options{})
	admin := e.AdminToken(t)
	mgr := e.CreateManager(t, admin, "acme", "team manager")
	k := e.createPolicyKey(t, admin, nil)
	mtok := e.Token(t, mgr.ClientID, mgr.ClientSecret, "").AccessToken

	if r := e.patchKey(t, mtok, k.ClientID, `{"disabled":true}`); r.Status != http.StatusOK {
		t.Fatalf("manager suspends a team key: %s", r)
	}
	if r := e.patchKey(t, mtok, k.ClientID, `{"disabled":false,"allowed_cidrs":["10.0.0.0/8"]}`); r.Status != http.StatusOK {
		t.Fatalf("manager resumes and restricts a team key: %s", r)
	}
	before := e.policySnapshot(t)
	for _, patch := range []string{`{"disabled":true}`, `{"expires_at":null}`, `{"allowed_cidrs":null}`, `{"token_ttl":"1h"}`, `{"metadata":{"a":1}}`} {
		if p := checkProblem(t, e.patchKey(t, mtok, mgr.ClientID, patch), http.StatusForbidden); !strings.Contains(p.Detail, "its own key's policy") {
			t.Errorf("manager patches its own key %s: %q", patch, p.Detail)
		}
	}
	if e.policySnapshot(t) != before {
		t.Error("refused changes of the manager's own key changed the store")
	}

	// An operator suspends the manager key: its token stops at once.
	if r := e.patchKey(t, admin, mgr.ClientID, `{"disabled":true}`); r.Status != http.StatusOK {
		t.Fatalf("operator suspends the manager: %s", r)
	}
	if r := e.API(t, mtok, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("a suspended manager's token: %s, want 401", r)
	}
	e.patchKey(t, admin, mgr.ClientID, `{"disabled":false}`)
	mtok = e.Token(t, mgr.ClientID, mgr.ClientSecret, "").AccessToken
	if r := e.API(t, mtok, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != http.StatusOK {
		t.Fatalf("resumed manager: %s", r)
	}
	// Expiring under a live token: the token outlives nothing.
	e.patchKey(t, admin, mgr.ClientID, `{"expires_at":"`+policyEpoch.Add(2*time.Minute).Format(time.RFC3339)+`"}`)
	e.Clock.Advance(2 * time.Minute)
	if r := e.API(t, mtok, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("an expired manager's token: %s, want 401", r)
	}
}

// TestKeyPolicyAdminKeyLosesAPI: an admin key that is suspended or expired
// (set in the store: admin keys have no PATCH) loses /v1 at once.
func TestKeyPolicyAdminKeyLosesAPI(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*store.Key)
	}{
		{"suspended", func(k *store.Key) { k.DisabledAt = policyEpoch }},
		{"expired", func(k *store.Key) { k.ExpiresAt = policyEpoch }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := policyEnv(t, servertest.Memory(), server.Options{})
			admin := e.AdminToken(t)
			if r := e.API(t, admin, http.MethodGet, "/v1/teams", nil); r.Status != http.StatusOK {
				t.Fatalf("admin token: %s", r)
			}
			if _, err := e.Store.UpdateKey(context.Background(), e.AdminID, func(k store.Key) (store.Key, error) {
				c.change(&k)
				return k, nil
			}); err != nil {
				t.Fatal(err)
			}
			if r := e.API(t, admin, http.MethodGet, "/v1/teams", nil); r.Status != http.StatusUnauthorized {
				t.Errorf("a %s admin key's token: %s, want 401", c.name, r)
			}
			wantOAuthError(t, e.tokenWith(t, e.AdminID, e.AdminSecret, nil, nil), http.StatusUnauthorized, "invalid_client")
		})
	}
}

// TestKeyPolicyRaisesSchema: the schema is raised to the key policy's level
// before the first key with a policy is stored, a failed raise stores
// nothing, and keys without a policy raise nothing.
func TestKeyPolicyRaisesSchema(t *testing.T) {
	ss := &schemaStore{Store: storetest.NewMemStore()}
	e := startEnv(t, servertest.Config{Backend: servertest.Existing(ss), Clock: servertest.NewClock(policyEpoch),
		Options: server.Options{AudiencesAllowed: []string{audAccounting}}})
	admin := e.AdminToken(t)
	plain := e.createPolicyKey(t, admin, nil)
	if len(ss.raised) != 0 {
		t.Fatalf("a key without a policy raised the schema: %v", ss.raised)
	}
	ss.err = fmt.Errorf("disk full")
	before := e.policySnapshot(t)
	r := e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": "x", "permissions": []string{permAccounting}, "audiences": []string{audAccounting}})
	checkProblem(t, r, http.StatusInternalServerError)
	checkProblem(t, e.patchKey(t, admin, plain.ClientID, `{"disabled":true}`), http.StatusInternalServerError)
	if e.policySnapshot(t) != before {
		t.Error("a failed raise let a policy be stored")
	}
	ss.err = nil
	if r := e.patchKey(t, admin, plain.ClientID, `{"disabled":true}`); r.Status != http.StatusOK {
		t.Fatalf("suspend: %s", r)
	}
	if len(ss.raised) != 1 || ss.raised[0] != store.SchemaLevelKeyPolicy {
		t.Errorf("raised %v, want [%d]", ss.raised, store.SchemaLevelKeyPolicy)
	}
}

// TestKeyPolicyOtherEndpoints: a suspended key, or one used from outside
// its addresses, gets nothing from introspection or revocation either.
func TestKeyPolicyOtherEndpoints(t *testing.T) {
	e := policyEnv(t, servertest.Memory(), server.Options{})
	admin := e.AdminToken(t)
	k := e.createPolicyKey(t, admin, nil)
	tok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	e.patchKey(t, admin, k.ClientID, `{"disabled":true}`)
	for _, path := range []string{"/oauth/introspect", "/oauth/revoke"} {
		desc := wantOAuthError(t, e.oauthPost(t, path, k.ClientID, k.ClientSecret, url.Values{"token": {tok}}), http.StatusUnauthorized, "invalid_client")
		if !strings.Contains(desc, "suspended") {
			t.Errorf("%s by a suspended key: %q", path, desc)
		}
	}
	e.patchKey(t, admin, k.ClientID, `{"disabled":false,"allowed_cidrs":["198.51.100.0/24"]}`)
	desc := wantOAuthError(t, e.oauthPost(t, "/oauth/introspect", k.ClientID, k.ClientSecret, url.Values{"token": {tok}}), http.StatusUnauthorized, "invalid_client")
	if !strings.Contains(desc, "address") {
		t.Errorf("introspection from outside the key's addresses: %q", desc)
	}
}

// patchPolicy sets every key policy field on k (the request comes from
// httptest's 192.0.2.1, inside the allowed CIDRs).
func patchPolicy(t testing.TB, e *testEnv, k keyJSON) keyJSON {
	t.Helper()
	req := e.NewRequest(t, http.MethodPatch, "/v1/teams/bench/keys/"+k.ClientID, bytes.NewReader([]byte(`{
		"expires_at": "2099-01-01T00:00:00Z", "token_ttl": "10m",
		"audiences": ["https://api.example.com/accounting"],
		"allowed_cidrs": ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"],
		"metadata": {"tenant": "acme", "plan": "pro"}}`)))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Authorization", "Bearer "+e.AdminToken(t))
	if r := e.Do(t, req); r.Status != http.StatusOK {
		t.Fatalf("set the policy: %s", r)
	}
	return k
}
