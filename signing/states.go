package signing

// Key states. A key is "next" (published, not signing yet), "current"
// (signing) or "retired" (published until every token it signed has
// expired, plus a margin), then it is removed. Each transition is an
// absolute time in the stored record (a next key's SignsFrom, a retired
// key's PublishUntil), so instances switch by their clocks at the same
// moment whether or not one of them has written the change yet: Resolve is
// a pure function of the record and the clock. The writes (a new next key,
// recording a promotion, removing a key) are compare-and-set updates of the
// one record (KeyStore.UpdateSigningKeys), so exactly one instance makes
// each; the others find it done when their update function runs.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
)

// Key states as the management API and the CLI name them.
const (
	StateNext    = "next"
	StateCurrent = "current"
	StateRetired = "retired"
)

// Sentinel errors of manual rotations.
var (
	// ErrNextScheduled: a safe rotation was asked for while a next key is
	// already published and waiting for its time.
	ErrNextScheduled = errors.New("a next signing key is already scheduled")
	// ErrUnknownKID: no published key has that kid.
	ErrUnknownKID = errors.New("no published signing key has this kid")
	// errNeedKey: the update needs a freshly generated key it was not
	// given (the record changed since the caller looked); the caller
	// generates one and tries again.
	errNeedKey = errors.New("signing key update needs a new key")
)

// Schedule is when keys change.
type Schedule struct {
	// Rotation is how long a key signs before a scheduled rotation replaces
	// it; 0 rotates only when asked (or when the algorithm changes).
	Rotation time.Duration
	// Prepublish is how long a next key is in the JWKS before it signs:
	// long enough for every verifier's cache to have fetched it.
	Prepublish time.Duration
	// Retain is how long a retired key stays published after it stopped
	// signing: RetainFor(the longest lifetime of any token it can sign).
	Retain time.Duration
}

// RetainFor is how long a retired key stays published when no token lives
// longer than longestToken: that plus publishSlack, which covers clock
// skew between keygate's instances and verifiers' exp leeway.
func RetainFor(longestToken time.Duration) time.Duration { return longestToken + publishSlack }

// signsFrom is when k signs: records written before key states have no
// SignsFrom, and their active key signed since it was created.
func signsFrom(k store.SigningKey) time.Time {
	if k.SignsFrom.IsZero() {
		return k.CreatedAt
	}
	return k.SignsFrom
}

// Resolve returns the set as it stands at now: a next key whose time has
// come is current, the key it replaced is retired (published for retain
// from that moment), and retired keys past their publication are gone. It
// is pure and deterministic, so every instance with the same record and
// clock resolves the same set; writing its result changes nothing for them.
func Resolve(keys store.SigningKeys, now time.Time, retain time.Duration) store.SigningKeys {
	out := store.SigningKeys{Retired: slices.Clone(keys.Retired), MasterKeyID: keys.MasterKeyID}
	if keys.Active != nil {
		a := *keys.Active
		a.SignsFrom = signsFrom(a)
		out.Active = &a
	}
	if keys.Next != nil {
		n := *keys.Next
		out.Next = &n
	}
	if out.Next != nil && !now.Before(out.Next.SignsFrom) {
		from := out.Next.SignsFrom
		if out.Active != nil {
			out.Retired = append([]store.RetiredSigningKey{{SigningKey: *out.Active, RetiredAt: from, PublishUntil: from.Add(retain)}}, out.Retired...)
		}
		out.Active, out.Next = out.Next, nil
	}
	out.Retired = slices.DeleteFunc(out.Retired, func(r store.RetiredSigningKey) bool { return !r.PublishUntil.After(now) })
	if len(out.Retired) == 0 {
		out.Retired = nil
	}
	return out
}

// keyDue says whether resolved needs a new key at now and when it should
// start signing: the first key (at once), a key of a newly configured
// algorithm, or the scheduled rotation of the current key. A next key
// already waiting covers all of them.
func keyDue(resolved store.SigningKeys, now time.Time, sched Schedule, alg string) (time.Time, bool) {
	switch {
	case resolved.Active == nil:
		return now, true
	case resolved.Next != nil:
		return time.Time{}, false
	case resolved.Active.Alg != alg:
		return now.Add(sched.Prepublish), true
	case sched.Rotation > 0:
		at := resolved.Active.SignsFrom.Add(sched.Rotation)
		if now.Before(at.Add(-sched.Prepublish)) {
			return time.Time{}, false
		}
		return later(at, now.Add(sched.Prepublish)), true
	}
	return time.Time{}, false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Due reports whether the stored record needs a write at now: a promotion
// or a removal to record, or a key to add (then needKey).
func Due(stored store.SigningKeys, now time.Time, sched Schedule, alg string) (due, needKey bool) {
	r := Resolve(stored, now, sched.Retain)
	_, needKey = keyDue(r, now, sched, alg)
	promoted := stored.Next != nil && !now.Before(stored.Next.SignsFrom)
	removed := slices.ContainsFunc(stored.Retired, func(k store.RetiredSigningKey) bool { return !k.PublishUntil.After(now) })
	return needKey || promoted || removed, needKey
}

// Advance is the update of a scheduled transition: old resolved at now,
// plus candidate (a freshly generated key of alg) when a key is due. It
// returns errNeedKey when a key is due and candidate is nil. Run inside
// UpdateSigningKeys, it decides on the record as stored at that moment:
// two instances advancing at once store one new key between them.
func Advance(old store.SigningKeys, now time.Time, sched Schedule, alg string, candidate *store.SigningKey) (store.SigningKeys, error) {
	r := Resolve(old, now, sched.Retain)
	at, ok := keyDue(r, now, sched, alg)
	if !ok {
		return r, nil
	}
	if candidate == nil || candidate.Alg != alg {
		return old, errNeedKey
	}
	c := *candidate
	c.SignsFrom = at.UTC()
	if r.Active == nil {
		r.Active = &c
	} else {
		r.Next = &c
	}
	return r, nil
}

// RotateSafe publishes candidate as the next key, to sign once
// sched.Prepublish has passed. It fails with ErrNextScheduled when a next
// key is already waiting.
func RotateSafe(old store.SigningKeys, now time.Time, sched Schedule, candidate store.SigningKey) (store.SigningKeys, error) {
	r := Resolve(old, now, sched.Retain)
	if r.Next != nil {
		return old, fmt.Errorf("%w (%s, signing from %s): make it sign at once with a rotation now",
			ErrNextScheduled, r.Next.KID, r.Next.SignsFrom.UTC().Format(time.RFC3339))
	}
	candidate.SignsFrom = now.Add(sched.Prepublish).UTC()
	r.Next = &candidate
	return r, nil
}

// RotateNow makes the next key sign at once — candidate when there is no
// next key, which verifiers have then never seen. The replaced key is
// retired as in any rotation.
func RotateNow(old store.SigningKeys, now time.Time, sched Schedule, candidate store.SigningKey) (store.SigningKeys, error) {
	r := Resolve(old, now, sched.Retain)
	if r.Next == nil {
		r.Next = &candidate
	}
	r.Next.SignsFrom = now.UTC()
	return Resolve(r, now, sched.Retain), nil
}

// Revoke removes the key kid from the set at once, whatever its state:
// every token it signed stops verifying. Revoking the current key promotes
// the next one in the same update, or candidate when there is none.
func Revoke(old store.SigningKeys, now time.Time, sched Schedule, kid string, candidate store.SigningKey) (store.SigningKeys, error) {
	r := Resolve(old, now, sched.Retain)
	switch {
	case r.Active != nil && r.Active.KID == kid:
		if r.Next == nil {
			r.Next = &candidate
		}
		r.Active, r.Next = r.Next, nil
		r.Active.SignsFrom = now.UTC()
	case r.Next != nil && r.Next.KID == kid:
		r.Next = nil
	default:
		i := slices.IndexFunc(r.Retired, func(k store.RetiredSigningKey) bool { return k.KID == kid })
		if i < 0 {
			return old, fmt.Errorf("revoke signing key %s: %w", kid, ErrUnknownKID)
		}
		r.Retired = slices.Delete(r.Retired, i, i+1)
		if len(r.Retired) == 0 {
			r.Retired = nil
		}
	}
	return r, nil
}

// Ensure brings the stored set up to date at now: it creates the first key
// on a first start, publishes a next key when the configured algorithm
// changed or the schedule says so, and records promotions and removals
// that are due. Concurrent callers (instances starting or ticking at once)
// agree on one result: the decision is made inside the atomic update. A
// set that needs nothing is returned without a write.
func Ensure(ctx context.Context, ks KeyStore, mk *masterkey.Key, alg string, sched Schedule, now time.Time) (store.SigningKeys, error) {
	cur, err := ks.SigningKeys(ctx)
	if err != nil {
		return store.SigningKeys{}, fmt.Errorf("load signing keys: %w", err)
	}
	due, needKey := Due(cur, now, sched, alg)
	if !due {
		return cur, nil
	}
	// Generate outside the update: RSA generation takes a while and the
	// update function may run more than once on optimistic backends. Two
	// attempts: a second only when the record changed between the read and
	// the update so that a key became due after all.
	for attempt := 0; ; attempt++ {
		var candidate *store.SigningKey
		var sealer *masterkey.Key
		if needKey {
			// Sealed under the store's master key (SealingKey), which the
			// update checks again: after a master-key re-seal an instance
			// still on the old key cannot add one.
			if sealer, err = SealingKey(cur, mk); err != nil {
				return store.SigningKeys{}, err
			}
			k, err := NewStoredKey(sealer, alg, now)
			if err != nil {
				return store.SigningKeys{}, err
			}
			candidate = &k
		}
		out, err := ks.UpdateSigningKeys(ctx, func(old store.SigningKeys) (store.SigningKeys, error) {
			next, err := Advance(old, now, sched, alg, candidate)
			if err != nil || candidate == nil || !Holds(next, candidate.KID) {
				return next, err
			}
			return SealedUnder(old, next, sealer)
		})
		if errors.Is(err, errNeedKey) && attempt == 0 {
			needKey = true
			continue
		}
		if err != nil {
			return store.SigningKeys{}, fmt.Errorf("update signing keys: %w", err)
		}
		return out, nil
	}
}

// Holds reports whether kid is the next or the current key of set.
func Holds(set store.SigningKeys, kid string) bool {
	return set.Active != nil && set.Active.KID == kid || set.Next != nil && set.Next.KID == kid
}

// SealedUnder finishes an update that added a key sealed under sealer: it
// checks, on the set as stored (old), that sealer is still the set's
// master key (CheckMasterKey) and records it. Every update function that
// adds a key ends with it.
func SealedUnder(old, next store.SigningKeys, sealer *masterkey.Key) (store.SigningKeys, error) {
	if err := CheckMasterKey(old, sealer); err != nil {
		return old, err
	}
	next.MasterKeyID = sealer.ID()
	return next, nil
}

// KeyInfo is what may be shown of a key: never its private half.
type KeyInfo struct {
	KID       string
	Alg       string
	State     string
	CreatedAt time.Time
	// SignsFrom is when it started (or will start) signing.
	SignsFrom time.Time
	// RetiresAt is when it stops signing: a retired key's moment, the
	// current key's replacement time when one is scheduled (a next key's,
	// or the rotation schedule's); zero when unknown or not planned.
	RetiresAt time.Time
	// PublishedUntil is when a retired key leaves the JWKS.
	PublishedUntil time.Time
}

// Describe lists the keys of a resolved set: next, current, then retired
// keys newest first.
func Describe(resolved store.SigningKeys, sched Schedule) []KeyInfo {
	var out []KeyInfo
	info := func(k store.SigningKey, state string) KeyInfo {
		return KeyInfo{KID: k.KID, Alg: k.Alg, State: state, CreatedAt: k.CreatedAt, SignsFrom: k.SignsFrom}
	}
	if n := resolved.Next; n != nil {
		out = append(out, info(*n, StateNext))
	}
	if a := resolved.Active; a != nil {
		i := info(*a, StateCurrent)
		switch {
		case resolved.Next != nil:
			i.RetiresAt = resolved.Next.SignsFrom
		case sched.Rotation > 0:
			i.RetiresAt = a.SignsFrom.Add(sched.Rotation)
		}
		out = append(out, i)
	}
	for _, r := range resolved.Retired {
		i := info(r.SigningKey, StateRetired)
		i.RetiresAt, i.PublishedUntil = r.RetiredAt, r.PublishUntil
		out = append(out, i)
	}
	return out
}
