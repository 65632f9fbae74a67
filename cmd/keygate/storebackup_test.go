package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// backupConn is the connection flags for the keygate e.
func backupConn(t *testing.T, e *servertest.Env) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "admin-secret")
	if err := os.WriteFile(file, []byte(e.AdminSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--url", e.URL, "--client-id", e.AdminID, "--client-secret-file", file}
}

// onlyFiles fails unless dir holds exactly names (no temporary file left).
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

// TestCLIStoreBackup: `keygate store backup FILE` writes a sound copy with
// mode 0600 that a keygate started on it with the same master key serves
// from; an existing FILE is refused (exit 1, one line, the file unchanged)
// unless --force, which replaces it with a 0600 copy.
func TestCLIStoreBackup(t *testing.T) {
	t.Parallel()
	e := servertest.Start(t, server.Options{AdminClientID: cliAdminID}, nil)
	k := e.CreateKey(t, "acme", "k", "accounting_api")
	conn := backupConn(t, e)
	dir := t.TempDir()
	file := filepath.Join(dir, "keygate-backup.db")

	out, stderr, err := run(t, append([]string{"store", "backup", file}, conn...)...)
	if err != nil {
		t.Fatalf("store backup: %v (%s)", err, stderr)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the backup file's mode: %#o, want 0600", fi.Mode().Perm())
	}
	wantOut := fmt.Sprintf("wrote %s: %d bytes (%s), mode 0600\nto restore: stop keygate, copy %s to <data_dir>/keygate.db and start keygate with the master key it was sealed with (KEYGATE_MASTER_KEY, KEYGATE_MASTER_KEY_FILE or <data_dir>/master.key); the copy does not hold it\n",
		file, fi.Size(), humanBytes(fi.Size()), file)
	if out != wantOut {
		t.Errorf("store backup printed\n%s\nwant\n%s", out, wantOut)
	}
	onlyFiles(t, dir, "keygate-backup.db")

	// Restore as the README says: the file as keygate.db of a new data
	// directory, the same master key.
	backup, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, dbFileName), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(dataDir, dbFileName))
	if err != nil {
		t.Fatalf("open the restored copy: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	r := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(st), MasterKey: e.MasterKey,
		Options: server.Options{AdminClientID: cliAdminID, AdminClientSecret: e.AdminSecret, Issuer: e.URL}})
	if tok := r.Token(t, k.ClientID, k.ClientSecret, ""); tok.AccessToken == "" {
		t.Fatal("the key's secret got no token from the restored keygate")
	}

	// An existing file is kept without --force, whatever it holds.
	for _, mode := range []os.FileMode{0o600, 0o644} {
		old := filepath.Join(dir, fmt.Sprintf("old-%o.db", mode))
		if err := os.WriteFile(old, []byte("keep me"), mode); err != nil {
			t.Fatal(err)
		}
		wantExit(t, old+" exists: keygate leaves it as it is; pass --force to replace it, or name another file",
			append([]string{"store", "backup", old}, conn...)...)
		if got, err := os.ReadFile(old); err != nil || string(got) != "keep me" {
			t.Fatalf("%s after a refused backup: %q, %v", old, got, err)
		}
		if fi, err := os.Stat(old); err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s's mode after a refused backup: %v, %v", old, fi.Mode(), err)
		}
		// --force replaces it with a copy of mode 0600.
		out, stderr, err := run(t, append([]string{"store", "backup", "--force", "--json", old}, conn...)...)
		var res struct {
			File  string `json:"file"`
			Bytes int64  `json:"bytes"`
		}
		if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.File != old || res.Bytes <= 0 {
			t.Fatalf("store backup --force --json: %v (%s)\n%s", err, stderr, out)
		}
		got, err := os.ReadFile(old)
		if err != nil || int64(len(got)) != res.Bytes || bytes.Equal(got, []byte("keep me")) {
			t.Fatalf("%s after --force: %d bytes (%v), reported %d", old, len(got), err, res.Bytes)
		}
		if fi, err := os.Stat(old); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s's mode after --force: %v, %v, want 0600", old, fi.Mode(), err)
		}
		if problems, err := bolt.Check(old, bolt.DefaultLockTimeout); err != nil || len(problems) > 0 {
			t.Fatalf("%s after --force is not a sound store file: %v %v", old, problems, err)
		}
	}
	onlyFiles(t, dir, "keygate-backup.db", "old-600.db", "old-644.db")
}

// TestCLIStoreBackupRefused: a keygate on Redis, a team key's credentials
// and a missing directory each fail with one line and leave no file.
func TestCLIStoreBackupRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "b.db")

	redisEnv := servertest.StartWith(t, servertest.Config{Backend: servertest.Redis(), Options: server.Options{AdminClientID: cliAdminID}})
	wantExit(t, "this keygate's store has no online backup (only the embedded store has); back the store up with its own tools, as the README's \"Backup and restore\" describes for Redis",
		append([]string{"store", "backup", file}, backupConn(t, redisEnv)...)...)

	e := servertest.Start(t, server.Options{AdminClientID: cliAdminID}, nil)
	k := e.CreateKey(t, "acme", "k", "accounting_api")
	secretFile := filepath.Join(t.TempDir(), "team-secret")
	if err := os.WriteFile(secretFile, []byte(k.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	// An ordinary team key's token is no management token (aud).
	wantExit(t, "the access token is not valid (wrong audience); get a new one at /oauth/token",
		"store", "backup", file, "--url", e.URL, "--client-id", k.ClientID, "--client-secret-file", secretFile)

	missing := filepath.Join(dir, "no-such-dir", "b.db")
	_, _, err := run(t, append([]string{"store", "backup", missing}, backupConn(t, e)...)...)
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("a backup into a missing directory: %v", err)
	}
	onlyFiles(t, dir)

	// No backup was handed out, so none is on record.
	page, err := e.Store.AuditEvents(context.Background(), "", store.AuditQuery{Actions: []store.AuditAction{store.AuditStoreBackedUp}})
	if err != nil || len(page.Events) != 0 {
		t.Fatalf("store.backed_up events after refused backups: %+v (%v)", page.Events, err)
	}
}

// TestStoreBackupRestoreWithServe is the README's procedure with the real
// serve (metrics on, so the store is wrapped by storemetrics): a key made,
// a backup taken with the CLI, serve stopped; the copy put in a new data
// directory as keygate.db is refused without the master key and served
// with it (the old directory's master.key put beside it), the key's secret
// getting a token there.
func TestStoreBackupRestoreWithServe(t *testing.T) {
	t.Parallel()
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	admin := map[string]string{envAdminClientID: "ops-admin", envAdminClientSecret: secret}
	secretFile := filepath.Join(t.TempDir(), "admin-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(dataDir string) (config.Config, *running) {
		cfg, err := loadConfig(t, "--data-dir", dataDir, "--listen", freeAddr(t), "--metrics-listen", freeAddr(t))
		if err != nil {
			t.Fatal(err)
		}
		return cfg, startServeWith(t, cfg, admin)
	}
	oldDir := t.TempDir()
	_, old := start(oldDir)
	conn := func(r *running) []string {
		return []string{"--url", r.base, "--client-id", "ops-admin", "--client-secret-file", secretFile}
	}
	out, stderr, err := run(t, append([]string{"keys", "create", "--json", "--team", "acme", "--name", "k", "--permission", "accounting_api"}, conn(old)...)...)
	var k client.CreatedKey
	if err != nil || json.Unmarshal([]byte(out), &k) != nil {
		t.Fatalf("keys create: %v (%s)\n%s", err, stderr, out)
	}
	keySecret := filepath.Join(t.TempDir(), "key-secret")
	if err := os.WriteFile(keySecret, []byte(k.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "keygate-backup.db")
	if _, stderr, err := run(t, append([]string{"store", "backup", backup}, conn(old)...)...); err != nil {
		t.Fatalf("store backup from serve: %v (%s)", err, stderr)
	}
	if err := old.stop(t); err != nil {
		t.Fatal(err)
	}

	newDir := t.TempDir()
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(backup, filepath.Join(newDir, dbFileName))
	cfg, err := loadConfig(t, "--data-dir", newDir, "--listen", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := serve(ctx, cfg, testEnv(admin), storeBackends); err == nil || !strings.Contains(err.Error(), "holds keys but no master key was found") {
		t.Fatalf("serve on the restored copy without its master key: %v", err)
	}
	if got := dirEntries(t, newDir); strings.Join(got, ",") != dbFileName {
		t.Fatalf("the refused start left %q in the data directory", got)
	}

	copyFile(filepath.Join(oldDir, masterkey.FileName), filepath.Join(newDir, masterkey.FileName))
	_, restored := start(newDir)
	if _, stderr, err := run(t, "token", "--url", restored.base, "--client-id", k.ClientID, "--client-secret-file", keySecret); err != nil {
		t.Fatalf("the key's secret at the restored keygate: %v (%s)", err, stderr)
	}
	out, _, err = run(t, append([]string{"keys", "get", "--json", k.ClientID}, conn(restored)...)...)
	if err != nil || !strings.Contains(out, `"team_id": "acme"`) {
		t.Fatalf("keys get at the restored keygate: %v\n%s", err, out)
	}
}
