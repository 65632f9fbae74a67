// Package servertest runs a real keygate for tests of code that talks to it
// (the management client, the CLI): server.New on a temporary bbolt store,
// behind an httptest server on loopback, with a known admin key. Like
// net/http/httptest, it is for tests only.
package servertest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store/bolt"
)

// Env is a running keygate.
type Env struct {
	URL         string
	AdminID     string
	AdminSecret string
	Server      *server.Server
	Store       *bolt.Store
}

// Start runs keygate until the test ends. opts may set anything but Store
// and MasterKey; an empty Issuer becomes the server's URL, an empty
// AdminClientID becomes "test-admin", an empty
// AdminClientSecret a fresh secret. wrap, when non-nil, sees every request first (to count them).
func Start(t testing.TB, opts server.Options, wrap func(http.Handler) http.Handler) *Env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if opts.MasterKey, err = masterkey.Parse(enc); err != nil {
		t.Fatal(err)
	}
	opts.Store = st
	if opts.AdminClientID == "" {
		opts.AdminClientID = "test-admin"
	}
	if opts.AdminClientSecret == "" {
		if opts.AdminClientSecret, err = credential.NewSecret(); err != nil {
			t.Fatal(err)
		}
	}
	// Start listening first so the issuer can be the server's real URL.
	var handler atomic.Pointer[http.Handler]
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close) // runs last: after the server below is closed
	if opts.Issuer == "" {
		opts.Issuer = ts.URL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := server.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(srv)
	}
	handler.Store(&h)
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
		st.Close()
	})
	return &Env{URL: ts.URL, AdminID: opts.AdminClientID, AdminSecret: opts.AdminClientSecret, Server: srv, Store: st}
}
