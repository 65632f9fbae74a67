package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
)

// writeKeyFile writes content to a 0600 file in a fresh directory (as
// systemd's LoadCredential or a Kubernetes Secret volume would) and returns
// its path.
func writeKeyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master-key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sameKey fails the test unless a and b are the same master key: what one
// seals, the other opens.
func sameKey(t *testing.T, a, b *masterkey.Key) {
	t.Helper()
	sealed, err := a.Seal("test", []byte("pepper"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Open("test", sealed); err != nil || string(got) != "pepper" {
		t.Fatalf("the keys differ: Open = %q, %v", got, err)
	}
}

// dirEntries lists dir's names, to show that a refused start wrote nothing
// (in particular no generated master key).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestMasterKeyFromFile(t *testing.T) {
	encoded, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	want, err := masterkey.Parse(encoded)
	if err != nil {
		t.Fatal(err)
	}
	// A trailing newline, as `openssl rand -base64 32 > file` leaves, is fine.
	path := writeKeyFile(t, encoded+"\n")
	dataDir := t.TempDir()
	got, err := loadMasterKey(dataDir, testEnv(map[string]string{envMasterKeyFile: path}).getenv, discardLogger())
	if err != nil {
		t.Fatalf("loadMasterKey: %v", err)
	}
	sameKey(t, want, got)
	// The file's key is used, not a generated one in the data dir.
	if names := dirEntries(t, dataDir); len(names) != 0 {
		t.Errorf("data dir holds %v, want nothing (no generated key)", names)
	}
}

func TestMasterKeyFromVariableStillWorks(t *testing.T) {
	encoded, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := masterkey.Parse(encoded)
	got, err := loadMasterKey(t.TempDir(), testEnv(map[string]string{envMasterKey: encoded}).getenv, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	sameKey(t, want, got)
}

func TestMasterKeyFileRefusals(t *testing.T) {
	// A value that looks like a secret: it must never appear in an error.
	const leaky = "s3cr3t!value!that-is-not-a-key"
	good, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	goodFile := writeKeyFile(t, good)
	malformed := writeKeyFile(t, leaky)
	short := writeKeyFile(t, "c2hvcnQ=") // base64 of "short": 5 bytes
	huge := writeKeyFile(t, strings.Repeat(leaky, 200))
	missing := filepath.Join(t.TempDir(), "no-such-file")

	tests := []struct {
		name string
		vars map[string]string
		want []string // substrings of the error
	}{
		{"both set", map[string]string{envMasterKey: good, envMasterKeyFile: goodFile},
			[]string{"both KEYGATE_MASTER_KEY and KEYGATE_MASTER_KEY_FILE are set", "set only one"}},
		{"missing file", map[string]string{envMasterKeyFile: missing},
			[]string{"KEYGATE_MASTER_KEY_FILE", missing, "no such file"}},
		{"not base64", map[string]string{envMasterKeyFile: malformed},
			[]string{"invalid KEYGATE_MASTER_KEY_FILE " + malformed, "not base64"}},
		{"wrong length", map[string]string{envMasterKeyFile: short},
			[]string{"invalid KEYGATE_MASTER_KEY_FILE " + short, "must be 32 bytes, got 5"}},
		{"too large", map[string]string{envMasterKeyFile: huge},
			[]string{"KEYGATE_MASTER_KEY_FILE", huge, "larger than 4096 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			k, err := loadMasterKey(dataDir, testEnv(tt.vars).getenv, discardLogger())
			if err == nil {
				t.Fatalf("loadMasterKey = %v, nil; want an error", k)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, secret := range []string{leaky, good} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows the file's content", err)
				}
			}
			// Refused means refused: no key was generated in its place.
			if names := dirEntries(t, dataDir); len(names) != 0 {
				t.Errorf("data dir holds %v after a refusal, want nothing", names)
			}
		})
	}
}

// errOpened is what the fake shared store's open returns, to show how far
// backends.open got.
var errOpened = errors.New("store opened")

func TestSharedStoreAcceptsMasterKeyFile(t *testing.T) {
	good, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	stores := backends{"shared": {
		sharedMasterKey: true,
		open: func(context.Context, config.Config, *slog.Logger) (store.Store, error) {
			opened++
			return nil, errOpened
		},
	}}
	cfg := config.Default()
	cfg.Store = "shared"
	cfg.DataDir = t.TempDir()

	// Neither set: refused before the store is opened, naming both ways.
	_, _, err = stores.open(context.Background(), cfg, testEnv(nil).getenv, discardLogger())
	want := "KEYGATE_MASTER_KEY (or KEYGATE_MASTER_KEY_FILE, a file holding it) is required with store shared"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("without a master key: err = %v, want %q", err, want)
	}
	// A malformed file: refused before the store is opened too.
	bad := writeKeyFile(t, "not a key")
	if _, _, err = stores.open(context.Background(), cfg, testEnv(map[string]string{envMasterKeyFile: bad}).getenv, discardLogger()); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("with a malformed file: err = %v, want one naming %s", err, bad)
	}
	if opened != 0 {
		t.Fatalf("the store was opened %d times without a usable master key", opened)
	}
	// The file alone is enough to get to the store.
	_, _, err = stores.open(context.Background(), cfg, testEnv(map[string]string{envMasterKeyFile: writeKeyFile(t, good)}).getenv, discardLogger())
	if !errors.Is(err, errOpened) || opened != 1 {
		t.Fatalf("with KEYGATE_MASTER_KEY_FILE: err = %v, opened %d times; want the store opened once", err, opened)
	}
	if names := dirEntries(t, cfg.DataDir); len(names) != 0 {
		t.Errorf("data dir holds %v, want nothing: a shared store never generates a key", names)
	}
}

// TestServeWithMasterKeyFile starts the real serve on the embedded store
// with the key in a file, then again with the same key in the variable: the
// store sealed through the file opens with it, so both name the same key.
func TestServeWithMasterKeyFile(t *testing.T) {
	encoded, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfg, err := loadConfig(t, "--data-dir", dataDir, "--listen", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	admin := map[string]string{envAdminClientID: "file-admin", envAdminClientSecret: secret}
	withFile := map[string]string{envMasterKeyFile: writeKeyFile(t, encoded)}
	for k, v := range admin {
		withFile[k] = v
	}
	if err := startServeWith(t, cfg, withFile).stop(t); err != nil {
		t.Fatalf("serve with KEYGATE_MASTER_KEY_FILE: %v", err)
	}
	if slices.Contains(dirEntries(t, dataDir), masterkey.FileName) {
		t.Fatalf("serve generated %s although KEYGATE_MASTER_KEY_FILE was set", masterkey.FileName)
	}
	withVar := map[string]string{envMasterKey: encoded}
	for k, v := range admin {
		withVar[k] = v
	}
	// A different key would fail this start: the store's pepper is sealed
	// with the key the first start read from the file.
	if err := startServeWith(t, cfg, withVar).stop(t); err != nil {
		t.Fatalf("restart with the same key in KEYGATE_MASTER_KEY: %v", err)
	}
}

// During a rotation the previous key comes from KEYGATE_MASTER_KEY_PREVIOUS
// or its _FILE twin, beside the new key; refusals name the variable, never
// the content.
func TestMasterKeyPreviousFromEnv(t *testing.T) {
	newEnc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	oldEnc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	newKey, _ := masterkey.Parse(newEnc)
	oldKey, _ := masterkey.Parse(oldEnc)
	for name, vars := range map[string]map[string]string{
		"variable": {envMasterKey: newEnc, envMasterKeyPrevious: oldEnc},
		"file":     {envMasterKeyFile: writeKeyFile(t, newEnc), envMasterKeyPreviousFile: writeKeyFile(t, oldEnc)},
	} {
		k, err := loadMasterKey(t.TempDir(), testEnv(vars).getenv, discardLogger())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k.ID() != newKey.ID() || k.Previous() == nil || k.Previous().ID() != oldKey.ID() {
			t.Fatalf("%s: key %s with previous %v; want %s with previous %s", name, k.ID(), k.Previous(), newKey.ID(), oldKey.ID())
		}
	}
	const leaky = "s3cr3t!value!that-is-not-a-key"
	for _, tc := range []struct {
		name string
		vars map[string]string
		want string
	}{
		{"previous alone", map[string]string{envMasterKeyPrevious: oldEnc}, "KEYGATE_MASTER_KEY_PREVIOUS is set but KEYGATE_MASTER_KEY is not"},
		{"same key", map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: newEnc}, "KEYGATE_MASTER_KEY_PREVIOUS is the same key as KEYGATE_MASTER_KEY"},
		{"both previous", map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: oldEnc, envMasterKeyPreviousFile: writeKeyFile(t, oldEnc)},
			"both KEYGATE_MASTER_KEY_PREVIOUS and KEYGATE_MASTER_KEY_PREVIOUS_FILE are set"},
		{"invalid previous", map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: leaky}, "invalid KEYGATE_MASTER_KEY_PREVIOUS"},
	} {
		dir := t.TempDir()
		_, err := loadMasterKey(dir, testEnv(tc.vars).getenv, discardLogger())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
			continue
		}
		for _, secret := range []string{leaky, newEnc, oldEnc} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q shows key material", tc.name, err)
			}
		}
		if names := dirEntries(t, dir); len(names) != 0 {
			t.Errorf("%s: a refusal left %v in the data dir", tc.name, names)
		}
	}
}
