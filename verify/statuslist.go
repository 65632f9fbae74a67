package verify

// Token Status List (draft-ietf-oauth-status-list-21): a keygate access
// token may carry
//
//	"status": {"status_list": {"idx": 42, "uri": "<issuer>/statuslists/2bit/0"}}
//
// and the list at uri — a JWT of type statuslist+jwt, signed with keygate's
// token keys — holds a few bits per index; 0 means VALID, anything else
// means the token must be refused: 1 (INVALID, keygate's deleted keys and
// ended secrets) and other values with ErrRevoked, 2 (SUSPENDED, a
// suspended key, which may be resumed) with ErrSuspended.
//
// Once a token's signature and claims have checked out, Verify looks its
// index up in a cache of that list. The cache works like the key set's:
// the first token that needs a list fetches it (one fetch for all
// concurrent callers, detached from their contexts, which only bound their
// wait); the list is kept for its ttl (or Options.StatusDefaultTTL), and a
// background refresh starts at 80 % of that, so a busy verifier never sees
// it expire. Past its ttl a list is refreshed before it is used again; if
// that fails, the last good list goes on being used until ttl +
// StatusMaxStale, and then Verify fails closed with ErrStatusUnavailable
// (or, with StatusFailOpen, accepts). Fetch attempts for one list are at
// least min(MinRefreshInterval, 80 % of its ttl) apart, so an unreachable
// keygate is not hammered; an index beyond the cached list (a key newer
// than the list) causes at most one refresh per MinRefreshInterval.
//
// Only URLs under the configured issuer are ever fetched, with the
// verifier's client (no redirects), and only over https unless loopback or
// Options.Insecure. A list must be served as application/statuslist+jwt,
// be at most maxStatusListToken bytes, verify with a key of the KeySource
// under the same algorithm rules as access tokens, have typ statuslist+jwt,
// sub equal to the uri the token named, an iat not in the future, no exp in
// the past, bits 1, 2, 4 or 8, and an lst that inflates to at most
// maxStatusListBytes.

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// StatusListMediaType is the Content-Type (and Accept) of a status
	// list token; its typ header is "statuslist+jwt".
	StatusListMediaType = "application/statuslist+jwt"

	// maxStatusListToken bounds the status list token fetched (compressed
	// list, base64url twice over, plus a signature).
	maxStatusListToken = 4 << 20
	// maxStatusListBytes bounds the inflated list: 16 MiB is 134 million
	// one-bit entries. A larger list is refused without being inflated in
	// memory (a zip bomb of a few KiB could otherwise claim gigabytes).
	maxStatusListBytes = 16 << 20

	defaultStatusTTL      = 60 * time.Second
	defaultStatusMaxStale = 5 * time.Minute
	minStatusTTL          = time.Second
	maxStatusTTL          = 24 * time.Hour
	// statusStaleWait is how long a token waits for the refresh of a list
	// past its ttl when a stale list it may fall back on is held.
	statusStaleWait = time.Second
	maxStatusURILen = 2048
	// maxStatusLists bounds the lists cached (keygate serves one).
	maxStatusLists = 64

	statusValid     = 0x00
	statusSuspended = 0x02
)

// statusLists is a Verifier's cache of status lists, by uri.
type statusLists struct {
	v        *Verifier
	client   *http.Client
	issuer   *url.URL // nil when the issuer is not a URL: nothing is fetched
	prefix   string   // every status list uri starts with it
	ttl      time.Duration
	maxStale time.Duration

	mu    sync.Mutex
	lists map[string]*statusCache
}

// statusCache is one uri's list, and the fetches for it.
type statusCache struct {
	uri    string
	list   atomic.Pointer[statusList]
	flight flight
	fetch  func(context.Context) error
}

// statusList is one fetched and verified status list.
type statusList struct {
	bits       int
	data       []byte
	ttl        time.Duration
	refreshAt  time.Time // a background refresh starts
	expiresAt  time.Time // past its ttl (or exp): refresh before use
	staleUntil time.Time // last moment it may stand in while refreshes fail
}

func newStatusLists(v *Verifier, client *http.Client) *statusLists {
	s := &statusLists{
		v:        v,
		client:   client,
		prefix:   strings.TrimSuffix(v.opts.Issuer, "/") + "/",
		ttl:      v.opts.StatusDefaultTTL,
		maxStale: v.opts.StatusMaxStale,
		lists:    map[string]*statusCache{},
	}
	if u, err := url.Parse(v.opts.Issuer); err == nil && u.IsAbs() && u.Host != "" {
		s.issuer = u
	}
	if s.ttl <= 0 {
		s.ttl = defaultStatusTTL
	}
	s.ttl = clampTTL(s.ttl)
	switch {
	case s.maxStale == 0:
		s.maxStale = defaultStatusMaxStale
	case s.maxStale < 0:
		s.maxStale = 0
	}
	return s
}

func clampTTL(d time.Duration) time.Duration { return max(minStatusTTL, min(d, maxStatusTTL)) }

// check enforces the token's status claim (raw): nil when its entry is
// VALID, else an error wrapping ErrRevoked, ErrMalformed or
// ErrStatusUnavailable (see unavailable for StatusFailOpen).
func (s *statusLists) check(ctx context.Context, raw json.RawMessage) error {
	uri, idx, err := parseStatusClaim(raw)
	if err != nil {
		return err
	}
	if err := s.checkURI(uri); err != nil {
		return err
	}
	return s.lookup(ctx, uri, idx)
}

// parseStatusClaim reads {"status_list": {"idx": N, "uri": "…"}}: idx a
// non-negative JSON integer, uri a non-empty string.
func parseStatusClaim(raw json.RawMessage) (uri string, idx uint64, err error) {
	bad := func(why string) error { return fmt.Errorf("%w: status claim: %s", ErrMalformed, why) }
	var st struct {
		StatusList json.RawMessage `json:"status_list"`
	}
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &st) != nil {
		return "", 0, bad("not a JSON object")
	}
	if len(st.StatusList) == 0 || st.StatusList[0] != '{' {
		return "", 0, bad("no status_list object")
	}
	var sl struct {
		Idx json.RawMessage `json:"idx"`
		URI json.RawMessage `json:"uri"`
	}
	if err := json.Unmarshal(st.StatusList, &sl); err != nil {
		return "", 0, bad("status_list is not a JSON object")
	}
	if len(sl.Idx) == 0 {
		return "", 0, bad("no idx")
	}
	for _, c := range sl.Idx {
		if c < '0' || c > '9' {
			return "", 0, bad("idx is not a non-negative integer")
		}
	}
	idx, err = strconv.ParseUint(string(sl.Idx), 10, 64)
	if err != nil || idx >= maxStatusListBytes*8 {
		return "", 0, bad("idx beyond any status list")
	}
	if len(sl.URI) == 0 || sl.URI[0] != '"' || json.Unmarshal(sl.URI, &uri) != nil || uri == "" {
		return "", 0, bad("no uri string")
	}
	return uri, idx, nil
}

// checkURI makes sure uri is a plain URL under the issuer: nothing else is
// ever fetched, whatever a token says.
func (s *statusLists) checkURI(uri string) error {
	notUnder := func() error { return fmt.Errorf("%w: status list uri %q is not under the issuer", ErrMalformed, uri) }
	if s.issuer == nil || len(uri) > maxStatusURILen || len(uri) <= len(s.prefix) || !strings.HasPrefix(uri, s.prefix) {
		return notUnder()
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != s.issuer.Scheme || u.Host != s.issuer.Host || u.User != nil ||
		u.Opaque != "" || strings.Contains(uri, "#") || strings.Contains(uri, `\`) {
		return notUnder()
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return notUnder()
		}
	}
	if _, err := checkFetchURL("status list uri", uri, s.v.opts.Insecure); err != nil {
		// The issuer itself is plain http (possible with Options.Keys):
		// the list could be swapped on the way.
		return s.unavailable(nil, 0, fmt.Errorf("%w: %v", ErrStatusUnavailable, err))
	}
	return nil
}

// lookup finds idx in the list at uri.
func (s *statusLists) lookup(ctx context.Context, uri string, idx uint64) error {
	c, err := s.cache(uri)
	if err != nil {
		return s.unavailable(nil, idx, err)
	}
	l, err := s.current(ctx, c)
	if err != nil {
		return s.unavailable(c, idx, err)
	}
	st, ok := l.status(idx)
	if !ok {
		// Perhaps a key newer than the cached list: one refresh, at most
		// one per MinRefreshInterval however many such tokens arrive.
		if call, err := c.flight.start(s.v.opts.MinRefreshInterval, c.fetch); err == nil {
			if err := call.wait(ctx); err != nil {
				return s.unavailable(c, idx, fmt.Errorf("%w: status index %d is beyond the cached list of %s, which could not be refreshed: %v",
					ErrStatusUnavailable, idx, uri, err))
			}
		}
		l = c.list.Load()
		if st, ok = l.status(idx); !ok {
			return fmt.Errorf("%w: status index %d is outside the status list %s (%d entries)", ErrMalformed, idx, uri, l.len())
		}
	}
	if st != statusValid {
		return revoked(st, idx, uri)
	}
	return nil
}

// revoked is the refusal of a token whose entry is st (not VALID):
// ErrSuspended for SUSPENDED, ErrRevoked for INVALID and for any other
// status — 0x03 is the draft's application-specific value, which keygate
// never writes: a verifier that does not know what it means refuses.
func revoked(st byte, idx uint64, uri string) error {
	if st == statusSuspended {
		return fmt.Errorf("%w: status 0x02 at index %d of %s", ErrSuspended, idx, uri)
	}
	return fmt.Errorf("%w: status 0x%02x at index %d of %s", ErrRevoked, st, idx, uri)
}

// unavailable handles err (wrapping ErrStatusUnavailable): the status of
// idx cannot be established. Without StatusFailOpen that is the answer.
// With it the token is accepted — unless the last good list of c, however
// old, says it is revoked: failing open never brings a token back.
func (s *statusLists) unavailable(c *statusCache, idx uint64, err error) error {
	if !s.v.opts.StatusFailOpen {
		return err
	}
	if c != nil {
		if l := c.list.Load(); l != nil {
			if st, ok := l.status(idx); ok && st != statusValid {
				return revoked(st, idx, c.uri)
			}
		}
	}
	return nil
}

// cache returns uri's cache entry, creating it on first use.
func (s *statusLists) cache(uri string) (*statusCache, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.lists[uri]; ok {
		return c, nil
	}
	if len(s.lists) >= maxStatusLists {
		return nil, fmt.Errorf("%w: more than %d status lists", ErrStatusUnavailable, maxStatusLists)
	}
	c := &statusCache{uri: uri, flight: flight{now: s.v.opts.Now}}
	c.fetch = func(ctx context.Context) error { return s.fetch(ctx, c) }
	s.lists[uri] = c
	return c, nil
}

// gap is the least time between two fetch attempts for a list with l's ttl.
func (s *statusLists) gap(l *statusList) time.Duration {
	ttl := s.ttl
	if l != nil {
		ttl = l.ttl
	}
	return min(s.v.opts.MinRefreshInterval, time.Duration(float64(ttl)*refreshFraction))
}

// current returns a list for c that may be used now: fresh, or stale
// within StatusMaxStale while refreshes fail; else an error wrapping
// ErrStatusUnavailable.
func (s *statusLists) current(ctx context.Context, c *statusCache) (*statusList, error) {
	now := s.v.opts.Now()
	l := c.list.Load()
	if l != nil && now.Before(l.expiresAt) {
		if !now.Before(l.refreshAt) {
			_, _ = c.flight.start(s.gap(l), c.fetch) // in the background
		}
		return l, nil
	}
	// No list yet, or past its ttl: refresh before use.
	call, err := c.flight.start(s.gap(l), c.fetch)
	if err == nil {
		wait := ctx
		if l != nil && now.Before(l.staleUntil) {
			// A stale list may stand in: do not hold the request long.
			var cancel context.CancelFunc
			wait, cancel = context.WithTimeout(ctx, statusStaleWait)
			defer cancel()
		}
		err = call.wait(wait)
	} else if last := c.flight.lastError(); last != nil {
		err = fmt.Errorf("last attempt failed: %v (next one not yet due)", last)
	}
	now = s.v.opts.Now()
	if nl := c.list.Load(); nl != nil {
		if now.Before(nl.staleUntil) {
			return nl, nil
		}
		return nil, fmt.Errorf("%w: %s is %s past its ttl and could not be refreshed: %v",
			ErrStatusUnavailable, c.uri, now.Sub(nl.expiresAt).Round(time.Second), err)
	}
	return nil, fmt.Errorf("%w: %s could not be fetched: %v", ErrStatusUnavailable, c.uri, err)
}

// fetch gets, verifies and stores c's list (run by c.flight).
func (s *statusLists) fetch(ctx context.Context, c *statusCache) error {
	ctx, cancel := withFetchTimeout(ctx, s.client)
	defer cancel()
	body, header, err := get(ctx, s.client, c.uri, StatusListMediaType, maxStatusListToken)
	if err != nil {
		return err
	}
	if mt, _, err := mime.ParseMediaType(header.Get("Content-Type")); err != nil || mt != StatusListMediaType {
		return fmt.Errorf("GET %s: Content-Type %q, not %s", c.uri, header.Get("Content-Type"), StatusListMediaType)
	}
	l, err := s.parse(ctx, c.uri, string(bytes.TrimSpace(body)))
	if err != nil {
		return fmt.Errorf("status list from %s: %w", c.uri, err)
	}
	c.list.Store(l)
	return nil
}

// statusListClaims are the claims of a status list token.
type statusListClaims struct {
	jwt.RegisteredClaims
	// These shadow RegisteredClaims' fields, as in tokenClaims.
	Subject    string       `json:"sub"`
	IssuedAt   *numericDate `json:"iat"`
	ExpiresAt  *numericDate `json:"exp"`
	TTL        *float64     `json:"ttl"`
	StatusList *struct {
		Bits int     `json:"bits"`
		Lst  *string `json:"lst"`
	} `json:"status_list"`
}

var errNotStatusList = errors.New("typ is not statuslist+jwt")

// isStatusListType accepts "statuslist+jwt" and
// "application/statuslist+jwt", any case.
func isStatusListType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == "statuslist+jwt" || typ == "application/statuslist+jwt"
}

// parse verifies a status list token for uri and decodes its list.
func (s *statusLists) parse(ctx context.Context, uri, token string) (*statusList, error) {
	var sc statusListClaims
	if err := s.v.parseJWS(ctx, token, &sc, isStatusListType, errNotStatusList, nil); err != nil {
		return nil, err
	}
	now := s.v.opts.Now()
	leeway := s.v.opts.Leeway
	if sc.Subject != uri {
		return nil, fmt.Errorf("sub %q is not the uri the token named", sc.Subject)
	}
	if sc.IssuedAt == nil {
		return nil, errors.New("no iat")
	}
	if now.Add(leeway).Before(sc.IssuedAt.Time) {
		return nil, errors.New("issued in the future")
	}
	notAfter := now.Add(maxStatusTTL + s.maxStale) // no exp: no limit but ours
	if sc.ExpiresAt != nil {
		notAfter = sc.ExpiresAt.Add(leeway)
		if !now.Before(notAfter) {
			return nil, fmt.Errorf("expired at %s", sc.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}
	ttl := s.ttl
	if sc.TTL != nil {
		if !(*sc.TTL > 0) {
			return nil, errors.New("ttl is not a positive number")
		}
		ttl = clampTTL(time.Duration(min(*sc.TTL, maxStatusTTL.Seconds()) * float64(time.Second)))
	}
	if sc.StatusList == nil || sc.StatusList.Lst == nil {
		return nil, errors.New("no status_list with lst")
	}
	bits := sc.StatusList.Bits
	if bits != 1 && bits != 2 && bits != 4 && bits != 8 {
		return nil, fmt.Errorf("bits is %d, not 1, 2, 4 or 8", bits)
	}
	compressed, err := base64.RawURLEncoding.DecodeString(*sc.StatusList.Lst)
	if err != nil {
		return nil, fmt.Errorf("lst is not base64url: %v", err)
	}
	data, err := inflate(compressed, maxStatusListBytes)
	if err != nil {
		return nil, err
	}
	expiresAt := now.Add(ttl)
	if notAfter.Before(expiresAt) {
		expiresAt = notAfter
	}
	staleUntil := expiresAt.Add(s.maxStale)
	if notAfter.Before(staleUntil) {
		staleUntil = notAfter
	}
	return &statusList{
		bits:       bits,
		data:       data,
		ttl:        ttl,
		refreshAt:  now.Add(time.Duration(float64(expiresAt.Sub(now)) * refreshFraction)),
		expiresAt:  expiresAt,
		staleUntil: staleUntil,
	}, nil
}

// inflate decompresses a zlib stream of at most limit bytes. It counts
// first and allocates only for a list within the limit, so a bomb costs a
// bounded amount of CPU and no memory.
func inflate(compressed []byte, limit int64) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("lst is not zlib: %v", err)
	}
	defer zr.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("lst does not inflate: %v", err)
	}
	if n > limit {
		return nil, fmt.Errorf("lst inflates to over %d bytes", limit)
	}
	if err := zr.(zlib.Resetter).Reset(bytes.NewReader(compressed), nil); err != nil {
		return nil, fmt.Errorf("lst is not zlib: %v", err)
	}
	out := make([]byte, n)
	if _, err := io.ReadFull(zr, out); err != nil {
		return nil, fmt.Errorf("lst does not inflate: %v", err)
	}
	return out, nil
}

// len is the number of entries in the list.
func (l *statusList) len() uint64 { return uint64(len(l.data)) * 8 / uint64(l.bits) }

// status is entry idx: bits bits of byte idx*bits/8, the first entry of a
// byte in its least significant bits.
func (l *statusList) status(idx uint64) (byte, bool) {
	if idx >= l.len() {
		return 0, false
	}
	perByte := uint64(8 / l.bits)
	shift := (idx % perByte) * uint64(l.bits)
	return l.data[idx/perByte] >> shift & (0xff >> (8 - l.bits)), true
}
