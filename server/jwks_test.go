package server_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/keygate/keygate/server"
)

// TestJWKSConditionalGet: the JWKS carries a strong ETag; revalidating with
// it answers 304 without a body, another tag gets the full set again.
func TestJWKSConditionalGet(t *testing.T) {
	e := newTestEnv(t, server.Options{})
	get := func(inm string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, e.URL+"/.well-known/jwks.json", nil)
		if err != nil {
			t.Fatal(err)
		}
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		resp, err := e.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	first, body := get("")
	etag := first.Header.Get("ETag")
	if first.StatusCode != http.StatusOK || len(body) == 0 || len(etag) < 3 || etag[0] != '"' {
		t.Fatalf("first GET: %d, ETag %q, %d bytes", first.StatusCode, etag, len(body))
	}
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		resp, b := get(inm)
		if resp.StatusCode != http.StatusNotModified || len(b) != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and no body", inm, resp.StatusCode, len(b))
		}
		if resp.Header.Get("ETag") != etag || resp.Header.Get("Cache-Control") == "" {
			t.Errorf("If-None-Match %s: 304 must repeat ETag and Cache-Control, got %q %q", inm, resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"))
		}
	}
	resp, b := get(`"stale"`)
	if resp.StatusCode != http.StatusOK || string(b) != string(body) {
		t.Errorf("If-None-Match with another tag: %d, body equal %v; want 200 and the set", resp.StatusCode, string(b) == string(body))
	}
}
