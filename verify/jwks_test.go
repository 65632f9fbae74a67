package verify_test

// The JWKS side of verify, against JWKS and metadata servers on loopback
// that count every request: where keys may come from (discovery, https,
// redirects, key locations named in tokens), which published keys are
// used, and how the cache refreshes, rate-limits, survives an outage and
// finally fails closed. Time is an injected clock (Options.Now), which the
// cache uses too, so no test sleeps through a lifetime.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
)

const wellKnownMetadata = "/.well-known/oauth-authorization-server"

// jwksFixture is a stand-in keygate: RFC 8414 metadata under
// wellKnownMetadata and a JWKS at /jwks.json, both counted. Everything it
// serves can be changed while it runs.
type jwksFixture struct {
	srv *httptest.Server
	// jwksHits and metaHits count requests as they arrive (before a hang).
	jwksHits, metaHits, otherHits atomic.Int64

	mu           sync.Mutex
	keys         []map[string]any
	body         []byte // when set, the JWKS response instead of keys
	cacheControl string
	status       int           // JWKS status; 0 means 200
	delay        time.Duration // JWKS answers after this long
	hang         chan struct{} // when set, JWKS requests wait for it to close
	mdIssuer     *string       // metadata "issuer"; nil means the right one
	mdJWKSURI    *string       // metadata "jwks_uri"; nil means /jwks.json here
	mdStatus     int
	redirectTo   map[string]string // path → Location of a 302
}

func newJWKSFixture(t testing.TB, keys ...map[string]any) *jwksFixture {
	t.Helper()
	f := &jwksFixture{keys: keys, cacheControl: "public, max-age=300, stale-while-revalidate=60"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close) // registered first: runs after every release below
	return f
}

func (f *jwksFixture) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	loc, redirect := f.redirectTo[r.URL.Path]
	f.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, wellKnownMetadata):
		f.metaHits.Add(1)
		if redirect {
			http.Redirect(w, r, loc, http.StatusFound)
			return
		}
		f.serveMetadata(w, r)
	case r.URL.Path == "/jwks.json":
		f.jwksHits.Add(1)
		if redirect {
			http.Redirect(w, r, loc, http.StatusFound)
			return
		}
		f.serveJWKS(w, r)
	default:
		f.otherHits.Add(1)
		http.NotFound(w, r)
	}
}

func (f *jwksFixture) serveMetadata(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	iss := f.srv.URL + strings.TrimPrefix(r.URL.Path, wellKnownMetadata)
	if f.mdIssuer != nil {
		iss = *f.mdIssuer
	}
	jwksURI := f.srv.URL + "/jwks.json"
	if f.mdJWKSURI != nil {
		jwksURI = *f.mdJWKSURI
	}
	status := f.mdStatus
	f.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "jwks_uri": jwksURI, "token_endpoint": iss + "/oauth/token"})
}

func (f *jwksFixture) serveJWKS(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	hang, delay, status, cc := f.hang, f.delay, f.status, f.cacheControl
	body := f.body
	if body == nil {
		body, _ = json.Marshal(map[string]any{"keys": f.keys})
	}
	f.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if status != 0 && status != http.StatusOK {
		http.Error(w, "keygate is having a bad day", status)
		return
	}
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Write(body)
}

func (f *jwksFixture) set(change func(f *jwksFixture)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// hangJWKS makes JWKS requests wait until the returned release is called
// (at the latest when the test ends, before the server closes).
func (f *jwksFixture) hangJWKS(t testing.TB) (release func()) {
	ch := make(chan struct{})
	f.set(func(f *jwksFixture) { f.hang = ch })
	release = sync.OnceFunc(func() {
		f.set(func(f *jwksFixture) {
			if f.hang == ch {
				f.hang = nil
			}
		})
		close(ch)
	})
	t.Cleanup(release)
	return release
}

func (f *jwksFixture) jwksURL() string { return f.srv.URL + "/jwks.json" }

// verifier is a Verifier for the package's issuer and audience that takes
// its keys from f's JWKS, on clock.
func (f *jwksFixture) verifier(t testing.TB, clock *fixtureClock, mod func(*verify.Options)) *verify.Verifier {
	t.Helper()
	o := verify.Options{Issuer: issuer, Audience: audience, JWKSURL: f.jwksURL(), Now: clock.Now}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := verify.New(ctx, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// fixtureClock is a settable clock safe for the cache's goroutines.
type fixtureClock struct{ ns atomic.Int64 }

func newFixtureClock(t time.Time) *fixtureClock {
	c := &fixtureClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fixtureClock) Now() time.Time            { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fixtureClock) Set(t time.Time)           { c.ns.Store(t.UnixNano()) }
func (c *fixtureClock) Advance(d time.Duration)   { c.ns.Add(int64(d)) }
func (c *fixtureClock) Since(t0 time.Time) string { return c.Now().Sub(t0).String() }

// eventually polls cond for up to 3 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle gives a background refresh that should not start a moment to show
// itself; the exact hit counts checked afterwards catch it if it did.
func settle() { time.Sleep(25 * time.Millisecond) }

// longClaims live ten years from now, so that moving the clock exercises
// the key cache, not the token's own lifetime.
func longClaims() jwt.MapClaims {
	return with(func(c jwt.MapClaims) { c["exp"] = now.Add(10 * 365 * 24 * time.Hour).Unix() })
}

func mustVerify(t testing.TB, v *verify.Verifier, token string) *verify.Claims {
	t.Helper()
	c, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return c
}

func wantHits(t testing.TB, what string, got *atomic.Int64, want int64) {
	t.Helper()
	if n := got.Load(); n != want {
		t.Fatalf("%s: %d requests, want %d", what, n, want)
	}
}

func stdJWKS() []map[string]any {
	return []map[string]any{
		jwkOf(ecKey.kid, ecKey.priv.Public()),
		jwkOf(rsaKey.kid, rsaKey.priv.Public()),
		jwkOf(edKey.kid, edKey.priv.Public()),
	}
}

// routeTransport sends every request to one test server whatever its URL
// says (so "https://auth.example.test" can be discovered on loopback), and
// counts requests per original host.
type routeTransport struct {
	to   *httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newRouteTransport(to *httptest.Server) *routeTransport {
	return &routeTransport{to: to, hits: map[string]int{}}
}

func (rt *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.hits[req.URL.Host]++
	rt.mu.Unlock()
	if rt.to == nil {
		return nil, errors.New("routeTransport: no network here")
	}
	u, _ := url.Parse(rt.to.URL)
	r2 := req.Clone(req.Context())
	r2.URL.Scheme, r2.URL.Host = u.Scheme, u.Host
	return rt.to.Client().Transport.RoundTrip(r2)
}

func (rt *routeTransport) total() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	n := 0
	for _, c := range rt.hits {
		n += c
	}
	return n
}

// ---------------------------------------------------------------------------
// Hostile tokens that need a live JWKS: what would cause a fetch must not.

// A kid that no keygate could have published (paths, SQL, spaces, over 128
// bytes) is unknown without a JWKS request, even when a refresh would be
// allowed; a plausible unknown kid, at the same moment, does refresh.
func TestJWKSHostileKidCausesNoFetch(t *testing.T) {
	keys(t)
	f := newJWKSFixture(t, stdJWKS()...)
	clock := newFixtureClock(now)
	v := f.verifier(t, clock, nil)
	wantHits(t, "JWKS after New", &f.jwksHits, 1)
	clock.Advance(time.Minute) // past MinRefreshInterval (30 s)

	for _, kid := range []string{
		"../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "' OR 1=1 --", `"; DROP TABLE keys; --`,
		"ec-1 ", "ec-1\n", "ec-1\x00", "/jwks.json", "https://attacker.example/jwks.json",
		"ec-1?x=1", "ec-1#frag", "kid with spaces", strings.Repeat("a", 129), "ключ",
	} {
		t.Run(fmt.Sprintf("%q", kid), func(t *testing.T) {
			mustReject(t, v, sign(t, ecKey, nil, map[string]any{"kid": kid}, goodClaims()), verify.ErrUnknownKey)
			wantHits(t, "JWKS", &f.jwksHits, 1)
		})
	}
	// The clock does allow a refresh: a well-formed unknown kid gets one.
	mustReject(t, v, sign(t, ecKey, nil, map[string]any{"kid": strings.Repeat("a", 128)}, goodClaims()), verify.ErrUnknownKey)
	wantHits(t, "JWKS after a plausible unknown kid", &f.jwksHits, 2)
	// Oversized and malformed tokens never get as far as the key source.
	mustReject(t, v, strings.Repeat("a", verify.MaxTokenSize+1), verify.ErrTooLarge)
	clock.Advance(time.Minute)
	mustReject(t, v, "a.b.c", verify.ErrMalformed)
	mustReject(t, v, manual(`{"alg":"none","typ":"at+jwt","kid":"fresh-kid"}`, `{}`, nil), verify.ErrAlgorithm)
	wantHits(t, "JWKS after oversized/malformed/alg-none tokens", &f.jwksHits, 2)
}

// jku, x5u and jwk name an attacker's key; the token is signed with it and
// would verify against it. None is followed: the attacker's server sees no
// request, and the token is refused. The configured JWKS is the only place
// keys come from (here it is asked once, for the unknown kid).
func TestJWKSKeyLocationsInTokenNotFollowed(t *testing.T) {
	keys(t)
	victim := newJWKSFixture(t, stdJWKS()...)
	attackerKey := testKey{"attacker-1", "ES256", mustEC(t)}
	attacker := newJWKSFixture(t, jwkOf(attackerKey.kid, attackerKey.priv.Public()))
	clock := newFixtureClock(now)
	v := victim.verifier(t, clock, nil)
	clock.Advance(time.Minute) // a refresh for an unknown kid is allowed

	attackerJWKS := attacker.jwksURL()
	attackerJWK := jwkOf(attackerKey.kid, attackerKey.priv.Public())
	sameKid := testKey{"ec-1", "ES256", attackerKey.priv}
	cases := []struct {
		name   string
		token  string
		want   error
		signer testKey
	}{
		{"jku", sign(t, attackerKey, nil, map[string]any{"jku": attackerJWKS}, goodClaims()), verify.ErrUnknownKey, attackerKey},
		{"x5u", sign(t, attackerKey, nil, map[string]any{"x5u": attacker.srv.URL + "/cert.pem"}, goodClaims()), verify.ErrUnknownKey, attackerKey},
		{"jwk", sign(t, attackerKey, nil, map[string]any{"jwk": attackerJWK}, goodClaims()), verify.ErrUnknownKey, attackerKey},
		{"jku+x5u+jwk", sign(t, attackerKey, nil, map[string]any{"jku": attackerJWKS, "x5u": attacker.srv.URL + "/cert.pem", "jwk": attackerJWK}, goodClaims()), verify.ErrUnknownKey, attackerKey},
		{"jku under our kid", sign(t, sameKid, nil, map[string]any{"jku": attackerJWKS}, goodClaims()), verify.ErrSignature, sameKid},
		{"x5u under our kid", sign(t, sameKid, nil, map[string]any{"x5u": attacker.srv.URL + "/cert.pem"}, goodClaims()), verify.ErrSignature, sameKid},
		{"jwk under our kid", sign(t, sameKid, nil, map[string]any{"jwk": jwkOf("ec-1", attackerKey.priv.Public())}, goodClaims()), verify.ErrSignature, sameKid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustReject(t, v, tc.token, tc.want)
			for what, n := range map[string]*atomic.Int64{"metadata": &attacker.metaHits, "JWKS": &attacker.jwksHits, "other paths": &attacker.otherHits} {
				wantHits(t, "attacker's "+what, n, 0)
			}
		})
	}
	if n := victim.jwksHits.Load(); n != 2 {
		t.Fatalf("configured JWKS: %d requests, want 2 (New, then one refresh for the attacker's kid)", n)
	}
	// Control: the attacker's tokens are genuine under the attacker's own
	// JWKS, so the refusals above are about where keys come from.
	va := attacker.verifier(t, newFixtureClock(now), nil)
	mustVerify(t, va, cases[0].token)
}

// A token of another keygate (its own signing key) is refused, whether its
// kid is one this JWKS lacks or the very kid of this keygate's key.
func TestJWKSTokenOfAnotherKeygate(t *testing.T) {
	keys(t)
	ours := newJWKSFixture(t, stdJWKS()...)
	otherKey := testKey{"ec-other", "ES256", mustEC(t)}
	otherSameKid := testKey{"ec-1", "ES256", otherKey.priv}
	theirs := newJWKSFixture(t, jwkOf(otherKey.kid, otherKey.priv.Public()))
	theirsSameKid := newJWKSFixture(t, jwkOf("ec-1", otherKey.priv.Public()))
	clock := newFixtureClock(now)
	v := ours.verifier(t, clock, nil)

	tokOther := sign(t, otherKey, nil, nil, goodClaims())
	tokSameKid := sign(t, otherSameKid, nil, nil, goodClaims())
	mustVerify(t, theirs.verifier(t, clock, nil), tokOther) // genuine where it belongs
	mustVerify(t, theirsSameKid.verifier(t, clock, nil), tokSameKid)

	mustReject(t, v, tokOther, verify.ErrUnknownKey)
	mustReject(t, v, tokSameKid, verify.ErrSignature)
	clock.Advance(time.Minute) // even after a refresh
	mustReject(t, v, tokOther, verify.ErrUnknownKey)
	wantHits(t, "our JWKS", &ours.jwksHits, 2)
	mustReject(t, v, tokSameKid, verify.ErrSignature)
	wantHits(t, "our JWKS", &ours.jwksHits, 2)
	mustVerify(t, v, sign(t, ecKey, nil, nil, goodClaims()))
}

// keygate starts publishing a second, newer key beside its signing key.
// Once the verifier has fetched the new set (on an unknown kid, or by the
// background refresh before expiry), tokens of the old key still verify and
// tokens of the new one do too.
func TestJWKSSecondKeyPublished(t *testing.T) {
	keys(t)
	newKey := testKey{"ec-2", "ES256", mustEC(t)}
	published := func(f *jwksFixture) {
		f.keys = []map[string]any{jwkOf(newKey.kid, newKey.priv.Public()), jwkOf(ecKey.kid, ecKey.priv.Public())}
	}
	oldTok := sign(t, ecKey, nil, nil, longClaims())
	newTok := sign(t, newKey, nil, nil, longClaims())

	t.Run("refresh on unknown kid", func(t *testing.T) {
		f := newJWKSFixture(t, jwkOf(ecKey.kid, ecKey.priv.Public()))
		clock := newFixtureClock(now)
		v := f.verifier(t, clock, nil)
		mustVerify(t, v, oldTok)
		f.set(published)
		// Within MinRefreshInterval of the last fetch the new kid is unknown.
		clock.Advance(10 * time.Second)
		mustReject(t, v, newTok, verify.ErrUnknownKey)
		wantHits(t, "JWKS", &f.jwksHits, 1)
		clock.Advance(21 * time.Second)
		mustVerify(t, v, newTok)
		wantHits(t, "JWKS after the unknown kid", &f.jwksHits, 2)
		for i := 0; i < 3; i++ {
			mustVerify(t, v, oldTok)
			mustVerify(t, v, newTok)
		}
		wantHits(t, "JWKS", &f.jwksHits, 2)
	})
	t.Run("background refresh before expiry", func(t *testing.T) {
		f := newJWKSFixture(t, jwkOf(ecKey.kid, ecKey.priv.Public())) // max-age=300
		clock := newFixtureClock(now)
		v := f.verifier(t, clock, nil)
		f.set(published)
		clock.Advance(239 * time.Second)
		mustVerify(t, v, oldTok)
		settle()
		wantHits(t, "JWKS before 80 % of max-age", &f.jwksHits, 1)
		clock.Advance(2 * time.Second)
		mustVerify(t, v, oldTok) // starts the refresh
		eventually(t, "background JWKS fetch", func() bool { return f.jwksHits.Load() == 2 })
		eventually(t, "new key usable", func() bool { _, err := v.Verify(context.Background(), newTok); return err == nil })
		mustVerify(t, v, oldTok)
		settle()
		wantHits(t, "JWKS", &f.jwksHits, 2)
	})
	t.Run("signing key of another type added", func(t *testing.T) {
		f := newJWKSFixture(t, jwkOf(ecKey.kid, ecKey.priv.Public()))
		clock := newFixtureClock(now)
		v := f.verifier(t, clock, nil)
		f.set(func(f *jwksFixture) { f.keys = append(stdJWKS()[1:], f.keys...) })
		clock.Advance(31 * time.Second)
		mustVerify(t, v, sign(t, rsaKey, nil, nil, longClaims()))
		mustVerify(t, v, sign(t, edKey, nil, nil, longClaims()))
		mustVerify(t, v, oldTok)
		wantHits(t, "JWKS", &f.jwksHits, 2)
	})
}

// ---------------------------------------------------------------------------
// The cache.

// runConcurrently verifies each token in its own goroutine, all released at
// once, and returns the errors.
func runConcurrently(v *verify.Verifier, tokens []string) []error {
	errs := make([]error, len(tokens))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = v.Verify(context.Background(), tok)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// 1 000 concurrent Verify calls with an unknown kid cause at most one JWKS
// fetch: none within MinRefreshInterval of the last, exactly one after it,
// whether they share a kid or each has its own random one.
func TestJWKSUnknownKidSingleFlight(t *testing.T) {
	keys(t)
	const n = 1000
	f := newJWKSFixture(t, stdJWKS()...)
	f.set(func(f *jwksFixture) { f.delay = 20 * time.Millisecond }) // a slow keygate widens the race
	clock := newFixtureClock(now)
	v := f.verifier(t, clock, nil)
	wantHits(t, "JWKS after New", &f.jwksHits, 1)

	same := sign(t, ecKey, nil, map[string]any{"kid": "ec-unknown"}, goodClaims())
	sameKid := make([]string, n)
	for i := range sameKid {
		sameKid[i] = same
	}
	randomKids := make([]string, n)
	for i := range randomKids {
		b := make([]byte, 12)
		rand.Read(b)
		randomKids[i] = manual(`{"alg":"ES256","typ":"at+jwt","kid":"`+hex.EncodeToString(b)+`"}`, `{}`, make([]byte, 64))
	}
	check := func(t *testing.T, tokens []string, wantTotal int64) {
		t.Helper()
		for i, err := range runConcurrently(v, tokens) {
			if !errors.Is(err, verify.ErrUnknownKey) {
				t.Fatalf("token %d: %v, want ErrUnknownKey", i, err)
			}
		}
		settle()
		wantHits(t, "JWKS", &f.jwksHits, wantTotal)
	}
	t.Run("same kid, within MinRefreshInterval", func(t *testing.T) { check(t, sameKid, 1) })
	clock.Advance(31 * time.Second)
	t.Run("same kid", func(t *testing.T) { check(t, sameKid, 2) })
	t.Run("same kid again", func(t *testing.T) { check(t, sameKid, 2) })
	clock.Advance(31 * time.Second)
	t.Run("random kids", func(t *testing.T) { check(t, randomKids, 3) })
	t.Run("random kids again", func(t *testing.T) { check(t, randomKids, 3) })
	// A valid token is unaffected by the storm.
	mustVerify(t, v, sign(t, ecKey, nil, nil, goodClaims()))
}

// An unknown kid refreshes at most once per MinRefreshInterval, measured on
// the injected clock from the last fetch attempt.
func TestJWKSMinRefreshInterval(t *testing.T) {
	keys(t)
	f := newJWKSFixture(t, stdJWKS()...)
	clock := newFixtureClock(now)
	v := f.verifier(t, clock, func(o *verify.Options) { o.MinRefreshInterval = 10 * time.Second })
	unknown := sign(t, ecKey, nil, map[string]any{"kid": "not-yet"}, goodClaims())
	steps := []struct {
		at   time.Duration
		hits int64
	}{
		{0, 1}, {9 * time.Second, 1}, {10 * time.Second, 2}, {10 * time.Second, 2}, {15 * time.Second, 2},
		{19 * time.Second, 2}, {20 * time.Second, 3}, {21 * time.Second, 3}, {45 * time.Second, 4}, {54 * time.Second, 4},
	}
	for _, s := range steps {
		clock.Set(now.Add(s.at))
		mustReject(t, v, unknown, verify.ErrUnknownKey)
		if got := f.jwksHits.Load(); got != s.hits {
			t.Fatalf("at +%v: %d JWKS requests, want %d", s.at, got, s.hits)
		}
	}
	// Once keygate publishes the kid, the next allowed refresh finds it.
	f.set(func(f *jwksFixture) {
		f.keys = append(f.keys, jwkOf("not-yet", ecKey.priv.Public()))
	})
	clock.Set(now.Add(54*time.Second + 999*time.Millisecond))
	mustReject(t, v, unknown, verify.ErrUnknownKey) // last attempt at 45 s: too soon
	wantHits(t, "JWKS", &f.jwksHits, 4)
	clock.Set(now.Add(55 * time.Second))
	mustVerify(t, v, unknown)
	wantHits(t, "JWKS", &f.jwksHits, 5)
}

// keygate unreachable: the cached keys keep verifying until expiry +
// MaxStale, then Verify fails closed with ErrKeysUnavailable; once keygate
// answers again (and a refresh is allowed) verification resumes. With a
// negative MaxStale the old keys are used indefinitely.
func TestJWKSKeygateDown(t *testing.T) {
	keys(t)
	tok := sign(t, ecKey, nil, nil, longClaims())
	tokRSA := sign(t, rsaKey, nil, nil, longClaims())
	for _, how := range []string{"500", "closed"} {
		t.Run(how, func(t *testing.T) {
			f := newJWKSFixture(t, stdJWKS()...)
			f.set(func(f *jwksFixture) { f.cacheControl = "max-age=60" })
			clock := newFixtureClock(now)
			v := f.verifier(t, clock, func(o *verify.Options) { o.MaxStale = 10 * time.Minute })
			mustVerify(t, v, tok)
			if how == "500" {
				f.set(func(f *jwksFixture) { f.status = http.StatusInternalServerError })
			} else {
				f.srv.Close()
			}
			for _, at := range []time.Duration{
				30 * time.Second, // fresh
				50 * time.Second, // due for refresh: background attempt fails
				61 * time.Second, // expired, stale allowed
				5 * time.Minute,  // ...
				60*time.Second + 10*time.Minute - time.Second, // last second of MaxStale
			} {
				clock.Set(now.Add(at))
				if _, err := v.Verify(context.Background(), tok); err != nil {
					t.Fatalf("at +%v (keygate down, within expiry+MaxStale): %v", at, err)
				}
				mustVerify(t, v, tokRSA)
			}
			clock.Set(now.Add(60*time.Second + 10*time.Minute + time.Second))
			for _, tk := range []string{tok, tokRSA} {
				mustReject(t, v, tk, verify.ErrKeysUnavailable)
			}
			clock.Set(now.Add(2 * time.Hour))
			mustReject(t, v, tok, verify.ErrKeysUnavailable)
			if how != "500" {
				return
			}
			// Attempts were rate-limited throughout the outage: New, at
			// most one background refresh per verification point 30 s or
			// more after the previous attempt (+50 s, +5 min, +10m59s; a
			// point finding the last attempt still in flight adds none),
			// none at +11m01s (2 s after the last), and the synchronous one
			// at +2 h.
			settle()
			outage := f.jwksHits.Load()
			if outage < 2 || outage > 5 {
				t.Fatalf("%d JWKS requests by the end of the outage, want 2..5", outage)
			}
			f.set(func(f *jwksFixture) { f.status = 0 })
			clock.Advance(29 * time.Second)
			mustReject(t, v, tok, verify.ErrKeysUnavailable) // too soon to retry
			clock.Advance(2 * time.Second)
			mustVerify(t, v, tok)
			mustVerify(t, v, tokRSA)
			wantHits(t, "JWKS after keygate is back", &f.jwksHits, outage+1)
		})
	}
	t.Run("MaxStale negative", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		clock := newFixtureClock(now)
		v := f.verifier(t, clock, func(o *verify.Options) { o.MaxStale = -1 })
		f.set(func(f *jwksFixture) { f.status = http.StatusServiceUnavailable })
		for _, at := range []time.Duration{time.Hour, 25 * time.Hour, 365 * 24 * time.Hour, 9 * 365 * 24 * time.Hour} {
			clock.Set(now.Add(at))
			mustVerify(t, v, tok)
		}
		f.srv.Close()
		clock.Advance(time.Hour)
		mustVerify(t, v, tok)
	})
	t.Run("MaxStale default is 1h", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		f.set(func(f *jwksFixture) { f.cacheControl = "max-age=60" })
		clock := newFixtureClock(now)
		v := f.verifier(t, clock, nil)
		f.set(func(f *jwksFixture) { f.status = http.StatusBadGateway })
		clock.Set(now.Add(time.Minute + time.Hour - time.Second))
		mustVerify(t, v, tok)
		clock.Set(now.Add(time.Minute + time.Hour + time.Second))
		mustReject(t, v, tok, verify.ErrKeysUnavailable)
	})
}

// Cache-Control max-age sets the key set's lifetime, clamped to
// [30 s, 24 h]; the background refresh starts at 80 % of it and Verify does
// not wait for it.
func TestJWKSCacheControl(t *testing.T) {
	keys(t)
	tok := sign(t, ecKey, nil, nil, longClaims())

	t.Run("max-age=60: background refresh after 48s, Verify does not wait", func(t *testing.T) {
		f := newJWKSFixture(t, jwkOf(ecKey.kid, ecKey.priv.Public()))
		f.set(func(f *jwksFixture) { f.cacheControl = "max-age=60" })
		clock := newFixtureClock(now)
		v := f.verifier(t, clock, nil)
		clock.Set(now.Add(47 * time.Second))
		mustVerify(t, v, tok)
		settle()
		wantHits(t, "JWKS before 48 s", &f.jwksHits, 1)

		newKey := testKey{"ec-2", "ES256", mustEC(t)}
		f.set(func(f *jwksFixture) { f.keys = append(f.keys, jwkOf(newKey.kid, newKey.priv.Public())) })
		release := f.hangJWKS(t)
		clock.Set(now.Add(49 * time.Second))
		done := make(chan error, 1)
		go func() { _, err := v.Verify(context.Background(), tok); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Verify during the background refresh: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Verify waited for the background refresh")
		}
		eventually(t, "the background JWKS request", func() bool { return f.jwksHits.Load() == 2 })
		mustVerify(t, v, tok) // still while keygate hangs
		release()
		newTok := sign(t, newKey, nil, nil, longClaims())
		eventually(t, "the refreshed set", func() bool { _, err := v.Verify(context.Background(), newTok); return err == nil })
		wantHits(t, "JWKS", &f.jwksHits, 2)
		// The new set was fetched at +49 s: next refresh at +97 s.
		clock.Set(now.Add(96 * time.Second))
		mustVerify(t, v, tok)
		settle()
		wantHits(t, "JWKS before the second refresh", &f.jwksHits, 2)
		clock.Set(now.Add(98 * time.Second))
		mustVerify(t, v, tok)
		eventually(t, "the second refresh", func() bool { return f.jwksHits.Load() == 3 })
	})

	// Bounds. MinRefreshInterval is tiny so only the lifetime decides.
	for _, tc := range []struct {
		cc        string
		refreshAt time.Duration // 80 % of the effective lifetime
	}{
		{"max-age=60", 48 * time.Second},
		{"max-age=1", 24 * time.Second}, // clamped up to 30 s
		{"max-age=0", 24 * time.Second}, // clamped up to 30 s
		{"no-store", 24 * time.Second},  // 30 s
		{"no-cache", 24 * time.Second},  // 30 s
		{"max-age=600, no-store", 24 * time.Second},
		{"max-age=999999", 19*time.Hour + 12*time.Minute}, // clamped to 24 h
		{"max-age=86400", 19*time.Hour + 12*time.Minute},
		{"public, max-age=300, stale-while-revalidate=60", 240 * time.Second}, // what keygate sends
		{`max-age="120"`, 96 * time.Second},
		{"MAX-AGE=100", 80 * time.Second},
		{"", 240 * time.Second},             // none: 5 min
		{"max-age=-5", 240 * time.Second},   // invalid: default
		{"max-age=soon", 240 * time.Second}, // invalid: default
	} {
		t.Run(fmt.Sprintf("Cache-Control %q", tc.cc), func(t *testing.T) {
			f := newJWKSFixture(t, jwkOf(ecKey.kid, ecKey.priv.Public()))
			f.set(func(f *jwksFixture) { f.cacheControl = tc.cc })
			clock := newFixtureClock(now)
			v := f.verifier(t, clock, func(o *verify.Options) { o.MinRefreshInterval = time.Millisecond })
			clock.Set(now.Add(tc.refreshAt - time.Second))
			mustVerify(t, v, tok)
			settle()
			wantHits(t, "JWKS 1 s before the refresh time", &f.jwksHits, 1)
			clock.Set(now.Add(tc.refreshAt + time.Second))
			mustVerify(t, v, tok)
			eventually(t, "the background refresh", func() bool { return f.jwksHits.Load() == 2 })
			settle()
			wantHits(t, "JWKS", &f.jwksHits, 2)
		})
	}
}

// ctx bounds how long Verify waits for a refresh: with keygate hanging, an
// unknown kid under a 100 ms deadline comes back promptly with an error,
// while tokens of cached keys keep verifying at once.
func TestJWKSContextRespected(t *testing.T) {
	keys(t)
	f := newJWKSFixture(t, stdJWKS()...)
	clock := newFixtureClock(now)
	v := f.verifier(t, clock, nil)
	release := f.hangJWKS(t)
	clock.Advance(time.Minute)
	unknown := sign(t, ecKey, nil, map[string]any{"kid": "ec-9"}, goodClaims())

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, unknown)
	took := time.Since(start)
	if err == nil {
		t.Fatal("accepted")
	}
	if !errors.Is(err, verify.ErrUnknownKey) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnknownKey or a context error", err)
	}
	if took > time.Second {
		t.Fatalf("Verify took %v with a 100 ms deadline", took)
	}
	t.Logf("unknown kid, keygate hanging, 100 ms deadline: %v after %v", err, took.Round(time.Millisecond))
	eventually(t, "the JWKS request", func() bool { return f.jwksHits.Load() == 2 })

	// Another caller joins the hung refresh and is bounded by its own ctx.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	start = time.Now()
	if _, err := v.Verify(ctx2, sign(t, ecKey, nil, map[string]any{"kid": "ec-10"}, goodClaims())); err == nil || time.Since(start) > time.Second {
		t.Fatalf("second caller: %v after %v", err, time.Since(start))
	}
	// A cancelled ctx: no waiting at all.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	start = time.Now()
	if _, err := v.Verify(cctx, unknown); err == nil || time.Since(start) > time.Second {
		t.Fatalf("cancelled ctx: %v after %v", err, time.Since(start))
	}
	// Cached keys are unaffected by the hung refresh.
	start = time.Now()
	mustVerify(t, v, sign(t, ecKey, nil, nil, goodClaims()))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a cached key's token took %v", d)
	}
	wantHits(t, "JWKS", &f.jwksHits, 2)
	release()
}

// An HTTP client timeout ends a hung refresh, so a hanging keygate cannot
// hold the single flight forever; the next allowed refresh succeeds.
func TestJWKSHungRefreshTimesOut(t *testing.T) {
	keys(t)
	f := newJWKSFixture(t, stdJWKS()...)
	clock := newFixtureClock(now)
	client := &http.Client{Timeout: 200 * time.Millisecond, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	v := f.verifier(t, clock, func(o *verify.Options) { o.HTTPClient = client })
	release := f.hangJWKS(t)
	newKey := testKey{"ec-2", "ES256", mustEC(t)}
	f.set(func(f *jwksFixture) { f.keys = append(f.keys, jwkOf(newKey.kid, newKey.priv.Public())) })
	newTok := sign(t, newKey, nil, nil, goodClaims())
	clock.Advance(time.Minute)
	start := time.Now()
	mustReject(t, v, newTok, verify.ErrUnknownKey) // waits for the client timeout
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	release()
	clock.Advance(time.Minute)
	mustVerify(t, v, newTok)
	wantHits(t, "JWKS", &f.jwksHits, 3)
}

// ---------------------------------------------------------------------------
// New: discovery and where keys may come from.

func newErr(t testing.TB, o verify.Options) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := verify.New(ctx, o)
	if err == nil && v == nil {
		t.Fatal("New returned neither a Verifier nor an error")
	}
	if err != nil && v != nil {
		t.Fatal("New returned a Verifier and an error")
	}
	return err
}

func TestNewDiscovery(t *testing.T) {
	keys(t)
	t.Run("ok on loopback", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		v, err := verify.New(context.Background(), verify.Options{Issuer: f.srv.URL, Audience: audience})
		if err != nil {
			t.Fatal(err)
		}
		wantHits(t, "metadata", &f.metaHits, 1)
		wantHits(t, "JWKS", &f.jwksHits, 1)
		c := mustVerify(t, v, sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) {
			c["iss"] = f.srv.URL
			c["exp"] = time.Now().Add(time.Minute).Unix()
			c["iat"] = time.Now().Unix()
			c["nbf"] = time.Now().Unix()
		})))
		if c.Issuer != f.srv.URL {
			t.Fatalf("iss %q", c.Issuer)
		}
		// iss of the metadata is the only one accepted in tokens.
		mustReject(t, v, sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["iss"] = f.srv.URL + "/"; c["exp"] = time.Now().Add(time.Minute).Unix() })), verify.ErrWrongIssuer)
	})
	t.Run("issuer with a path (RFC 8414 §3.1)", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		if err := newErr(t, verify.Options{Issuer: f.srv.URL + "/tenant/a", Audience: audience}); err != nil {
			t.Fatal(err)
		}
		wantHits(t, "metadata", &f.metaHits, 1)
	})
	t.Run("https issuer and jwks_uri", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		f.set(func(f *jwksFixture) {
			iss, ju := "https://auth.example.test", "https://keys.example.test/jwks.json"
			f.mdIssuer, f.mdJWKSURI = &iss, &ju
		})
		rt := newRouteTransport(f.srv)
		if err := newErr(t, verify.Options{Issuer: "https://auth.example.test", Audience: audience, HTTPClient: &http.Client{Transport: rt}}); err != nil {
			t.Fatal(err)
		}
		if rt.hits["auth.example.test"] != 1 || rt.hits["keys.example.test"] != 1 {
			t.Fatalf("requests %v", rt.hits)
		}
	})

	refused := []struct {
		name   string
		change func(f *jwksFixture)
		opts   func(f *jwksFixture, o *verify.Options)
	}{
		{"metadata issuer differs", func(f *jwksFixture) { s := "https://evil.example"; f.mdIssuer = &s }, nil},
		{"metadata issuer with trailing slash", func(f *jwksFixture) { s := f.srv.URL + "/"; f.mdIssuer = &s }, nil},
		{"metadata issuer localhost for 127.0.0.1", func(f *jwksFixture) {
			s := strings.Replace(f.srv.URL, "127.0.0.1", "localhost", 1)
			f.mdIssuer = &s
		}, nil},
		{"metadata issuer empty", func(f *jwksFixture) { s := ""; f.mdIssuer = &s }, nil},
		{"jwks_uri http on a public host", func(f *jwksFixture) { s := "http://example.com/jwks.json"; f.mdJWKSURI = &s }, nil},
		{"jwks_uri ftp", func(f *jwksFixture) { s := "ftp://127.0.0.1/jwks.json"; f.mdJWKSURI = &s }, nil},
		{"jwks_uri relative", func(f *jwksFixture) { s := "/jwks.json"; f.mdJWKSURI = &s }, nil},
		{"jwks_uri missing", func(f *jwksFixture) { s := ""; f.mdJWKSURI = &s }, nil},
		{"metadata 404", func(f *jwksFixture) { f.mdStatus = http.StatusNotFound }, nil},
		{"metadata 500", func(f *jwksFixture) { f.mdStatus = http.StatusInternalServerError }, nil},
		{"JWKS 500", func(f *jwksFixture) { f.status = http.StatusInternalServerError }, nil},
		{"JWKS 404", func(f *jwksFixture) { f.status = http.StatusNotFound }, nil},
		{"JWKS empty", func(f *jwksFixture) { f.keys = nil }, nil},
		{"JWKS {}", func(f *jwksFixture) { f.body = []byte(`{}`) }, nil},
		{"JWKS not JSON", func(f *jwksFixture) { f.body = []byte(`<html>`) }, nil},
		{"JWKS keys not a list", func(f *jwksFixture) { f.body = []byte(`{"keys":{"kid":"ec-1"}}`) }, nil},
		{"JWKS over 1 MiB", func(f *jwksFixture) {
			f.body = []byte(`{"keys":[` + strings.Repeat(" ", 1<<20) + `]}`)
		}, nil},
		{"JWKS of encryption keys only", func(f *jwksFixture) {
			k := jwkOf("enc-1", ecKey.priv.Public())
			k["use"] = "enc"
			f.keys = []map[string]any{k}
		}, nil},
		{"JWKS of a 1024-bit RSA key only", func(f *jwksFixture) {
			rk, err := rsa.GenerateKey(rand.Reader, 1024)
			if err != nil {
				panic(err)
			}
			f.keys = []map[string]any{jwkOf("rsa-1024", rk.Public())}
		}, nil},
		{"JWKS of symmetric keys only", func(f *jwksFixture) {
			f.keys = []map[string]any{{"kty": "oct", "kid": "hmac", "k": base64.RawURLEncoding.EncodeToString([]byte("secret"))}}
		}, nil},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			f := newJWKSFixture(t, stdJWKS()...)
			f.set(func(ff *jwksFixture) { tc.change(ff) })
			o := verify.Options{Issuer: f.srv.URL, Audience: audience}
			if err := newErr(t, o); err == nil {
				t.Fatal("New accepted it")
			} else {
				t.Logf("New: %v", err)
			}
		})
	}
	t.Run("metadata issuer differs: no JWKS request", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		f.set(func(f *jwksFixture) { s := "https://evil.example"; f.mdIssuer = &s })
		if newErr(t, verify.Options{Issuer: f.srv.URL, Audience: audience}) == nil {
			t.Fatal("accepted")
		}
		wantHits(t, "JWKS", &f.jwksHits, 0)
	})
	t.Run("jwks_uri http on a public host: only with Insecure", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		f.set(func(f *jwksFixture) {
			iss, ju := "http://auth.example.com", "http://example.com/jwks.json"
			f.mdIssuer, f.mdJWKSURI = &iss, &ju
		})
		rt := newRouteTransport(f.srv)
		o := verify.Options{Issuer: "http://auth.example.com", Audience: audience, HTTPClient: &http.Client{Transport: rt}}
		if newErr(t, o) == nil {
			t.Fatal("accepted without Insecure")
		}
		if rt.total() != 0 {
			t.Fatalf("requests without Insecure: %v", rt.hits)
		}
		o.Insecure = true
		if err := newErr(t, o); err != nil {
			t.Fatalf("Insecure: %v", err)
		}
		if rt.hits["auth.example.com"] != 1 || rt.hits["example.com"] != 1 {
			t.Fatalf("requests with Insecure: %v", rt.hits)
		}
		// Loopback issuer, jwks_uri on a public http host.
		f2 := newJWKSFixture(t, stdJWKS()...)
		f2.set(func(f *jwksFixture) { s := "http://example.com/jwks.json"; f.mdJWKSURI = &s })
		rt2 := newRouteTransport(f2.srv)
		if newErr(t, verify.Options{Issuer: f2.srv.URL, Audience: audience, HTTPClient: &http.Client{Transport: rt2}}) == nil {
			t.Fatal("accepted http jwks_uri")
		}
		if rt2.hits["example.com"] != 0 {
			t.Fatalf("the http jwks_uri was fetched: %v", rt2.hits)
		}
	})
	t.Run("issuer and JWKSURL must be https off loopback: no request", func(t *testing.T) {
		for _, o := range []verify.Options{
			{Issuer: "http://example.com", Audience: audience},
			{Issuer: "http://auth.example.com/tenant", Audience: audience},
			{Issuer: "http://10.0.0.1", Audience: audience},
			{Issuer: "http://localhost.example.com", Audience: audience},
			{Issuer: "ftp://example.com", Audience: audience},
			{Issuer: "example.com", Audience: audience},
			{Issuer: "https://", Audience: audience},
			{Issuer: "https://auth.example.test", Audience: audience, JWKSURL: "http://example.com/jwks.json"},
			{Issuer: "https://auth.example.test", Audience: audience, JWKSURL: "file:///etc/passwd"},
			{Issuer: "https://auth.example.test", Audience: audience, JWKSURL: "jwks.json"},
		} {
			rt := newRouteTransport(nil)
			o.HTTPClient = &http.Client{Transport: rt}
			if err := newErr(t, o); err == nil {
				t.Errorf("issuer %q JWKSURL %q: accepted", o.Issuer, o.JWKSURL)
			}
			if rt.total() != 0 {
				t.Errorf("issuer %q JWKSURL %q: requests %v", o.Issuer, o.JWKSURL, rt.hits)
			}
		}
	})
	t.Run("loopback http allowed", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		for _, u := range []string{f.srv.URL, strings.Replace(f.srv.URL, "127.0.0.1", "localhost", 1)} {
			if err := newErr(t, verify.Options{Issuer: issuer, Audience: audience, JWKSURL: u + "/jwks.json"}); err != nil {
				t.Fatalf("%s: %v", u, err)
			}
		}
	})
	t.Run("keygate unreachable", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		u := f.srv.URL
		f.srv.Close()
		if newErr(t, verify.Options{Issuer: u, Audience: audience}) == nil {
			t.Fatal("accepted")
		}
		if newErr(t, verify.Options{Issuer: issuer, Audience: audience, JWKSURL: u + "/jwks.json"}) == nil {
			t.Fatal("accepted")
		}
	})
	t.Run("ctx bounds New", func(t *testing.T) {
		f := newJWKSFixture(t, stdJWKS()...)
		f.hangJWKS(t)
		for _, o := range []verify.Options{
			{Issuer: f.srv.URL, Audience: audience},
			{Issuer: issuer, Audience: audience, JWKSURL: f.jwksURL()},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			start := time.Now()
			_, err := verify.New(ctx, o)
			cancel()
			if err == nil || time.Since(start) > time.Second {
				t.Fatalf("New with keygate hanging: %v after %v", err, time.Since(start))
			}
		}
	})
}

// Redirects are never followed, for metadata or keys: a key location is
// configuration. The server redirected to sees no request.
func TestNewDoesNotFollowRedirects(t *testing.T) {
	keys(t)
	for _, path := range []string{wellKnownMetadata, "/jwks.json"} {
		for _, mode := range []string{"discovery", "JWKSURL"} {
			if mode == "JWKSURL" && path == wellKnownMetadata {
				continue
			}
			t.Run(mode+" "+path, func(t *testing.T) {
				elsewhere := newJWKSFixture(t, stdJWKS()...)
				f := newJWKSFixture(t, stdJWKS()...)
				f.set(func(f *jwksFixture) {
					f.redirectTo = map[string]string{path: elsewhere.srv.URL + path}
				})
				o := verify.Options{Issuer: f.srv.URL, Audience: audience}
				if mode == "JWKSURL" {
					o.JWKSURL = f.jwksURL()
				}
				if err := newErr(t, o); err == nil {
					t.Fatal("New followed the redirect")
				}
				for what, n := range map[string]*atomic.Int64{"metadata": &elsewhere.metaHits, "JWKS": &elsewhere.jwksHits, "other": &elsewhere.otherHits} {
					wantHits(t, "redirect target's "+what, n, 0)
				}
			})
		}
	}
	// And on a later refresh.
	t.Run("refresh", func(t *testing.T) {
		elsewhere := newJWKSFixture(t, stdJWKS()...)
		f := newJWKSFixture(t, stdJWKS()...)
		clock := newFixtureClock(now)
		v := f.verifier(t, clock, nil)
		f.set(func(f *jwksFixture) { f.redirectTo = map[string]string{"/jwks.json": elsewhere.jwksURL()} })
		clock.Advance(time.Minute)
		mustReject(t, v, sign(t, ecKey, nil, map[string]any{"kid": "ec-2"}, goodClaims()), verify.ErrUnknownKey)
		wantHits(t, "JWKS", &f.jwksHits, 2)
		wantHits(t, "redirect target's JWKS", &elsewhere.jwksHits, 0)
	})
}

// A caller's own HTTPClient (say, with a proxy or custom TLS roots) follows
// redirects unless told otherwise; keys must still not be fetched from
// wherever keygate's host redirects to (possibly plain http off loopback).
func TestNewCustomClientDoesNotFollowRedirects(t *testing.T) {
	keys(t)
	elsewhere := newJWKSFixture(t, stdJWKS()...)
	f := newJWKSFixture(t, stdJWKS()...)
	f.set(func(f *jwksFixture) { f.redirectTo = map[string]string{"/jwks.json": elsewhere.jwksURL()} })
	err := newErr(t, verify.Options{Issuer: issuer, Audience: audience, JWKSURL: f.jwksURL(), HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if err == nil {
		t.Error("New followed a redirect with a caller's HTTPClient")
	}
	wantHits(t, "redirect target's JWKS", &elsewhere.jwksHits, 0)
}

// Keys the package must not use are skipped, the rest of the set stays
// usable: encryption keys, RSA under 2048 bits, curves other than P-256,
// an alg that does not fit the key type, a kid published twice, an EC point
// not on the curve, symmetric keys, broken members.
func TestJWKSSkipsUnusableKeys(t *testing.T) {
	keys(t)
	enc := base64.RawURLEncoding.EncodeToString
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	encKey := testKey{"enc-1", "ES256", mustEC(t)}
	dupA := testKey{"dup", "ES256", mustEC(t)}
	dupB := testKey{"dup", "ES256", mustEC(t)}
	dupSame := testKey{"dup-same", "ES256", mustEC(t)}
	ecAsRS := testKey{"ec-as-rs256", "ES256", mustEC(t)}
	rsaAsES := testKey{"rsa-as-es256", "RS256", rsaKey.priv}
	edAsES := testKey{"ed-as-es256", "EdDSA", edKey.priv}
	offCurve := testKey{"off-curve", "ES256", mustEC(t)}
	noKid := testKey{"", "ES256", mustEC(t)}
	with := func(m map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	offCurveJWK := jwkOf(offCurve.kid, offCurve.priv.Public())
	offCurveJWK["y"] = enc(append(make([]byte, 31), 1)) // (x, 1) is not on P-256 for this x
	set := []map[string]any{
		jwkOf("ec-1", ecKey.priv.Public()),
		with(jwkOf(encKey.kid, encKey.priv.Public()), "use", "enc"),
		jwkOf("rsa-1024", rsa1024.Public()),
		with(jwkOf("p384", p384.Public()), "alg", "ES384"),
		with(jwkOf("p384-claiming-es256", p384.Public()), "crv", "P-384"),
		with(jwkOf(ecAsRS.kid, ecAsRS.priv.Public()), "alg", "RS256"),
		with(jwkOf(rsaAsES.kid, rsaAsES.priv.Public()), "alg", "ES256"),
		with(jwkOf(edAsES.kid, edAsES.priv.Public()), "alg", "ES256"),
		jwkOf(dupA.kid, dupA.priv.Public()),
		jwkOf(dupB.kid, dupB.priv.Public()),
		jwkOf(dupSame.kid, dupSame.priv.Public()),
		jwkOf(dupSame.kid, dupSame.priv.Public()),
		offCurveJWK,
		with(jwkOf("", noKid.priv.Public()), "kid", nil),
		{"kty": "oct", "kid": "hmac", "k": enc([]byte("secret")), "alg": "HS256"},
		with(jwkOf("rsa-e-even", rsaKey.priv.Public()), "e", enc([]byte{1, 0, 0, 0})),
		with(jwkOf("rsa-e-1", rsaKey.priv.Public()), "e", enc([]byte{1})),
		with(jwkOf("ec-short-x", ecKey.priv.Public()), "x", enc(make([]byte, 31))),
		with(jwkOf("ec-bad-b64", ecKey.priv.Public()), "x", "!!!"),
		with(jwkOf("ed448", edKey.priv.Public()), "crv", "Ed448"),
		with(jwkOf("kid-a-number", ecKey.priv.Public()), "kid", 7),
		{"kty": "EC", "kid": "ec-no-coords", "crv": "P-256"},
	}
	f := newJWKSFixture(t, set...)
	clock := newFixtureClock(now)
	v := f.verifier(t, clock, nil)
	mustVerify(t, v, sign(t, ecKey, nil, nil, goodClaims()))

	fake := func(alg, kid string) string {
		return manual(fmt.Sprintf(`{"alg":%q,"typ":"at+jwt","kid":%q}`, alg, kid), `{}`, make([]byte, 64))
	}
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"use enc", sign(t, encKey, nil, nil, goodClaims())},
		{"RSA 1024", sign(t, testKey{"rsa-1024", "RS256", rsa1024}, nil, nil, goodClaims())},
		{"P-384 (alg ES384)", fake("ES256", "p384")},
		{"P-384 claiming ES256", fake("ES256", "p384-claiming-es256")},
		{"EC key with alg RS256 (ES256 token)", sign(t, ecAsRS, nil, nil, goodClaims())},
		{"EC key with alg RS256 (RS256 token)", sign(t, testKey{ecAsRS.kid, "RS256", rsaKey.priv}, nil, nil, goodClaims())},
		{"RSA key with alg ES256", sign(t, rsaAsES, nil, nil, goodClaims())},
		{"OKP key with alg ES256", sign(t, edAsES, nil, nil, goodClaims())},
		{"duplicate kid, first key", sign(t, dupA, nil, nil, goodClaims())},
		{"duplicate kid, second key", sign(t, dupB, nil, nil, goodClaims())},
		{"duplicate kid, same key twice", sign(t, dupSame, nil, nil, goodClaims())},
		{"EC point not on the curve", sign(t, offCurve, nil, nil, goodClaims())},
		{"oct", fake("ES256", "hmac")},
		{"RSA even e", sign(t, testKey{"rsa-e-even", "RS256", rsaKey.priv}, nil, nil, goodClaims())},
		{"RSA e=1", fake("RS256", "rsa-e-1")},
		{"EC short x", fake("ES256", "ec-short-x")},
		{"EC x not base64url", fake("ES256", "ec-bad-b64")},
		{"Ed448", fake("EdDSA", "ed448")},
		{"EC without coordinates", fake("ES256", "ec-no-coords")},
	} {
		t.Run(tc.name, func(t *testing.T) { mustReject(t, v, tc.token, verify.ErrUnknownKey) })
	}
	wantHits(t, "JWKS", &f.jwksHits, 1)
}

// "Two keys under one kid: trust neither" must hold however many times the
// kid appears, and whatever the first of them is.
func TestJWKSDuplicateKidNeverTrusted(t *testing.T) {
	keys(t)
	a, b, c := testKey{"dup", "ES256", mustEC(t)}, testKey{"dup", "ES256", mustEC(t)}, testKey{"dup", "ES256", mustEC(t)}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string][]map[string]any{
		"three times":           {jwkOf("ec-1", ecKey.priv.Public()), jwkOf(a.kid, a.priv.Public()), jwkOf(b.kid, b.priv.Public()), jwkOf(c.kid, c.priv.Public())},
		"after an unusable key": {jwkOf("ec-1", ecKey.priv.Public()), jwkOf("dup", weak.Public()), jwkOf(c.kid, c.priv.Public())},
	} {
		t.Run(name, func(t *testing.T) {
			f := newJWKSFixture(t, set...)
			v := f.verifier(t, newFixtureClock(now), nil)
			for _, k := range []testKey{a, b, c} {
				if _, err := v.Verify(context.Background(), sign(t, k, nil, nil, goodClaims())); !errors.Is(err, verify.ErrUnknownKey) {
					t.Errorf("token under the duplicated kid: err = %v, want ErrUnknownKey (a key published under it is in use)", err)
				}
			}
		})
	}
}
