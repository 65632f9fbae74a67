package apikey

import (
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
)

// CheckSealed reports whether mk opens a store's sealed pepper (among its
// singletons) and every signing key it publishes at now: what an import
// into another backend (package storeio) must know before it writes
// anything, since a store whose secrets the master key cannot open would
// refuse every start. The errors name what failed, never a secret.
func CheckSealed(mk *MasterKey, singletons map[string][]byte, keys store.SigningKeys, now time.Time) error {
	sealed, ok := singletons[pepperName]
	if !ok {
		return errors.New("the store holds no pepper: it was never started, so there is nothing to move")
	}
	if _, err := mk.Open(pepperName, sealed); err != nil {
		return fmt.Errorf("the master key does not open the store's pepper (set the master key the store was created with): %w", err)
	}
	// The next key is published, so it is opened too; a retention of a
	// day keeps a key retired by a switch not yet recorded in the check.
	if _, err := signing.Load(keys, mk, now, signing.RetainFor(24*time.Hour)); err != nil {
		return fmt.Errorf("the master key does not open the store's signing keys: %w", err)
	}
	return nil
}
