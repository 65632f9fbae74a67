package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// dirState is every file under dir with its mode and the hash of its
// content, to show that a refused start changed nothing, byte for byte.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	state := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			state[rel] = fi.Mode().String()
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		state[rel] = fmt.Sprintf("%s %x", fi.Mode(), sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

func sameState(t *testing.T, before, after map[string]string) {
	t.Helper()
	if len(before) != len(after) {
		t.Errorf("data dir held %d entries, now %d: %v → %v", len(before), len(after), before, after)
	}
	for name, b := range before {
		if a := after[name]; a != b {
			t.Errorf("%s changed: %q → %q", name, b, a)
		}
	}
}

// usedDataDir is a data directory after a first start and a stop: a store
// with the generated admin key, master.key and admin-credentials.json.
func usedDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s, _ := startFirstServe(t, dir, false)
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serveRefused runs serve on dir with the environment vars and returns its
// error and log; the test fails if serve started.
func serveRefused(t *testing.T, dir string, vars map[string]string) (error, string) {
	t.Helper()
	cfg, err := loadConfig(t, "--data-dir", dir, "--listen", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return serveRefusedWith(t, cfg, vars)
}

// serveRefusedWith is serveRefused with a configuration of the test's own.
func serveRefusedWith(t *testing.T, cfg config.Config, vars map[string]string) (error, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var log syncBuffer
	e := testEnv(vars)
	e.stderr = &log
	err := serve(ctx, cfg, e, storeBackends)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve started (err %v); log:\n%s", err, log.String())
	}
	return err, log.String()
}

// newestMetaPages is the page count the newer valid meta page of a bbolt
// file records (go.etcd.io/bbolt internal/common/meta.go: pgid at byte 40
// of the meta, txid at 48, after a 16-byte page header).
func newestMetaPages(t *testing.T, b []byte, pageSize int) int {
	t.Helper()
	var pgid, txid uint64
	for _, off := range []int{0, pageSize} {
		m := b[off+16:]
		if tx := binary.NativeEndian.Uint64(m[48:]); tx >= txid {
			txid, pgid = tx, binary.NativeEndian.Uint64(m[40:])
		}
	}
	return int(pgid)
}

// newestRoot is the root bucket's page of the newer meta page (its first
// field, at byte 16 of the meta).
func newestRoot(t *testing.T, b []byte, pageSize int) int {
	t.Helper()
	var root, txid uint64
	for _, off := range []int{0, pageSize} {
		m := b[off+16:]
		if tx := binary.NativeEndian.Uint64(m[48:]); tx >= txid {
			txid, root = tx, binary.NativeEndian.Uint64(m[16:])
		}
	}
	return int(root)
}

// TestServeRefusesDamagedStore: a short, truncated or garbled keygate.db
// stops serve with one line naming the file and what to do, before bbolt
// maps it (a truncated file would fault with SIGBUS and kill this test),
// and the data directory is left exactly as it was.
func TestServeRefusesDamagedStore(t *testing.T) {
	t.Parallel()
	pageSize := os.Getpagesize()
	const todo = ": restore it from a backup, or move it away to start an empty store; keygate has not changed it"
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		reason func(b []byte) string // from the damaged file
	}{
		{"shorter than four pages", func(b []byte) []byte { return b[:3*pageSize] },
			func([]byte) string {
				return fmt.Sprintf("%d bytes, shorter than the 4 pages of %d bytes of an empty store", 3*pageSize, pageSize)
			}},
		// bbolt grows the file ahead of use: cut into the pages in use.
		{"truncated", func(b []byte) []byte { return b[:(newestMetaPages(t, b, pageSize)-1)*pageSize] },
			func(b []byte) string {
				return fmt.Sprintf("truncated to %d bytes, its meta page says %d", len(b), newestMetaPages(t, b, pageSize)*pageSize)
			}},
		{"both meta pages garbled", func(b []byte) []byte {
			b[16+20] ^= 0xff
			b[pageSize+16+20] ^= 0xff
			return b
		}, func([]byte) string { return "no valid meta page" }},
		// Sound meta pages, a root page that is neither branch nor leaf:
		// bbolt panics reading it, which start-up reports as damage.
		{"root page damaged", func(b []byte) []byte {
			b[newestRoot(t, b, pageSize)*pageSize+8] ^= 0xff
			return b
		}, func(b []byte) string {
			root := newestRoot(t, b, pageSize)
			return fmt.Sprintf("assertion failed: page %d: has unexpected type/flags: %x", root, binary.NativeEndian.Uint16(b[root*pageSize+8:]))
		}},
		{"not a database", func([]byte) []byte { return []byte(strings.Repeat("not bbolt ", 2000)) },
			func([]byte) string { return "no valid meta page" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := usedDataDir(t)
			db := filepath.Join(dir, dbFileName)
			b, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			b = tc.damage(b)
			if err := os.WriteFile(db, b, 0o600); err != nil {
				t.Fatal(err)
			}
			before := dirState(t, dir)
			err, _ = serveRefused(t, dir, nil)
			want := "store file " + db + " is damaged (" + tc.reason(b) + ")" + todo
			if err.Error() != want {
				t.Errorf("error:\n %s\nwant:\n %s", err, want)
			}
			sameState(t, before, dirState(t, dir))
		})
	}
}

// TestServeRefusesStoreInUse: a keygate.db another process holds is
// refused within the lock timeout, not waited on forever.
func TestServeRefusesStoreInUse(t *testing.T) {
	t.Parallel()
	dir := usedDataDir(t)
	db := filepath.Join(dir, dbFileName)
	other, err := bolt.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	before := dirState(t, dir)
	err, _ = serveRefused(t, dir, nil)
	if want := "store file " + db + " is in use by another keygate: stop it, or give this one another --data-dir"; err.Error() != want {
		t.Errorf("error:\n %s\nwant:\n %s", err, want)
	}
	sameState(t, before, dirState(t, dir))
}

// TestServeRefusesLostStore: keygate.db missing or empty where the data
// directory shows it held a store is refused, not taken for a first start
// (which would generate a new admin key over the old directory).
func TestServeRefusesLostStore(t *testing.T) {
	t.Parallel()
	key, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		lose  func(t *testing.T, dir string) // the store's loss
		vars  map[string]string
		state string
		sign  string
	}{
		{"missing beside master.key", func(t *testing.T, dir string) {
			mustRemove(t, filepath.Join(dir, dbFileName))
		}, nil, "missing", masterkey.FileName},
		{"empty beside master.key", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, dbFileName), 0); err != nil {
				t.Fatal(err)
			}
		}, nil, "empty", masterkey.FileName},
		{"missing beside admin-credentials.json", func(t *testing.T, dir string) {
			mustRemove(t, filepath.Join(dir, dbFileName))
			mustRemove(t, filepath.Join(dir, masterkey.FileName))
		}, map[string]string{envMasterKey: key}, "missing", adminCredentialsFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := usedDataDir(t)
			tc.lose(t, dir)
			before := dirState(t, dir)
			err, _ := serveRefused(t, dir, tc.vars)
			db, sign := filepath.Join(dir, dbFileName), filepath.Join(dir, tc.sign)
			want := "store file " + db + " is " + tc.state + " but " + sign + " is there, so this directory held a store: restore keygate.db from a backup; if no first start ever finished here, remove " + sign + " to start afresh"
			if err.Error() != want {
				t.Errorf("error:\n %s\nwant:\n %s", err, want)
			}
			sameState(t, before, dirState(t, dir))
		})
	}
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// TestServeRefusesStoreWithoutMasterKey: a store that holds keys, with no
// master key anywhere, is refused; no new master.key is generated (it could
// not open the stored secrets, and would make the directory look new).
func TestServeRefusesStoreWithoutMasterKey(t *testing.T) {
	t.Parallel()
	dir := usedDataDir(t)
	mustRemove(t, filepath.Join(dir, masterkey.FileName))
	before := dirState(t, dir)
	err, _ := serveRefused(t, dir, nil)
	want := "store file " + filepath.Join(dir, dbFileName) + " holds keys but no master key was found (not in KEYGATE_MASTER_KEY, KEYGATE_MASTER_KEY_FILE or " +
		filepath.Join(dir, masterkey.FileName) + "): set the master key it was created with; keygate does not generate a new one, which could not read the stored secrets"
	if err.Error() != want {
		t.Errorf("error:\n %s\nwant:\n %s", err, want)
	}
	sameState(t, before, dirState(t, dir))
}

// TestServeMasterKeyFileModes: <data_dir>/master.key readable by group or
// others is refused; a KEYGATE_MASTER_KEY_FILE that is (as Kubernetes mounts
// secrets by default) only draws a warning.
func TestServeMasterKeyFileModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o640, 0o604} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			t.Parallel()
			dir := usedDataDir(t)
			path := filepath.Join(dir, masterkey.FileName)
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			before := dirState(t, dir)
			err, _ := serveRefused(t, dir, nil)
			want := fmt.Sprintf("master key file %s is readable by group or others (mode %#o): run `chmod 600 %s`", path, mode, path)
			if err.Error() != want {
				t.Errorf("error:\n %s\nwant:\n %s", err, want)
			}
			sameState(t, before, dirState(t, dir))
		})
	}

	t.Run("KEYGATE_MASTER_KEY_FILE 0644", func(t *testing.T) {
		t.Parallel()
		key, err := masterkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		keyFile := writeKeyFile(t, key)
		if err := os.Chmod(keyFile, 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "data")
		cfg, err := loadConfig(t, "--data-dir", dir, "--listen", freeAddr(t))
		if err != nil {
			t.Fatal(err)
		}
		r := startServeWith(t, cfg, map[string]string{envMasterKeyFile: keyFile})
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		want := `msg="the master key file is readable by group or others: restrict it (chmod 600, or defaultMode: 0400 on a Kubernetes secret volume)" file=` + keyFile + " mode=0644"
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.log)
		}
	})
}

// TestServeAfterInterruptedFirstStart: a first start creates keygate.db
// before master.key, so what a crash between the two leaves (a store with no
// secrets in it, no master.key) is a first start again; so is a store with
// no secrets beside a master.key (a crash before the pepper was stored).
func TestServeAfterInterruptedFirstStart(t *testing.T) {
	t.Parallel()
	for _, withKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("master.key=%v", withKey), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			st, err := bolt.Open(filepath.Join(dir, dbFileName))
			if err != nil {
				t.Fatal(err)
			}
			st.Close()
			if withKey {
				if _, _, err := masterkey.LoadOrCreate(dir); err != nil {
					t.Fatal(err)
				}
			}
			s, base := startFirstServe(t, dir, false)
			admin, _ := readAdminFile(t, dir)
			teamToken(t, base, admin.ClientID, admin.ClientSecret)
			if err := s.stop(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestServeStoresNoAdminWhoseSecretIsLost: the first admin's credentials
// are written to their 0600 file before the key is stored; when the file
// cannot be written, serve stops and no admin key exists.
func TestServeStoresNoAdminWhoseSecretIsLost(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	// A directory where the file should be: the write fails.
	creds := filepath.Join(dir, adminCredentialsFile)
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	// An interrupted first start's store, so the directory is not taken
	// for one that held a store (admin-credentials.json exists).
	st, err := bolt.Open(filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	err, _ = serveRefused(t, dir, nil)
	if want := "first admin key not created: write admin credentials: open " + creds + ": is a directory"; err.Error() != want {
		t.Errorf("error:\n %s\nwant:\n %s", err, want)
	}
	st, err = bolt.Open(filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	if err := st.ForEachKey(context.Background(), func(store.Key) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("%d keys stored (%v), want none: an admin whose secret nobody has", n, err)
	}
}
