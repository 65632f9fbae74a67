package apikey

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

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
