package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

func genKey(t *testing.T) (string, *masterkey.Key) {
	t.Helper()
	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	k, err := masterkey.Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	return enc, k
}

// rotatedStartError is the one line a start with only the old master key
// fails with after a rotation to newID.
func rotatedStartError(newID, oldID string) string {
	return "the store is sealed under master key " + newID + ", which this instance was not given (it has " + oldID +
		"): after a master-key rotation, start it with the new master key in KEYGATE_MASTER_KEY or KEYGATE_MASTER_KEY_FILE; during one, give it the old key too in KEYGATE_MASTER_KEY_PREVIOUS until `keygate master-key rotate` has finished"
}

// storedSecrets opens the bbolt store in dir (serve stopped) and returns
// the pepper, opened with mk, and the stored keys by client ID.
func storedSecrets(t *testing.T, dir string, mk *masterkey.Key) (pepper []byte, keys map[string]store.Key) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	// CreateSingleton returns the stored pepper (one exists).
	sealed, err := st.CreateSingleton(ctx, "pepper", []byte("probe"))
	if err != nil {
		t.Fatal(err)
	}
	if pepper, err = mk.Open("pepper", sealed); err != nil {
		t.Fatalf("open the stored pepper: %v", err)
	}
	keys = map[string]store.Key{}
	if err := st.ForEachKey(ctx, func(k store.Key) error { keys[k.ClientID] = k; return nil }); err != nil {
		t.Fatal(err)
	}
	return pepper, keys
}

func withVars(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestMasterKeyRotateBolt rotates a stopped embedded store with the CLI:
// a wrong previous key changes nothing (byte for byte); the right one
// re-seals; every key then authenticates with the new key alone, the
// pepper is the same (the hash of a known secret unchanged), tokens signed
// before still verify, and a start with the old key alone fails with the
// rotation's message.
func TestMasterKeyRotateBolt(t *testing.T) {
	t.Parallel()
	oldEnc, oldKey := genKey(t)
	newEnc, newKey := genKey(t)
	wrongEnc, wrongKey := genKey(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg, err := loadConfig(t, "--data-dir", dir, "--listen", addr, "--issuer", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	adminSecret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	admin := map[string]string{envAdminClientID: "rot-admin", envAdminClientSecret: adminSecret}

	s1 := startServeWith(t, cfg, withVars(admin, envMasterKey, oldEnc))
	ac := client.New(client.Config{URL: s1.base, ClientID: "rot-admin", ClientSecret: adminSecret})
	var created []client.CreatedKey
	for _, team := range []string{"acme", "globex"} {
		k, err := ac.CreateKey(ctxFor(t), team, "sync", []string{"accounting_api"})
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, *k)
	}
	tokBefore := teamToken(t, s1.base, created[0].ClientID, created[0].ClientSecret)
	kidBefore, _ := verifyWithJWKS(t, s1.base, tokBefore)
	if err := s1.stop(t); err != nil {
		t.Fatal(err)
	}
	pepperBefore, keysBefore := storedSecrets(t, dir, oldKey)
	dbPath := filepath.Join(dir, dbFileName)
	fileBefore, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	assertFileUnchanged := func(what string) {
		t.Helper()
		if after, err := os.ReadFile(dbPath); err != nil || !bytes.Equal(after, fileBefore) {
			t.Fatalf("%s changed the store file (%v)", what, err)
		}
	}

	// Refusals: nothing changes, and the error says what to do.
	for _, tc := range []struct {
		name string
		vars map[string]string
		want []string
	}{
		{"wrong previous key", map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: wrongEnc},
			[]string{"the store is sealed under master key " + oldKey.ID(), "neither the new key (" + newKey.ID() + ") nor the previous one (" + wrongKey.ID() + ")",
				"KEYGATE_MASTER_KEY_PREVIOUS must be the master key the store is sealed under; nothing was changed"}},
		{"no previous key", map[string]string{envMasterKey: newEnc},
			[]string{"sealed under master key " + oldKey.ID(), "previous one (none given)", "nothing was changed"}},
		{"previous is the new key", map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: newEnc},
			[]string{"KEYGATE_MASTER_KEY_PREVIOUS is the same key as KEYGATE_MASTER_KEY"}},
		{"previous without new", map[string]string{envMasterKeyPrevious: oldEnc},
			[]string{"KEYGATE_MASTER_KEY_PREVIOUS is set but KEYGATE_MASTER_KEY is not"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runWith(t, tc.vars, "master-key", "rotate", "--data-dir", dir)
			if err == nil {
				t.Fatalf("rotate succeeded: %s", stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error()+stdout+stderr, newEnc) || strings.Contains(err.Error()+stdout+stderr, oldEnc) {
				t.Error("a master key appears in the output")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			assertFileUnchanged(tc.name)
		})
	}

	// The new key alone before the rotation: refused with the same line,
	// the other way round, and nothing written.
	err = serve(ctxFor(t), cfg, testEnv(withVars(admin, envMasterKey, newEnc)), storeBackends)
	if want := rotatedStartError(oldKey.ID(), newKey.ID()); err == nil || err.Error() != want {
		t.Fatalf("start with the new key alone before the rotation: %v\nwant: %s", err, want)
	}
	assertFileUnchanged("a refused start")

	// The rotation.
	stdout, _, err := runWith(t, map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: oldEnc}, "master-key", "rotate", "--data-dir", dir)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	wantOut := "re-sealed the pepper and 1 signing keys under master key " + newKey.ID() + " (they were under master key " + oldKey.ID() + ")\n"
	if !strings.HasPrefix(stdout, wantOut) {
		t.Fatalf("rotate printed %q, want it to start with %q", stdout, wantOut)
	}
	if strings.Contains(stdout, newEnc) || strings.Contains(stdout, oldEnc) {
		t.Fatal("rotate printed a master key")
	}
	// The pepper is the same bytes, now opened by the new key alone; every
	// stored hash is still the HMAC of its secret under it.
	pepperAfter, keysAfter := storedSecrets(t, dir, newKey)
	if !bytes.Equal(pepperAfter, pepperBefore) {
		t.Fatal("the rotation changed the pepper")
	}
	h, err := credential.NewHasher(pepperAfter)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range created {
		if subtle.ConstantTimeCompare(h.Hash(c.ClientSecret), keysAfter[c.ClientID].SecretHash) != 1 ||
			!bytes.Equal(keysAfter[c.ClientID].SecretHash, keysBefore[c.ClientID].SecretHash) {
			t.Fatalf("key %s: the hash of its secret changed", c.ClientID)
		}
	}

	// A start with the old key alone: the rotation's one-line message.
	err = serve(ctxFor(t), cfg, testEnv(withVars(admin, envMasterKey, oldEnc)), storeBackends)
	if err == nil || err.Error() != rotatedStartError(newKey.ID(), oldKey.ID()) {
		t.Fatalf("start with the old key after the rotation: %v\nwant: %s", err, rotatedStartError(newKey.ID(), oldKey.ID()))
	}

	// The new key alone: every key authenticates, the earlier token still
	// verifies, the same signing key signs.
	s2 := startServeWith(t, cfg, withVars(admin, envMasterKey, newEnc))
	for _, c := range created {
		tok := teamToken(t, s2.base, c.ClientID, c.ClientSecret)
		if kid, _ := verifyWithJWKS(t, s2.base, tok); kid != kidBefore {
			t.Fatalf("after the rotation tokens are signed by %s, want the same key %s", kid, kidBefore)
		}
	}
	if _, err := client.New(client.Config{URL: s2.base, ClientID: "rot-admin", ClientSecret: adminSecret}).ListKeys(ctxFor(t), "acme"); err != nil {
		t.Fatalf("the admin key after the rotation: %v", err)
	}
	verifyWithJWKS(t, s2.base, tokBefore)
	if err := s2.stop(t); err != nil {
		t.Fatal(err)
	}

	// Run again with the same keys (an interrupted rotation finished): it
	// succeeds and changes nothing that matters.
	if _, _, err := runWith(t, map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: oldEnc}, "master-key", "rotate", "--data-dir", dir); err != nil {
		t.Fatalf("rotate again: %v", err)
	}
	if p, _ := storedSecrets(t, dir, newKey); !bytes.Equal(p, pepperBefore) {
		t.Fatal("a second rotation changed the pepper")
	}
}

// TestMasterKeyRotateKeyFile rotates a master key kept in
// <data_dir>/master.key: rotate generates the new key, re-seals and
// replaces the file; serve then starts on the file as before. An
// interrupted rotation (master.key.new left behind) is finished with the
// key it left.
func TestMasterKeyRotateKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg, err := loadConfig(t, "--data-dir", dir, "--listen", addr, "--issuer", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	s1 := startServeWith(t, cfg, nil) // generates master.key and the admin key
	admin, _ := readAdminFile(t, dir)
	ac := client.New(client.Config{URL: s1.base, ClientID: admin.ClientID, ClientSecret: admin.ClientSecret})
	created, err := ac.CreateKey(ctxFor(t), "acme", "sync", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.stop(t); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, masterkey.FileName)
	oldFile, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, err := masterkey.Parse(string(oldFile))
	if err != nil {
		t.Fatal(err)
	}
	pepperBefore, _ := storedSecrets(t, dir, oldKey)

	stdout, _, err := run(t, "master-key", "rotate", "--data-dir", dir)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	newFile, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := masterkey.Parse(string(newFile))
	if err != nil {
		t.Fatalf("master.key after the rotation: %v", err)
	}
	if newKey.ID() == oldKey.ID() {
		t.Fatal("master.key still holds the old key")
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master.key after the rotation: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if slices.Contains(dirEntries(t, dir), masterkey.FileName+newKeySuffix) {
		t.Fatal("master.key.new is left after a finished rotation")
	}
	for _, w := range []string{"under master key " + newKey.ID(), "replaced " + keyPath + " with the new master key"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("rotate printed %q, want %q in it", stdout, w)
		}
	}
	if p, _ := storedSecrets(t, dir, newKey); !bytes.Equal(p, pepperBefore) {
		t.Fatal("the rotation changed the pepper")
	}
	s2 := startServeWith(t, cfg, nil)
	teamToken(t, s2.base, created.ClientID, created.ClientSecret)
	if err := s2.stop(t); err != nil {
		t.Fatal(err)
	}

	// An interrupted rotation: its new key waits in master.key.new (here
	// before the re-seal). Running rotate again uses that key.
	pendingEnc, pendingKey := genKey(t)
	if err := os.WriteFile(keyPath+newKeySuffix, []byte(pendingEnc+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "master-key", "rotate", "--data-dir", dir); err != nil {
		t.Fatalf("rotate after an interruption: %v", err)
	}
	if b, _ := os.ReadFile(keyPath); strings.TrimSpace(string(b)) != pendingEnc {
		t.Fatal("the finished rotation did not take the key the interrupted one left")
	}
	if p, _ := storedSecrets(t, dir, pendingKey); !bytes.Equal(p, pepperBefore) {
		t.Fatal("the second rotation changed the pepper")
	}
	s3 := startServeWith(t, cfg, nil)
	teamToken(t, s3.base, created.ClientID, created.ClientSecret)

	// While serve runs, the store file is locked: rotate refuses, changing
	// nothing.
	before, _ := os.ReadFile(keyPath)
	_, _, err = run(t, "master-key", "rotate", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "most likely by a running `keygate serve`: stop it") {
		t.Fatalf("rotate beside a running serve: %v", err)
	}
	if after, _ := os.ReadFile(keyPath); !bytes.Equal(after, before) || slices.Contains(dirEntries(t, dir), masterkey.FileName+newKeySuffix) {
		t.Fatal("a refused rotation touched the key file")
	}
}

// A data directory without a store: nothing to re-seal, nothing created.
func TestMasterKeyRotateNoStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newEnc, _ := genKey(t)
	oldEnc, _ := genKey(t)
	_, _, err := runWith(t, map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: oldEnc}, "master-key", "rotate", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "nothing to re-seal") {
		t.Fatalf("rotate on an empty data dir: %v", err)
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("rotate created %v", names)
	}
}
