package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/masterkey"
)

// TestStoreExportImportCLI moves a store through the CLI, bbolt → Redis →
// bbolt, starting serve on each: the key created on the first still gets
// tokens on the last, a token of the first verifies on every one, and the
// JWKS is the same bytes throughout.
func TestStoreExportImportCLI(t *testing.T) {
	prefix := redistest.Prefix(t, redistest.Require(t), "cmdmove")
	addr := freeAddr(t)
	issuer := "http://" + addr
	dirA := t.TempDir()

	// A: the embedded store with a generated master.key.
	cfgA, err := loadConfig(t, "--data-dir", dirA, "--listen", addr, "--issuer", issuer)
	if err != nil {
		t.Fatal(err)
	}
	a := startServeWith(t, cfgA, nil)
	admin, _ := readAdminFile(t, dirA)
	secretFile := filepath.Join(t.TempDir(), "admin-secret")
	if err := os.WriteFile(secretFile, []byte(admin.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := run(t, "keys", "create", "--url", a.base, "--client-id", admin.ClientID, "--client-secret-file", secretFile,
		"--team", "acme", "--name", "moved", "--permission", "accounting_api")
	if err != nil {
		t.Fatalf("keys create: %v (%s)", err, stderr)
	}
	id := clientIDRe.FindString(out)
	m := regexp.MustCompile(`client_secret: (kgs_\S+)`).FindStringSubmatch(out)
	if id == "" || m == nil {
		t.Fatalf("create output lacks the client ID or secret:\n%s", out)
	}
	secret := m[1]
	before := teamToken(t, a.base, id, secret)
	jwks := redisGetBody(t, a.base+"/.well-known/jwks.json")

	// While serve runs, the file is locked: export says to stop it.
	if _, _, err := run(t, "store", "export", "--data-dir", dirA); err == nil || !strings.Contains(err.Error(), "stop keygate") {
		t.Fatalf("export while serve runs: %v, want a refusal saying to stop keygate", err)
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}

	// Export reads master.key from the data dir; it changes nothing there.
	stateA := dirState(t, dirA)
	stream, stderr, err := run(t, "store", "export", "--data-dir", dirA)
	if err != nil {
		t.Fatalf("export: %v (%s)", err, stderr)
	}
	if !strings.HasPrefix(stream, `{"kind":"header","format":"keygate-store-export","version":1,"source":"bolt"`) {
		t.Fatalf("export stream starts %.120q", stream)
	}
	if strings.Contains(stream, secret) || strings.Contains(stream, admin.ClientSecret) {
		t.Fatal("the stream holds a client secret")
	}
	sameState(t, stateA, dirState(t, dirA))
	raw, err := os.ReadFile(filepath.Join(dirA, masterkey.FileName))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{envMasterKey: strings.TrimSpace(string(raw))}

	// B: Redis.
	redisFlags := []string{"--store", "redis", "--redis-url", redistest.URL(), "--redis-prefix", prefix, "--issuer", issuer}
	if _, stderr, err := runStdin(t, stream, nil, append([]string{"store", "import"}, redisFlags...)...); err == nil || !strings.Contains(err.Error(), envMasterKey) {
		t.Fatalf("import without a master key: %v (%s), want a refusal naming %s", err, stderr, envMasterKey)
	}
	if _, stderr, err := runStdin(t, stream, vars, append([]string{"store", "import"}, redisFlags...)...); err != nil {
		t.Fatalf("import into redis: %v (%s)", err, stderr)
	}
	if _, _, err := runStdin(t, stream, vars, append([]string{"store", "import"}, redisFlags...)...); err == nil || !strings.Contains(err.Error(), "target store is not empty: it holds signing keys") {
		t.Fatalf("a second import into the same prefix: %v, want a refusal", err)
	}
	cfgB, err := loadConfig(t, append(redisFlags, "--listen", addr, "--data-dir", t.TempDir())...)
	if err != nil {
		t.Fatal(err)
	}
	b := startServeWith(t, cfgB, vars)
	if got := redisGetBody(t, b.base+"/.well-known/jwks.json"); !bytes.Equal(got, jwks) {
		t.Errorf("JWKS on Redis differs:\n%s\n%s", got, jwks)
	}
	verifyWithJWKS(t, b.base, before)
	verifyWithJWKS(t, b.base, teamToken(t, b.base, id, secret))
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}

	// C: back to the embedded store, in a new data directory.
	stream, stderr, err = runStdin(t, "", vars, append([]string{"store", "export"}, redisFlags...)...)
	if err != nil {
		t.Fatalf("export from redis: %v (%s)", err, stderr)
	}
	dirC := filepath.Join(t.TempDir(), "c")
	if _, stderr, err := runStdin(t, stream, vars, "store", "import", "--data-dir", dirC); err != nil {
		t.Fatalf("import into bolt: %v (%s)", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dirC, masterkey.FileName)); !os.IsNotExist(err) {
		t.Errorf("import wrote a master key file (stat: %v)", err)
	}
	cfgC, err := loadConfig(t, "--data-dir", dirC, "--listen", addr, "--issuer", issuer)
	if err != nil {
		t.Fatal(err)
	}
	c := startServeWith(t, cfgC, vars)
	if got := redisGetBody(t, c.base+"/.well-known/jwks.json"); !bytes.Equal(got, jwks) {
		t.Errorf("JWKS after the way back differs")
	}
	verifyWithJWKS(t, c.base, before)
	verifyWithJWKS(t, c.base, teamToken(t, c.base, id, secret))
}

// TestStoreExportCreatesNothing: export of a data directory that holds no
// store fails, naming the file, and leaves the directory as it was (or
// absent).
func TestStoreExportCreatesNothing(t *testing.T) {
	withKeyOnly := t.TempDir()
	mk, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(withKeyOnly, masterkey.FileName), []byte(mk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyDB := t.TempDir()
	if err := os.WriteFile(filepath.Join(emptyDB, dbFileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{
		"empty dir":        t.TempDir(),
		"master key only":  withKeyOnly,
		"empty store file": emptyDB,
	} {
		t.Run(name, func(t *testing.T) {
			before := dirState(t, dir)
			out, _, err := run(t, "store", "export", "--data-dir", dir)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, dbFileName)) {
				t.Fatalf("export: %v, want an error naming %s", err, filepath.Join(dir, dbFileName))
			}
			if out != "" {
				t.Errorf("export wrote %q to stdout", out)
			}
			sameState(t, before, dirState(t, dir))
		})
	}
	t.Run("missing dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "absent")
		if _, _, err := run(t, "store", "export", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, dbFileName)) {
			t.Fatalf("export: %v, want an error naming %s", err, filepath.Join(dir, dbFileName))
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("export created the data directory (stat: %v)", err)
		}
	})
	// And with a master key in the environment, nothing either.
	dir := t.TempDir()
	if _, _, err := runWith(t, map[string]string{envMasterKey: mk}, "store", "export", "--data-dir", dir); err == nil {
		t.Fatal("export of an empty data dir succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("export created %d files", len(entries))
	}
}
