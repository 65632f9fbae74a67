package server_test

// Issuance quotas at the token endpoint (server/quota.go, package quota):
// enforce and log modes, the RateLimit fields, window rollover by moving
// the clock, team quotas, the key's own token_quota through create and
// PATCH, and two instances sharing a count on Redis.

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// quotaT0 is 20 minutes before an hour ends: t= counts 1200 seconds.
var quotaT0 = time.Date(2026, 11, 27, 10, 40, 0, 0, time.UTC)

func startQuotaEnv(t *testing.T, opts server.Options, b servertest.Backend) *testEnv {
	t.Helper()
	return startEnv(t, servertest.Config{Options: opts, Backend: b, Clock: servertest.NewClock(quotaT0)})
}

var clientCredentials = url.Values{"grant_type": {"client_credentials"}}

// checkRateLimit asserts both RateLimit fields (an empty want: absent).
func checkRateLimit(t *testing.T, r response, policy, limit string) {
	t.Helper()
	if got := r.Header.Values("RateLimit-Policy"); strings.Join(got, "|") != policy {
		t.Errorf("RateLimit-Policy %q, want %q", got, policy)
	}
	if got := r.Header.Values("RateLimit"); strings.Join(got, "|") != limit {
		t.Errorf("RateLimit %q, want %q", got, limit)
	}
}

func TestTokenQuotaEnforced(t *testing.T) {
	e := startQuotaEnv(t, server.Options{TokenQuotaPerKey: quota.Policy{Limit: 3, Per: quota.Hour, Mode: quota.Enforce}}, servertest.Bolt())
	k := e.CreateKey(t, "acme", "limited", permAccounting)
	for i := 2; i >= 0; i-- {
		r := e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials)
		if r.Status != http.StatusOK {
			t.Fatalf("token %d: %s", 3-i, r)
		}
		checkRateLimit(t, r, `"hour";q=3;w=3600`, `"hour";r=`+strconv.Itoa(i)+`;t=1200`)
	}
	e.Clock.Advance(5 * time.Minute)
	e.FlushLastUsed(t)
	before := e.Snapshot(t)
	r := e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials)
	servertest.CheckOAuthError(t, r, http.StatusTooManyRequests, "invalid_request")
	if got := r.Header.Get("Retry-After"); got != "900" {
		t.Errorf("Retry-After %q, want 900 (the hour ends in 15 minutes)", got)
	}
	checkRateLimit(t, r, `"hour";q=3;w=3600`, `"hour";r=0;t=900`)
	const wantBody = `{"error":"invalid_request","error_description":"this key's token quota (3 tokens per hour) is used up; retry after 900 seconds, when its window resets"}`
	if got := strings.TrimSpace(string(r.Body)); got != wantBody {
		t.Errorf("body %s\nwant %s", got, wantBody)
	}
	// Nothing was written for the refusal.
	e.AssertUnchanged(t, before)

	// An unauthenticated request learns nothing of the quota.
	r = e.TokenRequest(t, k.ClientID, "kgs_wrong", clientCredentials)
	servertest.CheckOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
	checkRateLimit(t, r, "", "")
	if r.Header.Get("Retry-After") != "" {
		t.Errorf("Retry-After on an unauthenticated request: %q", r.Header.Get("Retry-After"))
	}

	// Another key has its own count; an admin key is never counted.
	other := e.CreateKey(t, "acme", "other", permAccounting)
	if r := e.TokenRequest(t, other.ClientID, other.ClientSecret, clientCredentials); r.Status != http.StatusOK {
		t.Fatalf("another key of the team: %s", r)
	}
	for range 5 {
		r := e.TokenRequest(t, e.AdminID, e.AdminSecret, clientCredentials)
		if r.Status != http.StatusOK {
			t.Fatalf("admin key: %s", r)
		}
		checkRateLimit(t, r, "", "")
	}

	// Rollover: the next hour starts a new count, by moving the clock.
	e.Clock.Advance(15 * time.Minute)
	r = e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials)
	if r.Status != http.StatusOK {
		t.Fatalf("first token of the next hour: %s", r)
	}
	checkRateLimit(t, r, `"hour";q=3;w=3600`, `"hour";r=2;t=3600`)
}

func TestTokenQuotaLogMode(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	e := startQuotaEnv(t, server.Options{Logger: logger,
		TokenQuotaPerKey: quota.Policy{Limit: 2, Per: quota.Day, Mode: quota.Log}}, servertest.Bolt())
	k := e.CreateKey(t, "acme", "logged", permAccounting)
	lines := func() int { return strings.Count(logs.String(), "token quota of a key exceeded") }
	for i := range 10 {
		r := e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials)
		if r.Status != http.StatusOK {
			t.Fatalf("log mode refused token %d: %s", i+1, r)
		}
		checkRateLimit(t, r, "", "") // only enforced quotas are announced
	}
	if n := lines(); n != 1 {
		t.Fatalf("%d log lines for 8 tokens over the quota in one window, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), `"client_id":"`+k.ClientID+`"`) || !strings.Contains(logs.String(), `"quota":"2/day:log"`) {
		t.Errorf("the line does not name the key and the quota:\n%s", logs)
	}
	e.Clock.Advance(24 * time.Hour)
	for range 5 {
		e.Token(t, k.ClientID, k.ClientSecret, "")
	}
	if n := lines(); n != 2 {
		t.Fatalf("%d log lines after a second window over the quota, want 2", n)
	}
}

func TestTokenQuotaTeam(t *testing.T) {
	e := startQuotaEnv(t, server.Options{TokenQuotaPerTeam: quota.Policy{Limit: 3, Per: quota.Hour, Mode: quota.Enforce}}, servertest.Bolt())
	a := e.CreateKey(t, "acme", "a", permAccounting)
	b := e.CreateKey(t, "acme", "b", permAccounting)
	c := e.CreateKey(t, "globex", "c", permAccounting)
	e.Token(t, a.ClientID, a.ClientSecret, "")
	e.Token(t, a.ClientID, a.ClientSecret, "")
	r := e.TokenRequest(t, b.ClientID, b.ClientSecret, clientCredentials)
	if r.Status != http.StatusOK {
		t.Fatalf("third token of the team: %s", r)
	}
	checkRateLimit(t, r, `"team-hour";q=3;w=3600`, `"team-hour";r=0;t=1200`)
	for _, k := range []keyJSON{a, b} {
		r := e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials)
		servertest.CheckOAuthError(t, r, http.StatusTooManyRequests, "invalid_request")
		if !strings.Contains(string(r.Body), "the team's token quota (3 tokens per hour) is used up") || r.Header.Get("Retry-After") != "1200" {
			t.Errorf("team refusal: %s (Retry-After %q)", r, r.Header.Get("Retry-After"))
		}
		checkRateLimit(t, r, `"team-hour";q=3;w=3600`, `"team-hour";r=0;t=1200`)
	}
	// Another team is counted apart.
	e.Token(t, c.ClientID, c.ClientSecret, "")

	// With a key quota too, both are announced; a key refused by its
	// team gets its own token back.
	e2 := startQuotaEnv(t, server.Options{
		TokenQuotaPerKey:  quota.Policy{Limit: 2, Per: quota.Hour, Mode: quota.Enforce},
		TokenQuotaPerTeam: quota.Policy{Limit: 3, Per: quota.Day, Mode: quota.Enforce}}, servertest.Memory())
	x := e2.CreateKey(t, "acme", "x", permAccounting)
	y := e2.CreateKey(t, "acme", "y", permAccounting)
	r = e2.TokenRequest(t, x.ClientID, x.ClientSecret, clientCredentials)
	checkRateLimit(t, r, `"hour";q=2;w=3600, "team-day";q=3;w=86400`, `"hour";r=1;t=1200, "team-day";r=2;t=48000`)
	e2.Token(t, y.ClientID, y.ClientSecret, "")
	e2.Token(t, y.ClientID, y.ClientSecret, "")
	r = e2.TokenRequest(t, x.ClientID, x.ClientSecret, clientCredentials)
	servertest.CheckOAuthError(t, r, http.StatusTooManyRequests, "invalid_request")
	checkRateLimit(t, r, `"hour";q=2;w=3600, "team-day";q=3;w=86400`, `"team-day";r=0;t=48000`)
	// The next hour: the team (per day) still refuses, and x's hour count
	// is 0, so after the day turns x has both of its tokens.
	e2.Clock.Advance(13*time.Hour + 20*time.Minute) // midnight UTC
	r = e2.TokenRequest(t, x.ClientID, x.ClientSecret, clientCredentials)
	checkRateLimit(t, r, `"hour";q=2;w=3600, "team-day";q=3;w=86400`, `"hour";r=1;t=3600, "team-day";r=2;t=86400`)
}

// TestTokenQuotaOnKey: a key's own token_quota, set at create, shown in its
// JSON, changed and cleared by PATCH (null back to the server's default),
// overrides the default at the token endpoint; bad values are refused
// with a problem naming the member, and nothing changes.
func TestTokenQuotaOnKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e := startQuotaEnv(t, server.Options{TokenQuotaPerKey: quota.Policy{Limit: 1000, Per: quota.Day, Mode: quota.Enforce}}, b)
		tok := e.AdminToken(t)
		r := e.API(t, tok, http.MethodPost, "/v1/teams/acme/keys", `{"name": "own", "permissions": ["accounting_api"], "token_quota": {"limit": 1, "per": "hour"}}`)
		if r.Status != http.StatusCreated {
			t.Fatalf("create with token_quota: %s", r)
		}
		var k struct {
			keyJSON
			TokenQuota json.RawMessage `json:"token_quota"`
		}
		if err := json.Unmarshal(r.Body, &k); err != nil {
			t.Fatal(err)
		}
		if string(k.TokenQuota) != `{"limit":1,"per":"hour","mode":"enforce"}` {
			t.Fatalf("created key's token_quota %s", k.TokenQuota)
		}
		tr := e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials)
		checkRateLimit(t, tr, `"hour";q=1;w=3600`, `"hour";r=0;t=1200`)
		servertest.CheckOAuthError(t, e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials), http.StatusTooManyRequests, "invalid_request")

		path := "/v1/teams/acme/keys/" + k.ClientID
		patch := func(body string) response {
			t.Helper()
			req := e.NewRequest(t, http.MethodPatch, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/merge-patch+json")
			req.Header.Set("Authorization", "Bearer "+tok)
			return e.Do(t, req)
		}
		r = patch(`{"token_quota": {"limit": 5, "per": "hour", "mode": "log"}}`)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"token_quota":{"limit":5,"per":"hour","mode":"log"}`) {
			t.Fatalf("PATCH token_quota: %s", r)
		}
		if got := e.StoredKey(t, k.ClientID).TokenQuota; got.Limit != 5 || got.Per != "hour" || got.Mode != "log" {
			t.Fatalf("stored after PATCH: %+v", got)
		}
		// Log mode from the next token: issued, no fields.
		checkRateLimit(t, e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials), "", "")

		e.FlushLastUsed(t) // the uses so far are written, so a refusal's would show
		for body, detail := range map[string]string{
			`{"token_quota": {"limit": 0, "per": "hour"}}`:                 `"token_quota.limit" is 0; use a whole number of tokens from 1 to 1000000000`,
			`{"token_quota": {"limit": 1000000001, "per": "day"}}`:         `"token_quota.limit" is 1000000001`,
			`{"token_quota": {"limit": "5", "per": "hour"}}`:               `"token_quota.limit" must be a whole number from 1 to 1000000000`,
			`{"token_quota": {"limit": 2.5, "per": "hour"}}`:               `"token_quota.limit" must be a whole number`,
			`{"token_quota": {"limit": 5, "per": "week"}}`:                 `"token_quota.per" must be "hour" or "day"`,
			`{"token_quota": {"limit": 5, "per": "hour", "mode": "warn"}}`: `"token_quota.mode" must be "enforce"`,
			`{"token_quota": {"limit": 5, "per": "hour", "mode": null}}`:   `"token_quota.mode" must be a JSON string`,
			`{"token_quota": {"limit": 5}}`:                                `"token_quota.per" is required`,
			`{"token_quota": {"per": "hour"}}`:                             `"token_quota.limit" is required`,
			`{"token_quota": {"Limit": 5, "per": "hour"}}`:                 `unknown field "Limit" in "token_quota"`,
			`{"token_quota": "1000/hour"}`:                                 `"token_quota" must be null or an object`,
			`{"token_quota": {"limit": 5, "per": "hour", "limit": 6}}`:     `appears twice`,
		} {
			before := e.Snapshot(t)
			r := patch(body)
			if r.Status != http.StatusBadRequest || !strings.Contains(problemDetail(r), detail) {
				t.Errorf("PATCH %s: %s, want 400 with %q", body, r, detail)
			}
			e.AssertUnchanged(t, before)
			// The same at create: no key is made.
			r = e.API(t, tok, http.MethodPost, "/v1/teams/acme/keys", `{"name": "bad", "permissions": ["accounting_api"], `+strings.TrimPrefix(body, "{"))
			if r.Status != http.StatusBadRequest || !strings.Contains(problemDetail(r), detail) {
				t.Errorf("create with %s: %s, want 400 with %q", body, r, detail)
			}
			e.AssertUnchanged(t, before)
		}

		r = patch(`{"token_quota": null}`)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"token_quota":null`) {
			t.Fatalf("PATCH token_quota null: %s", r)
		}
		if got := e.StoredKey(t, k.ClientID).TokenQuota; !got.IsZero() {
			t.Fatalf("stored after clearing: %+v", got)
		}
		// Back to the server's default, 1000 a day (another period: a
		// count of its own).
		checkRateLimit(t, e.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials),
			`"day";q=1000;w=86400`, `"day";r=999;t=48000`)
	})
}

func problemDetail(r response) string {
	var p struct{ Detail string }
	_ = json.Unmarshal(r.Body, &p)
	return p.Detail
}

// TestTokenQuotaSharedOnRedis: two instances on one Redis share a key's
// count through leases (LeaseSize(500) = 5): together they never issue
// more than the quota, and at most one lease per instance (4 tokens each)
// stays stranded.
func TestTokenQuotaSharedOnRedis(t *testing.T) {
	const limit = 500
	opts := server.Options{SigningAlg: "EdDSA", TokenQuotaPerKey: quota.Policy{Limit: limit, Per: quota.Hour, Mode: quota.Enforce}}
	e := startQuotaEnv(t, opts, servertest.Redis())
	e2 := e.second(t, opts)
	k := e.CreateKey(t, "acme", "shared", permAccounting)
	var mu sync.Mutex
	issued, refused := 0, 0
	var wg sync.WaitGroup
	for w := range 4 {
		env := e
		if w%2 == 1 {
			env = e2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 150 {
				r := env.TokenRequest(t, k.ClientID, k.ClientSecret, clientCredentials)
				mu.Lock()
				switch r.Status {
				case http.StatusOK:
					issued++
				case http.StatusTooManyRequests:
					refused++
				default:
					t.Errorf("status %d: %s", r.Status, r.Body)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	maxStranded := 2 * (quota.LeaseSize(limit) - 1)
	t.Logf("two instances: %d issued, %d refused of 600 (limit %d)", issued, refused, limit)
	if issued > limit || int64(issued) < limit-maxStranded {
		t.Fatalf("%d tokens issued by two instances, want %d..%d", issued, limit-maxStranded, limit)
	}
}

// TestTokenQuotaLogOnceOnRedis: in log mode two instances on one Redis
// write one warning between them per key and window.
func TestTokenQuotaLogOnceOnRedis(t *testing.T) {
	logs := &syncBuffer{}
	opts := server.Options{SigningAlg: "EdDSA", Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		TokenQuotaPerKey: quota.Policy{Limit: 10, Per: quota.Hour, Mode: quota.Log}}
	e := startQuotaEnv(t, opts, servertest.Redis())
	e2 := e.second(t, opts)
	k := e.CreateKey(t, "acme", "logged", permAccounting)
	for i := range 40 {
		env := e
		if i%2 == 1 {
			env = e2
		}
		env.Token(t, k.ClientID, k.ClientSecret, "")
	}
	if n := strings.Count(logs.String(), "token quota of a key exceeded"); n != 1 {
		t.Fatalf("%d warnings from two instances for 30 tokens over the quota, want 1", n)
	}
	e.Clock.Advance(time.Hour)
	for i := range 12 {
		env := e
		if i%2 == 1 {
			env = e2
		}
		env.Token(t, k.ClientID, k.ClientSecret, "")
	}
	if n := strings.Count(logs.String(), "token quota of a key exceeded"); n != 2 {
		t.Fatalf("%d warnings after the next hour's tokens over the quota, want 2", n)
	}
}
