package masterkey_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
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

// legacySeal seals the way keygate did before the sealed format had a
// version (nonce, ciphertext; the purpose alone as associated data): what
// stores written by earlier versions hold.
func legacySeal(t *testing.T, raw []byte, purpose string, plain []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(raw)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := randomBytes(t, aead.NonceSize())
	return aead.Seal(nonce, nonce, plain, []byte(purpose))
}

func rawKey(t *testing.T) ([]byte, *masterkey.Key) {
	t.Helper()
	raw := randomBytes(t, masterkey.Size)
	return raw, mustParse(t, base64.StdEncoding.EncodeToString(raw))
}

func TestOpenUnversioned(t *testing.T) {
	raw, k := rawKey(t)
	_, other := rawKey(t)
	plain := randomBytes(t, 48)
	for i := range 50 {
		old := legacySeal(t, raw, "pepper", plain)
		got, err := k.Open("pepper", old)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("unversioned value %d does not open: %v", i, err)
		}
		// ... as the previous key of a rotation too.
		if got, err := other.WithPrevious(k).Open("pepper", old); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("unversioned value %d does not open under the previous key: %v", i, err)
		}
		if _, err := k.Open("signing-key:x", old); !errors.Is(err, masterkey.ErrOpen) {
			t.Fatalf("unversioned value opened as another purpose: %v", err)
		}
		if _, err := other.Open("pepper", old); !errors.Is(err, masterkey.ErrOpen) {
			t.Fatalf("unversioned value opened under another key: %v", err)
		}
	}
	// A nonce that happens to start with the versioned mark (once in 2^24
	// values) still opens.
	block, err := aes.NewCipher(raw)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := append([]byte("kg\x01"), randomBytes(t, aead.NonceSize()-3)...)
	old := aead.Seal(bytes.Clone(nonce), nonce, plain, []byte("p"))
	if _, ok := masterkey.SealedBy(old); !ok {
		t.Fatal("the crafted nonce does not look versioned")
	}
	if got, err := k.Open("p", old); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("an unversioned value whose nonce starts like a header does not open: %v", err)
	}
}

func TestSealedFormatBindsKeyID(t *testing.T) {
	_, a := rawKey(t)
	_, b := rawKey(t)
	plain := []byte("signing key bytes")
	sealed, err := a.Seal("signing-key:k1", plain)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := masterkey.SealedBy(sealed)
	if !ok || id != a.ID() {
		t.Fatalf("SealedBy = %q, %v; want %q, true", id, ok, a.ID())
	}
	if len(a.ID()) != 16 || a.ID() == b.ID() {
		t.Fatalf("IDs %q and %q: want 16 hex digits, different keys different IDs", a.ID(), b.ID())
	}
	if got, err := a.Open("signing-key:k1", sealed); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("round trip: %v", err)
	}
	// Another purpose.
	if _, err := a.Open("signing-key:k2", sealed); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("opened as another purpose: %v", err)
	}
	if _, err := a.Open("pepper", sealed); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("opened as the pepper: %v", err)
	}
	// Another key: named in the error, by ID only.
	_, err = b.Open("signing-key:k1", sealed)
	var unknown *masterkey.UnknownKeyError
	if !errors.As(err, &unknown) || !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("opened under another key, or not reported as an unknown key: %v", err)
	}
	if unknown.SealedBy != a.ID() || len(unknown.Held) != 1 || unknown.Held[0] != b.ID() {
		t.Fatalf("UnknownKeyError = %+v; want sealed by %s, held %s", unknown, a.ID(), b.ID())
	}
	// Tampering with the ID: set it to the other key's ID (which b holds),
	// or to anything else.
	bID, _ := hex.DecodeString(b.ID())
	swapped := bytes.Clone(sealed)
	copy(swapped[3:11], bID)
	if _, err := b.Open("signing-key:k1", swapped); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("a value whose ID was changed to the opener's opened: %v", err)
	}
	if _, err := a.Open("signing-key:k1", swapped); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("a value whose ID was changed opened under its real key: %v", err)
	}
	for i := 0; i < 11; i++ {
		tampered := bytes.Clone(sealed)
		tampered[i] ^= 0x80
		if _, err := a.Open("signing-key:k1", tampered); !errors.Is(err, masterkey.ErrOpen) {
			t.Fatalf("header byte %d changed: %v", i, err)
		}
	}
	// Stripping the header (a downgrade to the unversioned format) fails.
	if _, err := a.Open("signing-key:k1", sealed[11:]); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("the value without its header opened: %v", err)
	}
	// The error names IDs, never key material or plaintext.
	if strings.Contains(err.Error(), string(plain)) {
		t.Fatal("error contains the plaintext")
	}
}

func TestWithPrevious(t *testing.T) {
	_, oldKey := rawKey(t)
	_, newKey := rawKey(t)
	_, stranger := rawKey(t)
	both := newKey.WithPrevious(oldKey)
	if both.ID() != newKey.ID() || both.Previous().ID() != oldKey.ID() {
		t.Fatalf("WithPrevious: ID %s previous %s", both.ID(), both.Previous().ID())
	}
	if newKey.Previous() != nil {
		t.Fatal("WithPrevious changed its receiver")
	}
	byOld, _ := oldKey.Seal("pepper", []byte("p"))
	byNew, _ := newKey.Seal("pepper", []byte("p"))
	for name, v := range map[string][]byte{"old": byOld, "new": byNew} {
		if got, err := both.Open("pepper", v); err != nil || string(got) != "p" {
			t.Fatalf("value sealed under the %s key does not open during the rotation: %v", name, err)
		}
	}
	// Sealing during a rotation uses the new key only.
	s, _ := both.Seal("pepper", []byte("p"))
	if id, _ := masterkey.SealedBy(s); id != newKey.ID() {
		t.Fatalf("sealed during a rotation under %s, want the new key %s", id, newKey.ID())
	}
	if _, err := oldKey.Open("pepper", s); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatal("the old key opens what was sealed during the rotation")
	}
	// Holding picks one key out, sealing under it.
	h, ok := both.Holding(oldKey.ID())
	if !ok || h.ID() != oldKey.ID() || h.Previous() != nil {
		t.Fatalf("Holding(old) = %v, %v", h, ok)
	}
	if _, ok := both.Holding(stranger.ID()); ok {
		t.Fatal("Holding a key that is not held")
	}
	byStranger, _ := stranger.Seal("pepper", []byte("p"))
	var unknown *masterkey.UnknownKeyError
	if _, err := both.Open("pepper", byStranger); !errors.As(err, &unknown) || len(unknown.Held) != 2 || unknown.SealedBy != stranger.ID() {
		t.Fatalf("a third key's value: %v (%+v)", err, unknown)
	}
}
