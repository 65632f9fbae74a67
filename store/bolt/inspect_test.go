package bolt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newFile makes a store file with a key in it and returns its path and
// bytes.
func newFile(t *testing.T) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSingleton(t.Context(), "pepper", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

// TestOpenRefusesDamagedFile: Open (used by seed as well as serve) checks
// the file against its meta pages before bbolt maps it; a truncated file
// would otherwise fault with SIGBUS.
func TestOpenRefusesDamagedFile(t *testing.T) {
	path, b := newFile(t)
	ps := os.Getpagesize()
	if err := os.WriteFile(path, b[:ps*(len(b)/ps/2)], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a truncated file: %v, want ErrDamaged naming the file", err)
	}
	if _, err := Inspect(path, 0); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Inspect of a truncated file: %v, want ErrDamaged", err)
	}
}

// TestInspect: what a file holds, told without writing to it; one damaged
// meta page (a crash during a commit's last write) is not damage, as bbolt
// opens from the other.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	if c, err := Inspect(filepath.Join(dir, "none"), 0); c != Missing || err != nil {
		t.Fatalf("missing file: %v, %v", c, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Inspect(empty, 0); c != Empty || err != nil {
		t.Fatalf("empty file: %v, %v", c, err)
	}
	fresh := filepath.Join(dir, "fresh")
	s, err := Open(fresh)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if c, err := Inspect(fresh, 0); c != Fresh || err != nil {
		t.Fatalf("fresh store: %v, %v", c, err)
	}
	path, b := newFile(t)
	if c, err := Inspect(path, 0); c != HoldsData || err != nil {
		t.Fatalf("store with a singleton: %v, %v", c, err)
	}
	b[16+20] ^= 0xff // meta page 0's root
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Inspect(path, 0); c != HoldsData || err != nil {
		t.Fatalf("one torn meta page: %v, %v; want the store read from the other", c, err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(b) {
		t.Fatal("Inspect wrote to the file")
	}
}
