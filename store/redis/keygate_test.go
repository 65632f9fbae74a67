package redis_test

// A real keygate (server.New behind httptest on loopback) on a Redis store,
// for the fault and round-trip tests. servertest.Start only takes bbolt, so
// this is its Redis twin: known admin key, issuer = the server's own URL.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store"
)

func init() {
	// gin's debug mode prints every route; keep test output readable.
	gin.SetMode(gin.TestMode)
}

type keygate struct {
	t           testing.TB
	URL         string
	AdminID     string
	AdminSecret string
	Srv         *server.Server
	http        *http.Client
}

// startKeygate runs keygate on st until the test ends. wrap, when non-nil,
// sees every request first.
func startKeygate(t testing.TB, st store.Store, wrap func(http.Handler) http.Handler) *keygate {
	t.Helper()
	enc, err := masterkey.Generate() // base64 of 32 random bytes
	if err != nil {
		t.Fatal(err)
	}
	mk, err := masterkey.Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	// Listen first so the issuer is the server's real URL.
	var handler atomic.Pointer[http.Handler]
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := handler.Load()
		if h == nil {
			http.Error(w, "not started", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := server.New(ctx, server.Options{
		Store:             st,
		MasterKey:         mk,
		Issuer:            ts.URL,
		AdminClientID:     "test-admin",
		AdminClientSecret: secret,
	})
	if err != nil {
		ts.Close()
		t.Fatalf("server.New: %v", err)
	}
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(srv)
	}
	handler.Store(&h)
	t.Cleanup(func() {
		ts.Close()  // stop serving first
		srv.Close() // then flush last-used times (bounded by the store timeout)
	})
	return &keygate{t: t, URL: ts.URL, AdminID: "test-admin", AdminSecret: secret, Srv: srv,
		// Far above every bound asserted here: a hang shows up as a slow
		// answer, never as a stuck test.
		http: &http.Client{Timeout: 15 * time.Second}}
}

// answer is one HTTP response, decoded.
type answer struct {
	Status  int
	Header  http.Header
	Body    map[string]any
	Raw     string
	Elapsed time.Duration
}

func (a answer) str(field string) string { s, _ := a.Body[field].(string); return s }

func (kg *keygate) do(method, path, contentType, auth string, body string) answer {
	kg.t.Helper()
	req, err := http.NewRequest(method, kg.URL+path, strings.NewReader(body))
	if err != nil {
		kg.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	start := time.Now()
	resp, err := kg.http.Do(req)
	if err != nil {
		kg.t.Fatalf("%s %s: %v (after %v)", method, path, err, time.Since(start))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	if err != nil {
		kg.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	a := answer{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw), Elapsed: elapsed}
	_ = json.Unmarshal(raw, &a.Body)
	return a
}

// token asks for a client-credentials token with HTTP Basic.
func (kg *keygate) token(id, secret string) answer {
	kg.t.Helper()
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	return kg.do(http.MethodPost, "/oauth/token", "application/x-www-form-urlencoded", "Basic "+basic, "grant_type=client_credentials")
}

// adminToken returns an access token of the admin key, or fails.
func (kg *keygate) adminToken() string {
	kg.t.Helper()
	a := kg.token(kg.AdminID, kg.AdminSecret)
	if a.Status != http.StatusOK || a.str("access_token") == "" {
		kg.t.Fatalf("admin token: %d %s", a.Status, a.Raw)
	}
	return a.str("access_token")
}

func (kg *keygate) createKey(adminTok, team, name string) answer {
	kg.t.Helper()
	b, _ := json.Marshal(map[string]any{"name": name, "permissions": []string{"accounting_api"}})
	return kg.do(http.MethodPost, "/v1/teams/"+team+"/keys", "application/json", "Bearer "+adminTok, string(bytes.TrimSpace(b)))
}

func (kg *keygate) listKeys(adminTok, team string) answer {
	kg.t.Helper()
	return kg.do(http.MethodGet, "/v1/teams/"+team+"/keys", "", "Bearer "+adminTok, "")
}

func (kg *keygate) readyz() answer {
	kg.t.Helper()
	return kg.do(http.MethodGet, "/readyz", "", "", "")
}

// listedIDs is the client IDs of a 200 list answer.
func listedIDs(t testing.TB, a answer) []string {
	t.Helper()
	if a.Status != http.StatusOK {
		t.Fatalf("list keys: %d %s", a.Status, a.Raw)
	}
	keys, _ := a.Body["keys"].([]any)
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		m, _ := k.(map[string]any)
		id, _ := m["client_id"].(string)
		ids = append(ids, id)
	}
	return ids
}
