package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// TestConcurrentAnswersAreTheirOwn: the token path writes claims and
// answers into memory it reuses (tokenScratch), so answers written at the
// same time for different keys must each be whole and their own: every
// token verifies against the JWKS and names the key that asked, with that
// key's scope, in the token and in the answer. Run with -race it also
// catches a scratch reused before its answer was written.
func TestConcurrentAnswersAreTheirOwn(t *testing.T) {
	e := newTestEnv(t, server.Options{})
	keys := []keyJSON{
		e.CreateKey(t, "team-a", "accounting", permAccounting),
		e.CreateKey(t, "team-b", "visualization", permVisualization),
	}
	const workers, each = 8, 25
	type answer struct {
		key  int
		body []byte
		err  error
	}
	answers := make(chan answer, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				n := (w + i) % len(keys)
				req, err := http.NewRequest(http.MethodPost, e.URL+"/oauth/token", strings.NewReader(benchTokenBody))
				if err != nil {
					answers <- answer{n, nil, err}
					return
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", servertest.BasicAuth(keys[n].ClientID, keys[n].ClientSecret))
				resp, err := e.Client.Do(req)
				if err != nil {
					answers <- answer{n, nil, err}
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
				}
				answers <- answer{n, body, err}
			}
		})
	}
	wg.Wait()
	close(answers)
	set, _ := e.fetchJWKS(t)
	scopes := []string{strings.Join(accountingScopes, " "), "visualizations:read"}
	got := 0
	for a := range answers {
		if a.err != nil {
			t.Fatal(a.err)
		}
		var tr tokenResponse
		if err := json.Unmarshal(a.body, &tr); err != nil {
			t.Fatalf("answer is not JSON: %v: %q", err, a.body)
		}
		v := verifyJWT(t, set, tr.AccessToken, "ES256")
		if v.Claims["client_id"] != keys[a.key].ClientID || v.Claims["scope"] != tr.Scope || tr.Scope != scopes[a.key] {
			t.Fatalf("key %s got a token of %v with scope %v, answer scope %q; want scope %q",
				keys[a.key].ClientID, v.Claims["client_id"], v.Claims["scope"], tr.Scope, scopes[a.key])
		}
		got++
	}
	if got != workers*each {
		t.Fatalf("%d answers, want %d", got, workers*each)
	}
}
