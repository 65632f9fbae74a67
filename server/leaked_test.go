package server_test

// POST /v1/leaked-secrets (#14): a reported secret's generation is cut off
// (tokens inactive and status bit set, the secret gets no token, an audit
// event and a webhook), the answer is the same whether or not anything
// matched, refusals change nothing, and reports are rate-limited per
// source address.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/webhook"
)

const leakedPath = "/v1/leaked-secrets"

// report posts body to the leaked-secrets endpoint, with no token and the
// given source (X-Forwarded-For, believed only from a trusted proxy).
func report(t *testing.T, e *testEnv, contentType, body, forwardedFor string) response {
	t.Helper()
	req := e.NewRequest(t, http.MethodPost, leakedPath, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	return e.Do(t, req)
}

func secretsBody(secrets ...string) string {
	b, _ := json.Marshal(map[string][]string{"secrets": secrets})
	return string(b)
}

// answerShape is what must not differ between two reports' answers: the
// status, the headers but the request ID, the body.
func answerShape(r response) string {
	h := r.Header.Clone()
	h.Del("X-Request-Id")
	h.Del("Date")
	return fmt.Sprintf("%d %v %s", r.Status, h, r.Body)
}

// dump is everything a report could change: the keys with their hashes,
// signing keys and audit events (clockEnv.fullSnapshot), and the status
// list.
func dump(t *testing.T, e clockEnv) string {
	t.Helper()
	l, err := e.Store.StatusList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return e.fullSnapshot(t) + fmt.Sprintf("\nstatus list %x (allocated %d)\n", l.Statuses, l.Allocated)
}

func TestLeakedSecretCutsOffCurrentGeneration(t *testing.T) {
	t.Parallel()
	for _, b := range append(slices.Clone(backends), servertest.Redis()) {
		t.Run(b.Name(), func(t *testing.T) { testLeakedCutsOff(t, b) })
	}
}

func testLeakedCutsOff(t *testing.T, b servertest.Backend) {
	{
		e, v := newStatusEnv(t, b)
		admin := e.AdminToken(t)
		a := e.CreateKeyWith(t, admin, "acme", "leaky", permAccounting)
		other := e.CreateKeyWith(t, admin, "acme", "other", permAccounting)
		tokA := e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken
		tokOther := e.Token(t, other.ClientID, other.ClientSecret, "").AccessToken
		idx, _ := statusRef(t, tokA)
		checkActive(t, "token before the report", e.introspect(t, e.AdminID, e.AdminSecret, tokA), tokA)

		e.at(5 * time.Second)
		r := report(t, e.testEnv, "application/json", secretsBody(a.ClientSecret), "")
		if r.Status != http.StatusOK || string(r.Body) != `{"received":1}` || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("report: %s (Cache-Control %q), want 200 {\"received\":1}, no-store", r, r.Header.Get("Cache-Control"))
		}

		// The token minted with it is inactive at once, its bit is set in
		// the served list, and a resource server refuses it.
		checkInactive(t, "token of the leaked secret", e.introspect(t, e.AdminID, e.AdminSecret, tokA))
		e.clock.Advance(1100 * time.Millisecond)
		if l := e.statusList(t); l.bit(t, idx) != 1 {
			t.Fatalf("the leaked generation's bit %d is 0 in the served list", idx)
		}
		verifyWithin(t, e, v, 3*time.Second, "token of the leaked secret", tokA)
		// The secret itself gets no token.
		tr := e.TokenRequest(t, a.ClientID, a.ClientSecret, urlValues("grant_type", "client_credentials"))
		if tr.Status != http.StatusUnauthorized || !strings.Contains(string(tr.Body), `"invalid_client"`) {
			t.Fatalf("the leaked secret at the token endpoint: %s, want 401 invalid_client", tr)
		}
		// Another key of the team is untouched.
		checkActive(t, "another key's token", e.introspect(t, e.AdminID, e.AdminSecret, tokOther), tokOther)
		mustVerify(t, v, "another key's token", tokOther)

		// The key shows the suspension; an audit event says what happened.
		admin = e.AdminToken(t)
		var view map[string]any
		kr := e.API(t, admin, http.MethodGet, "/v1/keys/"+a.ClientID, nil)
		if err := json.Unmarshal(kr.Body, &view); err != nil {
			t.Fatal(err)
		}
		if want := e.t0.Add(5 * time.Second).Format(time.RFC3339); view["secret_suspended_at"] != want {
			t.Fatalf("secret_suspended_at = %v, want %s", view["secret_suspended_at"], want)
		}
		ev := e.API(t, admin, http.MethodGet, "/v1/teams/acme/events?action=key.secret_leaked", nil)
		var events struct {
			Events []struct {
				Action   string            `json:"action"`
				ClientID string            `json:"client_id"`
				Fields   []string          `json:"fields"`
				Actor    map[string]string `json:"actor"`
			} `json:"events"`
		}
		if err := json.Unmarshal(ev.Body, &events); err != nil {
			t.Fatalf("events: %v: %s", err, ev.Body)
		}
		if len(events.Events) != 1 || events.Events[0].ClientID != a.ClientID || !slices.Equal(events.Events[0].Fields, []string{"secret"}) ||
			events.Events[0].Actor["type"] != store.ActorAnonymous {
			t.Fatalf("key.secret_leaked events: %s", ev.Body)
		}

		// A rotation brings the key back, with a new secret.
		rot := e.rotate(t, "acme", a.ClientID, map[string]string{"grace_period": "1h"})
		if rot.PreviousSecretExpiresAt != nil {
			t.Fatalf("the leaked secret got a grace period: %v", *rot.PreviousSecretExpiresAt)
		}
		tokNew := e.Token(t, a.ClientID, rot.ClientSecret, "").AccessToken
		checkActive(t, "token of the new secret", e.introspect(t, e.AdminID, e.AdminSecret, tokNew), tokNew)
		if r := e.TokenRequest(t, a.ClientID, a.ClientSecret, urlValues("grant_type", "client_credentials")); r.Status != http.StatusUnauthorized {
			t.Fatalf("the leaked secret after the rotation: %s, want 401", r)
		}
	}
}

// A leaked previous secret ends its grace period now; the current secret
// keeps working. GitHub's payload shape.
func TestLeakedPreviousSecretEndsGrace(t *testing.T) {
	t.Parallel()
	e, _ := newStatusEnv(t, servertest.Bolt())
	a := e.CreateKey(t, "acme", "leaky", permAccounting)
	rot := e.rotate(t, "acme", a.ClientID, map[string]string{"grace_period": "24h"})
	tokPrev := e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken
	prevIdx, _ := statusRef(t, tokPrev)
	body := `[{"token":"` + a.ClientSecret + `","type":"keygate_client_secret","url":"https://github.com/o/r/blob/x/f","source":"content"}]`
	if r := report(t, e.testEnv, "application/json", body, ""); r.Status != http.StatusOK || string(r.Body) != `{"received":1}` {
		t.Fatalf("report: %s", r)
	}
	checkInactive(t, "token of the leaked previous secret", e.introspect(t, e.AdminID, e.AdminSecret, tokPrev))
	if r := e.TokenRequest(t, a.ClientID, a.ClientSecret, urlValues("grant_type", "client_credentials")); r.Status != http.StatusUnauthorized {
		t.Fatalf("the leaked previous secret: %s, want 401", r)
	}
	tokCur := e.Token(t, a.ClientID, rot.ClientSecret, "").AccessToken
	checkActive(t, "token of the current secret", e.introspect(t, e.AdminID, e.AdminSecret, tokCur), tokCur)
	e.clock.Advance(1100 * time.Millisecond)
	if l := e.statusList(t); l.bit(t, prevIdx) != 1 {
		t.Fatal("the previous generation's bit is not set")
	}
	var view rotatedJSON
	if err := json.Unmarshal(e.API(t, e.AdminToken(t), http.MethodGet, "/v1/keys/"+a.ClientID, nil).Body, &view); err != nil {
		t.Fatal(err)
	}
	if view.PreviousSecretExpiresAt != nil {
		t.Fatalf("previous_secret_expires_at = %v after the previous secret leaked, want null", *view.PreviousSecretExpiresAt)
	}
}

// An unmatched report answers exactly as a matched one and changes
// nothing in the store.
func TestLeakedSecretSameAnswerUnmatchedChangesNothing(t *testing.T) {
	t.Parallel()
	e := newClockEnv(t)
	a := e.CreateKey(t, "acme", "leaky", permAccounting)
	b := e.CreateKey(t, "acme", "kept", permAccounting)
	rot := e.rotate(t, "acme", b.ClientID, map[string]string{"grace_period": "0s"})
	unknown, _ := credential.NewSecret()
	e.FlushLastUsed(t)

	// Strings that are no live secret: unknown, malformed, a secret
	// rotated out with grace 0 (its generation ended already).
	before := dump(t, e)
	unmatched := report(t, e.testEnv, "application/json", secretsBody(unknown, "kgs_not-a-secret", b.ClientSecret), "")
	if after := dump(t, e); after != before {
		t.Fatalf("an unmatched report changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	e.FlushLastUsed(t)
	if after := dump(t, e); after != before {
		t.Fatalf("an unmatched report changed the store (after a last-used flush):\nbefore:\n%s\nafter:\n%s", before, after)
	}
	matched := report(t, e.testEnv, "application/json", secretsBody(unknown, "kgs_not-a-secret", a.ClientSecret), "")
	if answerShape(matched) != answerShape(unmatched) {
		t.Fatalf("answers differ:\nmatched:   %s\nunmatched: %s", answerShape(matched), answerShape(unmatched))
	}
	if r := e.TokenRequest(t, a.ClientID, a.ClientSecret, urlValues("grant_type", "client_credentials")); r.Status != http.StatusUnauthorized {
		t.Fatalf("the matched report did not cut the secret off: %s", r)
	}
	if r := e.TokenRequest(t, b.ClientID, rot.ClientSecret, urlValues("grant_type", "client_credentials")); r.Status != http.StatusOK {
		t.Fatalf("the other key's current secret: %s", r)
	}
}

// Malformed reports: an exact problem+json answer each, nothing changed.
func TestLeakedSecretMalformedBodies(t *testing.T) {
	t.Parallel()
	e := newClockEnv(t)
	a := e.CreateKey(t, "acme", "leaky", permAccounting)
	e.FlushLastUsed(t)
	before := e.fullSnapshot(t)
	s := a.ClientSecret
	long := strings.Repeat("k", 257)
	many := make([]string, 101)
	for i := range many {
		many[i] = s
	}
	cases := []struct {
		name, ctype, body string
		status            int
		typ, detail       string
	}{
		{"no content type", "", secretsBody(s), 415, "urn:keygate:problem:unsupported-media-type", "send the body as JSON with Content-Type: application/json"},
		{"form", "application/x-www-form-urlencoded", "secrets=" + s, 415, "urn:keygate:problem:unsupported-media-type", "send the body as JSON with Content-Type: application/json"},
		{"empty", "application/json", "", 400, "urn:keygate:problem:invalid-request", "the body is not a report of leaked secrets: the body is empty"},
		{"a string", "application/json", `"` + s + `"`, 400, "urn:keygate:problem:invalid-request", "the body is not a report of leaked secrets: the body must be a JSON object or array, not a JSON string"},
		{"trailing", "application/json", secretsBody(s) + "]", 400, "urn:keygate:problem:invalid-request", "the body is not a report of leaked secrets: the body must hold exactly one JSON value, with nothing after it (byte 70 on)"},
		{"duplicate member", "application/json", `{"secrets":[],"secrets":["` + s + `"]}`, 400, "urn:keygate:problem:invalid-request", "the body is not a report of leaked secrets: member \"secrets\" appears twice in an object; give each member once"},
		{"unknown field", "application/json", `{"tokens":["` + s + `"]}`, 400, "urn:keygate:problem:invalid-request", "unknown field \"tokens\": send {\"secrets\": [\"kgs_…\", …]} or GitHub's secret-scanning array of {\"token\", \"type\", \"url\", \"source\"}"},
		{"case-folded field", "application/json", `{"SECRETS":["` + s + `"]}`, 400, "urn:keygate:problem:invalid-request", "unknown field \"SECRETS\": send {\"secrets\": [\"kgs_…\", …]} or GitHub's secret-scanning array of {\"token\", \"type\", \"url\", \"source\"}"},
		{"unknown element field", "application/json", `[{"token":"` + s + `","secret":"x"}]`, 400, "urn:keygate:problem:invalid-request", "unknown field \"secret\": send {\"secrets\": [\"kgs_…\", …]} or GitHub's secret-scanning array of {\"token\", \"type\", \"url\", \"source\"}"},
		{"not strings", "application/json", `{"secrets":[1]}`, 400, "urn:keygate:problem:invalid-request", "the body is not a report of leaked secrets: field \"secrets\" must be an array of strings"},
		{"array of strings", "application/json", `["` + s + `"]`, 400, "urn:keygate:problem:invalid-request", "each element of the array must be an object whose token, type, url and source are strings"},
		{"element without token", "application/json", `[{"type":"x"}]`, 400, "urn:keygate:problem:invalid-request", "element 1 has no token"},
		{"no secret", "application/json", `{"secrets":[]}`, 400, "urn:keygate:problem:invalid-request", "the report holds no secret: send at least one"},
		{"null list", "application/json", `{"secrets":null}`, 400, "urn:keygate:problem:invalid-request", "the report holds no secret: send at least one"},
		{"empty array", "application/json", `[]`, 400, "urn:keygate:problem:invalid-request", "the report holds no secret: send at least one"},
		{"too many", "application/json", secretsBody(many...), 400, "urn:keygate:problem:invalid-request", "at most 100 secrets per report, got 101; send the rest in another"},
		{"empty string", "application/json", secretsBody(s, ""), 400, "urn:keygate:problem:invalid-request", "secret 2 is empty or longer than 256 bytes"},
		{"too long", "application/json", secretsBody(long), 400, "urn:keygate:problem:invalid-request", "secret 1 is empty or longer than 256 bytes"},
		{"lone surrogate", "application/json", `{"secrets":["` + s + `\ud800"]}`, 400, "urn:keygate:problem:invalid-request", "the body is not a report of leaked secrets: a string has a lone UTF-16 surrogate escape at byte 67; escape a character outside the Basic Multilingual Plane as a surrogate pair (RFC 8259 §7)"},
		{"not UTF-8", "application/json", "{\"secrets\":[\"\xff\"]}", 400, "urn:keygate:problem:invalid-request", "the body is not valid UTF-8: send JSON encoded as UTF-8 (RFC 8259)"},
		{"over 64 KiB", "application/json", `{"secrets":["` + strings.Repeat("x", 64<<10) + `"]}`, 413, "urn:keygate:problem:body-too-large", "the request body is over 64 KiB"},
	}
	for _, c := range cases {
		r := report(t, e.testEnv, c.ctype, c.body, "")
		p := checkProblem(t, r, c.status)
		if p.Type != c.typ || p.Detail != c.detail {
			t.Errorf("%s: %s %q, want %s %q", c.name, p.Type, p.Detail, c.typ, c.detail)
		}
		e.clock.Advance(6 * time.Second) // a token back in the source's bucket
	}
	e.assertFullyUnchanged(t, before)
	if r := e.TokenRequest(t, a.ClientID, a.ClientSecret, urlValues("grant_type", "client_credentials")); r.Status != http.StatusOK {
		t.Fatalf("the secret stopped working after refused reports: %s", r)
	}
}

// Reports are limited per source address: 10, then one every 6 s; the
// 11th gets 429 with Retry-After, without reading its body; another
// source is not affected.
func TestLeakedSecretRateLimitedPerSource(t *testing.T) {
	t.Parallel()
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	e := clockEnv{testEnv: startEnv(t, servertest.Config{Clock: clk, Options: server.Options{TrustedProxies: loopback}}), clock: clk, t0: clk.Now()}
	a := e.CreateKey(t, "acme", "leaky", permAccounting)
	unknown, _ := credential.NewSecret()
	for i := range 10 {
		if r := report(t, e.testEnv, "application/json", secretsBody(unknown), "203.0.113.9"); r.Status != http.StatusOK {
			t.Fatalf("report %d: %s", i+1, r)
		}
	}
	e.FlushLastUsed(t)
	before := e.fullSnapshot(t)
	// The 11th, even with a real secret, is refused and does nothing.
	r := report(t, e.testEnv, "application/json", secretsBody(a.ClientSecret), "203.0.113.9")
	p := checkProblem(t, r, http.StatusTooManyRequests)
	if p.Type != "urn:keygate:problem:rate-limited" || p.Detail != "too many reports from this address; retry later" || r.Header.Get("Retry-After") != "6" {
		t.Fatalf("11th report: %s %q, Retry-After %q; want rate-limited, 6", p.Type, p.Detail, r.Header.Get("Retry-After"))
	}
	e.assertFullyUnchanged(t, before)
	// Another address (and an address of another /64) has its own bucket.
	if r := report(t, e.testEnv, "application/json", secretsBody(unknown), "203.0.113.10"); r.Status != http.StatusOK {
		t.Fatalf("another source: %s", r)
	}
	// After 6 s the source has one report again, and only one.
	e.clock.Advance(6 * time.Second)
	if r := report(t, e.testEnv, "application/json", secretsBody(unknown), "203.0.113.9"); r.Status != http.StatusOK {
		t.Fatalf("after Retry-After: %s", r)
	}
	if r := report(t, e.testEnv, "application/json", secretsBody(unknown), "203.0.113.9"); r.Status != http.StatusTooManyRequests {
		t.Fatalf("a second report after one token came back: %s, want 429", r)
	}
}

// The key.secret_leaked event reaches a configured webhook.
func TestLeakedSecretWebhook(t *testing.T) {
	t.Parallel()
	recv := newReceiver(t)
	secret, _ := webhookSecret(t)
	hooks := &hookTicks{}
	opts := server.Options{
		Webhooks: []config.Webhook{{URL: recv.URL, Secret: secret, Events: []string{"key.secret_leaked"}}},
		Webhook:  webhook.Options{Ticks: hooks.ticks, Jitter: func(d time.Duration) time.Duration { return d }},
	}
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	e := startEnv(t, servertest.Config{Clock: clk, Options: opts})
	a := e.CreateKey(t, "acme", "leaky", permAccounting)
	if r := report(t, e, "application/json", secretsBody(a.ClientSecret), ""); r.Status != http.StatusOK {
		t.Fatalf("report: %s", r)
	}
	e.AuditTick(t)
	hooks.round(t, 0)
	got := recv.got()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want the one key.secret_leaked", len(got))
	}
	p := decodePayload(t, got[0])
	if p.Type != "key.secret_leaked" || !strings.Contains(string(p.Data), a.ClientID) {
		t.Fatalf("delivered %s %s", p.Type, p.Data)
	}
	if strings.Contains(string(got[0].body), a.ClientSecret) {
		t.Fatal("the webhook body holds the leaked secret")
	}
}
