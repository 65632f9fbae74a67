package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreCheck: keygate store check reads every page, read-only: a sound
// store passes; a store whose meta pages are intact but whose other pages
// are damaged (which serve's start-up check does not read) is reported with
// its problems and a non-zero exit; neither run changes the file.
func TestStoreCheck(t *testing.T) {
	t.Parallel()
	dir := usedDataDir(t)
	db := filepath.Join(dir, dbFileName)
	before := dirState(t, dir)
	stdout, _, err := run(t, "store", "check", "--data-dir", dir)
	if err != nil || stdout != "store file "+db+" is sound\n" {
		t.Fatalf("sound store: %q, %v", stdout, err)
	}
	sameState(t, before, dirState(t, dir))

	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	pages := newestMetaPages(t, b, ps)
	for p := 2; p < pages; p++ { // every page but the two meta pages
		b[p*ps+8] ^= 0xff // the page's flags: neither branch nor leaf
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	before = dirState(t, dir)
	stdout, _, err = run(t, "store", "check", "--data-dir", dir)
	if err == nil || !strings.HasPrefix(err.Error(), "store file "+db+" has ") || !strings.HasSuffix(err.Error(), " problems: restore it from a backup") {
		t.Fatalf("damaged pages: err %v", err)
	}
	if stdout == "" {
		t.Error("no problem listed")
	}
	sameState(t, before, dirState(t, dir))

	if _, _, err := run(t, "store", "check", "--data-dir", t.TempDir()); err == nil || !strings.HasSuffix(err.Error(), dbFileName+" is missing") {
		t.Fatalf("no store: %v", err)
	}
}
