package server

// Status list layout against draft-ietf-oauth-status-list's own examples
// (the "Status List" section's 1-bit and 2-bit lists), shards, the legacy
// 1-bit view, and the sizes: a million indices, and a full shard of
// incompressible entries under verify's caps. The structural proof that
// the token endpoint never waits on the status list builder is in
// statuslist_lock_test.go.

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// inflateLst decodes lst with the standard library alone:
// base64url → zlib → bytes.
func inflateLst(tb testing.TB, lst string) []byte {
	tb.Helper()
	z, err := base64.RawURLEncoding.DecodeString(lst)
	if err != nil {
		tb.Fatalf("lst is not unpadded base64url: %v", err)
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

// entryOf reads status i of a list of b bits per entry as the draft says
// (§4.1): entries packed least significant bits first, entry i at bit
// (i·b mod 8) of byte ⌊i·b/8⌋. Written from the draft's text, not from
// keygate's code.
func entryOf(list []byte, b, i int) int {
	return int(list[i*b/8]>>(i*b%8)) & (1<<b - 1)
}

// The draft's examples: 1 bit, 16 statuses, bytes B9 A3, lst
// "eNrbuRgAAhcBXQ"; 2 bits, 12 statuses, bytes C9 44 F9, lst
// "eNo76fITAAPfAgc".
func TestStatusListDraftExamples(t *testing.T) {
	for _, c := range []struct {
		bits     int
		statuses []int
		bytes    []byte
		lst      string
	}{
		{1, []int{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}, []byte{0xB9, 0xA3}, "eNrbuRgAAhcBXQ"},
		{2, []int{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3}, []byte{0xC9, 0x44, 0xF9}, "eNo76fITAAPfAgc"},
	} {
		if got := inflateLst(t, c.lst); !bytes.Equal(got, c.bytes) {
			t.Errorf("%d bits: the draft's lst decodes to % X, want % X", c.bits, got, c.bytes)
		}
		for i, want := range c.statuses {
			if got := entryOf(c.bytes, c.bits, i); got != want {
				t.Errorf("%d bits: entry %d = %d, want %d", c.bits, i, got, want)
			}
		}
		// keygate's encoding of those bytes decodes to them (BestCompression:
		// the string may differ from the draft's).
		lst, err := encodeStatusList(c.bytes)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(lst, "=+/") || !bytes.Equal(inflateLst(t, lst), c.bytes) {
			t.Errorf("%d bits: keygate's lst %q does not decode to % X", c.bits, lst, c.bytes)
		}
	}
}

// TestStatusListServesStoredEntries: the draft's 2-bit example stored in a
// real bbolt store through keygate's own writes — its 3s, a value keygate
// never writes, as INVALID (storetest.StatusLayout stores the 3s raw) — is
// served in shard 0 as stored, and as 1 bits wherever not VALID in the
// legacy list.
func TestStatusListServesStoredEntries(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	statuses := []int{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3}
	for i, s := range statuses {
		switch s {
		case 1, 3:
			if err := st.RevokeStatus(ctx, int64(i)); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := st.SetStatus(ctx, int64(i), store.StatusSuspended); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := st.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shard := shardEntries(l, 0)
	if len(shard) != statusListBlock/4 {
		t.Fatalf("shard 0 is %d bytes, want one block of %d", len(shard), statusListBlock/4)
	}
	legacy := legacyEntries(l)
	for i, s := range statuses {
		want := s
		if s == 3 {
			want = 1 // stored as INVALID above
		}
		if got := entryOf(shard, 2, i); got != want {
			t.Errorf("shard entry %d = %d, want %d", i, got, want)
		}
		if got, notValid := entryOf(legacy, 1, i), b2i(s != 0); got != notValid {
			t.Errorf("legacy bit %d = %d, want %d", i, got, notValid)
		}
	}
	if bytes.Count(shard[3:], []byte{0}) != len(shard)-3 || bytes.Count(legacy[2:], []byte{0}) != len(legacy)-2 {
		t.Error("entries past the example are not all VALID")
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestStatusShards: a global index's shard and place, the lists' sizes in
// blocks, the legacy list's bound.
func TestStatusShards(t *testing.T) {
	s := &Server{cfg: Options{Issuer: "https://kg.example"}}
	for _, c := range []struct {
		g       int64
		uri     string
		idx     int64
		allocs0 bool
	}{
		{1, "https://kg.example/statuslists/2bit/0", 1, true},
		{statusShardSize - 1, "https://kg.example/statuslists/2bit/0", statusShardSize - 1, true},
		{statusShardSize, "https://kg.example/statuslists/2bit/1", 0, false},
		{3*statusShardSize + 5, "https://kg.example/statuslists/2bit/3", 5, false},
	} {
		if r := s.statusRef(c.g); r.URI != c.uri || r.Idx != c.idx {
			t.Errorf("statusRef(%d) = %+v, want %s idx %d", c.g, r, c.uri, c.idx)
		}
	}
	// Known shards: no allocation on the token path.
	if n := testing.AllocsPerRun(100, func() { _ = s.statusRef(2*statusShardSize + 9) }); n != 0 {
		t.Errorf("statusRef allocates %v times", n)
	}
	for _, c := range []struct {
		l           store.StatusList
		shard, want int64 // entries in the shard's list
	}{
		{store.StatusList{}, 0, statusListBlock},
		{store.StatusList{Allocated: statusListBlock - 1}, 0, statusListBlock},
		{store.StatusList{Allocated: statusListBlock}, 0, 2 * statusListBlock},
		{store.StatusList{Allocated: 100 * statusListBlock}, 0, statusShardSize},
		{store.StatusList{Allocated: statusShardSize + 3}, 1, statusListBlock},
		{store.StatusList{Statuses: make([]byte, statusListBlock/4+1)}, 0, 2 * statusListBlock},
	} {
		if got := int64(len(shardEntries(c.l, c.shard))) * 4; got != c.want {
			t.Errorf("shard %d of allocated %d, %d status bytes: %d entries, want %d", c.shard, c.l.Allocated, len(c.l.Statuses), got, c.want)
		}
	}
	if got := int64(len(legacyEntries(store.StatusList{Allocated: 10 * legacyListMax}))) * 8; got != legacyListMax {
		t.Errorf("legacy list of a huge store: %d entries, want the bound %d", got, legacyListMax)
	}
}

// TestStatusShardUnderVerifyCaps: a full shard of random, incompressible
// 2-bit entries stays within what verify accepts (16 MiB inflated, 4 MiB
// as a token), signed as keygate serves it.
func TestStatusShardUnderVerifyCaps(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 2 MiB of random bytes")
	}
	statuses := make([]byte, statusShardSize/4)
	if _, err := rand.Read(statuses); err != nil {
		t.Fatal(err)
	}
	l := store.StatusList{Statuses: statuses, Allocated: statusShardSize - 1}
	raw := shardEntries(l, 0)
	if len(raw) != 2<<20 {
		t.Fatalf("a full shard is %d bytes, want 2 MiB", len(raw))
	}
	lst, err := encodeStatusList(raw)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := json.Marshal(statusListClaims{Subject: "https://kg.example/statuslists/2bit/0", StatusList: encodedBitList{Bits: 2, Lst: lst}})
	if err != nil {
		t.Fatal(err)
	}
	// A compact JWS: header and signature (ES256: 64 bytes; RS256 2048:
	// 256) add under 1 KiB to the base64url payload.
	token := base64.RawURLEncoding.EncodedLen(len(claims)) + 1024
	t.Logf("full random shard: %d bytes raw, lst %d bytes, token ≤ %d bytes", len(raw), len(lst), token)
	if token >= 4<<20 {
		t.Errorf("a full shard's token would be %d bytes, over verify's 4 MiB", token)
	}
	if got := inflateLst(t, lst); !bytes.Equal(got, raw) || len(got) > 16<<20 {
		t.Errorf("the shard inflates to %d bytes", len(got))
	}
}

// TestStatusListMillionIndices: 1 000 000 allocated indices with 1000
// revoked and 1000 suspended at random stay one block and a small token.
func TestStatusListMillionIndices(t *testing.T) {
	const allocated = 1_000_000
	l := store.StatusList{Statuses: make([]byte, allocated/4+1), Allocated: allocated}
	want := map[int64]int{}
	var rnd [4]byte
	for len(want) < 2000 {
		if _, err := rand.Read(rnd[:]); err != nil {
			t.Fatal(err)
		}
		idx := 1 + int64(uint32(rnd[0])|uint32(rnd[1])<<8|uint32(rnd[2])<<16)%allocated
		if _, dup := want[idx]; dup {
			continue
		}
		st := 1 + len(want)%2 // INVALID and SUSPENDED in turn
		want[idx] = st
		l.Statuses[idx/4] |= byte(st) << (2 * (idx % 4))
	}
	raw := shardEntries(l, 0)
	if len(raw) != statusListBlock/4 {
		t.Errorf("%d bytes for 1e6 indices, want one block", len(raw))
	}
	lst, err := encodeStatusList(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := inflateLst(t, lst)
	nonZero := 0
	for i := range len(got) * 4 {
		if s := entryOf(got, 2, i); s != 0 {
			nonZero++
			if want[int64(i)] != s {
				t.Fatalf("entry %d = %d, want %d", i, s, want[int64(i)])
			}
		}
	}
	if nonZero != len(want) {
		t.Errorf("%d entries set, want %d", nonZero, len(want))
	}
	t.Logf("1 000 000 indices, 1000 revoked and 1000 suspended: lst %d bytes", len(lst))
	if len(lst) > 32<<10 {
		t.Errorf("lst is %d bytes, want < 32 KiB", len(lst))
	}
}
