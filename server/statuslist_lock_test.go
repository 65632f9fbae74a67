package server_test

// The structural proof that the token endpoint never waits on the status
// list builder, and the builder's one-second cache, through the internal
// hooks of export_test.go on a keygate started by servertest.

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// serveWithin runs req through h and fails the test if no answer comes
// within d.
func serveWithin(t *testing.T, h http.Handler, req *http.Request, d time.Duration) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, req)
	}()
	select {
	case <-done:
		return rec
	case <-time.After(d):
		t.Fatalf("%s %s did not answer within %v", req.Method, req.URL.Path, d)
		return nil
	}
}

// TestTokenPathTakesNoStatusListLock holds the status list builder's lock
// (as a build that never ends would) and requires the token endpoint,
// introspection, revocation and the JWKS to answer regardless.
func TestTokenPathTakesNoStatusListLock(t *testing.T) {
	env := servertest.Start(t, server.Options{}, nil)
	s := env.Server
	form := func(v url.Values) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(env.AdminID), url.QueryEscape(env.AdminSecret))
		return req
	}
	unlock := sync.OnceFunc(server.LockStatusList(s))
	defer unlock()

	var tok string
	for i := 0; i < 20; i++ {
		rec := serveWithin(t, s, form(url.Values{"grant_type": {"client_credentials"}}), 5*time.Second)
		if rec.Code != http.StatusOK {
			t.Fatalf("token while the status list is locked: %d %s", rec.Code, rec.Body)
		}
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil {
			t.Fatal(err)
		}
		tok = tr.AccessToken
	}
	// Introspection and revocation too: keygate knows its keys from the
	// store and has no need of its own status list.
	for _, path := range []string{"/oauth/introspect", "/oauth/revoke"} {
		req := form(url.Values{"token": {tok}})
		req.URL.Path = path
		rec := serveWithin(t, s, req, 5*time.Second)
		if rec.Code != http.StatusOK {
			t.Errorf("%s while the status list is locked: %d %s", path, rec.Code, rec.Body)
		}
		if path == "/oauth/introspect" && !strings.Contains(rec.Body.String(), `"active":true`) {
			t.Errorf("introspection of a valid token while the status list is locked: %s", rec.Body)
		}
	}
	for _, path := range []string{"/.well-known/jwks.json", "/.well-known/oauth-authorization-server", "/statuslists"} {
		if rec := serveWithin(t, s, httptest.NewRequest(http.MethodGet, path, nil), 5*time.Second); rec.Code != http.StatusOK {
			t.Errorf("GET %s while the status list is locked: %d", path, rec.Code)
		}
	}

	// Meanwhile a list request does wait (the lock is the builder's), and
	// answers once the lock is released.
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/statuslists/1", nil))
	}()
	select {
	case <-done:
		t.Fatal("the status list was served without its lock: the test does not hold the builder's lock")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("status list request stuck after the lock was released")
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/statuslist+jwt" {
		t.Errorf("status list: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}

// TestStatusListCacheAtMostOneSecond: with an injected clock, a list is
// reused for less than one second and rebuilt from then on; a deletion on
// this instance invalidates it at once.
func TestStatusListCacheAtMostOneSecond(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	clock := servertest.NewClock(now)
	setClock := clock.Set
	env := servertest.StartWith(t, servertest.Config{Clock: clock})
	s := env.Server
	ctx := context.Background()
	first, err := server.CurrentStatusList(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Store.RevokeStatus(ctx, 42); err != nil {
		t.Fatal(err)
	}
	setClock(now.Add(server.StatusListMaxAge - time.Millisecond))
	cached, err := server.CurrentStatusList(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, cached) {
		t.Error("rebuilt within one second: the cache is not used")
	}
	setClock(now.Add(server.StatusListMaxAge))
	fresh, err := server.CurrentStatusList(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, fresh) {
		t.Fatal("one second later, still the cached list")
	}
	var claims struct {
		StatusList struct {
			Lst string `json:"lst"`
		} `json:"status_list"`
	}
	parts := strings.Split(string(fresh), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	z, err := base64.RawURLEncoding.DecodeString(claims.StatusList.Lst)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if raw[42/4]>>(2*(42%4))&3 != 1 { // 2 bits per entry, LSB first
		t.Error("rebuilt list lacks the revoked entry 42")
	}
	// A clock that moves backwards does not keep a list forever.
	setClock(now.Add(-time.Hour))
	back, err := server.CurrentStatusList(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(back, fresh) {
		t.Error("clock moved back: the cached list is still served")
	}
	// invalidate forces a rebuild at the same instant.
	server.InvalidateStatusList(s)
	again, err := server.CurrentStatusList(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if &again[0] == &back[0] {
		t.Error("invalidate did not drop the cached list")
	}
}
