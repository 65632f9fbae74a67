package verify_test

// SUSPENDED (0x02) in 2-bit lists as resource servers meet it (resumed
// within the ttl, kept under StatusFailOpen, answered by the middleware),
// and verify's list decoding checked on random lists of 1, 2, 4 and 8 bits
// against a decoder written from the draft's text alone.

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/verify"
)

// A suspended entry refuses the token with ErrSuspended (not ErrRevoked);
// once the list says VALID again and the cached one's ttl has passed, the
// same token verifies. A 1-bit list goes on working beside it.
func TestStatusListSuspendedThenResumed(t *testing.T) {
	f := newStatusFixture(t, []byte{0, 1, 2, 3, 0, 2, 0, 0})
	f.set(func(f *statusFixture) { f.bits, f.ttl = 2, 10 })
	v := f.verifier(t, nil)
	suspended := f.token(t, 2)
	err := mustRefuse(t, v, suspended, verify.ErrSuspended)
	if errors.Is(err, verify.ErrRevoked) {
		t.Fatalf("%v is also ErrRevoked", err)
	}
	if got := verify.Reason(err); got != "token suspended (status list)" {
		t.Fatalf("Reason = %q", got)
	}
	mustRefuse(t, v, f.token(t, 1), verify.ErrRevoked)
	// 3 is application-specific in the draft and keygate never writes it:
	// a value without a meaning here is refused for good, the fail-safe
	// answer.
	mustRefuse(t, v, f.token(t, 3), verify.ErrRevoked)
	mustVerify(t, v, f.token(t, 0))

	f.set(func(f *statusFixture) { f.statuses[2] = 0 }) // resumed
	f.clock.Advance(5 * time.Second)                    // within the ttl: the cached list decides
	mustRefuse(t, v, suspended, verify.ErrSuspended)
	f.clock.Advance(6 * time.Second) // past it: the new list does
	mustVerify(t, v, suspended)
	mustRefuse(t, v, f.token(t, 5), verify.ErrSuspended)

	// A 1-bit list is still accepted: 1 is INVALID there.
	one := newStatusFixture(t, []byte{0, 1, 0, 0, 0, 0, 0, 0})
	v1 := one.verifier(t, nil)
	mustVerify(t, v1, one.token(t, 0))
	mustRefuse(t, v1, one.token(t, 1), verify.ErrRevoked)
}

// Fail-open never accepts what the last good list says is suspended.
func TestStatusListFailOpenKeepsSuspended(t *testing.T) {
	f := newStatusFixture(t, []byte{0, 2, 1, 0})
	f.set(func(f *statusFixture) { f.bits = 2 }) // ttl 60 s
	v := f.verifier(t, func(o *verify.Options) {
		o.StatusMaxStale = time.Minute
		o.StatusFailOpen = true
	})
	mustRefuse(t, v, f.token(t, 1), verify.ErrSuspended)
	f.set(func(f *statusFixture) { f.status = http.StatusServiceUnavailable })
	f.clock.Set(now.Add(10 * time.Minute)) // far past ttl + StatusMaxStale
	mustVerify(t, v, f.token(t, 0))        // fail-open: unknown status accepted
	mustRefuse(t, v, f.token(t, 1), verify.ErrSuspended)
	mustRefuse(t, v, f.token(t, 2), verify.ErrRevoked)
}

// The RFC 6750 middleware answers a suspended token like a revoked one:
// 401 invalid_token, saying why.
func TestMiddlewareSuspendedToken(t *testing.T) {
	f := newStatusFixture(t, []byte{0, 2, 1, 0})
	f.set(func(f *statusFixture) { f.bits = 2 })
	v := f.verifier(t, nil)
	for idx, desc := range map[int]string{1: "token suspended (status list)", 2: "token revoked (status list)"} {
		next := &mwProtected{}
		rec := mwDo(verify.Middleware(v)(next), mwRequest("/banking/accounts", "Bearer "+f.token(t, idx)))
		mwCheckRejection(t, rec.Code, rec.Header(), rec.Body.Bytes(), next.calls.Load(), invalidToken(desc))
	}
}

// draftStatus decodes entry i of a list of bits-bit entries the way the
// draft's text states it (the "Status List" section of
// draft-ietf-oauth-status-list-21, the version verify/statuslist.go
// cites), independently of verify's code: the byte array is one
// string of bits, bits within a byte counted from the least significant
// (0) to the most significant (7), and entry i is the bits-bit number
// whose lowest bit is bit i*bits of that string.
func draftStatus(list []byte, bits, i int) byte {
	var v byte
	for j := 0; j < bits; j++ {
		k := i*bits + j // position in the bit string
		bit := list[k/8] >> (k % 8) & 1
		v |= bit << j
	}
	return v
}

// Random lists of 1, 2, 4 and 8 bits: verify's answer for every index
// agrees with draftStatus — 0 accepted, 2 ErrSuspended (for bits ≥ 2),
// anything else ErrRevoked — and one index past the end is malformed.
func TestStatusListIndependentDecoder(t *testing.T) {
	for _, bits := range []int{1, 2, 4, 8} {
		t.Run(fmt.Sprintf("%d bits", bits), func(t *testing.T) {
			raw := make([]byte, 24)
			if _, err := rand.Read(raw); err != nil {
				t.Fatal(err)
			}
			// Make sure every kind of answer is exercised.
			raw[0] = 0
			if bits >= 2 {
				raw[1] = 0x02
			}
			lst := lstOf(raw)
			f := newStatusFixture(t, nil)
			f.set(func(f *statusFixture) { f.bits, f.lst = bits, &lst })
			v := f.verifier(t, nil)
			n := len(raw) * 8 / bits
			seen := map[string]int{}
			for i := 0; i < n; i++ {
				tok := f.token(t, i)
				switch st := draftStatus(raw, bits, i); {
				case st == 0:
					mustVerify(t, v, tok)
					seen["valid"]++
				case st == 2 && bits >= 2:
					mustRefuse(t, v, tok, verify.ErrSuspended)
					seen["suspended"]++
				default:
					mustRefuse(t, v, tok, verify.ErrRevoked)
					seen["revoked"]++
				}
			}
			if seen["valid"] == 0 || seen["revoked"] == 0 || bits >= 2 && seen["suspended"] == 0 {
				t.Fatalf("answers %v: a kind was never exercised", seen)
			}
			mustRefuse(t, v, f.token(t, n), verify.ErrMalformed)
		})
	}
}

// draftStatus itself against the draft's two worked examples (its "Status
// List" section):
// the 1-bit bytes 0xB9 0xA3 and the 2-bit bytes 0xC9 0x44 0xF9.
func TestDraftStatusDecoderMatchesDraftExamples(t *testing.T) {
	for _, tc := range []struct {
		bits     int
		list     []byte
		statuses []byte
	}{
		{1, []byte{0xb9, 0xa3}, []byte{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}},
		{2, []byte{0xc9, 0x44, 0xf9}, []byte{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3}},
	} {
		for i, want := range tc.statuses {
			if got := draftStatus(tc.list, tc.bits, i); got != want {
				t.Fatalf("%d bits, entry %d: %d, want %d", tc.bits, i, got, want)
			}
		}
	}
}
