package loadgen_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/loadgen"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

var testCred = []loadgen.Credential{{ID: "kgc_test", Secret: "secret"}}

func run(t *testing.T, cfg loadgen.Config) *loadgen.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%q: %d requests, %d ok, %.0f/s, errors %v, unsent %d, p50 %v p90 %v p99 %v p99.9 %v max %v",
		cfg.Endpoint, res.Requests, res.Successes, res.RPS, res.Errors, res.Unsent, res.P50, res.P90, res.P99, res.P999, res.Max)
	return res
}

// checkClean asserts a run with successes only and ordered percentiles.
func checkClean(t *testing.T, res *loadgen.Result) {
	t.Helper()
	if res.Successes == 0 || res.ErrorCount() != 0 || res.Requests != res.Successes {
		t.Fatalf("want successes only: requests %d, successes %d, errors %v", res.Requests, res.Successes, res.Errors)
	}
	if res.RPS <= 0 {
		t.Errorf("RPS = %v", res.RPS)
	}
	ps := []time.Duration{res.P50, res.P90, res.P99, res.P999, res.Max}
	if ps[0] <= 0 || !slices.IsSorted(ps) {
		t.Errorf("percentiles not ordered: p50 %v p90 %v p99 %v p99.9 %v max %v", ps[0], ps[1], ps[2], ps[3], ps[4])
	}
}

func startFloor(t *testing.T, alg string) *httptest.Server {
	t.Helper()
	h, err := loadgen.NewFloorHandler(alg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// syncBuffer is a bytes.Buffer safe to write from the progress goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFloorToken(t *testing.T) {
	t.Parallel()
	ts := startFloor(t, "ES256")
	var progress syncBuffer
	res := run(t, loadgen.Config{URL: ts.URL, Endpoint: loadgen.EndpointToken, Credentials: testCred,
		Duration: 1100 * time.Millisecond, Connections: 4, Timeout: 5 * time.Second, Progress: &progress})
	checkClean(t, res)
	if res.Duration < time.Second || res.Duration > 1100*time.Millisecond {
		t.Errorf("Duration = %v, want the configured 1.1s", res.Duration)
	}
	if res.Endpoint != "token" || res.Connections != 4 || res.Rate != 0 || res.Unsent != 0 {
		t.Errorf("result describes the wrong run: %+v", res)
	}
	if out := progress.String(); !strings.Contains(out, "req/s") || !strings.Contains(out, "errors") {
		t.Errorf("no progress line after more than a second: %q", out)
	}
}

// TestMoreURLs: with further base URLs, requests go to each in turn, so
// every instance gets its share.
func TestMoreURLs(t *testing.T) {
	t.Parallel()
	h, err := loadgen.NewFloorHandler("ES256")
	if err != nil {
		t.Fatal(err)
	}
	var counts [3]atomic.Int64
	var urls []string
	for i := range counts {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			counts[i].Add(1)
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(ts.Close)
		urls = append(urls, ts.URL)
	}
	res := run(t, loadgen.Config{URL: urls[0], MoreURLs: urls[1:], Endpoint: loadgen.EndpointToken, Credentials: testCred,
		Duration: 300 * time.Millisecond, Connections: 3, Timeout: 5 * time.Second})
	checkClean(t, res)
	var total int64
	for i := range counts {
		total += counts[i].Load()
	}
	// Requests still in flight when the run ends are served, not counted.
	if total < 30 || total < res.Requests || total > res.Requests+3 {
		t.Fatalf("%d requests served, %d counted by the run (3 connections)", total, res.Requests)
	}
	for i := range counts {
		if n := counts[i].Load(); n < total/4 {
			t.Errorf("instance %d got %d of %d requests, want about a third", i, n, total)
		}
	}
	if _, err := loadgen.Run(context.Background(), loadgen.Config{URL: urls[0], MoreURLs: []string{"ftp://x"}, Credentials: testCred,
		Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "ftp://x") {
		t.Errorf("a bad further URL: %v, want an error naming it", err)
	}
}

func TestFloorJWKS(t *testing.T) {
	t.Parallel()
	ts := startFloor(t, "EdDSA")
	res := run(t, loadgen.Config{URL: ts.URL, Endpoint: loadgen.EndpointJWKS, Duration: 300 * time.Millisecond, Connections: 4})
	checkClean(t, res)
}

// A real keygate, load spread over two keys.
func TestKeygateToken(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	e := servertest.Start(t, server.Options{}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == loadgen.TokenPath {
				mu.Lock()
				seen[r.Header.Get("Authorization")]++
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	creds := createKeys(t, e, 2)
	res := run(t, loadgen.Config{URL: e.URL, Credentials: creds, Duration: time.Second, Connections: 4, Timeout: 5 * time.Second})
	checkClean(t, res)
	mu.Lock()
	defer mu.Unlock()
	for _, c := range creds {
		if n := seen[loadgen.BasicAuth(c)]; n < int(res.Requests)/4 {
			t.Errorf("key %s got %d of %d requests: not round-robin", c.ID, n, res.Requests)
		}
	}
}

func TestKeygateIntrospect(t *testing.T) {
	t.Parallel()
	e := servertest.Start(t, server.Options{IntrospectionRate: 1_000_000}, nil)
	creds := createKeys(t, e, 1)
	tok, err := loadgen.FetchToken(context.Background(), e.URL, creds[0])
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, loadgen.Config{URL: e.URL, Endpoint: loadgen.EndpointIntrospect, Credentials: creds,
		IntrospectToken: tok, Duration: 500 * time.Millisecond, Connections: 4})
	checkClean(t, res)
}

// TestKeygateTokenResource: Config.Resource reaches keygate as the RFC
// 8707 resource: an audience of the key gets tokens, another is refused
// (invalid_target: 400, counted as errors, never as throughput).
func TestKeygateTokenResource(t *testing.T) {
	t.Parallel()
	const aud, other = "https://api.example.com/banking", "https://api.example.com/commerce"
	e := servertest.Start(t, server.Options{AudiencesAllowed: []string{aud, other}}, nil)
	r := e.API(t, e.AdminToken(t), http.MethodPost, "/v1/teams/bench/keys", map[string]any{
		"name": "load", "permissions": []string{"accounting_api"}, "audiences": []string{aud}})
	var k struct{ ClientID, ClientSecret string }
	if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &struct {
		ClientID     *string `json:"client_id"`
		ClientSecret *string `json:"client_secret"`
	}{&k.ClientID, &k.ClientSecret}) != nil {
		t.Fatalf("create: %s", r)
	}
	creds := []loadgen.Credential{{ID: k.ClientID, Secret: k.ClientSecret}}
	res := run(t, loadgen.Config{URL: e.URL, Credentials: creds, Resource: aud, Duration: 300 * time.Millisecond, Connections: 2})
	checkClean(t, res)
	res = run(t, loadgen.Config{URL: e.URL, Credentials: creds, Resource: other, Duration: 300 * time.Millisecond, Connections: 2})
	if res.Requests == 0 || res.Errors["400"] != res.Requests || res.Successes != 0 {
		t.Errorf("resource %s: %d requests, errors %v, successes %d; want every one refused with 400", other, res.Requests, res.Errors, res.Successes)
	}
}

func createKeys(t *testing.T, e *servertest.Env, n int) []loadgen.Credential {
	t.Helper()
	c := client.New(client.Config{URL: e.URL, ClientID: e.AdminID, ClientSecret: e.AdminSecret})
	var creds []loadgen.Credential
	for range n {
		k, err := c.CreateKey(context.Background(), "bench", "load", []string{"accounting_api"})
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, loadgen.Credential{ID: k.ClientID, Secret: k.ClientSecret})
	}
	return creds
}

// Failures answer fast; none of them may count as throughput.
func TestErrorsNeverCount(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		endpoint string
		status   int
		body     string
		cause    string
	}{
		{"401", "token", 401, `{"error":"invalid_client"}`, "401"},
		{"503", "token", 503, `{"error":"temporarily_unavailable"}`, "503"},
		{"200 without token", "token", 200, `{"token_type":"Bearer"}`, loadgen.ErrBadBody},
		{"200 empty token", "token", 200, `{"access_token":"","token_type":"Bearer"}`, loadgen.ErrBadBody},
		{"jwks without keys", "jwks", 200, `{"keys":[]}`, loadgen.ErrBadBody},
		{"inactive", "introspect", 200, `{"active":false}`, loadgen.ErrBadBody},
		{"429", "introspect", 429, `{"error":"invalid_request"}`, "429"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			}))
			defer ts.Close()
			res := run(t, loadgen.Config{URL: ts.URL, Endpoint: c.endpoint, Credentials: testCred, IntrospectToken: "t",
				Duration: 200 * time.Millisecond, Connections: 4})
			if res.Requests == 0 || res.Errors[c.cause] != res.Requests || len(res.Errors) != 1 {
				t.Errorf("want every one of %d requests counted as %q, got %v", res.Requests, c.cause, res.Errors)
			}
			if res.Successes != 0 || res.RPS != 0 || res.P50 != 0 || res.Max != 0 {
				t.Errorf("failures counted as throughput: successes %d, rps %v, p50 %v, max %v", res.Successes, res.RPS, res.P50, res.Max)
			}
		})
	}
}

func TestTransportErrorsAndTimeouts(t *testing.T) {
	t.Parallel()
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // so the server notices the client hanging up
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
			}
		}))
		defer slow.Close()
		res := run(t, loadgen.Config{URL: slow.URL, Credentials: testCred, Duration: 350 * time.Millisecond, Connections: 2, Timeout: 100 * time.Millisecond})
		if res.Errors[loadgen.ErrTimeout] < 4 || res.Successes != 0 || len(res.Errors) != 1 {
			t.Errorf("want timeouts only, got %v, %d successes", res.Errors, res.Successes)
		}
	})
	t.Run("connection closed", func(t *testing.T) {
		t.Parallel()
		closed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}))
		defer closed.Close()
		res := run(t, loadgen.Config{URL: closed.URL, Credentials: testCred, Duration: 300 * time.Millisecond, Connections: 2})
		if res.Errors[loadgen.ErrTransport] == 0 || res.Successes != 0 || len(res.Errors) != 1 {
			t.Errorf("want transport errors only, got %v, %d successes", res.Errors, res.Successes)
		}
	})
}

// fastToken answers a token-shaped body at once, but stalls stallMS on
// request number stallAt.
func fastToken(stallAt int64, stall time.Duration) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if n.Add(1) == stallAt {
			time.Sleep(stall)
		}
		io.WriteString(w, `{"access_token":"x.y.z","token_type":"Bearer","expires_in":900}`)
	})
}

func TestOpenLoopRate(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(fastToken(0, 0))
	defer ts.Close()
	res := run(t, loadgen.Config{URL: ts.URL, Credentials: testCred, Duration: time.Second, Connections: 4, Rate: 200})
	checkClean(t, res)
	// The schedule holds 200 slots in the second: each request was sent or
	// counted unsent.
	if slots := res.Requests + res.Unsent; slots < 170 || slots > 230 {
		t.Errorf("open loop at 200/s for 1s scheduled %d requests (%d sent, %d unsent), want 200 ± 15 %%", slots, res.Requests, res.Unsent)
	}
	// A stalled scheduler would leave most of the second unsent; a busy
	// machine (-race, packages tested in parallel on 2 cores) may leave the
	// requests due in its last stretch (3, then 11 seen in CI).
	if res.Unsent > 50 || res.Rate != 200 {
		t.Errorf("unsent %d of 200, rate %v: the scheduler stalled", res.Unsent, res.Rate)
	}
}

// In an open loop a stall delays every request due during it, and each
// one's latency counts from when it was due (coordinated omission
// corrected); a closed loop records the stall only once.
func TestOpenLoopLatencyFromSchedule(t *testing.T) {
	t.Parallel()
	const stall = 300 * time.Millisecond
	for _, c := range []struct {
		name  string
		conns int
		rate  float64
	}{{"open loop, 1 connection", 1, 200}, {"open loop, 4 connections", 4, 200}, {"closed loop", 1, 0}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ts := httptest.NewServer(fastToken(20, stall))
			defer ts.Close()
			res := run(t, loadgen.Config{URL: ts.URL, Credentials: testCred, Duration: 600 * time.Millisecond, Connections: c.conns, Rate: c.rate})
			checkClean(t, res)
			if res.Max < stall {
				t.Errorf("max %v; want ≥ the %v stall", res.Max, stall)
			}
			switch {
			case c.rate > 0 && res.P999 < stall:
				t.Errorf("p99.9 %v; want ≥ the %v stall", res.P999, stall)
			case c.rate > 0 && c.conns == 1 && res.P90 < stall/2:
				// ~60 requests were due during the stall, half of the
				// run: their waits (300 ms down to 0) must show.
				t.Errorf("p90 %v: the requests queued behind the stall were not measured from their due time", res.P90)
			case c.rate == 0 && res.P90 > 50*time.Millisecond:
				t.Errorf("closed loop p90 %v: want the stall recorded once, a low p90", res.P90)
			}
		})
	}
}

// A server slower than the rate: the requests the connections could not
// send in time are reported, not silently dropped.
func TestOpenLoopUnsent(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, `{"access_token":"x"}`)
	}))
	defer ts.Close()
	// 1 connection at 20 ms a request sends ≤ 25 of the 100 due in 500 ms.
	res := run(t, loadgen.Config{URL: ts.URL, Credentials: testCred, Duration: 500 * time.Millisecond, Connections: 1, Rate: 200})
	checkClean(t, res)
	if res.Requests > 26 || res.Unsent < 60 || res.Unsent+res.Requests > 101 {
		t.Errorf("requests %d, unsent %d: want ≤ 25 sent and the rest of the 100 due reported unsent", res.Requests, res.Unsent)
	}
	if res.Max < 300*time.Millisecond {
		t.Errorf("max %v: the last requests sent were due ~%v earlier", res.Max, 375*time.Millisecond)
	}
}

func TestCancelEndsEarly(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(fastToken(0, 0))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := loadgen.Run(ctx, loadgen.Config{URL: ts.URL, Credentials: testCred, Duration: time.Minute, Connections: 2, Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second || res.Duration > time.Second || res.Successes == 0 {
		t.Errorf("cancelled run took %v, Duration %v, %d successes", el, res.Duration, res.Successes)
	}
	// Requests due after the cancel (about 30 000 over the configured
	// minute) must not count as unsent; those due before it may, when the
	// race detector and a busy machine slow the generator down — at most
	// the 150 due in the 300 ms before the cancel (57 were seen on a loaded
	// CI machine).
	if res.Unsent > 150 {
		t.Errorf("cancelled open loop reports %d unsent: due requests must be counted up to the cancel only", res.Unsent)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	ok := loadgen.Config{URL: "http://127.0.0.1:1", Credentials: testCred, Duration: time.Second}
	cases := map[string]func(c *loadgen.Config){
		"no URL":               func(c *loadgen.Config) { c.URL = "" },
		"bad URL":              func(c *loadgen.Config) { c.URL = "127.0.0.1:8080" },
		"no duration":          func(c *loadgen.Config) { c.Duration = 0 },
		"negative connections": func(c *loadgen.Config) { c.Connections = -1 },
		"negative rate":        func(c *loadgen.Config) { c.Rate = -1 },
		"unknown endpoint":     func(c *loadgen.Config) { c.Endpoint = "authorize" },
		"token without creds":  func(c *loadgen.Config) { c.Credentials = nil },
		"empty secret":         func(c *loadgen.Config) { c.Credentials = []loadgen.Credential{{ID: "a"}} },
		"introspect no token":  func(c *loadgen.Config) { c.Endpoint = "introspect" },
	}
	for name, mutate := range cases {
		c := ok
		mutate(&c)
		if _, err := loadgen.Run(context.Background(), c); err == nil {
			t.Errorf("%s: Run accepted %+v", name, c)
		}
	}
}

func TestResultJSON(t *testing.T) {
	t.Parallel()
	r := loadgen.Result{URL: "http://x", Endpoint: "token", Connections: 16, Duration: 10 * time.Second,
		Requests: 12, Successes: 10, Errors: map[string]int64{"401": 2}, RPS: 1,
		P50: 1500 * time.Microsecond, P99: 3 * time.Millisecond, Max: time.Second}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"p50_ms": 1.5, "p99_ms": 3.0, "max_ms": 1000.0, "duration_ms": 10000.0, "successes": 10.0, "rps": 1.0} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v (in %s)", k, m[k], want, b)
		}
	}
	var back loadgen.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.P50 != r.P50 || back.Max != r.Max || back.Errors["401"] != 2 || back.Duration != r.Duration {
		t.Errorf("round trip: %+v", back)
	}
	empty, _ := json.Marshal(loadgen.Result{})
	if !strings.Contains(string(empty), `"errors":{}`) {
		t.Errorf("errors must always be an object: %s", empty)
	}
}

// The floor signs keygate's claim set with keygate's header and answers
// keygate's response shape; its tokens verify against its JWKS.
func TestFloorMatchesKeygate(t *testing.T) {
	t.Parallel()
	e := servertest.Start(t, server.Options{}, nil)
	creds := createKeys(t, e, 1)
	kgResp := postToken(t, e.URL, creds[0])
	kgTok := kgResp.body["access_token"].(string)

	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			ts := startFloor(t, alg)
			fr := postToken(t, ts.URL, creds[0])
			tok, _ := fr.body["access_token"].(string)

			if got, want := sortedKeys(fr.body), sortedKeys(kgResp.body); !slices.Equal(got, want) {
				t.Errorf("response members %v, keygate's %v", got, want)
			}
			if fr.body["token_type"] != "Bearer" || fr.body["expires_in"] != 900.0 || fr.body["scope"] != kgResp.body["scope"] {
				t.Errorf("floor response %v, keygate's %v", fr.body, kgResp.body)
			}
			for _, h := range []string{"Content-Type", "Cache-Control", "Pragma"} {
				if fr.header.Get(h) != kgResp.header.Get(h) {
					t.Errorf("%s: floor %q, keygate %q", h, fr.header.Get(h), kgResp.header.Get(h))
				}
			}

			// Verify with go-jose against the floor's JWKS.
			resp, err := http.Get(ts.URL + loadgen.JWKSPath)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
				t.Fatalf("jwks: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("jwks %s: %v", raw, err)
			}
			jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Header
			if h.Algorithm != alg || h.KeyID != set.Keys[0].KeyID || h.ExtraHeaders[jose.HeaderType] != "at+jwt" {
				t.Errorf("header alg %s kid %s typ %v; jwks kid %s", h.Algorithm, h.KeyID, h.ExtraHeaders[jose.HeaderType], set.Keys[0].KeyID)
			}
			payload, err := jws.Verify(set.Keys[0])
			if err != nil {
				t.Fatalf("floor token does not verify against the floor's JWKS: %v", err)
			}
			var claims map[string]any
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatal(err)
			}

			if got, want := sortedKeys(claims), sortedKeys(segment(t, kgTok, 1)); !slices.Equal(got, want) {
				t.Errorf("floor claims %v, keygate's %v", got, want)
			}
			if got, want := sortedKeys(segment(t, tok, 0)), sortedKeys(segment(t, kgTok, 0)); !slices.Equal(got, want) {
				t.Errorf("floor header %v, keygate's %v", got, want)
			}
			st, _ := claims["status"].(map[string]any)
			sl, _ := st["status_list"].(map[string]any)
			if claims["team_id"] != loadgen.FloorTeamID || claims["sub"] != creds[0].ID || sl["idx"] == nil || sl["uri"] != ts.URL+"/statuslists/2bit/0" {
				t.Errorf("claims %v", claims)
			}
			if len(strings.Fields(claims["scope"].(string))) != 10 {
				t.Errorf("scope %q: want the 10 accounting_api scopes", claims["scope"])
			}
			if jti, _ := claims["jti"].(string); len(jti) != 22 {
				t.Errorf("jti %q: want 16 random bytes, base64url", jti)
			}
		})
	}
}

func TestFloorRejects(t *testing.T) {
	t.Parallel()
	ts := startFloor(t, "ES256")
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", loadgen.TokenPath, "", 405},
		{"POST", loadgen.TokenPath, "", 400},
		{"POST", loadgen.TokenPath, "grant_type=password", 400},
		{"POST", loadgen.JWKSPath, "", 405},
		{"GET", "/nope", "", 404},
	} {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s %q: %d, want %d", c.method, c.path, c.body, resp.StatusCode, c.status)
		}
	}
}

type tokenAnswer struct {
	header http.Header
	body   map[string]any
}

func postToken(t *testing.T, base string, c loadgen.Credential) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest("POST", base+loadgen.TokenPath, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", loadgen.BasicAuth(c))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %d %v %v", base, resp.StatusCode, body, err)
	}
	return tokenAnswer{header: resp.Header, body: body}
}

func segment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

// TestCredentialsSpread: in a closed loop, request n uses credential n
// mod len(Credentials) whichever connection sends it, so a run shorter
// than one pass over the credentials uses each at most once (a load
// "over a million keys" really touches that many).
func TestCredentialsSpread(t *testing.T) {
	t.Parallel()
	h, err := loadgen.NewFloorHandler("ES256")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _, _ := r.BasicAuth()
		mu.Lock()
		seen[id]++
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	creds := make([]loadgen.Credential, 20000)
	for i := range creds {
		creds[i] = loadgen.Credential{ID: fmt.Sprintf("kgc_%06d", i), Secret: "secret"}
	}
	res := run(t, loadgen.Config{URL: ts.URL, Endpoint: loadgen.EndpointToken, Credentials: creds,
		Duration: 150 * time.Millisecond, Connections: 4, Timeout: 5 * time.Second})
	checkClean(t, res)
	mu.Lock()
	defer mu.Unlock()
	if res.Requests < 20 || res.Requests >= int64(len(creds)) {
		t.Fatalf("%d requests; the test needs more than 20 and fewer than %d", res.Requests, len(creds))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("credential %s used %d times in %d requests, want once", id, n, res.Requests)
		}
	}
	if len(seen) < int(res.Requests) {
		t.Errorf("%d credentials used by %d requests", len(seen), res.Requests)
	}
}
