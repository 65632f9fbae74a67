package signing

// Master-key rotation of the signing keys: which master key a new key is
// sealed under, the check that keeps that choice true at the moment the key
// is added, and the re-seal of a whole set under a new master key
// (`keygate master-key rotate`, apikey.RotateMasterKey).

import (
	"errors"
	"fmt"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
)

// ErrMasterKeyChanged: the signing key set is sealed under a master key
// other than the one a new key was sealed under — the store was re-sealed
// (master-key rotation) since the key was made, or this process does not
// hold the store's master key. Nothing was written.
var ErrMasterKeyChanged = errors.New("the signing keys are sealed under another master key")

// SealingKey returns the master key a new key of set must be sealed under:
// the one the set records (store.SigningKeys.MasterKeyID), which mk must
// hold as its own or as its previous key. A set that records none (written
// before sets recorded it) is sealed under whichever held key opens its
// active key; an empty set takes mk's own key. During a rotation new keys
// are thus sealed under the old master key until the re-seal, so instances
// not yet given the new one can still read every key.
func SealingKey(set store.SigningKeys, mk *masterkey.Key) (*masterkey.Key, error) {
	if set.MasterKeyID != "" {
		k, ok := mk.Holding(set.MasterKeyID)
		if !ok {
			return nil, fmt.Errorf("%w: the store's signing keys are sealed under master key %s, this process holds %v", ErrMasterKeyChanged, set.MasterKeyID, mk.Held())
		}
		return k, nil
	}
	if set.Active == nil {
		k, _ := mk.Holding(mk.ID())
		return k, nil
	}
	for _, id := range mk.Held() {
		k, _ := mk.Holding(id)
		if _, err := k.Open(sealPurpose(set.Active.KID), set.Active.PrivateKeySealed); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: no master key this process holds (%v) opens the active signing key %s", ErrMasterKeyChanged, mk.Held(), set.Active.KID)
}

// CheckMasterKey is the check every update function that adds a sealed key
// to the set runs on the set it is given, in the same atomic step: sealer
// (from SealingKey) must still be the set's master key. Once a rotation has
// re-sealed the set under a new master key, an instance that made its key
// under the old one is refused here instead of adding a key the others
// cannot open. For a set that records no master key, sealer must open its
// active key (a quick AES-GCM open; no store call).
func CheckMasterKey(set store.SigningKeys, sealer *masterkey.Key) error {
	switch {
	case set.MasterKeyID != "":
		if set.MasterKeyID != sealer.ID() {
			return fmt.Errorf("%w: the set was re-sealed under master key %s, the new key is sealed under %s; restart with the store's master key", ErrMasterKeyChanged, set.MasterKeyID, sealer.ID())
		}
	case set.Active != nil:
		if _, err := sealer.Open(sealPurpose(set.Active.KID), set.Active.PrivateKeySealed); err != nil {
			return fmt.Errorf("%w: master key %s does not open the active signing key %s", ErrMasterKeyChanged, sealer.ID(), set.Active.KID)
		}
	}
	return nil
}

// Reseal returns set with every sealed private key (the active one, the
// next one and every retired one) opened with mk — its own key or its previous one —
// and sealed again under mk's own key, and the set marked as sealed under
// it. It is pure (no store call), for an UpdateSigningKeys update
// function, so the whole set changes master key in one atomic step. A key
// mk cannot open fails the whole re-seal, naming the key, and nothing of
// set is changed.
func Reseal(set store.SigningKeys, mk *masterkey.Key) (store.SigningKeys, error) {
	sealer, _ := mk.Holding(mk.ID()) // never the previous key
	// A copy of set with every sealed key replaced: any other field of the
	// set or of a key is kept as it is.
	out := set
	out.MasterKeyID = sealer.ID()
	out.Retired = nil
	reseal := func(k store.SigningKey) (store.SigningKey, error) {
		der, err := mk.Open(sealPurpose(k.KID), k.PrivateKeySealed)
		if err != nil {
			return k, fmt.Errorf("re-seal signing key %s: %w", k.KID, err)
		}
		if k.PrivateKeySealed, err = sealer.Seal(sealPurpose(k.KID), der); err != nil {
			return k, fmt.Errorf("re-seal signing key %s: %w", k.KID, err)
		}
		return k, nil
	}
	if set.Active != nil {
		a, err := reseal(*set.Active)
		if err != nil {
			return set, err
		}
		out.Active = &a
	}
	if set.Next != nil {
		n, err := reseal(*set.Next)
		if err != nil {
			return set, err
		}
		out.Next = &n
	}
	for _, r := range set.Retired {
		k, err := reseal(r.SigningKey)
		if err != nil {
			return set, err
		}
		r.SigningKey = k
		out.Retired = append(out.Retired, r)
	}
	return out, nil
}
