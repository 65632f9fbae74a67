package apikey

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
)

// countReads counts SigningKeys reads.
type countReads struct {
	store.Store
	reads atomic.Int64
}

func (c *countReads) SigningKeys(ctx context.Context) (store.SigningKeys, error) {
	c.reads.Add(1)
	return c.Store.SigningKeys(ctx)
}

// TestUnknownKIDReloadAtMostOnceASecond: tokens naming unknown kids make
// an instance read the stored key set at most once a second, and a read
// picks up a key another instance added.
func TestUnknownKIDReloadAtMostOnceASecond(t *testing.T) {
	st, mk := FreshStore(t)
	clk := &clock{}
	clk.t.Store(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano())
	cr := &countReads{Store: st}
	svc, err := Open(context.Background(), Config{Store: cr, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(context.Background(), Config{Store: st, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := cr.reads.Load()
	if !svc.ReloadSigningKeys(ctx) {
		t.Fatal("the first reload was refused")
	}
	for range 10 {
		if svc.ReloadSigningKeys(ctx) {
			t.Fatal("a second reload within the second read the store")
		}
	}
	clk.advance(999 * time.Millisecond)
	if svc.ReloadSigningKeys(ctx) {
		t.Fatal("a reload 999ms after the last read the store")
	}
	if got := cr.reads.Load() - start; got != 1 {
		t.Fatalf("%d store reads for 12 unknown kids within a second, want 1", got)
	}
	// Another instance rotates at once; after the second has passed, the
	// reload finds its key.
	keys, err := other.RotateSigningKeys(ctx, Rotation{Now: true})
	if err != nil {
		t.Fatal(err)
	}
	newKID := keys[0].KID
	if _, ok := svc.KeySet().PublicKey(newKID); ok {
		t.Fatal("the instance knew the new key before reloading")
	}
	clk.advance(time.Millisecond)
	if !svc.ReloadSigningKeys(ctx) {
		t.Fatal("a reload a second after the last was refused")
	}
	if _, ok := svc.KeySet().PublicKey(newKID); !ok || svc.KeySet().Signer().KID() != newKID {
		t.Fatal("the reload did not pick up the other instance's key")
	}
}

// TestRotateSigningKeysAfterMasterKeyRotation: an instance still holding
// only the master key the store was rotated away from cannot add a signing
// key by hand (rotate, now, revoke of the current key): refused with
// signing.ErrMasterKeyChanged, nothing written. After the rotation a key
// added by an instance with the new key is sealed under it.
func TestRotateSigningKeysAfterMasterKeyRotation(t *testing.T) {
	ctx := context.Background()
	st, oldKey := FreshStore(t)
	_, newKey := rawMasterKey(t)
	stale, err := Open(ctx, Config{Store: st, MasterKey: oldKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RotateMasterKey(ctx, st, newKey.WithPrevious(oldKey)); err != nil {
		t.Fatal(err)
	}
	before, _ := st.SigningKeys(ctx)
	for _, r := range []Rotation{{}, {Now: true}, {Revoke: before.Active.KID}} {
		if _, err := stale.RotateSigningKeys(ctx, r); !errors.Is(err, signing.ErrMasterKeyChanged) {
			t.Fatalf("rotation %+v by an instance on the old master key: %v; want ErrMasterKeyChanged", r, err)
		}
		if after, _ := st.SigningKeys(ctx); after.Next != nil || after.Active.KID != before.Active.KID {
			t.Fatalf("a refused rotation %+v changed the set", r)
		}
	}
	fresh, err := Open(ctx, Config{Store: st, MasterKey: newKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.RotateSigningKeys(ctx, Rotation{}); err != nil {
		t.Fatal(err)
	}
	after, _ := st.SigningKeys(ctx)
	if id, _ := masterkey.SealedBy(after.Next.PrivateKeySealed); after.Next == nil || id != newKey.ID() || after.MasterKeyID != newKey.ID() {
		t.Fatalf("the next key is sealed under %s (set %s), want %s", id, after.MasterKeyID, newKey.ID())
	}
}
