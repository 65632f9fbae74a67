package server

// Status list encoding against draft-ietf-oauth-status-list's own test
// vector, the list size with a million indices, and the structural proof
// that the token endpoint never waits on the status list builder.

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/bits"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// inflateLst decodes lst with the standard library alone:
// base64url → zlib → bytes.
func inflateLst(tb testing.TB, lst string) []byte {
	tb.Helper()
	z, err := base64.RawURLEncoding.DecodeString(lst)
	if err != nil {
		tb.Fatalf("lst %q is not unpadded base64url: %v", lst, err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		tb.Fatalf("lst is not zlib: %v", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		tb.Fatalf("lst does not inflate: %v", err)
	}
	return raw
}

// packStatuses lays out 1-bit statuses as the draft does (§4.1): status i
// is bit i%8 (LSB first) of byte i/8.
func packStatuses(statuses []int) []byte {
	out := make([]byte, (len(statuses)+7)/8)
	for i, s := range statuses {
		if s != 0 {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

// The draft's example (§4.1, bits 1): 16 statuses, bytes 0xB9 0xA3, lst
// "eNrbuRgAAhcBXQ".
var (
	draftStatuses = []int{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}
	draftBytes    = []byte{0xB9, 0xA3}
)

const draftLst = "eNrbuRgAAhcBXQ"

func TestStatusListEncodingDraftVector(t *testing.T) {
	if got := packStatuses(draftStatuses); !bytes.Equal(got, draftBytes) {
		t.Fatalf("the draft's statuses pack to % X, want % X", got, draftBytes)
	}
	// The draft's own lst decodes to the same bytes.
	if got := inflateLst(t, draftLst); !bytes.Equal(got, draftBytes) {
		t.Errorf("the draft's lst decodes to % X, want % X", got, draftBytes)
	}
	// keygate's encoding of those bytes decodes to them too (keygate uses
	// BestCompression, so the string may differ from the draft's).
	lst, err := encodeStatusList(draftBytes, 16)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(lst, "=+/") {
		t.Errorf("lst %q is not unpadded base64url", lst)
	}
	if got := inflateLst(t, lst); !bytes.Equal(got, draftBytes) {
		t.Errorf("keygate's lst %q decodes to % X, want % X", lst, got, draftBytes)
	}
	t.Logf("keygate lst %q, draft lst %q", lst, draftLst)
	// The bytes are padded with zeros up to size.
	lst, err = encodeStatusList(draftBytes, 64)
	if err != nil {
		t.Fatal(err)
	}
	if got := inflateLst(t, lst); !bytes.Equal(got, append(append([]byte{}, draftBytes...), 0, 0, 0, 0, 0, 0)) {
		t.Errorf("padded list decodes to % X", got)
	}
}

// TestStoreBitLayoutMatchesDraft: revoking the draft's set statuses in the
// bbolt store yields the draft's bytes, so the stored bitmap can be served
// as is.
func TestStoreBitLayoutMatchesDraft(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for i, s := range draftStatuses {
		if s == 1 {
			if err := st.RevokeStatus(ctx, int64(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := st.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Revoked, draftBytes) {
		t.Errorf("stored bitmap % X, want % X", l.Revoked, draftBytes)
	}
	lst, err := encodeStatusList(l.Revoked, listSize(l))
	if err != nil {
		t.Fatal(err)
	}
	raw := inflateLst(t, lst)
	if !bytes.Equal(raw[:2], draftBytes) || bytes.Count(raw[2:], []byte{0}) != len(raw)-2 {
		t.Errorf("served list starts % X and has other bits set", raw[:2])
	}
}

func TestListSize(t *testing.T) {
	const block = 1 << 20
	for _, c := range []struct {
		l    store.StatusList
		want int64
	}{
		{store.StatusList{}, block},
		{store.StatusList{Allocated: 1}, block},
		{store.StatusList{Allocated: 1_000_000}, block},
		{store.StatusList{Allocated: block - 1}, block}, // index 2^20-1 is the last of block 1
		{store.StatusList{Allocated: block}, 2 * block},
		{store.StatusList{Revoked: make([]byte, block/8)}, block},
		{store.StatusList{Revoked: make([]byte, block/8+1)}, 2 * block},
		{store.StatusList{Allocated: 5, Revoked: make([]byte, 3*block/8)}, 3 * block},
	} {
		got := listSize(c.l)
		if got != c.want {
			t.Errorf("listSize(allocated %d, %d bitmap bytes) = %d, want %d", c.l.Allocated, len(c.l.Revoked), got, c.want)
		}
		// Every allocated index and every bitmap bit fits.
		if got <= c.l.Allocated || got < int64(len(c.l.Revoked))*8 || got%8 != 0 {
			t.Errorf("listSize %d does not cover allocated %d / %d bitmap bytes", got, c.l.Allocated, len(c.l.Revoked))
		}
	}
}

// TestStatusListMillionIndices: a list of 1 000 000 allocated indices with
// 1000 revoked ones spread over it stays small, and decodes back to
// exactly those bits.
func TestStatusListMillionIndices(t *testing.T) {
	const allocated = 1_000_000
	revoked := make([]byte, allocated/8+1)
	var want []int64
	var rnd [8]byte
	for len(want) < 1000 {
		if _, err := rand.Read(rnd[:]); err != nil {
			t.Fatal(err)
		}
		idx := 1 + int64(uint64(rnd[0])|uint64(rnd[1])<<8|uint64(rnd[2])<<16|uint64(rnd[3])<<24)%allocated
		if revoked[idx/8]&(1<<(idx%8)) == 0 {
			revoked[idx/8] |= 1 << (idx % 8)
			want = append(want, idx)
		}
	}
	l := store.StatusList{Revoked: revoked, Allocated: allocated}
	size := listSize(l)
	if size != 1<<20 {
		t.Errorf("list of %d entries for 1e6 indices, want one block of 2^20", size)
	}
	start := time.Now()
	lst, err := encodeStatusList(l.Revoked, size)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	raw := inflateLst(t, lst)
	if int64(len(raw)) != size/8 {
		t.Fatalf("decoded %d bytes, want %d", len(raw), size/8)
	}
	count := 0
	for _, b := range raw {
		count += bits.OnesCount8(b)
	}
	if count != len(want) {
		t.Errorf("%d bits set, want %d", count, len(want))
	}
	for _, idx := range want {
		if raw[idx/8]&(1<<(idx%8)) == 0 {
			t.Errorf("bit %d lost", idx)
		}
	}
	t.Logf("1 000 000 indices (%d-entry list), 1000 revoked at random: lst %d bytes (zlib %d bytes), encoded in %v",
		size, len(lst), len(lst)*3/4, took)
	if len(lst) > 16<<10 {
		t.Errorf("lst is %d bytes, want < 16 KiB", len(lst))
	}
	empty, err := encodeStatusList(nil, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the same list with nothing revoked: lst %d bytes", len(empty))
	if len(empty) > 1<<10 {
		t.Errorf("an empty 2^20-entry list encodes to %d bytes, want < 1 KiB", len(empty))
	}
}

// newInternalServer is a Server on a fresh bbolt store, served over
// loopback at its issuer URL (as in production, where the issuer is where
// keygate answers); the generated admin credentials come with it.
func newInternalServer(t *testing.T, opts Options) (*Server, AdminCredentials) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	mk, err := masterkey.Parse(base64.StdEncoding.EncodeToString(raw[:]))
	if err != nil {
		t.Fatal(err)
	}
	var h atomic.Pointer[Server]
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := h.Load(); s != nil {
			s.ServeHTTP(w, r)
			return
		}
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}))
	opts.Store, opts.MasterKey = st, mk
	opts.Issuer = "http://" + ts.Listener.Addr().String()
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close) // registered after the store's: runs first
	h.Store(s)
	ts.Start()
	t.Cleanup(ts.Close) // runs before s.Close
	admin, ok := s.GeneratedAdmin()
	if !ok {
		t.Fatal("no generated admin")
	}
	return s, admin
}

// serveWithin runs req through s and fails the test if no answer comes
// within d.
func serveWithin(t *testing.T, s *Server, req *http.Request, d time.Duration) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeHTTP(rec, req)
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
	s, admin := newInternalServer(t, Options{})
	form := func(v url.Values) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(admin.ClientID, admin.ClientSecret)
		return req
	}
	s.statusLists.mu.Lock()
	locked := true
	defer func() {
		if locked {
			s.statusLists.mu.Unlock()
		}
	}()

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
	s.statusLists.mu.Unlock()
	locked = false
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
	var clock = now
	s, _ := newInternalServer(t, Options{Now: func() time.Time { return clock }})
	ctx := context.Background()
	first, err := s.currentStatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.RevokeStatus(ctx, 42); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(999 * time.Millisecond)
	cached, err := s.currentStatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, cached) {
		t.Error("rebuilt within one second: the cache is not used")
	}
	clock = now.Add(time.Second)
	fresh, err := s.currentStatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, fresh) {
		t.Fatal("one second later, still the cached list")
	}
	var claims statusListClaims
	parts := strings.Split(string(fresh), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if raw := inflateLst(t, claims.StatusList.Lst); raw[42/8]&(1<<(42%8)) == 0 {
		t.Error("rebuilt list lacks the revoked bit 42")
	}
	// A clock that moves backwards does not keep a list forever.
	clock = now.Add(-time.Hour)
	back, err := s.currentStatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(back, fresh) {
		t.Error("clock moved back: the cached list is still served")
	}
	// invalidate forces a rebuild at the same instant.
	s.statusLists.invalidate()
	again, err := s.currentStatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if &again[0] == &back[0] {
		t.Error("invalidate did not drop the cached list")
	}
}
