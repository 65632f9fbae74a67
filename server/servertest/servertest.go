// Package servertest runs a real keygate for tests: server.New on a store of
// the test's choosing (bbolt by default, the in-memory reference store,
// Redis, a Redis Cluster or a store the test opened itself), behind an
// httptest server on loopback, with a known admin key. The keygate can be
// restarted on the same data, joined by more instances on that data, and
// read a Clock the test moves. Its last-used flushes happen when the test
// calls FlushLastUsed, never on a timer, so no test sleeps for one. Like
// net/http/httptest, it is for tests only.
package servertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store"
)

const (
	// startTimeout bounds one server.New (a first start on Redis writes
	// the pepper, a signing key and the admin key).
	startTimeout = 20 * time.Second
	// tickTimeout bounds how long FlushLastUsed waits for the server to
	// take a tick: a flush is one store write, so this only trips when the
	// server was closed or its flush hangs.
	tickTimeout = 10 * time.Second
	// clientTimeout is far above every bound a test asserts: a hang shows
	// up as a failed request, never as a stuck test.
	clientTimeout = 15 * time.Second
)

// Config is a keygate to start. The zero value is what Start(t,
// server.Options{}, nil) starts.
type Config struct {
	// Options go to server.New. Store, MasterKey and LastUsedTicks are the
	// harness's to set (see Backend and MasterKey); so is Now, which is
	// Clock's. An empty Issuer becomes the server's URL. The admin key:
	// see GeneratedAdmin.
	Options server.Options
	// Backend holds the data; the zero value is Bolt().
	Backend Backend
	// Clock is the keygate's clock; nil means a new NewWallClock().
	Clock *Clock
	// MasterKey seals the store's secrets; nil means a fresh one. Set it to
	// start keygate on data written earlier with a known master key (a
	// seeded store, say).
	MasterKey *masterkey.Key
	// Wrap, when non-nil, sees every request to Env.URL first (to count
	// them, say), for the first server and every restart.
	Wrap func(http.Handler) http.Handler
	// GeneratedAdmin leaves the admin key to server.New, which generates
	// one on a first start: AdminID and AdminSecret are then the ones it
	// generated (the start fails the test if it generated none). Otherwise
	// an empty Options.AdminClientID becomes "test-admin" and an empty
	// Options.AdminClientSecret a fresh secret.
	GeneratedAdmin bool
}

// Env is one running keygate instance.
type Env struct {
	// URL is where the instance listens, on loopback.
	URL string
	// AdminID and AdminSecret are an admin key of the store.
	AdminID     string
	AdminSecret string
	// Server is the server behind URL (the new one after a Restart).
	Server *server.Server
	// Store is this instance's store.
	Store store.Store
	// MasterKey is the master key the store's secrets are sealed with.
	MasterKey *masterkey.Key
	// Clock is what the instance reads as the time.
	Clock *Clock
	// Client is an HTTP client for URL, with a timeout, on a transport of
	// this env's own, which no other test closes (NoRedirectClient is the
	// same without following redirects).
	Client *http.Client

	tb      testing.TB // owns the HTTP server and every server behind it
	ts      *httptest.Server
	issuer  string
	wrap    func(http.Handler) http.Handler
	another func(testing.TB) store.Store // a store on the same data
	handler atomic.Pointer[http.Handler]

	mu       sync.Mutex
	ticks    serverTicks // the current server's tick channels
	now      func() time.Time
	closeSrv func() // closes the current server, once
}

// Start runs keygate on a temporary bbolt store until the test ends. opts
// may set anything but Store, MasterKey, Now and LastUsedTicks; an empty
// Issuer becomes the server's URL, an empty AdminClientID "test-admin", an
// empty AdminClientSecret a fresh secret. wrap, when non-nil, sees every
// request first (to count them).
func Start(t testing.TB, opts server.Options, wrap func(http.Handler) http.Handler) *Env {
	t.Helper()
	return StartWith(t, Config{Options: opts, Wrap: wrap})
}

// StartWith runs the keygate cfg describes until the test ends, on fresh
// data.
func StartWith(t testing.TB, cfg Config) *Env {
	t.Helper()
	return StartMany(t, cfg, 1)[0]
}

// StartMany starts n instances on the same fresh data at the same moment:
// n concurrent first starts, as when a whole deployment comes up at once.
// Each has its own URL and its own store (see Backend), and all share the
// master key, the clock and the issuer (the first instance's URL unless
// cfg.Options.Issuer says otherwise). Any failed start fails the test. With
// cfg.GeneratedAdmin, every Env carries the admin key whichever instance
// generated it.
func StartMany(t testing.TB, cfg Config, n int) []*Env {
	t.Helper()
	if n < 1 {
		t.Fatalf("servertest: StartMany with n = %d", n)
	}
	opts := cfg.Options
	if opts.Store != nil || opts.MasterKey != nil || opts.Now != nil || opts.LastUsedTicks != nil || opts.AuditTicks != nil {
		t.Fatal("servertest: Options.Store, MasterKey, Now, LastUsedTicks and AuditTicks are the harness's (use Config.Backend, Config.MasterKey and Config.Clock)")
	}
	if cfg.GeneratedAdmin && (opts.AdminClientID != "" || opts.AdminClientSecret != "") {
		t.Fatal("servertest: GeneratedAdmin with an admin key in Options")
	}
	if !cfg.GeneratedAdmin {
		if opts.AdminClientID == "" {
			opts.AdminClientID = "test-admin"
		}
		if opts.AdminClientSecret == "" {
			secret, err := credential.NewSecret()
			if err != nil {
				t.Fatal(err)
			}
			opts.AdminClientSecret = secret
		}
	}
	backend := cfg.Backend
	if backend.open == nil {
		backend = Bolt()
	}
	first, another := backend.open(t)
	mk := cfg.MasterKey
	if mk == nil {
		enc, err := masterkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if mk, err = masterkey.Parse(enc); err != nil {
			t.Fatal(err)
		}
	}
	clock := cfg.Clock
	if clock == nil {
		clock = NewWallClock()
	}

	envs := make([]*Env, n)
	for i := range envs {
		st := first
		if i > 0 {
			st = another(t)
		}
		envs[i] = newEnv(t, st, mk, clock, another)
		envs[i].issuer = opts.Issuer
		if envs[i].issuer == "" {
			// Listening comes first, so the issuer can be the real URL.
			envs[i].issuer = envs[0].URL
		}
	}
	envs[0].wrap = cfg.Wrap

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srvs := make([]*server.Server, n)
	ticks := make([]serverTicks, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, e := range envs {
		wg.Go(func() { srvs[i], ticks[i], errs[i] = e.newServer(ctx, e.Store, opts) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range srvs {
			if s != nil {
				s.Close()
			}
		}
		t.Fatalf("servertest: start %d instance(s): %v", n, err)
	}
	adminID, adminSecret := opts.AdminClientID, opts.AdminClientSecret
	if cfg.GeneratedAdmin {
		adminID = ""
		for _, s := range srvs {
			if a, ok := s.GeneratedAdmin(); ok {
				adminID, adminSecret = a.ClientID, a.ClientSecret
				break
			}
		}
	}
	for i, e := range envs {
		e.AdminID, e.AdminSecret = adminID, adminSecret
		e.serve(srvs[i], ticks[i], opts.Now)
	}
	if adminID == "" {
		t.Fatal("servertest: a first start on empty data generated no admin key")
	}
	return envs
}

// newEnv listens on loopback for an instance on st; serve puts a server
// behind it.
func newEnv(t testing.TB, st store.Store, mk *masterkey.Key, clock *Clock, another func(testing.TB) store.Store) *Env {
	e := &Env{Store: st, MasterKey: mk, Clock: clock, tb: t, another: another}
	e.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := e.handler.Load()
		if h == nil {
			http.Error(w, "servertest: no server behind this URL yet", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	e.URL = e.ts.URL
	// A transport of this env's own (the test server's), not
	// http.DefaultTransport: every httptest.Server.Close, in any test of
	// the process, closes the default transport's idle connections, and a
	// request of a test running alongside could lose its connection to
	// that, as a DELETE in TestTokenBadRequests once did ("connection
	// broken: http: CloseIdleConnections called"; net/http retries only
	// idempotent requests without a body, and not DELETE).
	e.Client = e.ts.Client()
	e.Client.Timeout = clientTimeout
	t.Cleanup(e.ts.Close)
	return e
}

// newServer runs server.New for this instance on st. opts.MasterKey, when
// set, replaces the env's (to see a wrong one refused).
func (e *Env) newServer(ctx context.Context, st store.Store, opts server.Options) (*server.Server, serverTicks, error) {
	opts.Store = st
	if opts.MasterKey == nil {
		opts.MasterKey = e.MasterKey
	}
	if opts.Issuer == "" {
		opts.Issuer = e.issuer
	}
	if opts.Now == nil {
		opts.Now = e.Clock.Now
	}
	// Unbuffered: a send returns only once the server's flush loop took
	// it, which FlushLastUsed and AuditTick rely on.
	ticks := serverTicks{lastUsed: make(chan time.Time), audit: make(chan time.Time), signingKeys: make(chan time.Time)}
	opts.LastUsedTicks, opts.AuditTicks = ticks.lastUsed, ticks.audit
	if opts.CompatTicks == nil {
		// No compatibility checks unless a test drives them: a real
		// ticker would run store checks behind the test's back.
		opts.CompatTicks = make(chan time.Time)
	}
	if opts.SigningKeyTicks == nil {
		opts.SigningKeyTicks = ticks.signingKeys
	}
	srv, err := server.New(ctx, opts)
	if err != nil {
		return nil, serverTicks{}, fmt.Errorf("server.New: %w", err)
	}
	return srv, ticks, nil
}

// serverTicks are the tick channels the harness drives a server's
// background work with.
type serverTicks struct {
	lastUsed, audit, signingKeys chan time.Time
}

// serve puts srv behind e.URL until e's test ends: then the HTTP server
// stops first and srv closes after it, writing pending last-used times.
// now is srv's clock when it is not e.Clock.
func (e *Env) serve(srv *server.Server, ticks serverTicks, now func() time.Time) {
	var once sync.Once
	closeSrv := func() { once.Do(srv.Close) }
	e.tb.Cleanup(func() {
		e.ts.Close()
		closeSrv()
	})
	if now == nil {
		now = e.Clock.Now
	}
	var h http.Handler = srv
	if e.wrap != nil {
		h = e.wrap(srv)
	}
	e.mu.Lock()
	e.Server, e.ticks, e.now, e.closeSrv = srv, ticks, now, closeSrv
	e.mu.Unlock()
	e.handler.Store(&h)
}

// Restart closes the server behind e.URL (writing its pending last-used
// times, as a process that shuts down does) and puts a new server.New
// behind e.URL on the same store, master key, issuer and clock. opts are
// used as given but for those; an admin key in opts is made sure of, as
// at any start. The new server is returned and is e.Server from now on.
func (e *Env) Restart(t testing.TB, opts server.Options) *server.Server {
	t.Helper()
	e.mu.Lock()
	closeOld := e.closeSrv
	e.mu.Unlock()
	closeOld()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, ticks, err := e.newServer(ctx, e.Store, opts)
	if err != nil {
		t.Fatalf("servertest: restart: %v", err)
	}
	e.serve(srv, ticks, opts.Now)
	return srv
}

// Second starts another instance on e's data, with its own URL and its own
// store where the backend has connections, sharing the master key, the
// issuer and the clock (opts.Now, when set, replaces the clock for this
// instance, as a machine whose clock is off would). opts are used as for
// Restart. The instance runs until t ends; its admin key is e's.
func (e *Env) Second(t testing.TB, opts server.Options) *Env {
	t.Helper()
	s, err := e.TrySecond(t, opts)
	if err != nil {
		t.Fatalf("servertest: second instance: %v", err)
	}
	return s
}

// TrySecond is Second for a start that may be refused: it returns
// server.New's error. opts.MasterKey, when set, replaces e's master key.
func (e *Env) TrySecond(t testing.TB, opts server.Options) (*Env, error) {
	t.Helper()
	s := newEnv(t, e.another(t), e.MasterKey, e.Clock, e.another)
	s.issuer = e.issuer
	s.AdminID, s.AdminSecret = e.AdminID, e.AdminSecret
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, ticks, err := s.newServer(ctx, s.Store, opts)
	if err != nil {
		return nil, err
	}
	s.serve(srv, ticks, opts.Now)
	return s, nil
}

// FlushLastUsed runs one last-used flush of the server behind e.URL at the
// clock's current time and returns once it has completed: it sends that
// time twice on the server's unbuffered tick channel, and the server takes
// a tick only after the previous flush returned. (The second tick's flush,
// at the same time, finds nothing new unless a token is issued meanwhile —
// and then counts that token's usage in the hour of this call's clock: a
// test that moves the clock to another hour calls FlushLastUsed again
// before its next tokens.)
func (e *Env) FlushLastUsed(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	ticks, now := e.ticks.lastUsed, e.now
	e.mu.Unlock()
	sendTwice(t, ticks, now(), "last-used")
}

// AuditTick runs one round of the server's audit work (store folded refused
// calls whose minute has passed, feed the operator-wide event stream, prune
// when an hour has passed since the last prune) at the clock's current
// time, and returns once it has completed, as FlushLastUsed does.
func (e *Env) AuditTick(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	ticks, now := e.ticks.audit, e.now
	e.mu.Unlock()
	sendTwice(t, ticks, now(), "audit")
}

// SigningKeysTick runs one round of the server's signing-key work (apply
// due transitions, pick up other instances' changes) at the clock's
// current time and returns once it has completed, as FlushLastUsed does.
func (e *Env) SigningKeysTick(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	ticks, now := e.ticks.signingKeys, e.now
	e.mu.Unlock()
	sendTwice(t, ticks, now(), "signing-keys")
}

// sendTwice sends at twice on an unbuffered tick channel: when the second
// send returns, the round of the first has completed.
func sendTwice(t testing.TB, ticks chan time.Time, at time.Time, what string) {
	t.Helper()
	timeout := time.NewTimer(tickTimeout)
	defer timeout.Stop()
	for range 2 {
		select {
		case ticks <- at:
		case <-timeout.C:
			t.Fatalf("servertest: the server took no %s tick in %v (closed, or its work hangs)", what, tickTimeout)
		}
	}
}
