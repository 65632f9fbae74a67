package server_test

// A full flow with logging at debug level and every access line on (both
// access logs at all, no rate limit in reach, a trusted proxy so that
// X-Forwarded-For is read): the log must show that requests were logged,
// and must hold no secret, Basic header, access token, stored secret hash,
// pepper or query string, even where a caller put a secret in a field that
// is logged (client_id, X-Request-Id, X-Forwarded-For).

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/webhook"
)

// encodings of b a log line might carry.
func encodings(b []byte) []string {
	return []string{
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	adminSecret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	// Every way an event leaves keygate: the log, the audit API, a webhook,
	// a metrics scrape.
	recv := newReceiver(t)
	hookSecret, whsec := webhookSecret(t)
	hooks := &hookTicks{}
	met := metrics.New(metrics.BuildInfo{Version: "test", Revision: "test"})
	e := newTestEnv(t, server.Options{Logger: logger, AdminClientID: "log-admin", AdminClientSecret: adminSecret,
		AccessLog: config.AccessLogAll, AccessLogOAuth: config.AccessLogAll,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Webhooks:       []config.Webhook{{URL: recv.URL, Secret: hookSecret}},
		Webhook:        webhook.Options{Ticks: hooks.ticks},
		Metrics:        met,
	})
	server.SetAccessLogBurst(e.Server, 1000)
	ctx := context.Background()

	var forbidden []string // every sensitive value the flow handles
	note := func(vals ...string) { forbidden = append(forbidden, vals...) }
	note(whsec)
	note(encodings(hookSecret)...)
	noteToken := func(tok string) {
		note(tok)
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("token is not a compact JWS")
		}
		note(parts[1], parts[2]) // payload and signature
	}
	note(adminSecret, servertest.BasicAuth(e.AdminID, adminSecret)[len("Basic "):])

	admin := e.AdminToken(t)
	noteToken(admin)
	key := e.CreateKeyWith(t, admin, "acme", "logged", permAccounting)
	note(key.ClientSecret, servertest.BasicAuth(key.ClientID, key.ClientSecret)[len("Basic "):])

	// Token with Basic, with form fields, with a narrowed scope.
	noteToken(e.Token(t, key.ClientID, key.ClientSecret, "").AccessToken)
	r := e.TokenRequest(t, "", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {key.ClientID}, "client_secret": {key.ClientSecret}})
	if r.Status != 200 {
		t.Fatalf("form token: %s", r)
	}
	noteToken(tokenFrom(t, r))
	team := e.Token(t, key.ClientID, key.ClientSecret, "accounting:read").AccessToken
	noteToken(team)

	// Failing token requests: wrong secret in the body and in Basic, secret
	// in the query string, over-broad scope.
	wrong, _ := credential.NewSecret()
	note(wrong, servertest.BasicAuth(key.ClientID, wrong)[len("Basic "):])
	servertest.CheckOAuthError(t, e.TokenRequest(t, "", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {key.ClientID}, "client_secret": {wrong}}), 401, "invalid_client")
	servertest.CheckOAuthError(t, e.TokenRequest(t, key.ClientID, wrong, url.Values{"grant_type": {"client_credentials"}}), 401, "invalid_client")
	servertest.CheckOAuthError(t, e.TokenRequest(t, key.ClientID, key.ClientSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"keys:admin"}}), 400, "invalid_scope")
	req := e.NewRequest(t, http.MethodPost, "/oauth/token?client_secret=SENTINEL_TOKEN_QUERY", strings.NewReader("grant_type=client_credentials&client_id="+key.ClientID))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	servertest.CheckOAuthError(t, e.Do(t, req), 400, "invalid_request")
	servertest.CheckOAuthError(t, e.Do(t, e.NewRequest(t, http.MethodGet, "/oauth/token?client_secret="+key.ClientSecret, nil)), 405, "invalid_request")
	// The secret pasted into the client ID field, with and without its
	// prefix; sent as X-Request-Id and in X-Forwarded-For.
	for _, id := range []string{key.ClientSecret, key.ClientSecret[len(credential.SecretPrefix):]} {
		servertest.CheckOAuthError(t, e.TokenRequest(t, "", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {key.ClientSecret}}), 401, "invalid_client")
		servertest.CheckOAuthError(t, e.TokenRequest(t, id, key.ClientSecret, url.Values{"grant_type": {"client_credentials"}}), 401, "invalid_client")
	}
	for _, h := range []string{"X-Request-Id", "X-Forwarded-For"} {
		req := e.NewRequest(t, http.MethodPost, "/oauth/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", servertest.BasicAuth(key.ClientID, wrong))
		req.Header.Set(h, key.ClientSecret)
		servertest.CheckOAuthError(t, e.Do(t, req), 401, "invalid_client")
		req = e.NewRequest(t, http.MethodGet, "/v1/teams/acme/keys", nil)
		req.Header.Set(h, key.ClientSecret[len(credential.SecretPrefix):])
		req.Header.Set("Authorization", "Bearer "+admin)
		if r := e.Do(t, req); r.Status != 200 {
			t.Errorf("list with %s: %s", h, r)
		}
	}

	// Management: list, bad tokens, a team token, delete.
	e.ListKeys(t, admin, "acme")
	if r := e.API(t, "garbage.SENTINEL_BAD_TOKEN.x", http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != 401 {
		t.Errorf("bad token: %s", r)
	}
	tampered := admin[:len(admin)-4] + "AAAA"
	if r := e.API(t, tampered, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != 401 {
		t.Errorf("tampered token: %s", r)
	}
	if r := e.API(t, team, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != 401 {
		t.Errorf("team token: %s", r)
	}
	if r := e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys", `{"name":"x","permissions":["accounting_api"],"client_secret":"`+wrong+`"}`); r.Status != 400 {
		t.Errorf("unknown field: %s", r)
	}

	// Query strings are never logged.
	for _, p := range []string{"/healthz?secret=SENTINEL_HEALTHZ", "/no/such/path?token=SENTINEL_404", "/readyz?x=SENTINEL_READYZ"} {
		resp, err := e.Client.Get(e.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	note("SENTINEL")

	// Rotation (a new secret), a rename, a token revoked by its key.
	var rotated servertest.Key
	if r := e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys/"+key.ClientID+"/rotate", `{"grace_period":"1h"}`); r.Status != 200 || json.Unmarshal(r.Body, &rotated) != nil || rotated.ClientSecret == "" {
		t.Fatalf("rotate: %s", r)
	}
	note(rotated.ClientSecret, servertest.BasicAuth(key.ClientID, rotated.ClientSecret)[len("Basic "):])
	patch := e.NewRequest(t, http.MethodPatch, "/v1/teams/acme/keys/"+key.ClientID, strings.NewReader(`{"name":"renamed"}`))
	patch.Header.Set("Content-Type", "application/merge-patch+json")
	patch.Header.Set("Authorization", "Bearer "+admin)
	if r := e.Do(t, patch); r.Status != 200 {
		t.Fatalf("rename: %s", r)
	}
	revokeForm := url.Values{"token": {team}}
	rq := e.NewRequest(t, http.MethodPost, "/oauth/revoke", strings.NewReader(revokeForm.Encode()))
	rq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rq.Header.Set("Authorization", servertest.BasicAuth(key.ClientID, rotated.ClientSecret))
	if r := e.Do(t, rq); r.Status != 200 {
		t.Fatalf("revoke: %s", r)
	}

	e.AssertLastUsedStored(t, key.ClientID)
	deletedHash := e.StoredKey(t, key.ClientID).SecretHash
	previousHash := e.StoredKey(t, key.ClientID).PreviousSecretHash
	if r := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+key.ClientID, nil); r.Status != 204 {
		t.Errorf("delete: %s", r)
	}
	// A token request after delete, then the final flush.
	servertest.CheckOAuthError(t, e.TokenRequest(t, key.ClientID, key.ClientSecret, url.Values{"grant_type": {"client_credentials"}}), 401, "invalid_client")

	// The audit events of the flow, as the API shows them; the refused
	// management calls are stored by the Close below.
	e.AuditTick(t)
	var events strings.Builder
	for _, p := range []string{"/v1/events", "/v1/teams/acme/events", "/v1/events?team_id="} {
		r := e.API(t, admin, http.MethodGet, p, nil)
		if r.Status != 200 {
			t.Fatalf("GET %s: %s", p, r)
		}
		events.Write(r.Body)
	}
	// The webhook gets every event of the stream so far; its bodies are
	// checked like log lines.
	for range 10 {
		before := len(recv.got())
		hooks.round(t, 0)
		if len(recv.got()) == before {
			break
		}
	}
	var hookBodies strings.Builder
	for _, d := range recv.got() {
		hookBodies.Write(d.body)
		hookBodies.WriteByte('\n')
	}
	if !strings.Contains(hookBodies.String(), `"key.deleted"`) {
		t.Fatalf("the webhook did not get the flow's events: %s", hookBodies.String())
	}
	events.WriteString(hookBodies.String())
	scrape := httptest.NewRecorder()
	met.Handler().ServeHTTP(scrape, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(scrape.Body.String(), "keygate_token_requests_total") {
		t.Fatalf("the metrics scrape lacks the token counter:\n%s", scrape.Body.String())
	}
	events.WriteString(scrape.Body.String())
	e.Server.Close()
	if _, err := e.Store.MoveAudit(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := e.Store.AllAuditEvents(ctx, store.AuditQuery{Limit: store.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	events.Write(raw)
	for _, want := range []store.AuditAction{store.AuditKeyCreated, store.AuditKeyRotated, store.AuditKeyUpdated, store.AuditTokenRevoked, store.AuditKeyDeleted, store.AuditAuthFailed} {
		if !strings.Contains(events.String(), string(want)) {
			t.Errorf("the flow's audit events lack %s", want)
		}
	}

	// Stored hashes (the deleted key's were read before it went) and the
	// pepper.
	hashes := [][]byte{deletedHash, previousHash}
	if err := e.Store.ForEachKey(ctx, func(k store.Key) error {
		hashes = append(hashes, k.SecretHash)
		if len(k.PreviousSecretHash) > 0 {
			hashes = append(hashes, k.PreviousSecretHash)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// CreateSingleton returns the stored value when there is one, so this
	// reads the sealed pepper without changing it.
	sealed, err := e.Store.CreateSingleton(ctx, "pepper", []byte("ignored: a pepper exists"))
	if err != nil {
		t.Fatal(err)
	}
	pepper, err := e.MasterKey.Open("pepper", sealed)
	if err != nil {
		t.Fatalf("open the pepper: %v", err)
	}
	if len(pepper) != credential.PepperLen {
		t.Fatalf("pepper is %d bytes", len(pepper))
	}
	hashes = append(hashes, pepper)
	for _, h := range hashes {
		note(encodings(h)...)
	}

	if n := strings.Count(logs.String(), `"audit":true`); n < 6 {
		t.Errorf("%d audit log lines, want one per audit event of the flow (6 at least)", n)
	}
	// Audit events, webhook bodies and the metrics scrape are checked like
	// log lines.
	out := logs.String() + "\n" + events.String()
	if strings.Count(out, `"msg":"request"`) < 25 || !strings.Contains(out, `"route":"/oauth/token"`) || !strings.Contains(out, `"route":"/v1/teams/:team_id/keys"`) {
		t.Fatalf("the access log did not log the flow's requests (logging was off?):\n%s", out)
	}
	if !strings.Contains(out, `"route":"/healthz"`) {
		t.Errorf("the /healthz request was not logged at debug")
	}
	if strings.Count(out, `"client_id":"`+key.ClientID+`"`) < 6 {
		t.Errorf("the token requests' lines do not name the key's client ID (so the test proves little)")
	}
	for _, s := range forbidden {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("the log contains a sensitive value %.12s…", s)
		}
	}
	if strings.Contains(out, credential.SecretPrefix) {
		t.Errorf("the log contains something with the secret prefix %s", credential.SecretPrefix)
	}
	for _, banned := range []string{"Authorization", "Basic ", "Bearer ey", "client_secret=", "healthz?", "path?"} {
		if strings.Contains(out, banned) {
			t.Errorf("the log contains %q", banned)
		}
	}
	// Any long blob that decodes to a stored hash or the pepper.
	for _, blob := range regexp.MustCompile(`[A-Za-z0-9+/_=-]{43,}`).FindAllString(out, -1) {
		for _, h := range hashes {
			for _, enc := range encodings(h) {
				if strings.Contains(blob, enc) {
					t.Errorf("the log contains a stored hash or the pepper")
				}
			}
		}
	}
	if t.Failed() || os.Getenv("KEYGATE_TEST_SHOW_LOG") != "" {
		t.Logf("log output:\n%s", out)
	}
}

func tokenFrom(tb testing.TB, r response) string {
	tb.Helper()
	var tr tokenResponse
	if err := json.Unmarshal(r.Body, &tr); err != nil || tr.AccessToken == "" {
		tb.Fatalf("token response %s: %v", r.Body, err)
	}
	return tr.AccessToken
}
