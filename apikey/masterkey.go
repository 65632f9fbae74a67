package apikey

// Master-key rotation: the store's secrets re-sealed under a new master key
// (`keygate master-key rotate`; README "Rotating the master key").

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
)

// MasterKeyRotation is what RotateMasterKey did.
type MasterKeyRotation struct {
	// From are the IDs of the master keys the pepper and the signing keys
	// were sealed under before (one ID when both were under the same key;
	// none for values sealed before the sealed format named its key).
	From []string
	// To is the ID of the master key everything is sealed under now.
	To string
	// SigningKeys is how many signing keys were re-sealed.
	SigningKeys int
}

// maxPepperSwaps bounds RotateMasterKey's compare-and-swap of the pepper:
// only another rotation running at the same time can make one fail.
const maxPepperSwaps = 5

// RotateMasterKey re-seals the store's secrets — every signing key and the
// pepper — under mk's own key, opening them with mk's own key or its
// previous one (masterkey.Key.WithPrevious). It first checks that mk opens
// every one of them and writes nothing when it does not (a wrong previous
// key leaves the store as it was). The signing keys change in one update
// (signing.Reseal), which records the new master key in the set, so from
// then on an instance without it cannot add a signing key
// (signing.CheckMasterKey); the pepper is then swapped for the same pepper
// sealed anew (a compare-and-swap: a value this call did not read is never
// replaced). The pepper is never regenerated: every stored secret hash
// stays valid. Safe while instances run, and to run again after an
// interruption.
func RotateMasterKey(ctx context.Context, st store.Store, mk *MasterKey) (MasterKeyRotation, error) {
	out := MasterKeyRotation{To: mk.ID()}
	set, err := st.SigningKeys(ctx)
	if err != nil {
		return out, fmt.Errorf("read signing keys: %w", err)
	}
	if set.Active == nil {
		return out, errors.New("the store holds no signing key: keygate never started on it, so there is nothing to re-seal")
	}
	if _, err := signing.Reseal(set, mk); err != nil {
		return out, err
	}
	// A store with signing keys has a pepper (a start stores it first);
	// were it missing, the one stored here is sealed under mk like any
	// first start's.
	stored, pepper, err := ensurePepper(ctx, st, mk)
	if err != nil {
		return out, fmt.Errorf("re-seal pepper: %w", err)
	}
	for _, sealed := range [][]byte{stored, set.Active.PrivateKeySealed} {
		if id, ok := masterkey.SealedBy(sealed); ok && !slices.Contains(out.From, id) {
			out.From = append(out.From, id)
		}
	}

	resealed, err := st.UpdateSigningKeys(ctx, func(cur store.SigningKeys) (store.SigningKeys, error) {
		return signing.Reseal(cur, mk)
	})
	if err != nil {
		return out, fmt.Errorf("re-seal signing keys: %w", err)
	}
	out.SigningKeys = len(resealed.Retired)
	if resealed.Active != nil {
		out.SigningKeys++
	}

	for range maxPepperSwaps {
		sealed, err := mk.Seal(pepperName, pepper)
		if err != nil {
			return out, err
		}
		swapped, err := st.CompareAndSwapSingleton(ctx, pepperName, stored, sealed)
		if err != nil {
			return out, fmt.Errorf("re-seal pepper: %w", err)
		}
		if swapped {
			return out, nil
		}
		// Another rotation re-sealed it meanwhile: read it again; it must
		// still be the same pepper.
		if stored, err = st.CreateSingleton(ctx, pepperName, sealed); err != nil {
			return out, fmt.Errorf("read pepper: %w", err)
		}
		again, err := mk.Open(pepperName, stored)
		if err != nil {
			return out, fmt.Errorf("re-seal pepper: %w", err)
		}
		if subtle.ConstantTimeCompare(again, pepper) != 1 {
			return out, errors.New("re-seal pepper: the stored pepper changed during the rotation")
		}
	}
	return out, fmt.Errorf("re-seal pepper: still changing after %d attempts (another rotation running?)", maxPepperSwaps)
}
