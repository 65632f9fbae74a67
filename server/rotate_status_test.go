package server_test

// A rotation cuts the old secret's tokens off (#14 item 6): each secret
// generation has its own status index; grace 0 sets the old one at once,
// a grace period sets it when the grace ends (AuditWorker's round), and
// tokens minted with a secret in its grace period carry the previous
// generation's index and expire with that secret. Checked three ways:
// keygate's introspection, the served status list's bits, and a resource
// server's offline check (package verify), all on one test clock.

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/verify"
)

// newStatusEnv is newClockEnvOn with a status list ttl of 1 s, and a
// resource server's verifier on the same clock.
func newStatusEnv(t *testing.T, b servertest.Backend) (clockEnv, *verify.Verifier) {
	t.Helper()
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	e := clockEnv{testEnv: startEnv(t, servertest.Config{Clock: clk, Backend: b, Options: server.Options{StatusListTTL: time.Second}}), clock: clk, t0: clk.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := verify.New(ctx, verify.Options{Issuer: e.URL, Audience: e.URL, Now: clk.Now})
	if err != nil {
		t.Fatalf("verify.New over loopback: %v", err)
	}
	return e, v
}

// verifyWithin checks tok with v, moving the clock on in 100 ms steps for
// up to d until the verdict is ErrRevoked; it fails the test otherwise.
func verifyWithin(t *testing.T, e clockEnv, v *verify.Verifier, d time.Duration, what, tok string) {
	t.Helper()
	for waited := time.Duration(0); ; waited += 100 * time.Millisecond {
		_, err := v.Verify(context.Background(), tok)
		if errors.Is(err, verify.ErrRevoked) {
			t.Logf("%s refused by the resource server %v after the change", what, waited)
			return
		}
		if err != nil {
			t.Fatalf("%s: Verify: %v, want ErrRevoked or success", what, err)
		}
		if waited >= d {
			t.Fatalf("%s still accepted by the resource server %v after the change", what, waited)
		}
		e.clock.Advance(100 * time.Millisecond)
	}
}

func mustVerify(t *testing.T, v *verify.Verifier, what, tok string) {
	t.Helper()
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("%s: Verify: %v, want accepted", what, err)
	}
}

func TestRotateGraceZeroCutsOldTokensOff(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e, v := newStatusEnv(t, b)
		admin := e.AdminToken(t)
		a := e.CreateKeyWith(t, admin, "acme", "a", permAccounting)
		other := e.CreateKeyWith(t, admin, "acme", "other", permAccounting)
		tokOld := e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken
		tokOther := e.Token(t, other.ClientID, other.ClientSecret, "").AccessToken
		oldIdx, _ := statusRef(t, tokOld)
		mustVerify(t, v, "old token before the rotation", tokOld)
		checkActive(t, "old token before the rotation", e.introspect(t, e.AdminID, e.AdminSecret, tokOld), tokOld)

		e.at(time.Second) // a later second: iat cannot tell the tokens apart anyway
		rot := e.rotate(t, "acme", a.ClientID, map[string]string{"grace_period": "0s"})
		tokNew := e.Token(t, a.ClientID, rot.ClientSecret, "").AccessToken
		newIdx, _ := statusRef(t, tokNew)
		if newIdx == oldIdx || newIdx == 0 {
			t.Fatalf("the new secret's token has status index %d, the old one %d: want a new index", newIdx, oldIdx)
		}

		// keygate knows at once, with no tick of any background work.
		checkInactive(t, "old token right after a grace-0 rotation", e.introspect(t, e.AdminID, e.AdminSecret, tokOld))
		checkActive(t, "new secret's token", e.introspect(t, e.AdminID, e.AdminSecret, tokNew), tokNew)
		checkActive(t, "another key's token", e.introspect(t, e.AdminID, e.AdminSecret, tokOther), tokOther)
		if r := e.TokenRequest(t, a.ClientID, a.ClientSecret, urlValues("grant_type", "client_credentials")); r.Status != http.StatusUnauthorized {
			t.Fatalf("old secret at the token endpoint after a grace-0 rotation: %s, want 401", r)
		}
		// The bit was set before the rotation answered: the served list
		// has it once keygate's 1 s cache is past.
		e.clock.Advance(1100 * time.Millisecond)
		l := e.statusList(t)
		if l.bit(t, oldIdx) != 1 {
			t.Fatalf("old generation's bit %d is 0 in the served list after a grace-0 rotation; set: %v", oldIdx, l.setBits())
		}
		if l.bit(t, newIdx) != 0 {
			t.Fatalf("the new generation's bit %d is set", newIdx)
		}
		verifyWithin(t, e, v, 3*time.Second, "old token", tokOld)
		mustVerify(t, v, "new secret's token", tokNew)
		mustVerify(t, v, "another key's token", tokOther)
	})
}

func TestRotateGraceEndsOldTokens(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e, v := newStatusEnv(t, b)
		admin := e.AdminToken(t)
		a := e.CreateKeyWith(t, admin, "acme", "a", permAccounting)
		tokOld := e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken
		oldIdx, _ := statusRef(t, tokOld)
		e.AuditTick(t) // a round at t0: nothing has ended

		e.at(10 * time.Second)
		rotated := e.clock.Now()
		rot := e.rotate(t, "acme", a.ClientID, map[string]string{"grace_period": "2m"})
		tokNew := e.Token(t, a.ClientID, rot.ClientSecret, "").AccessToken
		newIdx, _ := statusRef(t, tokNew)

		// A token minted with the previous secret during the grace period
		// names the previous generation and ends with it.
		e.at(40 * time.Second)
		prev := e.Token(t, a.ClientID, a.ClientSecret, "")
		prevIdx, _ := statusRef(t, prev.AccessToken)
		if prevIdx != oldIdx || prevIdx == newIdx {
			t.Fatalf("token minted with the previous secret has index %d; want the previous generation's %d (new: %d)", prevIdx, oldIdx, newIdx)
		}
		graceEnd := rotated.Add(2 * time.Minute)
		if exp := time.Unix(claimInt(t, irPayload(t, prev.AccessToken), "exp"), 0); exp.After(graceEnd) {
			t.Fatalf("token minted with the previous secret expires at %v, after the secret's end %v", exp, graceEnd)
		}
		if want := int64(graceEnd.Sub(e.clock.Now()) / time.Second); prev.ExpiresIn != want {
			t.Fatalf("expires_in of a token minted with the previous secret: %d, want %d (to the grace end)", prev.ExpiresIn, want)
		}

		// During the grace period every token works, and a round at
		// t0+1m sets nothing.
		e.at(70 * time.Second)
		e.AuditTick(t)
		e.clock.Advance(1100 * time.Millisecond)
		if l := e.statusList(t); l.bit(t, oldIdx) != 0 {
			t.Fatalf("old generation's bit set during the grace period")
		}
		for _, c := range []struct{ what, tok string }{{"pre-rotation token", tokOld}, {"previous-secret token", prev.AccessToken}, {"new token", tokNew}} {
			checkActive(t, c.what+" during the grace period", e.introspect(t, e.AdminID, e.AdminSecret, c.tok), c.tok)
			mustVerify(t, v, c.what+" during the grace period", c.tok)
		}

		// The grace ends: keygate's introspection knows at once; the bit
		// is set by the next background round.
		e.clock.Set(graceEnd.Add(time.Second))
		checkInactive(t, "pre-rotation token after the grace period", e.introspect(t, e.AdminID, e.AdminSecret, tokOld))
		if l := e.statusList(t); l.bit(t, oldIdx) != 0 {
			t.Fatalf("old generation's bit set before any round after the grace period")
		}
		e.AuditTick(t)
		e.clock.Advance(1100 * time.Millisecond)
		l := e.statusList(t)
		if l.bit(t, oldIdx) != 1 || l.bit(t, newIdx) != 0 {
			t.Fatalf("after the grace period's round: bits old %d = %d, new %d = %d; want 1 and 0", oldIdx, l.bit(t, oldIdx), newIdx, l.bit(t, newIdx))
		}
		verifyWithin(t, e, v, 3*time.Second, "pre-rotation token after the grace period", tokOld)
		mustVerify(t, v, "new token after the grace period", tokNew)
		checkActive(t, "new token after the grace period", e.introspect(t, e.AdminID, e.AdminSecret, tokNew), tokNew)
	})
}

// TestDeleteDuringGraceRevokesBothGenerations: deleting a key whose
// previous secret is still live sets both generations' bits.
func TestDeleteDuringGraceRevokesBothGenerations(t *testing.T) {
	t.Parallel()
	e, _ := newStatusEnv(t, servertest.Bolt())
	admin := e.AdminToken(t)
	a := e.CreateKeyWith(t, admin, "acme", "a", permAccounting)
	oldIdx, _ := statusRef(t, e.Token(t, a.ClientID, a.ClientSecret, "").AccessToken)
	rot := e.rotate(t, "acme", a.ClientID, map[string]string{"grace_period": "1h"})
	newIdx, _ := statusRef(t, e.Token(t, a.ClientID, rot.ClientSecret, "").AccessToken)
	if r := e.API(t, e.AdminToken(t), http.MethodDelete, "/v1/teams/acme/keys/"+a.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	l := e.statusList(t)
	if l.bit(t, oldIdx) != 1 || l.bit(t, newIdx) != 1 {
		t.Fatalf("after deleting a key in its grace period: bits %d = %d, %d = %d; want both 1", oldIdx, l.bit(t, oldIdx), newIdx, l.bit(t, newIdx))
	}
}
