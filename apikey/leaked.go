package apikey

// Leaked secrets (POST /v1/leaked-secrets, #14): anyone who holds a
// keygate secret may report it, as secret-scanning partner programmes
// (GitHub's) do, and its secret generation is cut off at once. Possession
// is the authority: whoever has the secret could use it, so letting them
// end it gives nothing away.
//
// What cutting off a generation means:
//
//   - the current secret: its hash is replaced by SuspendedHash of it (no
//     secret's HMAC is that, so it never authenticates again, and nothing
//     compares against an empty hash) and SecretSuspendedAt is set; only a
//     rotation, which gives a new secret and a new status index, brings the
//     key back. Its status bit is set, so its tokens stop at resource
//     servers, and GenerationLive calls them inactive at introspection.
//   - the previous secret during a grace period: the grace ends now (its
//     hash goes; its status index stays recorded until its bit is set, as
//     after a rotation with grace 0).
//   - a previous secret whose grace ended already, or a string that is no
//     key's secret: nothing; the answer is the same.
//
// The order is Rotate's: the key's record first (one UpdateKey, with the
// key.secret_leaked event in the same atomic step), then the bit. If the
// bit cannot be set, the report fails (the caller may retry, but the hash
// is gone, so a retry finds nothing) and the next audit round sets it,
// from the status schedule's entry written before the record
// (statusschedule.go).

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// MaxLeakedSecrets bounds the strings of one report: each costs an HMAC
// and a store read.
const MaxLeakedSecrets = 100

// suspendedLabel keeps SuspendedHash apart from any other use of SHA-256.
const suspendedLabel = "keygate suspended secret\x00"

// SuspendedHash is what a suspended secret's hash is replaced with:
// SHA-256 over a label and the HMAC. It is the HMAC of no secret (that
// would take a preimage), so Authenticate's comparisons stay as they are
// and fail; and from a secret one can tell whether it is the one that was
// suspended (ensureAdmin refuses to bring a leaked admin secret back).
func SuspendedHash(hash []byte) []byte {
	h := sha256.New()
	h.Write([]byte(suspendedLabel))
	h.Write(hash)
	return h.Sum(nil)
}

// SecretSuspended reports whether k's current secret was reported leaked
// and the key has not been rotated since.
func SecretSuspended(k store.Key) bool { return !k.SecretSuspendedAt.IsZero() }

// ReportLeaked cuts off the secret generation of each reported string that
// is a live secret of a key (see the top of this file) and returns how
// many it cut off, for logs and tests: the caller must not show it, or the
// answer would say which strings are secrets. Every string costs the same
// before a match is known: one HMAC and one index read
// (store.KeyBySecretHash). Strings need not be well-formed secrets (a
// scanner may report a truncated one); those simply match nothing. by is
// the reporter (an anonymous actor with its source address). A store
// failure stops the report and is returned; the generations cut off
// before it stay cut off.
func (s *Service) ReportLeaked(ctx context.Context, by Request, secrets []string) (int, error) {
	if len(secrets) > MaxLeakedSecrets {
		return 0, invalid("at most %d secrets per report, got %d", MaxLeakedSecrets, len(secrets))
	}
	n := 0
	for _, secret := range secrets {
		h := s.hasher.Hash(secret)
		k, err := s.store.KeyBySecretHash(ctx, h)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("look up reported secret: %w", err)
		}
		cut, err := s.cutOff(ctx, by, k, h)
		if err != nil {
			return n, err
		}
		if cut {
			n++
		}
	}
	return n, nil
}

// errNotLive: the reported hash is no longer a live secret of the key
// (rotated, suspended or ended since the lookup); returned from inside
// UpdateKey so that nothing is written.
var errNotLive = errors.New("reported secret is not live")

// cutOff ends the generation of k whose hash is h, if it is still live.
func (s *Service) cutOff(ctx context.Context, by Request, k store.Key, h []byte) (bool, error) {
	ev := s.newEvent(by, store.AuditSecretLeaked, k.TeamID, k.ClientID)
	now := ev.Time
	// The schedule's entry first (statusschedule.go): if the bit below
	// cannot be set, the next round sets it.
	if err := s.scheduleStatusCheck(ctx, k.ClientID, now); err != nil {
		return false, fmt.Errorf("suspend leaked secret of key %s: %w", k.ClientID, err)
	}
	var ended int64
	var which string
	_, err := s.store.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		ended, which = 0, ""
		switch {
		case hmac.Equal(c.SecretHash, h) && !SecretSuspended(c):
			c.SecretHash = SuspendedHash(h)
			c.SecretSuspendedAt = now
			ended, which = c.StatusIndex, "secret"
		case hmac.Equal(c.PreviousSecretHash, h) && PreviousSecretLive(c, now):
			c.PreviousSecretHash = nil
			c.PreviousSecretExpiresAt = now
			// A key rotated before generations had indices of their own
			// (PreviousStatusIndex 0) shares one index between its two
			// secrets: the previous one's tokens cannot be told apart, and
			// only the secret itself is ended.
			ended, which = c.PreviousStatusIndex, "previous_secret"
		default:
			return store.Key{}, errNotLive
		}
		return c, nil
	}, ev)
	switch {
	case errors.Is(err, errNotLive), errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("suspend leaked secret of key %s: %w", k.ClientID, err)
	}
	if ended != 0 {
		if err := s.store.RevokeStatus(ctx, ended); err != nil {
			return true, fmt.Errorf("suspend leaked secret of key %s: revoke status (set by the next background round, within a minute): %w", k.ClientID, err)
		}
	}
	ev.Fields = []string{which}
	s.logAudit(ctx, ev)
	return true, nil
}

// leakedAdminSecret is ensureAdmin's refusal to bring back a configured
// admin secret that was reported leaked.
func leakedAdminSecret(k store.Key, hash []byte) error {
	if SecretSuspended(k) && hmac.Equal(k.SecretHash, SuspendedHash(hash)) {
		return fmt.Errorf("admin key %s: the secret in KEYGATE_ADMIN_CLIENT_SECRET was reported leaked at %s and stays suspended; set a new one (keygate secret generate)",
			k.ClientID, k.SecretSuspendedAt.UTC().Format(time.RFC3339))
	}
	return nil
}
