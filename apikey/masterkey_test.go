package apikey

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func rawMasterKey(t *testing.T) ([]byte, *masterkey.Key) {
	t.Helper()
	raw := make([]byte, masterkey.Size)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	k, err := masterkey.Parse(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	return raw, k
}

// unversionedSeal seals as keygate did before the sealed format had a
// version: what every store written until then holds.
func unversionedSeal(t *testing.T, raw []byte, purpose string, plain []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(raw)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return aead.Seal(nonce, nonce, plain, []byte(purpose))
}

// unversionedStore is a store as the previous keygate left it: pepper and
// signing key sealed in the unversioned format, no master key recorded.
func unversionedStore(t *testing.T, raw []byte) (store.Store, []byte) {
	t.Helper()
	ctx := context.Background()
	st := storetest.NewMemStore()
	pepper := make([]byte, credential.PepperLen)
	if _, err := rand.Read(pepper); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSingleton(ctx, pepperName, unversionedSeal(t, raw, pepperName, pepper)); err != nil {
		t.Fatal(err)
	}
	priv, err := signing.Generate(signing.ES256)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := signing.Thumbprint(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	active := store.SigningKey{KID: kid, Alg: signing.ES256, PrivateKeySealed: unversionedSeal(t, raw, "signing-key:"+kid, der), CreatedAt: time.Now().UTC()}
	if _, err := st.UpdateSigningKeys(ctx, func(store.SigningKeys) (store.SigningKeys, error) {
		return store.SigningKeys{Active: &active}, nil
	}); err != nil {
		t.Fatal(err)
	}
	return st, pepper
}

func storedPepper(t *testing.T, st store.Store) []byte {
	t.Helper()
	b, err := st.CreateSingleton(context.Background(), pepperName, []byte("probe"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A store written before the sealed format had a version opens as it is,
// and RotateMasterKey moves it to a new master key: the pepper the same,
// every secret still authenticating, the old key alone refused.
func TestRotateMasterKeyFromUnversionedStore(t *testing.T) {
	ctx := context.Background()
	raw, oldKey := rawMasterKey(t)
	_, newKey := rawMasterKey(t)
	_, wrongKey := rawMasterKey(t)
	st, pepper := unversionedStore(t, raw)

	svc, err := Open(ctx, Config{Store: st, MasterKey: oldKey})
	if err != nil {
		t.Fatalf("start on an unversioned store: %v", err)
	}
	k, secret, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "k", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	sealedPepper := storedPepper(t, st)
	setBefore, _ := st.SigningKeys(ctx)

	// A wrong previous key: refused, nothing written.
	if _, err := RotateMasterKey(ctx, st, newKey.WithPrevious(wrongKey)); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("rotation with a wrong previous key: %v; want ErrOpen", err)
	}
	setAfter, _ := st.SigningKeys(ctx)
	if !bytes.Equal(storedPepper(t, st), sealedPepper) || !bytes.Equal(setAfter.Active.PrivateKeySealed, setBefore.Active.PrivateKeySealed) || setAfter.MasterKeyID != "" {
		t.Fatal("a refused rotation changed the store")
	}

	r, err := RotateMasterKey(ctx, st, newKey.WithPrevious(oldKey))
	if err != nil {
		t.Fatalf("RotateMasterKey: %v", err)
	}
	if r.To != newKey.ID() || r.SigningKeys != 1 || len(r.From) != 0 {
		t.Fatalf("rotation %+v; want to %s, 1 signing key, from unversioned values", r, newKey.ID())
	}
	if got, err := newKey.Open(pepperName, storedPepper(t, st)); err != nil || !bytes.Equal(got, pepper) {
		t.Fatalf("the pepper under the new key: %v (same bytes: %v)", err, bytes.Equal(got, pepper))
	}

	svc2, err := Open(ctx, Config{Store: st, MasterKey: newKey})
	if err != nil {
		t.Fatalf("start with the new key alone: %v", err)
	}
	if got, _, err := svc2.Authenticate(ctx, k.ClientID, secret); err != nil || got.ClientID != k.ClientID {
		t.Fatalf("the key's secret after the rotation: %v", err)
	}
	var unknown *masterkey.UnknownKeyError
	if _, err := Open(ctx, Config{Store: st, MasterKey: oldKey}); !errors.As(err, &unknown) || unknown.SealedBy != newKey.ID() {
		t.Fatalf("start with the old key alone: %v; want an UnknownKeyError naming %s", err, newKey.ID())
	}
}

// Two rotations at once (an operator's retry, say) both finish, and the
// pepper is re-sealed, never replaced by another.
func TestRotateMasterKeyConcurrent(t *testing.T) {
	ctx := context.Background()
	raw, oldKey := rawMasterKey(t)
	_, newKey := rawMasterKey(t)
	st, pepper := unversionedStore(t, raw)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = RotateMasterKey(ctx, st, newKey.WithPrevious(oldKey)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
	}
	if got, err := newKey.Open(pepperName, storedPepper(t, st)); err != nil || !bytes.Equal(got, pepper) {
		t.Fatalf("pepper after concurrent rotations: %v", err)
	}
}

// A store no keygate ever started on holds nothing to re-seal: refused,
// and nothing is created.
func TestRotateMasterKeyEmptyStore(t *testing.T) {
	st := storetest.NewMemStore()
	_, k := rawMasterKey(t)
	if _, err := RotateMasterKey(context.Background(), st, k); err == nil {
		t.Fatal("rotation of an empty store succeeded")
	}
	if ok, err := st.CompareAndSwapSingleton(context.Background(), pepperName, nil, []byte("x")); !errors.Is(err, store.ErrNotFound) || ok {
		t.Fatalf("a refused rotation created a pepper (%v)", err)
	}
}
