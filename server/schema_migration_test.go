package server_test

import (
	"path/filepath"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store/bolt"
)

// A keygate data file in the version-1 layout (written by keygate, then
// turned back, byte for byte at the bucket level, into what a version-1
// keygate from before the secret and deny-expiry indices wrote: schema "1",
// no formats record, neither index) opens, is migrated to version 2, and
// keygate serves it: the admin key and a team key authenticate.
func TestBoltSchema1StoreServes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var admin struct {
		MasterKey            *masterkey.Key
		AdminID, AdminSecret string
	}
	var key servertest.Key
	t.Run("write", func(t *testing.T) {
		e := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(st)})
		key = e.CreateKey(t, "acme", "ci", "accounting_api")
		admin.MasterKey, admin.AdminID, admin.AdminSecret = e.MasterKey, e.AdminID, e.AdminSecret
	})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if err := meta.Put([]byte("schema"), []byte("1")); err != nil {
			return err
		}
		if err := meta.Delete([]byte("formats")); err != nil {
			return err
		}
		if err := tx.DeleteBucket([]byte("secrets")); err != nil {
			return err
		}
		return tx.DeleteBucket([]byte("deny_expiry"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	st, err = bolt.Open(path)
	if err != nil {
		t.Fatalf("open the version-1 file: %v", err)
	}
	defer st.Close()
	e := servertest.StartWith(t, servertest.Config{
		Backend:   servertest.Existing(st),
		MasterKey: admin.MasterKey,
		Options:   server.Options{AdminClientID: admin.AdminID, AdminClientSecret: admin.AdminSecret},
	})
	e.Token(t, key.ClientID, key.ClientSecret, "")
	e.AdminToken(t)
	if got := e.ListKeys(t, e.AdminToken(t), "acme"); len(got.Keys) != 1 || got.Keys[0].ClientID != key.ClientID {
		t.Fatalf("keys of team acme after the migration: %+v", got.Keys)
	}
}
