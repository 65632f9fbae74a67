package server_test

// Secret rotation (POST /v1/teams/{team_id}/keys/{client_id}/rotate) with an
// injected clock: the old secret works inside the grace period and is refused
// after it, at most two secrets live at once, grace 0 ends the old secret at
// once, and bad requests change nothing.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

// rotatedJSON is a key view with the rotation fields, and the secret when
// the answer is a rotation.
type rotatedJSON struct {
	keyJSON
	SecretRotatedAt         *time.Time `json:"secret_rotated_at"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
}

type clockEnv struct {
	*testEnv
	clock *servertest.Clock
	t0    time.Time
}

// newClockEnv starts keygate on a stopped clock at t0: whole seconds, near
// the wall clock (views truncate to seconds, and anything that still reads
// the wall clock stays plausible).
func newClockEnv(t *testing.T) clockEnv {
	t.Helper()
	return newClockEnvOn(t, servertest.Bolt())
}

// newClockEnvOn is newClockEnv on the backend b.
func newClockEnvOn(t *testing.T, b servertest.Backend) clockEnv {
	t.Helper()
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	return clockEnv{testEnv: startEnv(t, servertest.Config{Clock: clk, Backend: b}), clock: clk, t0: clk.Now()}
}

// at moves the clock to t0+d.
func (e clockEnv) at(d time.Duration) { e.clock.Set(e.t0.Add(d)) }

func rotatePath(team, id string) string { return "/v1/teams/" + team + "/keys/" + id + "/rotate" }

// rotate rotates with a fresh admin token (minted at the current clock) and
// body (nil: no body), or fails the test.
func (e clockEnv) rotate(t *testing.T, team, id string, body any) rotatedJSON {
	t.Helper()
	r := e.API(t, e.AdminToken(t), http.MethodPost, rotatePath(team, id), body)
	if r.Status != http.StatusOK {
		t.Fatalf("rotate %s: %s", id, r)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("rotate answer Cache-Control %q, want no-store", cc)
	}
	var k rotatedJSON
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatalf("rotate answer: %v: %s", err, r.Body)
	}
	if k.ClientID != id || k.TeamID != team {
		t.Fatalf("rotate answer is for %s/%s, want %s/%s", k.TeamID, k.ClientID, team, id)
	}
	if err := credential.CheckSecretFormat(k.ClientSecret); err != nil {
		t.Fatalf("rotated secret: %v", err)
	}
	checkNullable(t, r.Body, "secret_rotated_at", "previous_secret_expires_at", "last_used_at")
	return k
}

// checkNullable asserts that the fields are present in the JSON object (a
// null value must not be omitted).
func checkNullable(t *testing.T, body []byte, fields ...string) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, body)
	}
	for _, f := range fields {
		if _, ok := raw[f]; !ok {
			t.Errorf("%q is missing (absent values are null, not omitted): %s", f, body)
		}
	}
}

// getKey reads one key's view with a fresh admin token.
func (e clockEnv) getKey(t *testing.T, team, id string) rotatedJSON {
	t.Helper()
	r := e.API(t, e.AdminToken(t), http.MethodGet, "/v1/teams/"+team+"/keys/"+id, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("get %s: %s", id, r)
	}
	checkNullable(t, r.Body, "secret_rotated_at", "previous_secret_expires_at")
	var k rotatedJSON
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatalf("get answer: %v: %s", err, r.Body)
	}
	if k.ClientSecret != "" || bytes.Contains(r.Body, []byte("client_secret")) {
		t.Fatalf("get shows a secret: %s", r.Body)
	}
	return k
}

// listed returns the key's entry in the team's list.
func (e clockEnv) listed(t *testing.T, team, id string) rotatedJSON {
	t.Helper()
	r := e.API(t, e.AdminToken(t), http.MethodGet, "/v1/teams/"+team+"/keys", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list %s: %s", team, r)
	}
	var l struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatalf("list answer: %v: %s", err, r.Body)
	}
	for _, raw := range l.Keys {
		var k rotatedJSON
		if err := json.Unmarshal(raw, &k); err != nil {
			t.Fatal(err)
		}
		if k.ClientID == id {
			checkNullable(t, raw, "secret_rotated_at", "previous_secret_expires_at")
			return k
		}
	}
	t.Fatalf("key %s not in the list of %s: %s", id, team, r.Body)
	return rotatedJSON{}
}

// works asserts that the secret gets a token at the current clock.
func (e clockEnv) works(t *testing.T, id, secret, what string) {
	t.Helper()
	r := e.TokenRequest(t, id, secret, url.Values{"grant_type": {"client_credentials"}})
	if r.Status != http.StatusOK {
		t.Fatalf("%s at t0+%s: want a token, got %s", what, e.clock.Now().Sub(e.t0), r)
	}
}

// refused asserts that the secret is refused (401 invalid_client) at the
// current clock.
func (e clockEnv) refused(t *testing.T, id, secret, what string) {
	t.Helper()
	r := e.TokenRequest(t, id, secret, url.Values{"grant_type": {"client_credentials"}})
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("%s at t0+%s: want 401 invalid_client, got %s", what, e.clock.Now().Sub(e.t0), r)
	}
	servertest.CheckOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
}

func wantTime(t *testing.T, what string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s is null, want %s", what, want.Format(time.RFC3339))
	}
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("%s = %s, want %s (UTC)", what, got.Format(time.RFC3339Nano), want.Format(time.RFC3339))
	}
}

func wantNull(t *testing.T, what string, got *time.Time) {
	t.Helper()
	if got != nil {
		t.Fatalf("%s = %s, want null", what, got.Format(time.RFC3339))
	}
}

func TestRotateGracePeriod(t *testing.T) {
	forEachBackend(t, testRotateGracePeriod)
}

func testRotateGracePeriod(t *testing.T, b servertest.Backend) {
	e := newClockEnvOn(t, b)
	k := e.CreateKey(t, "acme", "Production sync", permAccounting)
	old := k.ClientSecret

	// A new key was never rotated.
	fresh := e.getKey(t, "acme", k.ClientID)
	wantNull(t, "secret_rotated_at of a new key", fresh.SecretRotatedAt)
	wantNull(t, "previous_secret_expires_at of a new key", fresh.PreviousSecretExpiresAt)
	hashBefore := e.StoredKey(t, k.ClientID).SecretHash

	rot := e.rotate(t, "acme", k.ClientID, nil) // no body: the default 24h
	if rot.ClientSecret == old {
		t.Fatal("rotation returned the old secret")
	}
	if rot.Name != k.Name || len(rot.Permissions) != 1 || rot.Permissions[0] != permAccounting ||
		!rot.CreatedAt.Equal(k.CreatedAt) || len(rot.Scopes) != len(accountingScopes) {
		t.Fatalf("rotation changed the key's other fields: %+v, created %+v", rot.keyJSON, k)
	}
	wantTime(t, "secret_rotated_at", rot.SecretRotatedAt, e.t0)
	wantTime(t, "previous_secret_expires_at", rot.PreviousSecretExpiresAt, e.t0.Add(24*time.Hour))

	st := e.StoredKey(t, k.ClientID)
	if !bytes.Equal(st.PreviousSecretHash, hashBefore) || bytes.Equal(st.SecretHash, hashBefore) || len(st.SecretHash) == 0 {
		t.Fatal("stored hashes: the previous hash must be the one current before the rotation, the current one new")
	}
	if !st.SecretRotatedAt.Equal(e.t0) || !st.PreviousSecretExpiresAt.Equal(e.t0.Add(24*time.Hour)) {
		t.Fatalf("stored rotated %s, previous expires %s", st.SecretRotatedAt, st.PreviousSecretExpiresAt)
	}

	// The list and get show when the old secret stops working.
	for what, v := range map[string]rotatedJSON{"get": e.getKey(t, "acme", k.ClientID), "list": e.listed(t, "acme", k.ClientID)} {
		wantTime(t, what+" secret_rotated_at", v.SecretRotatedAt, e.t0)
		wantTime(t, what+" previous_secret_expires_at", v.PreviousSecretExpiresAt, e.t0.Add(24*time.Hour))
	}

	e.works(t, k.ClientID, old, "old secret right after the rotation")
	e.works(t, k.ClientID, rot.ClientSecret, "new secret right after the rotation")

	e.at(23*time.Hour + 59*time.Minute)
	e.works(t, k.ClientID, old, "old secret inside the grace period")
	e.works(t, k.ClientID, rot.ClientSecret, "new secret inside the grace period")
	wantTime(t, "previous_secret_expires_at inside the grace period",
		e.getKey(t, "acme", k.ClientID).PreviousSecretExpiresAt, e.t0.Add(24*time.Hour))

	e.at(24*time.Hour + time.Second)
	e.refused(t, k.ClientID, old, "old secret after the grace period")
	e.works(t, k.ClientID, rot.ClientSecret, "new secret after the grace period")
	for what, v := range map[string]rotatedJSON{"get": e.getKey(t, "acme", k.ClientID), "list": e.listed(t, "acme", k.ClientID)} {
		wantTime(t, what+" secret_rotated_at after the grace period", v.SecretRotatedAt, e.t0)
		wantNull(t, what+" previous_secret_expires_at after the grace period", v.PreviousSecretExpiresAt)
	}

	e.at(30 * 24 * time.Hour)
	e.refused(t, k.ClientID, old, "old secret a month on")
	e.works(t, k.ClientID, rot.ClientSecret, "new secret a month on")
}

func TestRotateTwiceEndsTheOldestAtOnce(t *testing.T) {
	forEachBackend(t, testRotateTwiceEndsTheOldestAtOnce)
}

func testRotateTwiceEndsTheOldestAtOnce(t *testing.T, b servertest.Backend) {
	e := newClockEnvOn(t, b)
	k := e.CreateKey(t, "acme", "Dashboards", permVisualization)
	s1 := k.ClientSecret

	r2 := e.rotate(t, "acme", k.ClientID, map[string]any{"grace_period": "24h"})
	s2 := r2.ClientSecret
	h2 := e.StoredKey(t, k.ClientID).SecretHash

	e.at(time.Hour) // well inside the first grace period
	e.works(t, k.ClientID, s1, "first secret before the second rotation")
	r3 := e.rotate(t, "acme", k.ClientID, map[string]any{"grace_period": "12h"})
	s3 := r3.ClientSecret
	if s3 == s1 || s3 == s2 {
		t.Fatal("the second rotation returned an earlier secret")
	}
	wantTime(t, "secret_rotated_at after the second rotation", r3.SecretRotatedAt, e.t0.Add(time.Hour))
	wantTime(t, "previous_secret_expires_at after the second rotation", r3.PreviousSecretExpiresAt, e.t0.Add(13*time.Hour))
	if st := e.StoredKey(t, k.ClientID); !bytes.Equal(st.PreviousSecretHash, h2) {
		t.Fatal("after the second rotation the previous hash must be the second secret's")
	}

	// At most two live secrets: the first ends at once, though its own grace
	// period had 23 h left.
	e.refused(t, k.ClientID, s1, "first secret right after the second rotation")
	e.works(t, k.ClientID, s2, "second secret right after the second rotation")
	e.works(t, k.ClientID, s3, "third secret right after the second rotation")

	e.at(13*time.Hour - time.Second)
	e.refused(t, k.ClientID, s1, "first secret")
	e.works(t, k.ClientID, s2, "second secret at the end of its grace period")
	e.works(t, k.ClientID, s3, "third secret")

	e.at(13*time.Hour + time.Second)
	e.refused(t, k.ClientID, s1, "first secret")
	e.refused(t, k.ClientID, s2, "second secret after its grace period")
	e.works(t, k.ClientID, s3, "third secret")
	wantNull(t, "previous_secret_expires_at after the last grace period", e.getKey(t, "acme", k.ClientID).PreviousSecretExpiresAt)

	// Still before the first rotation's 24 h: the first secret stays dead.
	e.at(20 * time.Hour)
	e.refused(t, k.ClientID, s1, "first secret inside its original grace period")
}

func TestRotateGraceZeroEndsTheOldSecretAtOnce(t *testing.T) {
	e := newClockEnv(t)
	k := e.CreateKey(t, "acme", "Leaked", permAccounting)
	old := k.ClientSecret
	e.works(t, k.ClientID, old, "secret before the rotation")

	rot := e.rotate(t, "acme", k.ClientID, map[string]any{"grace_period": "0s"})
	e.refused(t, k.ClientID, old, "old secret after a rotation with grace 0")
	e.works(t, k.ClientID, rot.ClientSecret, "new secret")
	wantTime(t, "secret_rotated_at", rot.SecretRotatedAt, e.t0)
	wantNull(t, "previous_secret_expires_at after grace 0", rot.PreviousSecretExpiresAt)
	wantNull(t, "get previous_secret_expires_at after grace 0", e.getKey(t, "acme", k.ClientID).PreviousSecretExpiresAt)
	if st := e.StoredKey(t, k.ClientID); len(st.PreviousSecretHash) != 0 || !st.PreviousSecretExpiresAt.IsZero() {
		t.Fatalf("grace 0 left a previous secret: %d-byte hash, expiry %s", len(st.PreviousSecretHash), st.PreviousSecretExpiresAt)
	}

	// Grace 0 during a grace period ends both earlier secrets at once.
	e.at(time.Minute)
	r2 := e.rotate(t, "acme", k.ClientID, map[string]any{"grace_period": "24h"})
	e.works(t, k.ClientID, rot.ClientSecret, "second secret inside its grace period")
	r3 := e.rotate(t, "acme", k.ClientID, map[string]any{"grace_period": "0"})
	e.refused(t, k.ClientID, old, "first secret")
	e.refused(t, k.ClientID, rot.ClientSecret, "second secret after a rotation with grace 0")
	e.refused(t, k.ClientID, r2.ClientSecret, "third secret after a rotation with grace 0")
	e.works(t, k.ClientID, r3.ClientSecret, "fourth secret")
}

func TestRotateGracePeriodForms(t *testing.T) {
	e := newClockEnv(t)
	k := e.CreateKey(t, "acme", "Forms", permVisualization)
	for _, c := range []struct {
		name  string
		body  any
		grace time.Duration
	}{
		{"empty body with a JSON content type", "", 24 * time.Hour},
		{"empty object", "{}", 24 * time.Hour},
		{"null grace_period", `{"grace_period": null}`, 24 * time.Hour},
		{"90 minutes", map[string]any{"grace_period": "1h30m"}, 90 * time.Minute},
		{"maximum", map[string]any{"grace_period": "168h"}, 168 * time.Hour},
		{"maximum in days", map[string]any{"grace_period": "7d"}, 168 * time.Hour},
		{"days and hours", map[string]any{"grace_period": "1d12h"}, 36 * time.Hour},
		{"one second", map[string]any{"grace_period": "1s"}, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.rotate(t, "acme", k.ClientID, c.body)
			wantTime(t, "previous_secret_expires_at", r.PreviousSecretExpiresAt, e.t0.Add(c.grace))
			if st := e.StoredKey(t, k.ClientID); !st.PreviousSecretExpiresAt.Equal(e.t0.Add(c.grace)) {
				t.Fatalf("stored expiry %s, want t0+%s", st.PreviousSecretExpiresAt, c.grace)
			}
		})
	}
}

// fullSnapshot is testEnv.snapshot plus a digest of every key's hashes:
// store.Key tags its hashes `json:"-"`, so snapshot's JSON leaves them out.
func (e clockEnv) fullSnapshot(t *testing.T) string {
	t.Helper()
	var lines []string
	if err := e.Store.ForEachKey(context.Background(), func(k store.Key) error {
		cur, prev := sha256.Sum256(k.SecretHash), sha256.Sum256(k.PreviousSecretHash)
		lines = append(lines, fmt.Sprintf("%s hash %x previous %x (%d bytes)", k.ClientID, cur[:8], prev[:8], len(k.PreviousSecretHash)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return e.Snapshot(t) + strings.Join(lines, "\n")
}

// assertFullyUnchanged compares fullSnapshot with before, right away and
// again after a last-used flush.
func (e clockEnv) assertFullyUnchanged(t *testing.T, before string) {
	t.Helper()
	if after := e.fullSnapshot(t); after != before {
		t.Errorf("the store changed:\nbefore:\n%s\nafter:\n%s", before, after)
		return
	}
	e.FlushLastUsed(t)
	if after := e.fullSnapshot(t); after != before {
		t.Errorf("the store changed after a last-used flush:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// rawRequest sends a management request with an explicit content type
// (none when empty) and body.
func (e clockEnv) rawRequest(t *testing.T, tok, method, path, contentType, body string) response {
	t.Helper()
	req := e.NewRequest(t, method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return e.Do(t, req)
}

// checkProblemDetail is checkProblem (management_test.go) plus phrases the
// detail must contain.
func checkProblemDetail(t *testing.T, r response, status int, detail ...string) {
	t.Helper()
	p := checkProblem(t, r, status)
	for _, d := range detail {
		if !strings.Contains(p.Detail, d) {
			t.Errorf("detail %q does not contain %q", p.Detail, d)
		}
	}
}

// TestRotateBadRequestsChangeNothing: every refused rotation leaves the
// store exactly as it was (hashes included) and the secrets working.
func TestRotateBadRequestsChangeNothing(t *testing.T) {
	e := newClockEnv(t)
	k := e.CreateKey(t, "acme", "Production sync", permAccounting)
	other := e.CreateKey(t, "globex", "Other team", permAccounting)
	// A live previous secret that a wrongly applied rotation would move.
	rot := e.rotate(t, "acme", k.ClientID, map[string]any{"grace_period": "2h"})

	// Tokens used before the snapshot: their first use must be stored
	// first, or a last-used flush would show as a change. Later uses fall
	// in the one-minute coalescing window and are not written during the
	// test.
	admin := e.AdminToken(t)
	teamTok := e.Token(t, k.ClientID, rot.ClientSecret, "").AccessToken
	e.AssertLastUsedStored(t, e.AdminID)
	e.AssertLastUsedStored(t, k.ClientID)

	path := rotatePath("acme", k.ClientID)
	const rangeDetail = "from 0s to 7d (168h)"
	for _, c := range []struct {
		name   string
		tok    string
		path   string
		ctype  string
		body   string
		status int
		detail []string
	}{
		{name: "negative", body: `{"grace_period": "-1s"}`, status: 400, detail: []string{rangeDetail, `"-1s"`}},
		{name: "over a week", body: `{"grace_period": "169h"}`, status: 400, detail: []string{rangeDetail, `"169h"`}},
		{name: "over a week in days", body: `{"grace_period": "8d"}`, status: 400, detail: []string{rangeDetail, `"8d" is out of range`}},
		{name: "days then a negative part", body: `{"grace_period": "1d-2h"}`, status: 400, detail: []string{rangeDetail, `"1d-2h" is not a duration`}},
		{name: "just over a week", body: `{"grace_period": "168h0m0.000000001s"}`, status: 400, detail: []string{rangeDetail}},
		{name: "not a duration", body: `{"grace_period": "abc"}`, status: 400, detail: []string{rangeDetail, `"abc"`}},
		{name: "empty string", body: `{"grace_period": ""}`, status: 400, detail: []string{rangeDetail}},
		{name: "no unit", body: `{"grace_period": "24"}`, status: 400, detail: []string{rangeDetail}},
		{name: "overflow", body: `{"grace_period": "9999999999h"}`, status: 400, detail: []string{rangeDetail}},
		{name: "a number", body: `{"grace_period": 5}`, status: 400, detail: []string{rangeDetail, "string"}},
		{name: "a boolean", body: `{"grace_period": true}`, status: 400, detail: []string{rangeDetail}},
		{name: "an object", body: `{"grace_period": {"hours": 24}}`, status: 400, detail: []string{rangeDetail}},
		{name: "unknown field", body: `{"grace_period": "24h", "force": true}`, status: 400, detail: []string{`"force"`, `"grace_period"`}},
		{name: "unknown field alone", body: `{"grace": "24h"}`, status: 400, detail: []string{`"grace"`, `"grace_period"`}},
		{name: "malformed JSON", body: `{"grace_period": "24h"`, status: 400},
		{name: "two objects", body: `{"grace_period": "1h"} {"grace_period": "2h"}`, status: 400},
		{name: "not UTF-8", body: "{\"grace_period\": \"1h\xff\"}", status: 400, detail: []string{"UTF-8"}},
		{name: "an array", body: `["24h"]`, status: 400, detail: []string{"must be a JSON object, not a JSON array"}},
		{name: "whitespace only", body: " ", status: 400},
		{name: "form body", ctype: "application/x-www-form-urlencoded", body: "grace_period=1h", status: 415, detail: []string{"application/json"}},
		{name: "text body", ctype: "text/plain", body: `{"grace_period": "1h"}`, status: 415, detail: []string{"application/json"}},
		{name: "JSON without a content type", ctype: "-", body: `{"grace_period": "1h"}`, status: 415, detail: []string{"application/json"}},
		{name: "body over 64 KiB", body: `{"grace_period": "1h"` + strings.Repeat(" ", 64<<10) + `}`, status: 413},
		{name: "key of another team", path: rotatePath("acme", other.ClientID), status: 404, detail: []string{"team acme has no key"}},
		{name: "key of another team, via the other team", path: rotatePath("globex", k.ClientID), status: 404, detail: []string{"team globex has no key"}},
		{name: "unknown key", path: rotatePath("acme", "kgc_doesnotexist"), status: 404, detail: []string{"has no key"}},
		{name: "admin key through a team path", path: rotatePath("acme", e.AdminID), status: 404},
		{name: "bad team id", path: rotatePath("-bad", k.ClientID), status: 400, detail: []string{"team id"}},
		{name: "no admin token", tok: "-", body: `{"grace_period": "1h"}`, status: 401},
		{name: "no admin token, no body", tok: "-", status: 401},
		{name: "team key token", tok: teamTok, status: 401, detail: []string{"wrong audience"}},
		{name: "GET on the rotate path", status: 405},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.fullSnapshot(t)
			tok, p, ctype, method := admin, path, "application/json", http.MethodPost
			switch c.tok {
			case "-":
				tok = ""
			case "":
			default:
				tok = c.tok
			}
			if c.path != "" {
				p = c.path
			}
			switch {
			case c.ctype == "-" || c.body == "":
				ctype = ""
			case c.ctype != "":
				ctype = c.ctype
			}
			if c.status == 405 {
				method = http.MethodGet
			}
			r := e.rawRequest(t, tok, method, p, ctype, c.body)
			checkProblemDetail(t, r, c.status, c.detail...)
			if c.status == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if bytes.Contains(r.Body, []byte("kgs_")) {
				t.Fatalf("a refused rotation shows a secret: %s", r.Body)
			}
			e.assertFullyUnchanged(t, before)
		})
	}
	// Both secrets still work, and the view is as before.
	e.works(t, k.ClientID, k.ClientSecret, "old secret after the refused rotations")
	e.works(t, k.ClientID, rot.ClientSecret, "current secret after the refused rotations")
	e.works(t, other.ClientID, other.ClientSecret, "the other team's key")
	v := e.getKey(t, "acme", k.ClientID)
	wantTime(t, "secret_rotated_at", v.SecretRotatedAt, e.t0)
	wantTime(t, "previous_secret_expires_at", v.PreviousSecretExpiresAt, e.t0.Add(2*time.Hour))
	wantNull(t, "globex secret_rotated_at", e.getKey(t, "globex", other.ClientID).SecretRotatedAt)
}

// TestRotateConcurrent: concurrent rotations of one key serialise in the
// store; afterwards exactly one secret is current and at most one other
// (the one current just before the last write) still works.
func TestRotateConcurrent(t *testing.T) {
	forEachBackend(t, testRotateConcurrent)
}

func testRotateConcurrent(t *testing.T, b servertest.Backend) {
	e := newClockEnvOn(t, b)
	k := e.CreateKey(t, "acme", "Busy", permVisualization)
	admin := e.AdminToken(t)
	const n = 8
	secrets := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := e.API(t, admin, http.MethodPost, rotatePath("acme", k.ClientID), nil)
			if r.Status != http.StatusOK {
				t.Errorf("rotation %d: %s", i, r)
				return
			}
			var v rotatedJSON
			if err := json.Unmarshal(r.Body, &v); err != nil {
				t.Errorf("rotation %d: %v", i, err)
				return
			}
			secrets[i] = v.ClientSecret
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	working := 0
	for _, s := range append(secrets, k.ClientSecret) {
		r := e.TokenRequest(t, k.ClientID, s, url.Values{"grant_type": {"client_credentials"}})
		if r.Status == http.StatusOK {
			working++
		}
	}
	if working != 2 {
		t.Fatalf("%d of %d secrets work after %d concurrent rotations with a grace period, want exactly 2", working, n+1, n)
	}
}
