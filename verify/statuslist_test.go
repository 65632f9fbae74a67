package verify_test

// Token Status List enforcement (draft-ietf-oauth-status-list-21), against
// a stand-in keygate on loopback that serves metadata, the JWKS and a
// signed status list at /statuslists/1, counting every request. Time is
// the injected clock, which the list cache uses too; the list's iat is
// taken from the same clock.

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
)

// ---------------------------------------------------------------------------
// Encoding, independently of the package: statuses → bytes → zlib →
// base64url, and back.

// packStatuses lays out one status per index, bits bits each, the first
// index of a byte in its least significant bits (draft §4.1).
func packStatuses(statuses []byte, bits int) []byte {
	per := 8 / bits
	out := make([]byte, (len(statuses)+per-1)/per)
	for i, s := range statuses {
		out[i/per] |= s << (uint(i%per) * uint(bits))
	}
	return out
}

// unpackStatuses is the inverse of packStatuses, for n statuses.
func unpackStatuses(data []byte, bits, n int) []byte {
	per := 8 / bits
	out := make([]byte, n)
	for i := range out {
		out[i] = data[i/per] >> (uint(i%per) * uint(bits)) & (1<<bits - 1)
	}
	return out
}

// zlibFixedLiterals is zlib (RFC 1950, best-compression header) around one
// final fixed-Huffman DEFLATE block of literals only (RFC 1951 §3.2.6):
// what zlib emits for inputs as short as the draft's examples, so it
// reproduces their lst exactly. (Go's compress/zlib adds a sync-flush
// block, so its bytes differ while meaning the same.)
func zlibFixedLiterals(data []byte) []byte {
	out := []byte{0x78, 0xda}
	var acc uint32
	var n uint
	put := func(v uint32, bits uint) { // DEFLATE packs bits LSB first
		acc |= v << n
		n += bits
		for n >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			n -= 8
		}
	}
	code := func(c uint32, bits uint) { // Huffman codes go MSB first
		var r uint32
		for i := uint(0); i < bits; i++ {
			r = r<<1 | c>>i&1
		}
		put(r, bits)
	}
	put(1, 1) // BFINAL
	put(1, 2) // BTYPE 01: fixed Huffman codes
	for _, b := range data {
		if b < 144 {
			code(0x30+uint32(b), 8)
		} else {
			code(0x190+uint32(b)-144, 9)
		}
	}
	code(0, 7) // end of block
	if n > 0 {
		out = append(out, byte(acc))
	}
	return binary.BigEndian.AppendUint32(out, adler32.Checksum(data))
}

// inflateLst decodes an lst with nothing but the standard library.
func inflateLst(t testing.TB, lst string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(lst)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lstOf is how the stand-in keygate encodes a list (Go's zlib).
func lstOf(packed []byte) string {
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	zw.Write(packed)
	zw.Close()
	return base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

// The draft's examples, both ways: statuses → bytes → zlib → base64url
// gives exactly the draft's lst, and the draft's lst decodes, with
// compress/zlib alone, to the draft's statuses.
func TestStatusListDraftVectors(t *testing.T) {
	for _, tc := range []struct {
		bits     int
		statuses []byte
		bytes    []byte
		lst      string
	}{
		{1, []byte{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}, []byte{0xb9, 0xa3}, "eNrbuRgAAhcBXQ"},
		{2, []byte{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3}, []byte{0xc9, 0x44, 0xf9}, "eNo76fITAAPfAgc"},
	} {
		t.Run(fmt.Sprintf("%d bits", tc.bits), func(t *testing.T) {
			packed := packStatuses(tc.statuses, tc.bits)
			if !bytes.Equal(packed, tc.bytes) {
				t.Fatalf("packed % x, want % x", packed, tc.bytes)
			}
			if got := base64.RawURLEncoding.EncodeToString(zlibFixedLiterals(packed)); got != tc.lst {
				t.Fatalf("lst %q, want the draft's %q", got, tc.lst)
			}
			decoded := inflateLst(t, tc.lst)
			if !bytes.Equal(decoded, tc.bytes) {
				t.Fatalf("draft lst inflates to % x, want % x", decoded, tc.bytes)
			}
			if got := unpackStatuses(decoded, tc.bits, len(tc.statuses)); !bytes.Equal(got, tc.statuses) {
				t.Fatalf("statuses %v, want %v", got, tc.statuses)
			}
			// Go's own zlib output differs in bytes but not in meaning.
			if got := inflateLst(t, lstOf(packed)); !bytes.Equal(got, tc.bytes) {
				t.Fatalf("Go zlib round trip: % x", got)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// The stand-in keygate.

const statusPath = "/statuslists/1"

type statusFixture struct {
	srv   *httptest.Server
	clock *fixtureClock
	// Requests as they arrive (before any hang).
	metaHits, jwksHits, listHits, otherHits atomic.Int64

	mu          sync.Mutex
	statuses    []byte
	bits        int
	ttl         any // the ttl claim; nil leaves it out
	lst         *string
	signer      testKey
	header      map[string]any        // header changes; a nil value deletes
	claims      func(c jwt.MapClaims) // last changes to the list's claims
	body        []byte                // served instead of a fresh token
	contentType string
	status      int // non-zero: answer this instead
	delay       time.Duration
	hang        chan struct{}
	redirect    bool // answer 302 to /elsewhere, which serves the list
}

func newStatusFixture(t testing.TB, statuses []byte) *statusFixture {
	t.Helper()
	keys(t)
	f := &statusFixture{
		clock:       newFixtureClock(now),
		statuses:    statuses,
		bits:        1,
		ttl:         60,
		signer:      ecKey,
		contentType: verify.StatusListMediaType,
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close) // registered first: runs after any release
	return f
}

func (f *statusFixture) uri() string { return f.srv.URL + statusPath }

func (f *statusFixture) set(change func(f *statusFixture)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *statusFixture) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case wellKnownMetadata:
		f.metaHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/jwks.json"})
	case "/jwks.json":
		f.jwksHits.Add(1)
		w.Header().Set("Cache-Control", "max-age=86400")
		w.Header().Set("Content-Type", "application/jwk-set+json")
		json.NewEncoder(w).Encode(map[string]any{"keys": stdJWKS()})
	case statusPath:
		f.listHits.Add(1)
		f.mu.Lock()
		redirect := f.redirect
		f.mu.Unlock()
		if redirect {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		f.serveList(w, r)
	case "/elsewhere":
		f.otherHits.Add(1)
		f.serveList(w, r)
	default:
		f.otherHits.Add(1)
		http.NotFound(w, r)
	}
}

func (f *statusFixture) serveList(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Accept") != verify.StatusListMediaType {
		http.Error(w, "Accept "+r.Header.Get("Accept"), http.StatusNotAcceptable)
		return
	}
	f.mu.Lock()
	hang, delay, status, ct, body := f.hang, f.delay, f.status, f.contentType, f.body
	var err error
	if body == nil {
		var tok string
		tok, err = f.listTokenLocked()
		body = []byte(tok)
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
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if status != 0 {
		http.Error(w, "keygate is having a bad day", status)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Write(body)
}

// listTokenLocked signs the list as it stands, iat now; f.mu is held.
func (f *statusFixture) listTokenLocked() (string, error) {
	iat := f.clock.Now()
	lst := lstOf(packStatuses(f.statuses, f.bits))
	if f.lst != nil {
		lst = *f.lst
	}
	claims := jwt.MapClaims{
		"sub":         f.uri(),
		"iat":         iat.Unix(),
		"exp":         iat.Add(time.Hour).Unix(),
		"status_list": map[string]any{"bits": f.bits, "lst": lst},
	}
	if f.ttl != nil {
		claims["ttl"] = f.ttl
	}
	if f.claims != nil {
		f.claims(claims)
	}
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(f.signer.alg), claims)
	tok.Header["typ"] = "statuslist+jwt"
	tok.Header["kid"] = f.signer.kid
	for name, v := range f.header {
		if v == nil {
			delete(tok.Header, name)
		} else {
			tok.Header[name] = v
		}
	}
	return tok.SignedString(f.signer.priv)
}

// hangList makes list requests wait until release (at the latest when the
// test ends, before the server closes).
func (f *statusFixture) hangList(t testing.TB) (release func()) {
	ch := make(chan struct{})
	f.set(func(f *statusFixture) { f.hang = ch })
	release = sync.OnceFunc(func() {
		f.set(func(f *statusFixture) {
			if f.hang == ch {
				f.hang = nil
			}
		})
		close(ch)
	})
	t.Cleanup(release)
	return release
}

// verifier discovers the keys from f, on f's clock.
func (f *statusFixture) verifier(t testing.TB, mod func(*verify.Options)) *verify.Verifier {
	t.Helper()
	o := verify.Options{Issuer: f.srv.URL, Audience: audience, Now: f.clock.Now}
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

// token is a valid access token of f for status index idx (any JSON).
func (f *statusFixture) token(t testing.TB, idx any) string {
	return f.tokenFor(t, map[string]any{"status_list": map[string]any{"idx": idx, "uri": f.uri()}})
}

// tokenFor is a valid access token of f with status claim status (nil:
// none).
func (f *statusFixture) tokenFor(t testing.TB, status any) string {
	t.Helper()
	c := longClaims()
	c["iss"] = f.srv.URL
	if status != nil {
		c["status"] = status
	}
	return sign(t, ecKey, nil, nil, c)
}

// mustRefuse is mustReject for the status reasons too.
func mustRefuse(t testing.TB, v *verify.Verifier, token string, want error) error {
	t.Helper()
	c, err := v.Verify(context.Background(), token)
	if err == nil {
		t.Fatalf("accepted: %+v", c)
	}
	if c != nil {
		t.Fatalf("returned claims alongside error %v", err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q, want errors.Is %q", err, want)
	}
	n := 0
	for _, r := range slices.Concat(reasons, []error{verify.ErrRevoked, verify.ErrSuspended, verify.ErrStatusUnavailable}) {
		if errors.Is(err, r) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %q wraps %d reasons, want exactly 1", err, n)
	}
	return err
}

// statuses16 is the draft's 1-bit example: 0, 3, 4, 5, 7, 8, 9, 13 and 15
// are revoked.
func statuses16() []byte { return []byte{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1} }

// ---------------------------------------------------------------------------
// Enforcement.

// A token is accepted while its entry is 0 and refused with ErrRevoked
// otherwise; a change to the list shows once its ttl (1 s) has passed, and
// not before; a background refresh starts at 80 % of the ttl.
func TestStatusListEnforced(t *testing.T) {
	st := statuses16()
	f := newStatusFixture(t, st)
	f.set(func(f *statusFixture) { f.ttl = 1 })
	v := f.verifier(t, nil)
	wantHits(t, "status list after New", &f.listHits, 0)

	mustVerify(t, v, f.tokenFor(t, nil)) // no status claim: as before
	wantHits(t, "status list for a token without status", &f.listHits, 0)
	for i, s := range st {
		if s == 0 {
			mustVerify(t, v, f.token(t, i))
		} else {
			mustRefuse(t, v, f.token(t, i), verify.ErrRevoked)
		}
	}
	wantHits(t, "status list", &f.listHits, 1)

	f.set(func(f *statusFixture) { f.statuses[6] = 1 }) // idx 6 deleted
	f.clock.Advance(500 * time.Millisecond)
	mustVerify(t, v, f.token(t, 6)) // within the ttl: the cached list
	wantHits(t, "status list within its ttl", &f.listHits, 1)

	f.clock.Advance(500 * time.Millisecond) // the ttl has passed
	err := mustRefuse(t, v, f.token(t, 6), verify.ErrRevoked)
	if verify.Reason(err) != "token revoked (status list)" {
		t.Fatalf("Reason = %q", verify.Reason(err))
	}
	wantHits(t, "status list past its ttl", &f.listHits, 2)
	mustVerify(t, v, f.token(t, 1)) // other tokens are fine
	mustVerify(t, v, f.token(t, 14))
	mustRefuse(t, v, f.token(t, 0), verify.ErrRevoked)
	wantHits(t, "status list", &f.listHits, 2)

	// 80 % into the new list's ttl, a verification starts a background
	// refresh and goes on with the list it has.
	f.set(func(f *statusFixture) { f.statuses[10] = 1 })
	f.clock.Advance(850 * time.Millisecond)
	mustVerify(t, v, f.token(t, 10))
	eventually(t, "the refreshed list", func() bool {
		_, err := v.Verify(context.Background(), f.token(t, 10))
		return errors.Is(err, verify.ErrRevoked)
	})
	wantHits(t, "status list after the background refresh", &f.listHits, 3)
	wantHits(t, "other requests", &f.otherHits, 0)
}

// Lists of 2, 4 and 8 bits per entry: any non-zero status refuses the
// token — SUSPENDED (0x02) with ErrSuspended, INVALID and every other
// value (application-specific ones included) with ErrRevoked.
func TestStatusListWiderEntries(t *testing.T) {
	for _, bits := range []int{2, 4, 8} {
		t.Run(fmt.Sprintf("%d bits", bits), func(t *testing.T) {
			st := make([]byte, 64)
			for i := range st {
				st[i] = byte(i*7+i/3) & (1<<bits - 1)
			}
			st[0], st[len(st)-1] = 0, 1<<bits-1
			f := newStatusFixture(t, st)
			f.set(func(f *statusFixture) { f.bits = bits })
			v := f.verifier(t, nil)
			for i, s := range st {
				if s == 0 {
					mustVerify(t, v, f.token(t, i))
				} else {
					want := verify.ErrRevoked
					if s == 0x02 {
						want = verify.ErrSuspended
					}
					err := mustRefuse(t, v, f.token(t, i), want)
					if errors.Is(err, verify.ErrRevoked) && errors.Is(err, verify.ErrSuspended) {
						t.Fatalf("idx %d: %v is both revoked and suspended", i, err)
					}
					if want := fmt.Sprintf("status 0x%02x at index %d", s, i); !strings.Contains(err.Error(), want) {
						t.Fatalf("idx %d: %v, want it to say %q", i, err, want)
					}
				}
			}
			wantHits(t, "status list", &f.listHits, 1)
		})
	}
}

// The draft's own 2-bit lst, served as it is, through a verifier.
func TestStatusListDraftTwoBitListServed(t *testing.T) {
	f := newStatusFixture(t, nil)
	lst := "eNo76fITAAPfAgc"
	f.set(func(f *statusFixture) { f.bits, f.lst = 2, &lst })
	v := f.verifier(t, nil)
	for i, s := range []byte{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3} {
		switch s {
		case 0:
			mustVerify(t, v, f.token(t, i))
		case 2:
			mustRefuse(t, v, f.token(t, i), verify.ErrSuspended)
		default:
			mustRefuse(t, v, f.token(t, i), verify.ErrRevoked)
		}
	}
	mustRefuse(t, v, f.token(t, 12), verify.ErrMalformed) // three bytes: 12 entries
}

// IgnoreStatus: no list is fetched, revoked and even malformed status
// claims are accepted.
func TestStatusListIgnored(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	v := f.verifier(t, func(o *verify.Options) { o.IgnoreStatus = true })
	mustVerify(t, v, f.token(t, 0))
	mustVerify(t, v, f.token(t, 1))
	mustVerify(t, v, f.token(t, -1))
	mustVerify(t, v, f.tokenFor(t, "junk"))
	mustVerify(t, v, f.tokenFor(t, map[string]any{"status_list": map[string]any{"idx": 0, "uri": "https://evil.example/l"}}))
	wantHits(t, "status list", &f.listHits, 0)
	wantHits(t, "other requests", &f.otherHits, 0)
}

// Only a token that verified completely can cause a fetch: expired,
// foreign-audience or badly signed tokens naming a list fetch nothing.
func TestStatusListFetchedOnlyAfterVerification(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	v := f.verifier(t, nil)
	status := map[string]any{"status_list": map[string]any{"idx": 1, "uri": f.uri()}}
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := longClaims()
		c["iss"] = f.srv.URL
		c["status"] = status
		mod(c)
		return c
	}
	mustRefuse(t, v, sign(t, ecKey, nil, nil, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), verify.ErrExpired)
	mustRefuse(t, v, sign(t, ecKey, nil, nil, claims(func(c jwt.MapClaims) { c["aud"] = "https://other.example" })), verify.ErrWrongAudience)
	mustRefuse(t, v, sign(t, ecKey, nil, nil, claims(func(c jwt.MapClaims) { delete(c, "jti") })), verify.ErrMissingClaim)
	forged := sign(t, testKey{"ec-1", "ES256", mustEC(t)}, nil, nil, claims(func(jwt.MapClaims) {}))
	mustRefuse(t, v, forged, verify.ErrSignature)
	wantHits(t, "status list", &f.listHits, 0)
	mustVerify(t, v, sign(t, ecKey, nil, nil, claims(func(jwt.MapClaims) {})))
	wantHits(t, "status list", &f.listHits, 1)
}

// Status claims keygate would never issue are malformed, and fetch nothing.
func TestStatusClaimMalformed(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	v := f.verifier(t, nil)
	uri := f.uri()
	list := func(sl any) any { return map[string]any{"status_list": sl} }
	for name, status := range map[string]any{
		"null":                json.RawMessage(`null`),
		"string":              "revoked",
		"array":               []any{1},
		"no status_list":      map[string]any{"identifier_list": map[string]any{"id": "1", "uri": uri}},
		"status_list null":    list(nil),
		"status_list array":   list([]any{1, uri}),
		"status_list string":  list(uri),
		"no idx":              list(map[string]any{"uri": uri}),
		"idx null":            list(map[string]any{"idx": nil, "uri": uri}),
		"idx negative":        list(map[string]any{"idx": -1, "uri": uri}),
		"idx fraction":        list(map[string]any{"idx": 1.5, "uri": uri}),
		"idx exponent":        list(map[string]any{"idx": json.RawMessage(`1e1`), "uri": uri}),
		"idx 1.0":             list(map[string]any{"idx": json.RawMessage(`1.0`), "uri": uri}),
		"idx -0":              list(map[string]any{"idx": json.RawMessage(`-0`), "uri": uri}),
		"idx string":          list(map[string]any{"idx": "1", "uri": uri}),
		"idx bool":            list(map[string]any{"idx": true, "uri": uri}),
		"idx over uint64":     list(map[string]any{"idx": json.RawMessage(`18446744073709551616`), "uri": uri}),
		"idx beyond any list": list(map[string]any{"idx": int64(1) << 40, "uri": uri}),
		"no uri":              list(map[string]any{"idx": 1}),
		"uri empty":           list(map[string]any{"idx": 1, "uri": ""}),
		"uri number":          list(map[string]any{"idx": 1, "uri": 7}),
		"uri null":            list(map[string]any{"idx": 1, "uri": nil}),
		"uri object":          list(map[string]any{"idx": 1, "uri": map[string]any{"href": uri}}),
	} {
		t.Run(name, func(t *testing.T) {
			mustRefuse(t, v, f.tokenFor(t, status), verify.ErrMalformed)
		})
	}
	wantHits(t, "status list", &f.listHits, 0)
}

// countingTransport records every request a verifier makes.
type countingTransport struct {
	mu   sync.Mutex
	urls []string
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.urls = append(c.urls, r.URL.String())
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.urls)
}

// A status uri anywhere but under the issuer is refused without a request
// — another host, look-alike prefixes, userinfo, dot segments, fragments.
func TestStatusListForeignURINotFetched(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	var evilHits atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Add(1)
		http.NotFound(w, r)
	}))
	defer evil.Close()
	ct := &countingTransport{}
	v := f.verifier(t, func(o *verify.Options) { o.HTTPClient = &http.Client{Transport: ct} })
	startup := len(ct.seen()) // metadata and JWKS
	iss := f.srv.URL
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	for _, uri := range []string{
		evil.URL + statusPath,
		iss + ".evil.example" + statusPath,
		iss + "@" + evilHost + statusPath,
		strings.Replace(iss, "127.0.0.1", "localhost", 1) + statusPath,
		strings.Replace(iss, "http://", "https://", 1) + statusPath,
		strings.Replace(iss, "http://", "HTTP://", 1) + statusPath,
		iss,
		iss + "/",
		iss + "evil" + statusPath,
		iss + "0" + statusPath, // another port
		iss + "/../statuslists/1",
		iss + "/statuslists/../../x",
		iss + "/statuslists/%2e%2e/1",
		iss + "/./statuslists/1",
		iss + statusPath + "#x",
		iss + `/statuslists\1`,
		iss + "/" + strings.Repeat("a", 2100),
		"//" + evilHost + statusPath,
		statusPath,
		"urn:statuslist:1",
		"file:///etc/passwd",
		"javascript:alert(1)",
	} {
		t.Run(uri[:min(len(uri), 60)], func(t *testing.T) {
			mustRefuse(t, v, f.tokenFor(t, map[string]any{"status_list": map[string]any{"idx": 1, "uri": uri}}), verify.ErrMalformed)
		})
	}
	wantHits(t, "the evil server", &evilHits, 0)
	wantHits(t, "status list", &f.listHits, 0)
	if seen := ct.seen(); len(seen) != startup {
		t.Fatalf("requests after start-up: %v", seen[startup:])
	}
	// The real one is fetched, with the verifier's client.
	mustVerify(t, v, f.token(t, 1))
	if seen := ct.seen(); len(seen) != startup+1 || seen[startup] != f.uri() {
		t.Fatalf("requests after start-up: %v", seen[startup:])
	}
}

// Lists that must not be trusted: the token is refused with
// ErrStatusUnavailable (fail closed); with StatusFailOpen it is accepted.
// The token's entry is 1 in every served list, so trusting any of them
// would refuse it with ErrRevoked instead.
func TestStatusListBadLists(t *testing.T) {
	keys(t)
	notZlib := base64.RawURLEncoding.EncodeToString([]byte("not zlib at all"))
	badChecksum := func() string {
		raw, _ := base64.RawURLEncoding.DecodeString(lstOf(packStatuses(statuses16(), 1)))
		raw[len(raw)-1] ^= 1
		return base64.RawURLEncoding.EncodeToString(raw)
	}()
	claim := func(name string, v any) func(*statusFixture) {
		return func(f *statusFixture) {
			f.claims = func(c jwt.MapClaims) {
				if v == nil {
					delete(c, name)
				} else {
					c[name] = v
				}
			}
		}
	}
	listClaim := func(name string, v any) func(*statusFixture) {
		return func(f *statusFixture) {
			f.claims = func(c jwt.MapClaims) { c["status_list"].(map[string]any)[name] = v }
		}
	}
	cases := map[string]func(f *statusFixture){
		"typ at+jwt":           func(f *statusFixture) { f.header = map[string]any{"typ": "at+jwt"} },
		"typ jwt":              func(f *statusFixture) { f.header = map[string]any{"typ": "JWT"} },
		"no typ":               func(f *statusFixture) { f.header = map[string]any{"typ": nil} },
		"crit header":          func(f *statusFixture) { f.header = map[string]any{"crit": []string{"exp"}} },
		"no kid":               func(f *statusFixture) { f.header = map[string]any{"kid": nil} },
		"unknown kid":          func(f *statusFixture) { f.header = map[string]any{"kid": "../jwks"} },
		"bad signature":        func(f *statusFixture) { f.signer = testKey{"ec-1", "ES256", mustEC(t)} },
		"RSA key under EC kid": func(f *statusFixture) { f.signer = testKey{"ec-1", "RS256", rsaKey.priv} },
		"sub of another list":  claim("sub", "http://127.0.0.1:1/statuslists/1"),
		"sub /statuslists/2":   func(f *statusFixture) { f.claims = func(c jwt.MapClaims) { c["sub"] = f.srv.URL + "/statuslists/2" } },
		"no sub":               claim("sub", nil),
		"no iat":               claim("iat", nil),
		"iat string":           claim("iat", fmt.Sprint(now.Unix())),
		"iat in the future":    claim("iat", now.Add(time.Hour).Unix()),
		"expired":              claim("exp", now.Add(-time.Hour).Unix()),
		"exp string":           claim("exp", fmt.Sprint(now.Add(time.Hour).Unix())),
		"ttl zero":             claim("ttl", 0),
		"ttl negative":         claim("ttl", -60),
		"ttl string":           claim("ttl", "60"),
		"no status_list":       claim("status_list", nil),
		"status_list string":   claim("status_list", "AAAA"),
		"bits 3":               listClaim("bits", 3),
		"bits 0":               listClaim("bits", 0),
		"bits 16":              listClaim("bits", 16),
		"bits string":          listClaim("bits", "1"),
		"no lst":               listClaim("lst", nil),
		"lst not base64url":    listClaim("lst", "eNrb+RgAAhcBXQ=="),
		"lst not zlib":         listClaim("lst", notZlib),
		"lst bad checksum":     listClaim("lst", badChecksum),
		"lst empty":            listClaim("lst", ""),
		"Content-Type json":    func(f *statusFixture) { f.contentType = "application/json" },
		"Content-Type jwt":     func(f *statusFixture) { f.contentType = "application/jwt" },
		"no Content-Type":      func(f *statusFixture) { f.contentType = "" },
		"status 500":           func(f *statusFixture) { f.status = http.StatusInternalServerError },
		"status 404":           func(f *statusFixture) { f.status = http.StatusNotFound },
		"redirect":             func(f *statusFixture) { f.redirect = true },
		"body over 4 MiB":      func(f *statusFixture) { f.body = bytes.Repeat([]byte("a"), 4<<20+1) },
		"body not a JWT":       func(f *statusFixture) { f.body = []byte("hello") },
		"body with junk":       func(f *statusFixture) { f.body = []byte("a.b.c\x00") },
		"alg none": func(f *statusFixture) {
			f.body = []byte(manual(`{"alg":"none","typ":"statuslist+jwt","kid":"ec-1"}`, `{}`, nil))
		},
		"alg HS256 with EC kid": func(f *statusFixture) {
			f.body = []byte(manual(`{"alg":"HS256","typ":"statuslist+jwt","kid":"ec-1"}`, `{}`, make([]byte, 32)))
		},
		"an access token served": func(f *statusFixture) { f.body = []byte(f.tokenFor(t, nil)) },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			st := statuses16() // idx 0 is 1
			f := newStatusFixture(t, st)
			f.set(change)
			closed := f.verifier(t, nil)
			err := mustRefuse(t, closed, f.token(t, 0), verify.ErrStatusUnavailable)
			if verify.Reason(err) != "token status list unavailable" {
				t.Fatalf("Reason = %q", verify.Reason(err))
			}
			open := f.verifier(t, func(o *verify.Options) { o.StatusFailOpen = true })
			mustVerify(t, open, f.token(t, 0))
			if n := f.listHits.Load(); n != 2 {
				t.Fatalf("status list requests: %d, want 2 (one per verifier)", n)
			}
			wantHits(t, "requests elsewhere (redirect targets)", &f.otherHits, 0)
		})
	}
	// And what is fine: the other spelling of typ, any case; a ttl that is
	// a fraction; no ttl and no exp at all.
	for name, change := range map[string]func(f *statusFixture){
		"typ application/statuslist+jwt": func(f *statusFixture) { f.header = map[string]any{"typ": "application/statuslist+jwt"} },
		"typ STATUSLIST+JWT":             func(f *statusFixture) { f.header = map[string]any{"typ": "StatusList+JWT"} },
		"ttl 1.5":                        func(f *statusFixture) { f.ttl = 1.5 },
		"no ttl, no exp":                 func(f *statusFixture) { f.ttl = nil; claim("exp", nil)(f) },
		"Content-Type with parameter":    func(f *statusFixture) { f.contentType = "Application/StatusList+JWT; charset=utf-8" },
		"RS256 key":                      func(f *statusFixture) { f.signer = rsaKey },
		"EdDSA key":                      func(f *statusFixture) { f.signer = edKey },
	} {
		t.Run("fine/"+name, func(t *testing.T) {
			f := newStatusFixture(t, statuses16())
			f.set(change)
			v := f.verifier(t, nil)
			mustRefuse(t, v, f.token(t, 0), verify.ErrRevoked)
			mustVerify(t, v, f.token(t, 1))
		})
	}
}

// 1 000 concurrent verifications on a cold cache cause exactly one fetch.
func TestStatusListSingleFlight(t *testing.T) {
	st := statuses16()
	f := newStatusFixture(t, st)
	f.set(func(f *statusFixture) { f.delay = 20 * time.Millisecond }) // widen the race
	v := f.verifier(t, nil)
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i] = f.token(t, i%len(st))
	}
	for i, err := range runConcurrently(v, tokens) {
		if wantErr := st[i%len(st)] != 0; wantErr != errors.Is(err, verify.ErrRevoked) || !wantErr && err != nil {
			t.Fatalf("token %d (idx %d): %v", i, i%len(st), err)
		}
	}
	settle()
	wantHits(t, "status list", &f.listHits, 1)
}

// An index beyond the cached list gets one refresh — not within
// MinRefreshInterval of the last fetch, however many such tokens arrive —
// and is refused if it is still beyond; once keygate's list has grown,
// the next allowed refresh finds it.
func TestStatusListIndexBeyondList(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	f.set(func(f *statusFixture) { f.ttl = 3600 })
	v := f.verifier(t, nil)
	mustVerify(t, v, f.token(t, 1))
	wantHits(t, "status list", &f.listHits, 1)

	beyond := f.token(t, 100)
	err := mustRefuse(t, v, beyond, verify.ErrMalformed) // list just fetched: no refresh
	if !strings.Contains(err.Error(), "outside the status list") {
		t.Fatalf("error %q", err)
	}
	wantHits(t, "status list right after a fetch", &f.listHits, 1)

	f.clock.Advance(31 * time.Second)
	mustRefuse(t, v, beyond, verify.ErrMalformed)
	wantHits(t, "status list: one refresh", &f.listHits, 2)
	mustRefuse(t, v, beyond, verify.ErrMalformed)
	mustRefuse(t, v, f.token(t, 200), verify.ErrMalformed)
	wantHits(t, "status list: rate-limited", &f.listHits, 2)

	f.clock.Advance(31 * time.Second)
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i] = f.token(t, 16+i)
	}
	for i, err := range runConcurrently(v, tokens) {
		if !errors.Is(err, verify.ErrMalformed) {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	settle()
	wantHits(t, "status list: 1 000 tokens beyond the list", &f.listHits, 3)
	mustVerify(t, v, f.token(t, 1)) // in range: unaffected

	// keygate's list grows (a new block); idx 100 is a new, valid key.
	f.set(func(f *statusFixture) { f.statuses = append(f.statuses, make([]byte, 2048)...) })
	mustRefuse(t, v, beyond, verify.ErrMalformed) // too soon
	f.clock.Advance(31 * time.Second)
	mustVerify(t, v, beyond)
	mustVerify(t, v, f.token(t, 2000))
	mustRefuse(t, v, f.token(t, 0), verify.ErrRevoked)
	wantHits(t, "status list", &f.listHits, 4)
}

// keygate unreachable: the last good list keeps answering (revoked stays
// revoked) until ttl + StatusMaxStale, with retries at most every
// min(MinRefreshInterval, 80 % of the ttl); then fail closed
// (ErrStatusUnavailable), or with StatusFailOpen accept — except what the
// last list said was revoked. Once keygate is back, so is checking.
func TestStatusListKeygateDown(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("StatusFailOpen=%v", failOpen), func(t *testing.T) {
			f := newStatusFixture(t, statuses16()) // ttl 60 s
			v := f.verifier(t, func(o *verify.Options) {
				o.StatusMaxStale = 2 * time.Minute
				o.StatusFailOpen = failOpen
			})
			ok, revoked := f.token(t, 1), f.token(t, 0)
			at := func(d time.Duration) { f.clock.Set(now.Add(d)) }
			mustVerify(t, v, ok)
			wantHits(t, "status list", &f.listHits, 1)

			f.set(func(f *statusFixture) { f.status = http.StatusServiceUnavailable })
			at(50 * time.Second) // past 80 % of the ttl: background refresh, fails
			mustVerify(t, v, ok)
			eventually(t, "the background refresh", func() bool { return f.listHits.Load() == 2 })
			at(61 * time.Second) // past the ttl; last attempt 11 s ago: stale list
			mustVerify(t, v, ok)
			mustRefuse(t, v, revoked, verify.ErrRevoked)
			wantHits(t, "status list", &f.listHits, 2)
			at(81 * time.Second) // retry due (30 s), fails: stale list
			mustVerify(t, v, ok)
			wantHits(t, "status list", &f.listHits, 3)
			mustRefuse(t, v, revoked, verify.ErrRevoked)
			at(179 * time.Second) // last moment of ttl + StatusMaxStale
			mustVerify(t, v, ok)
			mustRefuse(t, v, revoked, verify.ErrRevoked)
			wantHits(t, "status list", &f.listHits, 4)

			at(180 * time.Second)
			if failOpen {
				mustVerify(t, v, ok)
				mustRefuse(t, v, revoked, verify.ErrRevoked) // the last list said so
			} else {
				err := mustRefuse(t, v, ok, verify.ErrStatusUnavailable)
				if !strings.Contains(err.Error(), "past its ttl") {
					t.Fatalf("error %q", err)
				}
				mustRefuse(t, v, revoked, verify.ErrStatusUnavailable)
			}
			wantHits(t, "status list (retry not yet due)", &f.listHits, 4)

			f.set(func(f *statusFixture) { f.status = 0; f.statuses[1] = 1; f.statuses[2] = 0 })
			at(210 * time.Second)
			mustRefuse(t, v, ok, verify.ErrRevoked)
			mustVerify(t, v, f.token(t, 2))
			wantHits(t, "status list", &f.listHits, 5)
		})
	}
}

// A negative StatusMaxStale: past its ttl only a fresh list will do.
func TestStatusListNoStaleUse(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	v := f.verifier(t, func(o *verify.Options) { o.StatusMaxStale = -1 })
	mustVerify(t, v, f.token(t, 1))
	f.set(func(f *statusFixture) { f.status = http.StatusBadGateway })
	f.clock.Advance(59 * time.Second)
	mustVerify(t, v, f.token(t, 1))
	f.clock.Advance(time.Second)
	mustRefuse(t, v, f.token(t, 1), verify.ErrStatusUnavailable)
}

// A cold cache and keygate down: every verification is refused at once
// (ErrStatusUnavailable), and keygate is asked at most once per
// min(MinRefreshInterval, 80 % of StatusDefaultTTL).
func TestStatusListColdAndDown(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	f.set(func(f *statusFixture) { f.status = http.StatusServiceUnavailable })
	v := f.verifier(t, func(o *verify.Options) { o.MinRefreshInterval = 10 * time.Second })
	for range 5 {
		err := mustRefuse(t, v, f.token(t, 1), verify.ErrStatusUnavailable)
		if !strings.Contains(err.Error(), "503") {
			t.Fatalf("error %q does not say what went wrong", err)
		}
	}
	wantHits(t, "status list", &f.listHits, 1)
	f.set(func(f *statusFixture) { f.status = 0 })
	f.clock.Advance(9 * time.Second)
	mustRefuse(t, v, f.token(t, 1), verify.ErrStatusUnavailable)
	f.clock.Advance(time.Second)
	mustVerify(t, v, f.token(t, 1))
	wantHits(t, "status list", &f.listHits, 2)
}

// A hanging keygate holds no request long: on a cold cache the caller's
// context bounds the wait; with a stale list to fall back on, a second.
func TestStatusListHangingKeygate(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	release := f.hangList(t)
	v := f.verifier(t, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err := v.Verify(ctx, f.token(t, 1))
	cancel()
	if !errors.Is(err, verify.ErrStatusUnavailable) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("cold, hanging: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cold, hanging: took %v", d)
	}
	release()
	eventually(t, "the list", func() bool {
		_, err := v.Verify(context.Background(), f.token(t, 1))
		return err == nil
	})
	wantHits(t, "status list", &f.listHits, 1)

	f.hangList(t)
	f.clock.Advance(61 * time.Second) // past the ttl: refresh before use
	start = time.Now()
	mustVerify(t, v, f.token(t, 1)) // after about a second, from the stale list
	mustRefuse(t, v, f.token(t, 0), verify.ErrRevoked)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stale, hanging: took %v", d)
	}
	wantHits(t, "status list", &f.listHits, 2)
}

// zlibBomb is a valid zlib stream of mib MiB of zeros, about 1.3 KiB per
// MiB, made without compressing them all: flate fed 1 MiB of zeros at a
// time, with a sync flush after each, emits the same bytes for every MiB
// after the first; a final empty block and the Adler-32 of n zeros
// ((n mod 65521) << 16 | 1) end it.
func zlibBomb(t testing.TB, mib int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var segs [][]byte
	for range 3 {
		w.Write(chunk)
		w.Flush()
		segs = append(segs, bytes.Clone(b.Bytes()))
		b.Reset()
	}
	if !bytes.Equal(segs[1], segs[2]) {
		t.Fatal("flate's output is not periodic here; cannot build the bomb")
	}
	out := append([]byte{0x78, 0x01}, segs[0]...)
	for i := 1; i < mib; i++ {
		out = append(out, segs[1]...)
	}
	out = append(out, 0x03, 0x00) // final, empty, fixed-Huffman block
	return binary.BigEndian.AppendUint32(out, uint32(uint64(mib)<<20%65521)<<16|1)
}

// A list whose lst inflates to 1 GiB (a 2.3 MiB token) is refused — fail
// closed — without inflating it into memory.
func TestStatusListZipBomb(t *testing.T) {
	// The construction is sound: a small one inflates exactly, checksum
	// and all.
	small, err := zlib.NewReader(bytes.NewReader(zlibBomb(t, 3)))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, small); err != nil || n != 3<<20 {
		t.Fatalf("3 MiB bomb inflates to %d bytes, %v", n, err)
	}

	bomb := zlibBomb(t, 1024)
	f := newStatusFixture(t, nil)
	lst := base64.RawURLEncoding.EncodeToString(bomb)
	var tok string
	f.set(func(f *statusFixture) {
		f.lst = &lst
		tok, err = f.listTokenLocked()
		f.body = []byte(tok) // signed once, before measuring
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bomb: %d bytes of zlib, a %d-byte list token, 1 GiB inflated", len(bomb), len(tok))
	v := f.verifier(t, nil)
	token := f.token(t, 1)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	err = mustRefuse(t, v, token, verify.ErrStatusUnavailable)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if !strings.Contains(err.Error(), "inflates to over") {
		t.Fatalf("error %q", err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("refused in %v, %d MiB allocated", elapsed, alloc>>20)
	if alloc > 48<<20 {
		t.Fatalf("allocated %d MiB refusing the bomb", alloc>>20)
	}
	wantHits(t, "status list", &f.listHits, 1)
}

// With Options.Keys (no JWKS fetched, no HTTPClient given), status lists
// are still fetched and checked, with the same keys.
func TestStatusListWithCallerKeys(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	v, err := verify.New(context.Background(), verify.Options{
		Issuer: f.srv.URL, Audience: audience, Keys: source, Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, f.token(t, 1))
	mustRefuse(t, v, f.token(t, 0), verify.ErrRevoked)
	wantHits(t, "status list", &f.listHits, 1)
	wantHits(t, "metadata", &f.metaHits, 0)
	wantHits(t, "JWKS", &f.jwksHits, 0)

	// A plain-http issuer off loopback: the list could be swapped in
	// transit, so its status is unavailable (nothing is fetched).
	v, err = verify.New(context.Background(), verify.Options{
		Issuer: "http://auth.example.test", Audience: audience, Keys: source, Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := longClaims()
	c["iss"] = "http://auth.example.test"
	c["status"] = map[string]any{"status_list": map[string]any{"idx": 1, "uri": "http://auth.example.test/statuslists/1"}}
	mustRefuse(t, v, sign(t, ecKey, nil, nil, c), verify.ErrStatusUnavailable)
}

// The middleware: a revoked token is a 401 invalid_token saying so; a
// list that cannot be had is a 503, like missing keys.
func TestMiddlewareStatusList(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	v := f.verifier(t, nil)
	next := &mwProtected{}
	h := verify.Middleware(v)(next)
	req := func(tok string) *http.Request { return mwRequest("/", "Bearer "+tok) }

	if rec := mwDo(h, req(f.token(t, 1))); rec.Code != http.StatusOK {
		t.Fatalf("valid: %d %s", rec.Code, rec.Body)
	}
	rec := mwDo(h, req(f.token(t, 0)))
	mwCheckRejection(t, rec.Code, rec.Header(), rec.Body.Bytes(), next.calls.Load()-1, invalidToken("token revoked (status list)"))

	f.set(func(f *statusFixture) { f.status = http.StatusServiceUnavailable })
	f.clock.Advance(time.Hour) // the list is long past ttl + StatusMaxStale
	before := next.calls.Load()
	rec = mwDo(h, req(f.token(t, 1)))
	mwCheckRejection(t, rec.Code, rec.Header(), rec.Body.Bytes(), next.calls.Load()-before, mwAnswer{
		status: http.StatusServiceUnavailable,
		body:   map[string]string{"error_description": "token status list is unavailable"},
	})
	if ra := rec.Header().Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After = %q", ra)
	}
}

func TestReasonStatus(t *testing.T) {
	for err, want := range map[error]string{
		verify.ErrRevoked:           "token revoked (status list)",
		verify.ErrSuspended:         "token suspended (status list)",
		verify.ErrStatusUnavailable: "token status list unavailable",
	} {
		for _, e := range []error{err, fmt.Errorf("%w: status 0x01 at index 7 of https://x/statuslists/1", err)} {
			if got := verify.Reason(e); got != want {
				t.Errorf("Reason(%v) = %q, want %q", e, got, want)
			}
		}
	}
}

// The status check on a warm cache, next to BenchmarkVerify (same key).
func BenchmarkVerifyWithStatus(b *testing.B) {
	f := newStatusFixture(b, make([]byte, 1<<20))
	f.set(func(f *statusFixture) { f.ttl = 86400 })
	v := f.verifier(b, nil)
	tok := f.token(b, 12345)
	mustVerify(b, v, tok)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClaimsStatusIndex: Claims.StatusIndex is the status claim's idx, 0
// without a claim or with a malformed one (which IgnoreStatus lets pass).
func TestClaimsStatusIndex(t *testing.T) {
	f := newStatusFixture(t, statuses16())
	v := f.verifier(t, func(o *verify.Options) { o.IgnoreStatus = true })
	for _, c := range []struct {
		name   string
		status any
		want   int64
	}{
		{"idx 7", map[string]any{"status_list": map[string]any{"idx": 7, "uri": f.uri()}}, 7},
		{"idx 0", map[string]any{"status_list": map[string]any{"idx": 0, "uri": f.uri()}}, 0},
		{"no status claim", nil, 0},
		{"malformed", "junk", 0},
		{"negative idx", map[string]any{"status_list": map[string]any{"idx": -1, "uri": f.uri()}}, 0},
	} {
		if got := mustVerify(t, v, f.tokenFor(t, c.status)).StatusIndex; got != c.want {
			t.Errorf("%s: StatusIndex %d, want %d", c.name, got, c.want)
		}
	}
	// With the status check on, too.
	if got := mustVerify(t, f.verifier(t, nil), f.token(t, 2)).StatusIndex; got != 2 {
		t.Errorf("enforced, idx 2: StatusIndex %d", got)
	}
}
