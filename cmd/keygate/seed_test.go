package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
)

// runSeed executes `keygate seed args…` with the environment variables
// vars and its output captured.
func runSeed(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := seedCommand(testEnv(vars))
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// readCreds checks the credentials file (mode 0600, want lines of
// "client_id secret") and returns its pairs.
func readCreds(t *testing.T, path string, want int) [][2]string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 || !strings.HasPrefix(fields[0], credential.ClientIDPrefix) {
			t.Fatalf("line %d is not \"client_id secret\": %q", len(out)+1, sc.Text())
		}
		if err := credential.CheckSecretFormat(fields[1]); err != nil {
			t.Fatalf("line %d: %v", len(out)+1, err)
		}
		out = append(out, [2]string{fields[0], fields[1]})
	}
	if len(out) != want {
		t.Fatalf("%s has %d lines, want %d", path, len(out), want)
	}
	return out
}

func TestSeedBolt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	creds := filepath.Join(t.TempDir(), "creds.txt")
	// An earlier, world-readable file is replaced by a 0600 one.
	if err := os.WriteFile(creds, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runSeed(t, nil, "--data-dir", dir, "--keys", "2000", "--record", "100", "--batch", "700", "--out", creds)
	if err != nil {
		t.Fatalf("seed: %v\nstderr: %s", err, stderr)
	}
	for _, want := range []string{"seeded 2000 keys in 400 teams (bench-000001 … bench-000400)", "keys/s", "credentials of 100 keys (one in 20)"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	pairs := readCreds(t, creds, 100)

	// serve on the same data dir (and so the master key seed generated
	// there) issues tokens for recorded keys: hashes and pepper match.
	addr := freeAddr(t)
	cfg, err := loadConfig(t, "--data-dir", dir, "--listen", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := startServeWith(t, cfg, nil)
	for _, p := range [][2]string{pairs[0], pairs[50], pairs[99]} {
		teamToken(t, r.base, p[0], p[1])
	}

	// While serve holds the file, seed refuses with a clear reason, and
	// the earlier credentials file is left alone.
	_, _, err = runSeed(t, nil, "--data-dir", dir, "--keys", "10", "--record", "5", "--out", creds)
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "keygate serve") {
		t.Fatalf("seed beside serve on bbolt: %v", err)
	}
	readCreds(t, creds, 100)
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(creds), ".creds.txt.*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestSeedRefusesBadFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--keys", "10", "--record", "5"}, "--out is required"},
		{[]string{"--keys", "10", "--record", "11", "--out", filepath.Join(dir, "c")}, "more than --keys"},
		{[]string{"--keys", "10", "--record", "1", "--out", filepath.Join(dir, "no", "such", "dir", "c")}, "credentials file"},
		{[]string{"--keys", "10", "--record", "0", "--permission", "no_such_permission"}, "no_such_permission"},
	} {
		_, _, err := runSeed(t, nil, append([]string{"--data-dir", dir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("seed %v: err %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

// TestSeedRedis seeds beside a running serve on the same Redis: the
// seeded keys get tokens from it at once.
func TestSeedRedis(t *testing.T) {
	vars := redisVars(t)
	prefix := redistest.Prefix(t, redistest.Require(t), "cmd")
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg, err := loadConfig(t, redisArgs(dir, addr, "http://"+addr, redistest.URL(), prefix)...)
	if err != nil {
		t.Fatal(err)
	}
	r := startServeWith(t, cfg, vars)

	creds := filepath.Join(t.TempDir(), "creds.txt")
	out, stderr, err := runSeed(t, vars, "--store", "redis", "--redis-url", redistest.URL(), "--redis-prefix", prefix,
		"--data-dir", dir, "--keys", "2000", "--record", "100", "--out", creds)
	if err != nil {
		t.Fatalf("seed: %v\nstderr: %s", err, stderr)
	}
	if !strings.Contains(out, "seeded 2000 keys in 400 teams") || !strings.Contains(out, "redis store") {
		t.Errorf("summary:\n%s", out)
	}
	pairs := readCreds(t, creds, 100)
	for _, p := range [][2]string{pairs[0], pairs[50], pairs[99]} {
		teamToken(t, r.base, p[0], p[1])
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// Without KEYGATE_MASTER_KEY, as serve, seed refuses Redis.
	if _, _, err := runSeed(t, map[string]string{envMasterKey: ""}, "--store", "redis", "--redis-url", redistest.URL(), "--redis-prefix", prefix,
		"--data-dir", dir, "--keys", "10", "--record", "0"); err == nil || !strings.Contains(err.Error(), envMasterKey) {
		t.Fatalf("seed on Redis without a master key: %v", err)
	}
}
