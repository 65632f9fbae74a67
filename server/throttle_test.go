package server_test

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"net/http"
	"net/url"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
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

// countingGets counts GetKey calls: Authenticate's one store read, so a
// throttled request that never reads the key was never evaluated.
type countingGets struct {
	store.Store
	gets atomic.Int64
}

func (c *countingGets) GetKey(ctx context.Context, id string) (store.Key, error) {
	c.gets.Add(1)
	return c.Store.GetKey(ctx, id)
}

// TestThrottleBeforeEvaluation: once a pair is throttled, /oauth/token,
// /oauth/introspect and /oauth/revoke answer it 429 with Retry-After and
// the §5.2 body without reading the key — its correct secret included —
// so a guesser makes keygate do no work and learns nothing.
func TestThrottleBeforeEvaluation(t *testing.T) {
	bs, err := bolt.Open(filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	st := &countingGets{Store: bs}
	e := startEnv(t, servertest.Config{Backend: servertest.Existing(st),
		Options: server.Options{AuthFailureBurst: 2, AuthFailureRate: 1, AuthFailureSourceBurst: -1}})
	k := e.CreateKey(t, "acme", "sync", permAccounting)
	tok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	post := func(path, secret string, form url.Values) servertest.Response {
		t.Helper()
		req := e.NewRequest(t, http.MethodPost, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", servertest.BasicAuth(k.ClientID, secret))
		return e.Do(t, req)
	}
	for i := range 2 {
		if r := post("/oauth/introspect", "kgs_wrong", url.Values{"token": {tok}}); r.Status != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: %s, want 401", i+1, r)
		}
	}
	want := `{"error":"invalid_request","error_description":"too many failed client authentications from this address; retry later"}` + "\n"
	before := st.gets.Load()
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/oauth/token", url.Values{"grant_type": {"client_credentials"}}},
		{"/oauth/introspect", url.Values{"token": {tok}}},
		{"/oauth/revoke", url.Values{"token": {tok}}},
	} {
		r := post(c.path, k.ClientSecret, c.form)
		if r.Status != http.StatusTooManyRequests || string(r.Body) != want || r.Header.Get("Retry-After") != "1" {
			t.Errorf("%s with the correct secret while throttled: %d %q Retry-After %q; want 429 %q Retry-After 1",
				c.path, r.Status, r.Body, r.Header.Get("Retry-After"), want)
		}
	}
	if n := st.gets.Load() - before; n != 0 {
		t.Errorf("throttled requests read the key %d times, want 0 (the secret must not be evaluated)", n)
	}
	// The revocation was refused: the token is still good.
	if denied, err := bs.TokenDenied(context.Background(), jtiOf(t, tok)); err != nil || denied {
		t.Errorf("a throttled revocation denied the token (%v, %v)", denied, err)
	}
	// After the refill (1/s on the server's clock) the key works again.
	e.Clock.Advance(2 * time.Second)
	if r := post("/oauth/token", k.ClientSecret, url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusOK {
		t.Fatalf("after the bucket refilled: %s, want 200", r)
	}
}

// TestSourceThrottleSparesRecentSuccess: failures naming many client IDs
// from one address throttle the address (enumeration), but a key that
// succeeded from there recently keeps working — one misconfigured
// integration behind a NAT does not lock out the others there — while a
// key that has not is refused until the source's bucket refills.
func TestSourceThrottleSparesRecentSuccess(t *testing.T) {
	e := newTestEnv(t, server.Options{AuthFailureBurst: 100, AuthFailureRate: 1, AuthFailureSourceBurst: 3, AuthFailureSourceRate: 1})
	busy := e.CreateKey(t, "acme", "busy", permAccounting)
	quiet := e.CreateKey(t, "acme", "quiet", permAccounting)
	grant := url.Values{"grant_type": {"client_credentials"}}
	if r := e.TokenRequest(t, busy.ClientID, busy.ClientSecret, grant); r.Status != http.StatusOK {
		t.Fatalf("busy key: %s", r)
	}
	for i := range 3 {
		id := "kgc_unknown" + strings.Repeat("x", i+1)
		if r := e.TokenRequest(t, id, "kgs_wrong", grant); r.Status != http.StatusUnauthorized {
			t.Fatalf("unknown id %d: %s, want 401", i+1, r)
		}
	}
	if r := e.TokenRequest(t, "kgc_unknown-next", "kgs_wrong", grant); r.Status != http.StatusTooManyRequests {
		t.Fatalf("the next unknown id from a throttled address: %s, want 429", r)
	}
	if r := e.TokenRequest(t, busy.ClientID, busy.ClientSecret, grant); r.Status != http.StatusOK {
		t.Fatalf("a key that succeeded from the address: %s, want 200", r)
	}
	if r := e.TokenRequest(t, quiet.ClientID, quiet.ClientSecret, grant); r.Status != http.StatusTooManyRequests {
		t.Fatalf("a key with no recent success from the throttled address: %s, want 429", r)
	}
	e.Clock.Advance(2 * time.Second)
	if r := e.TokenRequest(t, quiet.ClientID, quiet.ClientSecret, grant); r.Status != http.StatusOK {
		t.Fatalf("after the source's bucket refilled: %s, want 200", r)
	}
}

// throttleCommands counts the commands a Redis client sends that touch the
// shared throttle (its script's keys, its channel), pipelined or not.
type throttleCommands struct{ n atomic.Int64 }

func (h *throttleCommands) count(cmd goredis.Cmder) {
	for _, a := range cmd.Args() {
		if s, ok := a.(string); ok && strings.Contains(s, "throttle") {
			h.n.Add(1)
			return
		}
	}
}
func (h *throttleCommands) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *throttleCommands) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h *throttleCommands) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}

// TestThrottleSharedOnRedis: two instances on one Redis count failed
// authentications together. Wrong secrets spread over both add up to one
// burst; the instance that did not see the last of them refuses the pair
// too — by the shared count when it fails there itself, and by the
// announcement over pub/sub when it does not — with its correct secret;
// exactly one auth.throttled event is written between them; and a request
// that authenticates sends Redis nothing of the throttle.
func TestThrottleSharedOnRedis(t *testing.T) {
	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "")
	var hooks []*throttleCommands
	backend := servertest.RedisOn(func(t testing.TB) goredis.UniversalClient {
		cl := redistest.NewClient(t)
		h := &throttleCommands{}
		cl.AddHook(h)
		hooks = append(hooks, h) // instances start one after the other
		return cl
	}, prefix)
	opts := server.Options{AuthFailureBurst: 4, AuthFailureRate: 1, AuthFailureSourceBurst: -1}
	a := startEnv(t, servertest.Config{Options: opts, Backend: backend, Clock: servertest.NewClock(quotaT0)})
	b := a.second(t, opts)
	hb := hooks[len(hooks)-1]
	channel := prefix + "{kg}:throttle"
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := c.PubSubNumSub(context.Background(), channel).Result()
		if err == nil && n[channel] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("two instances not listening for throttles within 5 s: %v, %v", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	k := a.CreateKey(t, "acme", "shared", permAccounting)
	grant := url.Values{"grant_type": {"client_credentials"}}

	// Successes on B: no throttle traffic at all.
	before := hb.n.Load()
	for range 5 {
		if r := b.TokenRequest(t, k.ClientID, k.ClientSecret, grant); r.Status != http.StatusOK {
			t.Fatalf("correct secret on B: %s", r)
		}
	}
	if n := hb.n.Load() - before; n != 0 {
		t.Fatalf("five successful authentications sent %d throttle commands to Redis, want 0", n)
	}

	// Three wrong secrets, A B A: each instance alone is under the burst
	// of 4, together one short of it.
	for i, e := range []*testEnv{a, b, a} {
		if r := e.TokenRequest(t, k.ClientID, "kgs_wrong", grant); r.Status != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: %s, want 401", i+1, r)
		}
	}
	if r := b.TokenRequest(t, k.ClientID, k.ClientSecret, grant); r.Status != http.StatusOK {
		t.Fatalf("correct secret after 3 of 4 failures: %s, want 200", r)
	}
	// The 4th, on B, spends the shared burst: B refuses at once (the
	// shared count), A once the announcement arrives.
	if r := b.TokenRequest(t, k.ClientID, "kgs_wrong", grant); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong secret 4: %s, want 401", r)
	}
	if r := b.TokenRequest(t, k.ClientID, k.ClientSecret, grant); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("B, correct secret, shared burst spent: %s (Retry-After %q), want 429, Retry-After 1", r, r.Header.Get("Retry-After"))
	}
	// A saw two of the four failures; only the announcement can tell it.
	// Pub/sub delivery is asynchronous: bounded wait for it.
	deadline = time.Now().Add(5 * time.Second)
	for {
		r := a.TokenRequest(t, k.ClientID, k.ClientSecret, grant)
		if r.Status == http.StatusTooManyRequests {
			break
		}
		if r.Status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("A, correct secret, after B announced the throttle: %d, want 429 within 5 s", r.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The team's trail: on Redis the operator-wide stream is fed later,
	// by the audit worker's MoveAudit.
	events, err := a.Store.(store.AuditStore).AuditEvents(context.Background(), "acme", store.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	throttled := 0
	for _, ev := range events.Events {
		if ev.Action == store.AuditAuthThrottled {
			throttled++
		}
	}
	if throttled != 1 {
		t.Fatalf("%d auth.throttled events from two instances for one episode, want 1", throttled)
	}
	// The shared bucket refills on the clock both instances read.
	a.Clock.Advance(2 * time.Second)
	for name, e := range map[string]*testEnv{"A": a, "B": b} {
		if r := e.TokenRequest(t, k.ClientID, k.ClientSecret, grant); r.Status != http.StatusOK {
			t.Fatalf("%s after the refill: %s, want 200", name, r)
		}
	}
}
