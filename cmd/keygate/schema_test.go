package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// serve refuses a data file of a newer schema version with one line naming
// both versions, and leaves the file as it was, byte for byte.
func TestServeRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg, err := loadConfig(t, "--data-dir", dir, "--listen", addr, "--issuer", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	s := startServeWith(t, cfg, nil)
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, dbFileName)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("7")) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := testEnv(nil)
	e.stderr = &syncBuffer{}
	err = serve(ctx, cfg, e, storeBackends)
	want := "open store " + path + ": the store has schema version 7, newer than this keygate's 4: run the keygate release that wrote it (or a later one); see the upgrade and rollback procedure in README.md"
	if err == nil || err.Error() != want {
		t.Fatalf("serve on a schema 7 file: %v\nwant: %s", err, want)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("the refused serve changed the file (%v)", err)
	}
}
