package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

type signingKeyView struct {
	KID            string     `json:"kid"`
	Alg            string     `json:"alg"`
	State          string     `json:"state"`
	CreatedAt      time.Time  `json:"created_at"`
	SignsFrom      time.Time  `json:"signs_from"`
	RetiresAt      *time.Time `json:"retires_at"`
	PublishedUntil *time.Time `json:"published_until"`
}

type signingKeyList struct {
	Keys              []signingKeyView `json:"keys"`
	RotationSeconds   int64            `json:"rotation_seconds"`
	PrepublishSeconds int64            `json:"prepublish_seconds"`
}

func listSigningKeys(t *testing.T, e *testEnv, tok string) (signingKeyList, []byte) {
	t.Helper()
	r := e.API(t, tok, http.MethodGet, "/v1/signing-keys", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/signing-keys: %s", r)
	}
	var l signingKeyList
	dec := json.NewDecoder(strings.NewReader(string(r.Body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("GET /v1/signing-keys: %v in %s", err, r.Body)
	}
	return l, r.Body
}

func states(l signingKeyList) []string {
	var out []string
	for _, k := range l.Keys {
		out = append(out, k.State+":"+k.KID)
	}
	return out
}

// assertProblem checks a problem answer member by member (the request ID
// varies).
func assertProblem(t *testing.T, what string, r servertest.Response, status int, typ, title, detail string) {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(r.Body, &p); err != nil || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s: not problem+json: %s (%v)", what, r, err)
	}
	if r.Status != status || p["type"] != typ || p["title"] != title || p["status"] != float64(status) || p["detail"] != detail || len(p) != 5 {
		t.Fatalf("%s: got %s\nwant %d %s %q %q", what, r, status, typ, title, detail)
	}
}

// TestSigningKeysAPI: list; a safe rotation pre-publishes; a second one is
// refused; now promotes; revoke removes (the current key: the next one
// signs in the same update); bad input gets an exact problem and changes
// nothing; nothing private is ever in an answer.
func TestSigningKeysAPI(t *testing.T) {
	t0 := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := servertest.NewClock(t0)
	e := startEnv(t, servertest.Config{Clock: clock, Options: server.Options{SigningKeyRotation: -1}})
	admin := e.AdminToken(t)

	l, body := listSigningKeys(t, e, admin)
	if len(l.Keys) != 1 || l.Keys[0].State != "current" || l.Keys[0].Alg != "ES256" || !l.Keys[0].SignsFrom.Equal(t0) ||
		l.Keys[0].RetiresAt != nil || l.RotationSeconds != 0 || l.PrepublishSeconds != int64(config.DefaultSigningKeyPrepublish/time.Second) {
		t.Fatalf("initial list: %s", body)
	}
	first := l.Keys[0].KID
	for _, secret := range []string{"private", "sealed", `"d"`} {
		if strings.Contains(string(body), secret) {
			t.Fatalf("the list mentions %s: %s", secret, body)
		}
	}

	// Bad input: exact problems, nothing changed.
	bad := []struct {
		name   string
		body   any
		status int
		typ    string
		title  string
		detail string
	}{
		{"now and revoke", `{"now":true,"revoke":"` + first + `"}`, 400, "urn:keygate:problem:invalid-request", "Bad Request",
			"now and revoke exclude each other: revoking the current key already makes the next one sign at once"},
		{"unknown field", `{"force":true}`, 400, "urn:keygate:problem:invalid-request", "Bad Request",
			`the body is not the expected JSON object: unknown field "force"; allowed fields are "now", "revoke"`},
		{"implausible kid", `{"revoke":"../../etc"}`, 400, "urn:keygate:problem:invalid-request", "Bad Request",
			"revoke must be the kid of a published key (see GET /v1/signing-keys)"},
		{"unknown kid", `{"revoke":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`, 404, "urn:keygate:problem:not-found", "Not Found",
			"no published signing key has kid AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA (see GET /v1/signing-keys)"},
		{"now not a boolean", `{"now":"yes"}`, 400, "urn:keygate:problem:invalid-request", "Bad Request",
			`the body is not the expected JSON object: field "now" must be true or false`},
	}
	for _, c := range bad {
		r := e.API(t, admin, http.MethodPost, "/v1/signing-keys/rotate", c.body)
		assertProblem(t, c.name, r, c.status, c.typ, c.title, c.detail)
		if _, after := listSigningKeys(t, e, admin); string(after) != string(body) {
			t.Fatalf("%s changed the keys:\n%s\n%s", c.name, body, after)
		}
	}
	// A team manager's token may not rotate (an operator route).
	team := e.CreateManager(t, e.AdminToken(t), "acme", "t", permVisualization)
	teamTok := e.Token(t, team.ClientID, team.ClientSecret, "").AccessToken
	if r := e.API(t, teamTok, http.MethodPost, "/v1/signing-keys/rotate", `{}`); r.Status != http.StatusForbidden {
		t.Fatalf("team token rotates: %s", r)
	}

	// Safe: a next key, signing after the prepublish period. An empty body
	// is the same as {}.
	r := e.API(t, admin, http.MethodPost, "/v1/signing-keys/rotate", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("safe rotation: %s", r)
	}
	l, body = listSigningKeys(t, e, admin)
	if len(l.Keys) != 2 || l.Keys[0].State != "next" || l.Keys[1].KID != first || l.Keys[1].State != "current" ||
		!l.Keys[0].SignsFrom.Equal(t0.Add(config.DefaultSigningKeyPrepublish)) || l.Keys[1].RetiresAt == nil || !l.Keys[1].RetiresAt.Equal(l.Keys[0].SignsFrom) {
		t.Fatalf("after a safe rotation: %s", body)
	}
	next := l.Keys[0].KID
	if servertest.KID(t, e.AdminToken(t)) != first {
		t.Fatal("the next key signs before its time")
	}
	// Again: refused while the next key waits.
	r = e.API(t, admin, http.MethodPost, "/v1/signing-keys/rotate", `{}`)
	assertProblem(t, "second safe rotation", r, 409, "urn:keygate:problem:next-key-scheduled", "Conflict",
		"a next signing key is already scheduled ("+next+", signing from "+t0.Add(config.DefaultSigningKeyPrepublish).Format(time.RFC3339)+"): make it sign at once with a rotation now")
	if _, after := listSigningKeys(t, e, admin); string(after) != string(body) {
		t.Fatal("a refused rotation changed the keys")
	}

	// Now: the next key signs at once, the first is retired.
	clock.Advance(time.Minute)
	oldAdmin := admin
	r = e.API(t, admin, http.MethodPost, "/v1/signing-keys/rotate", `{"now":true}`)
	if r.Status != http.StatusOK {
		t.Fatalf("rotation now: %s", r)
	}
	l, body = listSigningKeys(t, e, admin)
	if got := states(l); !slices.Equal(got, []string{"current:" + next, "retired:" + first}) || !l.Keys[0].SignsFrom.Equal(clock.Now()) ||
		l.Keys[1].PublishedUntil == nil || !l.Keys[1].RetiresAt.Equal(clock.Now()) {
		t.Fatalf("after a rotation now: %v %s", got, body)
	}
	admin = e.AdminToken(t)
	if servertest.KID(t, admin) != next {
		t.Fatal("after a rotation now the new key does not sign")
	}
	if r := e.API(t, oldAdmin, http.MethodGet, "/v1/signing-keys", nil); r.Status != http.StatusOK {
		t.Fatalf("a token of the retired key is refused: %s", r)
	}

	// Revoke the current key with no next one: a new key signs at once,
	// and tokens of the revoked key fail.
	r = e.API(t, admin, http.MethodPost, "/v1/signing-keys/rotate", `{"revoke":"`+next+`"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("revoke current: %s", r)
	}
	if r := e.API(t, admin, http.MethodGet, "/v1/signing-keys", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("a token of the revoked key still opens the API: %s", r)
	}
	admin = e.AdminToken(t)
	l, _ = listSigningKeys(t, e, admin)
	if len(l.Keys) != 2 || l.Keys[0].State != "current" || l.Keys[0].KID == next || l.Keys[1].KID != first {
		t.Fatalf("after revoking the current key: %v", states(l))
	}
	jwks, _, _ := jwksSnapshot(t, e.Env)
	if slices.Contains(jwks, next) || len(jwks) != 2 {
		t.Fatalf("JWKS after the revocation: %v", jwks)
	}
	// Revoke the retired key: gone from the JWKS at once.
	if r := e.API(t, admin, http.MethodPost, "/v1/signing-keys/rotate", `{"revoke":"`+first+`"}`); r.Status != http.StatusOK {
		t.Fatalf("revoke retired: %s", r)
	}
	if jwks, _, _ := jwksSnapshot(t, e.Env); len(jwks) != 1 || slices.Contains(jwks, first) {
		t.Fatalf("JWKS after revoking the retired key: %v", jwks)
	}
}

// TestSigningKeysUnknownKIDReload: an instance that meets its own token
// signed by a key another instance just created (a rotation now, before
// any tick) reloads its key set and accepts it.
func TestSigningKeysUnknownKIDReload(t *testing.T) {
	e := newTestEnv(t, server.Options{})
	b := e.second(t, server.Options{})
	if r := e.API(t, e.AdminToken(t), http.MethodPost, "/v1/signing-keys/rotate", `{"now":true}`); r.Status != http.StatusOK {
		t.Fatalf("rotation now: %s", r)
	}
	tok := e.AdminToken(t) // signed by the new key; b has not ticked
	if r := b.API(t, tok, http.MethodGet, "/v1/signing-keys", nil); r.Status != http.StatusOK {
		t.Fatalf("the other instance refuses a token of the new key: %s", r)
	}
	if servertest.KID(t, b.AdminToken(t)) != servertest.KID(t, tok) {
		t.Fatal("after the reload the other instance still signs with the old key")
	}
}
