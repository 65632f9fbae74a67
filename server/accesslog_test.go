package server_test

// Request IDs, source addresses and the info-level access log, seen from
// outside: the X-Request-Id of answers, the request_id of problem bodies,
// the lines a JSON slog handler receives, the settings that choose them,
// and the rate limit of lines of refused requests on the harness's clock.

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// generatedID is the form of an ID keygate makes.
var generatedID = regexp.MustCompile(`^[0-9abcdefghjkmnpqrstvwxyz]{26}$`)

// logLines parses the JSON log: one object per line.
func logLines(t *testing.T, b *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, l)
		}
		out = append(out, m)
	}
	return out
}

// accessLines are the access log's lines (msg "request") at info.
func accessLines(t *testing.T, b *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range logLines(t, b) {
		if l["msg"] == "request" && l["level"] == "INFO" {
			out = append(out, l)
		}
	}
	return out
}

// lineFor is the access line of the answer r (by its X-Request-Id), or nil.
func lineFor(t *testing.T, b *syncBuffer, r response) map[string]any {
	t.Helper()
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		t.Fatalf("answer without X-Request-Id: %s", r)
	}
	for _, l := range accessLines(t, b) {
		if l["request_id"] == id {
			return l
		}
	}
	return nil
}

// logEnv starts keygate logging JSON at info to the returned buffer.
func logEnv(t *testing.T, opts server.Options, clock *servertest.Clock) (*testEnv, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return startEnv(t, servertest.Config{Options: opts, Clock: clock}), logs
}

func badTokenRequest(t *testing.T, e *testEnv, id, secret string) response {
	t.Helper()
	r := e.TokenRequest(t, id, secret, url.Values{"grant_type": {"client_credentials"}})
	servertest.CheckOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
	return r
}

// Every answer carries its own X-Request-Id; a problem body names the same
// ID, an OAuth error body stays RFC 6749 §5.2's two members.
func TestRequestIDOnEveryAnswer(t *testing.T) {
	t.Parallel()
	e, _ := logEnv(t, server.Options{}, nil)
	admin := e.AdminToken(t)
	key := e.CreateKeyWith(t, admin, "acme", "k", permAccounting)

	tok := e.TokenRequest(t, key.ClientID, key.ClientSecret, url.Values{"grant_type": {"client_credentials"}})
	bad := badTokenRequest(t, e, key.ClientID, "wrong")
	list := e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys", nil)
	prob := e.API(t, "garbage", http.MethodGet, "/v1/teams/acme/keys", nil)
	health := e.Do(t, e.NewRequest(t, http.MethodGet, "/healthz", nil))
	missing := e.Do(t, e.NewRequest(t, http.MethodGet, "/nothing/here", nil))
	console := e.Do(t, e.NewRequest(t, http.MethodGet, "/console/", nil))

	seen := map[string]bool{}
	for name, r := range map[string]response{"token": tok, "refused token": bad, "list": list, "problem": prob,
		"healthz": health, "404": missing, "console": console} {
		id := r.Header.Get("X-Request-Id")
		if !generatedID.MatchString(id) {
			t.Errorf("%s: X-Request-Id %q is not a generated ID", name, id)
		}
		if seen[id] {
			t.Errorf("%s: X-Request-Id %s was given to two answers", name, id)
		}
		seen[id] = true
	}
	checkProblem(t, prob, http.StatusUnauthorized) // request_id = X-Request-Id
	checkProblem(t, missing, http.StatusNotFound)
	var body map[string]any
	if err := json.Unmarshal(bad.Body, &body); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(body); strings.Join(got, ",") != "error,error_description" {
		t.Errorf("OAuth error members %v, want error and error_description only", got)
	}
}

// An incoming X-Request-Id is adopted only from a trusted proxy, and only
// when well-formed; from anyone else it is logged as client_request_id and
// the request gets an ID of keygate's.
func TestRequestIDAdoption(t *testing.T) {
	t.Parallel()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	send := func(e *testEnv, xrid string) response {
		req := e.NewRequest(t, http.MethodGet, "/v1/teams/acme/keys", nil)
		req.Header.Set("X-Request-Id", xrid)
		return e.Do(t, req)
	}

	trusted, tlogs := logEnv(t, server.Options{TrustedProxies: loopback}, nil)
	r := send(trusted, "lb-7f3a.2_x")
	if got := r.Header.Get("X-Request-Id"); got != "lb-7f3a.2_x" {
		t.Errorf("from a trusted proxy: X-Request-Id %q, want the one it sent", got)
	}
	if p := checkProblem(t, r, http.StatusUnauthorized); p.RequestID != "lb-7f3a.2_x" {
		t.Errorf("problem request_id %q", p.RequestID)
	}
	l := lineFor(t, tlogs, r)
	if l == nil || l["client_request_id"] != nil {
		t.Errorf("access line of an adopted ID: %v", l)
	}
	for _, bad := range []string{strings.Repeat("a", 65), "has space", "semi;colon", "é"} {
		r := send(trusted, bad)
		if got := r.Header.Get("X-Request-Id"); !generatedID.MatchString(got) {
			t.Errorf("malformed %q from a trusted proxy: X-Request-Id %q, want a new ID", bad, got)
		}
		if l := lineFor(t, tlogs, r); l == nil || l["client_request_id"] != nil {
			t.Errorf("malformed %q: line %v, want a line without client_request_id", bad, l)
		}
	}
	if r := send(trusted, strings.Repeat("b", 64)); r.Header.Get("X-Request-Id") != strings.Repeat("b", 64) {
		t.Errorf("64 characters from a trusted proxy were not adopted: %q", r.Header.Get("X-Request-Id"))
	}

	direct, dlogs := logEnv(t, server.Options{}, nil)
	r = send(direct, "forged-correlation")
	id := r.Header.Get("X-Request-Id")
	if !generatedID.MatchString(id) {
		t.Errorf("from an untrusted peer: X-Request-Id %q, want a new ID", id)
	}
	if p := checkProblem(t, r, http.StatusUnauthorized); p.RequestID != id {
		t.Errorf("problem request_id %q, header %q", p.RequestID, id)
	}
	l = lineFor(t, dlogs, r)
	if l == nil || l["client_request_id"] != "forged-correlation" {
		t.Errorf("access line %v, want client_request_id forged-correlation", l)
	}
	// A trusted_proxies list the peer is not in is the same as none.
	other, ologs := logEnv(t, server.Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, nil)
	r = send(other, "forged-correlation")
	if l := lineFor(t, ologs, r); r.Header.Get("X-Request-Id") == "forged-correlation" || l == nil || l["client_request_id"] != "forged-correlation" {
		t.Errorf("peer outside trusted_proxies: X-Request-Id %q, line %v", r.Header.Get("X-Request-Id"), l)
	}
}

// The source of a line is the first untrusted hop of X-Forwarded-For when
// the peer is a trusted proxy, the peer otherwise.
func TestAccessLogSource(t *testing.T) {
	t.Parallel()
	send := func(e *testEnv, xff string) response {
		req := e.NewRequest(t, http.MethodGet, "/v1/permissions", nil)
		req.Header.Set("X-Forwarded-For", xff)
		req.Header.Set("X-Real-IP", "192.0.2.99")
		req.Header.Set("Forwarded", "for=192.0.2.98")
		return e.Do(t, req)
	}
	trusted, tlogs := logEnv(t, server.Options{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.0.0.0/8")}}, nil)
	r := send(trusted, "192.0.2.66, 203.0.113.5, 10.1.2.3")
	if l := lineFor(t, tlogs, r); l == nil || l["source"] != "203.0.113.5" {
		t.Errorf("behind two trusted proxies: line %v, want source 203.0.113.5", l)
	}
	direct, dlogs := logEnv(t, server.Options{}, nil)
	r = send(direct, "203.0.113.5")
	if l := lineFor(t, dlogs, r); l == nil || (l["source"] != "127.0.0.1" && l["source"] != "::1") {
		t.Errorf("no trusted proxy: line %v, want the peer's address", l)
	}
}

// access_log and access_log_oauth choose the lines; by default a token
// answered writes none.
func TestAccessLogModes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		api, oauth                     string
		listOK, listBad, tokOK, tokBad bool // which requests get a line
	}{
		{"", "", true, true, false, true}, // the defaults: all, errors
		{config.AccessLogAll, config.AccessLogAll, true, true, true, true},
		{config.AccessLogErrors, config.AccessLogErrors, false, true, false, true},
		{config.AccessLogOff, config.AccessLogOff, false, false, false, false},
	} {
		t.Run(tc.api+"/"+tc.oauth, func(t *testing.T) {
			t.Parallel()
			e, logs := logEnv(t, server.Options{AccessLog: tc.api, AccessLogOAuth: tc.oauth}, nil)
			admin := e.AdminToken(t)
			key := e.CreateKeyWith(t, admin, "acme", "k", permAccounting)
			listOK := e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys", nil)
			listBad := e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys/"+key.ClientID+"x", nil)
			tokOK := e.TokenRequest(t, key.ClientID, key.ClientSecret, url.Values{"grant_type": {"client_credentials"}})
			tokBad := badTokenRequest(t, e, key.ClientID, "wrong")
			for name, c := range map[string]struct {
				r    response
				want bool
			}{"management 200": {listOK, tc.listOK}, "management 404": {listBad, tc.listBad},
				"token 200": {tokOK, tc.tokOK}, "token 401": {tokBad, tc.tokBad}} {
				if got := lineFor(t, logs, c.r) != nil; got != c.want {
					t.Errorf("%s: logged %v, want %v\n%s", name, got, c.want, logs.String())
				}
			}
			if l := lineFor(t, logs, listOK); l != nil {
				if l["route"] != "/v1/teams/:team_id/keys" || l["method"] != "GET" || l["status"] != 200.0 ||
					l["client_id"] != e.AdminID || l["duration"] == nil || l["error"] != nil {
					t.Errorf("management line %v", l)
				}
			}
			if l := lineFor(t, logs, listBad); l != nil {
				if l["route"] != "/v1/teams/:team_id/keys/:client_id" || l["status"] != 404.0 || l["error"] != "urn:keygate:problem:not-found" {
					t.Errorf("management problem line %v", l)
				}
			}
			if l := lineFor(t, logs, tokBad); l != nil {
				if l["route"] != "/oauth/token" || l["status"] != 401.0 || l["error"] != "invalid_client" || l["client_id"] != key.ClientID {
					t.Errorf("refused token line %v", l)
				}
			}
			if l := lineFor(t, logs, tokOK); l != nil && (l["status"] != 200.0 || l["client_id"] != key.ClientID) {
				t.Errorf("token line %v", l)
			}
		})
	}
}

// A secret pasted into the client ID field is never logged as a client ID.
func TestAccessLogClientIDNotASecret(t *testing.T) {
	t.Parallel()
	e, logs := logEnv(t, server.Options{}, nil)
	key := e.CreateKey(t, "acme", "k", permAccounting)
	r := e.TokenRequest(t, "", "", url.Values{"grant_type": {"client_credentials"},
		"client_id": {key.ClientSecret}, "client_secret": {key.ClientSecret}})
	servertest.CheckOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
	l := lineFor(t, logs, r)
	if l == nil || l["client_id"] != nil || l["error"] != "invalid_client" {
		t.Errorf("line %v: want a line with the error and no client_id", l)
	}
	if strings.Contains(logs.String(), key.ClientSecret) {
		t.Error("the log holds the secret")
	}
}

// Lines of refused requests are limited per source: a burst, then one per
// second of the server's clock; the next line says how many were dropped,
// and so does Close for what no line said.
func TestAccessLogRateLimit(t *testing.T) {
	t.Parallel()
	clock := servertest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	e, logs := logEnv(t, server.Options{}, clock)
	key := e.CreateKey(t, "acme", "k", permAccounting)
	refusals := func() int {
		n := 0
		for _, l := range accessLines(t, logs) {
			if l["route"] == "/oauth/token" {
				n++
			}
		}
		return n
	}

	const extra = 7
	for range server.AccessLogBurst + extra {
		badTokenRequest(t, e, key.ClientID, "wrong")
	}
	if n := refusals(); n != server.AccessLogBurst {
		t.Fatalf("%d lines for %d refusals from one source, want the burst of %d", n, server.AccessLogBurst+extra, server.AccessLogBurst)
	}
	// A management refusal from the same source shares its bucket.
	if l := lineFor(t, logs, e.API(t, "garbage", http.MethodGet, "/v1/permissions", nil)); l != nil {
		t.Errorf("a refused management request was logged past the limit: %v", l)
	}
	// Not even a second later: still nothing.
	clock.Advance(999 * time.Millisecond)
	badTokenRequest(t, e, key.ClientID, "wrong")
	if n := refusals(); n != server.AccessLogBurst {
		t.Fatalf("a line was written before a token was back (%d lines)", n)
	}
	// A second later: one line, counting what was dropped.
	clock.Advance(time.Millisecond)
	r := badTokenRequest(t, e, key.ClientID, "wrong")
	l := lineFor(t, logs, r)
	if l == nil || l["dropped"] != float64(extra+2) {
		t.Fatalf("line after the refill %v, want dropped %d", l, extra+2)
	}
	// Successful management requests are not limited.
	admin := e.AdminToken(t)
	for range 3 {
		if lineFor(t, logs, e.API(t, admin, http.MethodGet, "/v1/permissions", nil)) == nil {
			t.Error("a successful management request was not logged")
		}
	}
	badTokenRequest(t, e, key.ClientID, "wrong")
	badTokenRequest(t, e, key.ClientID, "wrong")
	e.Server.Close()
	var said bool
	for _, l := range logLines(t, logs) {
		if l["msg"] == "access log lines suppressed" {
			said = l["dropped"] == 2.0 && (l["source"] == "127.0.0.1" || l["source"] == "::1")
		}
	}
	if !said {
		t.Errorf("Close did not say the 2 lines suppressed since the last one:\n%s", logs.String())
	}
}

// Every log line of a request carries its ID, not only the access line.
func TestRequestIDInEveryLine(t *testing.T) {
	t.Parallel()
	e, logs := logEnv(t, server.Options{}, nil)
	key := e.CreateKey(t, "acme", "k", permAccounting)
	r := e.API(t, e.AdminToken(t), http.MethodPost, "/v1/teams/acme/keys/"+key.ClientID+"/rotate", `{"grace_period":"0s"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("rotate: %s", r)
	}
	id := r.Header.Get("X-Request-Id")
	var lines []string
	for _, l := range logLines(t, logs) {
		if l["request_id"] == id {
			lines = append(lines, l["msg"].(string))
		}
	}
	if strings.Join(lines, "|") != "audit: key.rotated|management: key secret rotated|request" {
		t.Errorf("lines with the rotation's request_id: %q, want the audit line, the rotation's and the access line", lines)
	}
}
