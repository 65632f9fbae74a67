package verify

// Where verification keys come from when they are not handed in: the
// issuer's RFC 8414 metadata names the JWKS, and a cache keeps the key set.
//
// The cache is lazy — no goroutine, nothing to close. Verify reads the
// current key set from an atomic pointer. Once the set passes its refresh
// time (80 % of its lifetime) a Verify call starts one background refresh
// and goes on with the keys it has; past expiry the old set keeps being
// served, while refreshes are retried, until MaxStale; after that Verify
// fails closed. An unknown kid starts at most one refresh per
// MinRefreshInterval (single flight), so random kids cannot make a verifier
// hammer keygate.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Cache bounds: a JWKS max-age is clamped into [minCacheTTL, maxCacheTTL],
// and a response without one is kept defaultCacheTTL.
const (
	minCacheTTL     = 30 * time.Second
	maxCacheTTL     = 24 * time.Hour
	defaultCacheTTL = 5 * time.Minute
	// refreshFraction of the lifetime has passed when a background refresh
	// starts, so a busy verifier never sees the set expire.
	refreshFraction = 0.8
	maxDocumentSize = 1 << 20
	minRSABits      = 2048
)

// fetchTimeout bounds one metadata or JWKS request when the HTTP client has
// no timeout of its own.
const fetchTimeout = 10 * time.Second

// checkFetchURL allows https, and http only for loopback hosts or when the
// operator said Insecure: keys fetched in the clear could be swapped.
func checkFetchURL(what, raw string, insecure bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil, fmt.Errorf("verify: %s %q is not an absolute URL", what, raw)
	}
	switch u.Scheme {
	case "https":
		return u, nil
	case "http":
		if insecure || isLoopback(u.Hostname()) {
			return u, nil
		}
		return nil, fmt.Errorf("verify: %s %q must use https (http is allowed only on loopback or with Options.Insecure)", what, raw)
	default:
		return nil, fmt.Errorf("verify: %s %q must use https", what, raw)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// metadataURL is RFC 8414 §3.1: the well-known segment goes between the
// host and any path of the issuer.
func metadataURL(issuer *url.URL) string {
	u := *issuer
	u.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(issuer.Path, "/")
	u.RawPath = ""
	return u.String()
}

// remoteKeys is a KeySource backed by a JWKS URL.
type remoteKeys struct {
	url         string
	client      *http.Client
	now         func() time.Time
	minInterval time.Duration
	maxStale    time.Duration // < 0: never fail closed

	set    atomic.Pointer[keySet]
	flight flight
	// gen counts changes of the key set (a kid added, withdrawn or given
	// another key): the token cache empties itself when it moves.
	gen atomic.Uint64
}

func (r *remoteKeys) keyGeneration() uint64 { return r.gen.Load() }

// sameKeys reports whether two key sets hold the same kids with the same
// keys and algorithms.
func sameKeys(a, b *keySet) bool {
	if a == nil || b == nil || len(a.keys) != len(b.keys) {
		return false
	}
	for kid, k := range a.keys {
		o, ok := b.keys[kid]
		if !ok || o.alg != k.alg || !sameKey(k.key, o.key) {
			return false
		}
	}
	return true
}

// keySet is one fetched JWKS.
type keySet struct {
	keys      map[string]publicKey
	fetchedAt time.Time
	refreshAt time.Time
	expiresAt time.Time
}

type publicKey struct {
	key crypto.PublicKey
	alg string
}

// VerificationKey implements KeySource.
func (r *remoteKeys) VerificationKey(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	now := r.now()
	set := r.set.Load()
	switch {
	case set == nil:
		if err := r.refresh(ctx, true); err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
		}
		set = r.set.Load()
	case r.maxStale >= 0 && now.After(set.expiresAt.Add(r.maxStale)):
		// Too stale to trust: refresh now (rate-limited, so an outage does
		// not turn every request into a fetch) or fail closed.
		if err := r.refresh(ctx, false); err != nil {
			return nil, "", fmt.Errorf("%w: key set expired %s ago and could not be refreshed: %v",
				ErrKeysUnavailable, now.Sub(set.expiresAt).Round(time.Second), err)
		}
		set = r.set.Load()
	case now.After(set.refreshAt):
		r.refreshInBackground()
	}
	if k, ok := set.keys[kid]; ok {
		return k.key, k.alg, nil
	}
	if !plausibleKID(kid) {
		return nil, "", ErrUnknownKey
	}
	// Perhaps keygate published a new key since: refresh, rate-limited.
	if err := r.refresh(ctx, false); err != nil && !errors.Is(err, errTooSoon) {
		return nil, "", fmt.Errorf("%w (refreshing the key set failed: %v)", ErrUnknownKey, err)
	}
	if k, ok := r.set.Load().keys[kid]; ok {
		return k.key, k.alg, nil
	}
	return nil, "", ErrUnknownKey
}

// plausibleKID: a kid worth a refresh. Anything else (paths, quotes, SQL,
// kilobytes of junk) is simply unknown.
func plausibleKID(kid string) bool {
	if kid == "" || len(kid) > 128 {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

var errTooSoon = errors.New("refreshed too recently")

// refresh fetches the JWKS once for all concurrent callers. Unless force,
// it refuses to start a fetch within minInterval of the previous attempt.
// The fetch itself runs detached from ctx (other callers may be waiting for
// it); ctx only bounds how long this caller waits.
func (r *remoteKeys) refresh(ctx context.Context, force bool) error {
	gap := r.minInterval
	if force {
		gap = 0
	}
	call, err := r.flight.start(gap, r.fetchAndStore)
	if err != nil {
		return err
	}
	return call.wait(ctx)
}

// refreshInBackground starts a refresh unless one runs or ran recently.
func (r *remoteKeys) refreshInBackground() {
	_, _ = r.flight.start(r.minInterval, r.fetchAndStore)
}

func (r *remoteKeys) fetchAndStore(ctx context.Context) error {
	set, err := r.fetch(ctx)
	if err == nil {
		if old := r.set.Swap(set); old != nil && !sameKeys(old, set) {
			r.gen.Add(1)
		}
	}
	return err
}

// flight runs one fetch at a time for every caller that needs it, and
// rate-limits fetch attempts. The fetch runs detached from the callers'
// contexts (others may be waiting for it, and a result is worth keeping
// even if the caller that started it has gone); each caller's ctx bounds
// only its own wait. The key set and every status list have one each.
type flight struct {
	now func() time.Time

	mu          sync.Mutex
	inflight    *refreshCall
	lastAttempt time.Time
	lastErr     error // of the last finished attempt
}

type refreshCall struct {
	done chan struct{}
	err  error
}

// start joins the fetch that is running, or starts fetch, unless the last
// attempt began less than gap ago (errTooSoon). fetch must store its result
// before returning: once the call is done, callers look for it.
func (f *flight) start(gap time.Duration, fetch func(context.Context) error) (*refreshCall, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inflight != nil {
		return f.inflight, nil
	}
	if gap > 0 && f.now().Sub(f.lastAttempt) < gap {
		return nil, errTooSoon
	}
	call := &refreshCall{done: make(chan struct{})}
	f.inflight = call
	f.lastAttempt = f.now()
	go func() {
		err := fetch(context.Background())
		call.err = err
		f.mu.Lock()
		f.inflight = nil
		f.lastErr = err
		f.mu.Unlock()
		close(call.done)
	}()
	return call, nil
}

// lastError is the error of the last finished attempt, nil if it worked.
func (f *flight) lastError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// wait returns the fetch's error once it is done, or ctx's if that ends
// first (the fetch goes on).
func (c *refreshCall) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *remoteKeys) fetch(ctx context.Context) (*keySet, error) {
	ctx, cancel := withFetchTimeout(ctx, r.client)
	defer cancel()
	body, header, err := get(ctx, r.client, r.url, "application/json", maxDocumentSize)
	if err != nil {
		return nil, err
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS from %s: %w", r.url, err)
	}
	now := r.now()
	ttl := cacheTTL(header.Get("Cache-Control"))
	return &keySet{
		keys:      keys,
		fetchedAt: now,
		refreshAt: now.Add(time.Duration(float64(ttl) * refreshFraction)),
		expiresAt: now.Add(ttl),
	}, nil
}

func withFetchTimeout(ctx context.Context, c *http.Client) (context.Context, context.CancelFunc) {
	if c.Timeout > 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, fetchTimeout)
}

// get fetches a document, refusing redirects (a key or status list
// location is configuration, not something to be sent elsewhere from) and
// anything but 200, and reading at most limit bytes.
func get(ctx context.Context, c *http.Client, u, accept string, limit int64) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("GET %s: document over %d bytes", u, limit)
	}
	return body, resp.Header, nil
}

// fetchClient is the client for metadata, keys and status lists: a copy of
// the caller's, or one with a timeout of fetchTimeout; either way it never
// follows a redirect, since a redirect could lead off https.
func fetchClient(caller *http.Client) *http.Client {
	var c http.Client
	if caller != nil {
		c = *caller // the caller's client stays as it is
	} else {
		c.Timeout = fetchTimeout
	}
	c.CheckRedirect = noRedirects
	return &c
}

// noRedirects is the CheckRedirect of the default client.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// cacheTTL reads max-age from Cache-Control, clamped to sane bounds;
// no-store/no-cache mean the minimum.
func cacheTTL(cc string) time.Duration {
	ttl := defaultCacheTTL
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return minCacheTTL
		case strings.HasPrefix(d, "max-age="):
			if n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(maxCacheTTL/time.Second))) * time.Second
			}
		}
	}
	return max(minCacheTTL, min(ttl, maxCacheTTL))
}

// discover reads the issuer's RFC 8414 metadata and returns its jwks_uri,
// after checking that the metadata speaks for this issuer (§3.3).
func discover(ctx context.Context, c *http.Client, issuer *url.URL, insecure bool) (string, error) {
	ctx, cancel := withFetchTimeout(ctx, c)
	defer cancel()
	body, _, err := get(ctx, c, metadataURL(issuer), "application/json", maxDocumentSize)
	if err != nil {
		return "", fmt.Errorf("verify: discover keys: %w", err)
	}
	var md struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &md); err != nil {
		return "", fmt.Errorf("verify: discover keys: metadata is not JSON: %w", err)
	}
	if md.Issuer != issuer.String() {
		return "", fmt.Errorf("verify: discover keys: metadata names issuer %q, not %q (RFC 8414 §3.3)", md.Issuer, issuer.String())
	}
	if md.JWKSURI == "" {
		return "", errors.New("verify: discover keys: metadata has no jwks_uri")
	}
	if _, err := checkFetchURL("jwks_uri", md.JWKSURI, insecure); err != nil {
		return "", err
	}
	return md.JWKSURI, nil
}

// jwk holds the members of a JWK this package reads.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	KID string `json:"kid"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// parseJWKS returns the usable signature keys of a JWKS by kid. Keys this
// package cannot or must not use (encryption keys, unknown types, weak RSA,
// an alg that does not fit the key) are skipped, not fatal: a JWKS may hold
// more than keygate's keys. A set with no usable key is an error.
func parseJWKS(body []byte) (map[string]publicKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	out := make(map[string]publicKey, len(doc.Keys))
	seen := make(map[string]bool, len(doc.Keys))
	for _, raw := range doc.Keys {
		var k jwk
		if json.Unmarshal(raw, &k) != nil || k.KID == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if seen[k.KID] {
			// Two keys under one kid: trust neither (however many there
			// are, and whether or not the first was usable).
			delete(out, k.KID)
			continue
		}
		seen[k.KID] = true
		if pk, ok := k.publicKey(); ok {
			out[k.KID] = pk
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no usable signature key")
	}
	return out, nil
}

func (k jwk) publicKey() (publicKey, bool) {
	b64 := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "EC":
		if k.Crv != "P-256" || (k.Alg != "" && k.Alg != "ES256") {
			return publicKey{}, false
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return publicKey{}, false
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil { // not on the curve
			return publicKey{}, false
		}
		return publicKey{key: pub, alg: "ES256"}, true
	case "RSA":
		if k.Alg != "" && k.Alg != "RS256" {
			return publicKey{}, false
		}
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return publicKey{}, false
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
			return publicKey{}, false
		}
		return publicKey{key: pub, alg: "RS256"}, true
	case "OKP":
		if k.Crv != "Ed25519" || (k.Alg != "" && k.Alg != "EdDSA" && k.Alg != "Ed25519") {
			return publicKey{}, false
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return publicKey{}, false
		}
		return publicKey{key: ed25519.PublicKey(x), alg: "EdDSA"}, true
	}
	return publicKey{}, false
}
