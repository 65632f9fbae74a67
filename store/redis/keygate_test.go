package redis_test

// A real keygate on a Redis store the test opened itself (a redis-server it
// kills, a store with a key cache, a cluster client with hooks), started by
// servertest. The helpers here answer with the decoded body and how long
// the request took: the fault tests bound how long keygate may take to
// answer while Redis is gone.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

func init() {
	// gin's debug mode prints every route; keep test output readable.
	gin.SetMode(gin.TestMode)
}

type keygate struct {
	*servertest.Env
	t testing.TB
}

// startKeygate runs keygate on st until the test ends (servertest's known
// admin key; the issuer is the server's own URL). wrap, when non-nil, sees
// every request first.
func startKeygate(t testing.TB, st store.Store, wrap func(http.Handler) http.Handler) *keygate {
	t.Helper()
	return &keygate{Env: servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(st), Wrap: wrap}), t: t}
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
	req := kg.NewRequest(kg.t, method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	start := time.Now()
	resp, err := kg.Client.Do(req)
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
	return kg.do(http.MethodPost, "/oauth/token", "application/x-www-form-urlencoded", servertest.BasicAuth(id, secret), "grant_type=client_credentials")
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
