package apikey

// The signing key set of a running instance: loaded at start, reloaded by a
// background tick (and by an unknown kid among keygate's own tokens),
// advanced through its states on schedule, rotated or revoked on request.
// The rules of the states are package signing's (signing/states.go); here
// is when they are applied and how a snapshot reaches the token path.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
)

// unknownKIDReloadGap bounds reloads caused by tokens naming a kid this
// instance does not know: at most one a second, so made-up kids cannot turn
// every request into a store read.
const unknownKIDReloadGap = time.Second

// loadSigningKeys brings the stored set up to date (first key, algorithm
// change, due transitions) and parses it once, for the token path to use
// lock-free (it never parses a key).
func (s *Service) loadSigningKeys(ctx context.Context) error {
	stored, err := signing.Ensure(ctx, s.store, s.cfg.MasterKey, s.cfg.SigningAlg, s.schedule, s.cfg.Now())
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	ks, err := signing.Load(stored, s.cfg.MasterKey, s.cfg.Now(), s.schedule.Retain)
	if err != nil {
		return err
	}
	s.keys.Store(ks)
	return nil
}

// KeySet is the parsed signing key set as it stands now: an atomic load,
// rebuilt from the same record (no store read, no key parsed) once a
// transition's time has passed — a next key starts signing, a retired key
// leaves the JWKS — so every instance switches by its clock.
func (s *Service) KeySet() *signing.KeySet {
	ks := s.keys.Load()
	if ks.ChangesAt().IsZero() {
		return ks // nothing scheduled: no clock reading
	}
	return s.keySetAt(ks, s.cfg.Now())
}

// KeySetAt is KeySet for a caller that has read the clock already (the
// token path signs as of the reading it authenticated by), so the set is
// judged at the same moment as the token's iat.
func (s *Service) KeySetAt(now time.Time) *signing.KeySet {
	return s.keySetAt(s.keys.Load(), now)
}

func (s *Service) keySetAt(ks *signing.KeySet, now time.Time) *signing.KeySet {
	at := ks.ChangesAt()
	if at.IsZero() || now.Before(at) {
		return ks
	}
	next, err := ks.Reload(ks.Stored(), s.cfg.MasterKey, now, s.schedule.Retain)
	if err != nil {
		// Cannot happen with keys already parsed; keep serving.
		s.log.Warn("advance signing keys", "err", err)
		return ks
	}
	if s.keys.CompareAndSwap(ks, next) {
		s.logChange(ks, next)
	}
	return s.keys.Load()
}

// SigningKeysTick is one round of the background work: it applies the
// transitions that are due (a scheduled next key, recording a promotion,
// removing a key whose tokens have all expired: one instance writes each,
// the compare-and-set decides) and picks up what other instances wrote.
func (s *Service) SigningKeysTick(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	stored, err := signing.Ensure(ctx, s.store, s.cfg.MasterKey, s.cfg.SigningAlg, s.schedule, s.cfg.Now())
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	return s.useStored(stored)
}

// ReloadSigningKeys reads the stored set and uses it if it changed: for an
// unknown kid among keygate's own tokens (an admin token, an introspected
// token signed by a key another instance just created). It reads the store
// at most once per unknownKIDReloadGap and reports whether it did.
func (s *Service) ReloadSigningKeys(ctx context.Context) bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	now := s.cfg.Now()
	if !s.lastKIDReload.IsZero() && now.Sub(s.lastKIDReload) < unknownKIDReloadGap && !now.Before(s.lastKIDReload) {
		return false
	}
	s.lastKIDReload = now
	stored, err := s.store.SigningKeys(ctx)
	if err != nil {
		s.log.Warn("reload signing keys", "err", err)
		return true
	}
	if err := s.useStored(stored); err != nil {
		s.log.Warn("reload signing keys", "err", err)
	}
	return true
}

// useStored makes stored the snapshot's record unless it already is.
// Callers hold reloadMu.
func (s *Service) useStored(stored store.SigningKeys) error {
	cur := s.keys.Load()
	if sameRecord(cur.Stored(), stored) {
		s.KeySet() // transitions by the clock alone
		return nil
	}
	next, err := cur.Reload(stored, s.cfg.MasterKey, s.cfg.Now(), s.schedule.Retain)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	s.keys.Store(next)
	s.logChange(cur, next)
	return nil
}

// sameRecord compares two stored sets by their encoding: what matters is
// whether any instance wrote since, not how times are represented.
func sameRecord(a, b store.SigningKeys) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// logChange logs what changed between two snapshots: kids only, which are
// public (thumbprints), never key material.
func (s *Service) logChange(old, cur *signing.KeySet) {
	if old.Signer().KID() != cur.Signer().KID() {
		s.log.Info("signing key switched", "kid", cur.Signer().KID(), "alg", cur.Signer().Alg(), "previous_kid", old.Signer().KID())
	}
	if string(old.JWKS()) != string(cur.JWKS()) {
		s.log.Info("published signing keys changed", "kids", publishedKIDs(cur))
	}
}

func publishedKIDs(ks *signing.KeySet) []string {
	var kids []string
	for _, k := range signing.Describe(ks.Resolved(), signing.Schedule{}) {
		kids = append(kids, k.KID)
	}
	return kids
}

// SigningSchedule is the rotation schedule in force.
func (s *Service) SigningSchedule() signing.Schedule { return s.schedule }

// SigningKeys lists the keys as they stand now, read fresh from the store
// (and used: the caller sees what this instance then signs with).
func (s *Service) SigningKeys(ctx context.Context) ([]signing.KeyInfo, error) {
	stored, err := s.store.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	s.reloadMu.Lock()
	err = s.useStored(stored)
	s.reloadMu.Unlock()
	if err != nil {
		return nil, err
	}
	return signing.Describe(signing.Resolve(stored, s.cfg.Now(), s.schedule.Retain), s.schedule), nil
}

// Rotation is what a manual rotation does. The zero value is a safe
// rotation: a next key, published for the prepublish period before it
// signs.
type Rotation struct {
	// Now makes the next key (a new one if none waits) sign at once:
	// verifiers that have not fetched it yet refuse its tokens until they
	// refresh their JWKS.
	Now bool
	// Revoke removes the key with this kid at once, whatever its state;
	// every token it signed stops verifying. Revoking the current key
	// promotes the next one (a new one if none waits) in the same update.
	Revoke string
}

// RotateSigningKeys applies r in one compare-and-set update of the stored
// set, uses the result at once on this instance (others pick it up on
// their next tick) and lists the keys as they then stand. Errors wrap
// signing.ErrNextScheduled or signing.ErrUnknownKID when nothing changed
// for those reasons.
func (s *Service) RotateSigningKeys(ctx context.Context, r Rotation) ([]signing.KeyInfo, error) {
	now := s.cfg.Now()
	cur, err := s.store.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	// A key is generated whether or not the update uses it: outside the
	// update, which may run more than once. It is sealed under the store's
	// master key, which the update checks again (signing.SealedUnder).
	sealer, err := signing.SealingKey(cur, s.cfg.MasterKey)
	if err != nil {
		return nil, err
	}
	candidate, err := signing.NewStoredKey(sealer, s.cfg.SigningAlg, now)
	if err != nil {
		return nil, err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	stored, err := s.store.UpdateSigningKeys(ctx, func(old store.SigningKeys) (store.SigningKeys, error) {
		var next store.SigningKeys
		var err error
		switch {
		case r.Revoke != "":
			next, err = signing.Revoke(old, now, s.schedule, r.Revoke, candidate)
		case r.Now:
			next, err = signing.RotateNow(old, now, s.schedule, candidate)
		default:
			next, err = signing.RotateSafe(old, now, s.schedule, candidate)
		}
		if err != nil || !signing.Holds(next, candidate.KID) {
			return next, err
		}
		return signing.SealedUnder(old, next, sealer)
	})
	if err != nil {
		return nil, err
	}
	switch {
	case r.Revoke != "":
		s.log.Warn("signing key revoked: every token it signed now fails verification", "kid", r.Revoke)
	case r.Now:
		s.log.Warn("signing key rotated at once", "kid", stored.Active.KID)
	default:
		if stored.Next != nil {
			s.log.Info("next signing key published", "kid", stored.Next.KID, "signs_from", stored.Next.SignsFrom)
		}
	}
	if err := s.useStored(stored); err != nil {
		return nil, err
	}
	return signing.Describe(signing.Resolve(stored, now, s.schedule.Retain), s.schedule), nil
}

// PublishedAlgs are the algorithms of the published keys, the signing
// key's first.
func (s *Service) PublishedAlgs() []string { return slices.Clone(s.KeySet().Algs()) }
