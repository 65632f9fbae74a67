package masterkey_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/masterkey"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, s string) *masterkey.Key {
	t.Helper()
	k, err := masterkey.Parse(s)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return k
}

func TestParseEncodings(t *testing.T) {
	// Pick bytes whose encodings differ between the std and URL alphabets.
	raw := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:masterkey.Size]
	encodings := map[string]string{
		"std padded":   base64.StdEncoding.EncodeToString(raw),
		"std raw":      base64.RawStdEncoding.EncodeToString(raw),
		"url padded":   base64.URLEncoding.EncodeToString(raw),
		"url raw":      base64.RawURLEncoding.EncodeToString(raw),
		"std newline":  base64.StdEncoding.EncodeToString(raw) + "\n",
		"url surround": "  " + base64.RawURLEncoding.EncodeToString(raw) + " \n",
	}
	if encodings["std raw"] == encodings["url raw"] {
		t.Fatal("test bytes do not exercise the two alphabets")
	}
	var sealed []byte
	for name, enc := range encodings {
		t.Run(name, func(t *testing.T) {
			k := mustParse(t, enc)
			// All spellings are the same key: a value sealed under one opens
			// under every other.
			if sealed == nil {
				var err error
				if sealed, err = k.Seal("p", []byte("hello")); err != nil {
					t.Fatal(err)
				}
				return
			}
			got, err := k.Open("p", sealed)
			if err != nil || string(got) != "hello" {
				t.Fatalf("spelling %q is not the same key: %q, %v", name, got, err)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, 16))
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xcd}, 33))
	nonB64 := "this-is-not*base64!" + strings.Repeat("Q", 30)
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "32 bytes"},
		{"short", short, "got 16"},
		{"long", long, "got 33"},
		{"not base64", nonB64, "not base64"},
		{"hex", strings.Repeat("ab", 32) + "zz", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := masterkey.Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", tc.in, k)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.TrimSpace(tc.in) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
				t.Errorf("error %q contains the key material", err)
			}
			if len(tc.in) > 8 && strings.Contains(err.Error(), tc.in[:8]) {
				t.Errorf("error %q contains part of the key material", err)
			}
		})
	}
}

func newKey(t *testing.T) *masterkey.Key {
	t.Helper()
	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(raw) != masterkey.Size {
		t.Fatalf("Generate() = %q: not %d base64 bytes (%v)", enc, masterkey.Size, err)
	}
	return mustParse(t, enc)
}

func TestSealOpen(t *testing.T) {
	k := newKey(t)
	other := newKey(t)
	plain := randomBytes(t, 100)

	sealed, err := k.Seal("pepper", plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plain[:16]) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := k.Open("pepper", sealed)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatal("round trip changed the value")
	}
	again, err := k.Seal("pepper", plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again, sealed) {
		t.Fatal("sealing twice gave the same bytes: nonce reuse")
	}

	// Empty plaintext round-trips too.
	e, err := k.Seal("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Open("x", e); err != nil || len(got) != 0 {
		t.Fatalf("empty round trip: %q, %v", got, err)
	}

	expectErrOpen := func(name string, key *masterkey.Key, purpose string, data []byte) {
		t.Helper()
		got, err := key.Open(purpose, data)
		if !errors.Is(err, masterkey.ErrOpen) {
			t.Errorf("%s: Open = %q, %v; want ErrOpen", name, got, err)
		}
		if got != nil {
			t.Errorf("%s: Open returned plaintext alongside an error", name)
		}
	}
	expectErrOpen("other purpose", k, "signing-key:abc", sealed)
	expectErrOpen("other key", other, "pepper", sealed)
	for i := range sealed {
		tampered := append([]byte(nil), sealed...)
		tampered[i] ^= 0x01
		expectErrOpen(fmt.Sprintf("byte %d flipped", i), k, "pepper", tampered)
	}
	expectErrOpen("truncated by one", k, "pepper", sealed[:len(sealed)-1])
	expectErrOpen("appended byte", k, "pepper", append(append([]byte(nil), sealed...), 0))
	expectErrOpen("nil", k, "pepper", nil)
	expectErrOpen("three bytes", k, "pepper", []byte{1, 2, 3})
	expectErrOpen("nonce only", k, "pepper", sealed[:12])
	expectErrOpen("nonce+tag-1", k, "pepper", sealed[:12+16-1])
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	k1, created, err := masterkey.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("first LoadOrCreate in an empty dir reported created=false")
	}
	path := filepath.Join(dir, masterkey.FileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("master key file mode %o, want 600", mode)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := masterkey.Parse(string(content)); err != nil {
		t.Fatalf("file content does not parse: %v", err)
	}

	sealed, err := k1.Seal("pepper", []byte("value"))
	if err != nil {
		t.Fatal(err)
	}
	k2, created, err := masterkey.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Fatal("second LoadOrCreate reported created=true")
	}
	if got, err := k2.Open("pepper", sealed); err != nil || string(got) != "value" {
		t.Fatalf("second load is another key: %q, %v", got, err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, content) {
		t.Fatal("second LoadOrCreate rewrote the file")
	}

	// A corrupt file is an error, not silently replaced.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, masterkey.FileName), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := masterkey.LoadOrCreate(bad); err == nil {
		t.Fatal("LoadOrCreate accepted a corrupt key file")
	}
	if b, _ := os.ReadFile(filepath.Join(bad, masterkey.FileName)); string(b) != "short\n" {
		t.Fatal("LoadOrCreate overwrote a corrupt key file")
	}
}

// Ten processes starting at once on a fresh data dir must agree on one key.
// A reader that sees the file after another start created it but before
// that start wrote it must not fail or pick a different key. Repeated over
// many fresh dirs because the window is small.
func TestLoadOrCreateConcurrent(t *testing.T) {
	const rounds, n = 30, 10
	for r := 0; r < rounds; r++ {
		dir := t.TempDir()
		keys := make([]*masterkey.Key, n)
		errs := make([]error, n)
		createdCount := 0
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				k, created, err := masterkey.LoadOrCreate(dir)
				keys[i], errs[i] = k, err
				if created {
					mu.Lock()
					createdCount++
					mu.Unlock()
				}
			}(i)
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: LoadOrCreate #%d failed: %v", r, i, err)
			}
		}
		if createdCount != 1 {
			t.Fatalf("round %d: %d calls reported created=true, want exactly 1", r, createdCount)
		}
		sealed, err := keys[0].Seal("p", []byte("same"))
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys[1:] {
			if got, err := k.Open("p", sealed); err != nil || string(got) != "same" {
				t.Fatalf("round %d: caller %d ended up with another key: %v", r, i+1, err)
			}
		}
	}
}
