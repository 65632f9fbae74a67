package credential_test

import (
	"bytes"
	"errors"
	"hash/crc32"
	"net/url"
	"strings"
	"testing"

	"github.com/keygate/keygate/credential"
)

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// crcSuffix is the checksum as the package documents it (CRC32 IEEE of the
// body, 6 base62 digits, most significant first), computed independently of
// the package so that a change of scheme is caught.
func crcSuffix(body string) string {
	n := uint64(crc32.ChecksumIEEE([]byte(body)))
	out := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		out[i] = alphabet[n%62]
		n /= 62
	}
	return string(out)
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

func newSecret(t testing.TB) string {
	t.Helper()
	s, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSecretFormat(t *testing.T) {
	if credential.SecretLen != 4+43+6 {
		t.Fatalf("SecretLen = %d, want 53 (kgs_ + 43 body + 6 checksum)", credential.SecretLen)
	}
	for i := 0; i < 50; i++ {
		s := newSecret(t)
		if !strings.HasPrefix(s, "kgs_") || credential.SecretPrefix != "kgs_" {
			t.Fatalf("secret %q lacks the kgs_ prefix", s)
		}
		if len(s) != credential.SecretLen {
			t.Fatalf("len(secret) = %d, want %d", len(s), credential.SecretLen)
		}
		rest := s[len("kgs_"):]
		if !isBase62(rest) {
			t.Fatalf("secret %q has non-base62 characters after the prefix", s)
		}
		body, sum := rest[:43], rest[43:]
		if want := crcSuffix(body); sum != want {
			t.Fatalf("checksum %q, want CRC32 of the body in base62 %q", sum, want)
		}
		if err := credential.CheckSecretFormat(s); err != nil {
			t.Fatalf("CheckSecretFormat(NewSecret()) = %v", err)
		}
	}
}

func TestNewSecretDistinct(t *testing.T) {
	seen := make(map[string]bool, 1000)
	bodies := make(map[string]bool, 1000)
	for i := 0; i < 1000; i++ {
		s := newSecret(t)
		if seen[s] {
			t.Fatalf("secret repeated after %d secrets", i)
		}
		seen[s] = true
		// The 43-character body carries 256 bits; a shared leading half
		// would mean most of it is not random.
		half := s[4:26]
		if bodies[half] {
			t.Fatalf("first half of the body repeated after %d secrets: not random enough", i)
		}
		bodies[half] = true
	}
}

// replaceAt returns s with the byte at i replaced by another base62 char.
func replaceAt(s string, i int) string {
	b := []byte(s)
	j := strings.IndexByte(alphabet, b[i])
	b[i] = alphabet[(j+1)%len(alphabet)]
	return string(b)
}

func TestCheckSecretFormatRejects(t *testing.T) {
	good := newSecret(t)
	body := good[4 : 4+43]
	cases := map[string]string{
		"empty":                  "",
		"prefix only":            "kgs_",
		"wrong prefix":           "kgx_" + good[4:],
		"upper-case prefix":      "KGS_" + good[4:],
		"client id prefix":       "kgc_" + good[4:],
		"no prefix":              good[4:],
		"too short":              good[:len(good)-1],
		"too long":               good + "0",
		"too long valid suffix":  good + crcSuffix(good[4:]),
		"non-base62 dash":        good[:10] + "-" + good[11:],
		"non-base62 underscore":  good[:20] + "_" + good[21:],
		"non-base62 space":       good[:30] + " " + good[31:],
		"non-base62 non-ascii":   good[:len(good)-2] + "é",
		"flipped body char":      replaceAt(good, 4+17),
		"flipped first body":     replaceAt(good, 4),
		"flipped last body":      replaceAt(good, 4+42),
		"flipped checksum char":  replaceAt(good, len(good)-1),
		"flipped checksum first": replaceAt(good, 4+43),
		"swapped body halves":    "kgs_" + body[22:] + body[:22] + good[4+43:],
		"case-flipped char":      good[:12] + swapCase(good[12:13]) + good[13:],
	}
	for name, s := range cases {
		if s == good {
			continue // swapCase on a digit leaves it unchanged
		}
		t.Run(name, func(t *testing.T) {
			err := credential.CheckSecretFormat(s)
			if err == nil {
				t.Fatalf("CheckSecretFormat(%q) accepted it", s)
			}
			if !errors.Is(err, credential.ErrMalformedSecret) {
				t.Fatalf("error %v does not wrap ErrMalformedSecret", err)
			}
		})
	}
}

func swapCase(c string) string {
	if strings.ToUpper(c) != c {
		return strings.ToUpper(c)
	}
	if strings.ToLower(c) != c {
		return strings.ToLower(c)
	}
	// a digit: pick another digit
	if c == "0" {
		return "1"
	}
	return "0"
}

// Every single-character change anywhere after the prefix must be caught:
// that is what the checksum is for.
func TestCheckSecretFormatCatchesEverySingleSubstitution(t *testing.T) {
	good := newSecret(t)
	for i := 4; i < len(good); i++ {
		for _, c := range []byte{'0', 'Z', 'z', 'q'} {
			if good[i] == c {
				continue
			}
			b := []byte(good)
			b[i] = c
			if err := credential.CheckSecretFormat(string(b)); !errors.Is(err, credential.ErrMalformedSecret) {
				t.Fatalf("position %d changed to %q: err = %v, want ErrMalformedSecret", i, c, err)
			}
		}
	}
}

func TestCheckSecretFormatErrorDoesNotEchoSecret(t *testing.T) {
	good := newSecret(t)
	bad := replaceAt(good, 20)
	err := credential.CheckSecretFormat(bad)
	if err == nil {
		t.Fatal("accepted a corrupted secret")
	}
	if strings.Contains(err.Error(), bad[4:]) || strings.Contains(err.Error(), bad[4:20]) {
		t.Fatalf("error %q repeats the secret", err)
	}
}

func TestNewClientID(t *testing.T) {
	const prefix = "kgc_"
	if credential.ClientIDPrefix != prefix {
		t.Fatalf("ClientIDPrefix = %q", credential.ClientIDPrefix)
	}
	tag := func(id string) string { return id[len(prefix) : len(prefix)+credential.TeamTagLen] }
	random := func(id string) string { return id[len(prefix)+credential.TeamTagLen:] }

	a1, err := credential.NewClientID("acme")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := credential.NewClientID("acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a1, a2} {
		if !strings.HasPrefix(id, prefix) {
			t.Fatalf("client id %q lacks %q", id, prefix)
		}
		if url.PathEscape(id) != id || url.QueryEscape(id) != id {
			t.Fatalf("client id %q is not URL-safe", id)
		}
		if !isBase62(id[len(prefix):]) {
			t.Fatalf("client id %q has characters outside base62 after the prefix", id)
		}
		// 128 random bits need at least 22 base62 characters.
		if len(random(id)) < 22 {
			t.Fatalf("random part of %q is %d chars, want ≥ 22", id, len(random(id)))
		}
	}
	if credential.TeamTagLen != 6 {
		t.Fatalf("TeamTagLen = %d, want 6", credential.TeamTagLen)
	}
	if tag(a1) != tag(a2) {
		t.Fatalf("same team, different tags: %q vs %q", a1, a2)
	}
	if tag(a1) != credential.TeamTag("acme") {
		t.Fatalf("tag of %q is not TeamTag(acme) = %q", a1, credential.TeamTag("acme"))
	}
	if a1 == a2 || random(a1) == random(a2) {
		t.Fatalf("two IDs share their random part: %q, %q", a1, a2)
	}

	// Different teams get different tags (6 base62 chars: a collision among
	// a few dozen teams is ~1e-8).
	tags := map[string]string{}
	for _, team := range []string{"acme", "Acme", "globex", "initech", "umbrella", "a", "b", "acme2", "", "team-1", "team-2", "team.1"} {
		id, err := credential.NewClientID(team)
		if err != nil {
			t.Fatal(err)
		}
		tg := tag(id)
		if other, dup := tags[tg]; dup {
			t.Fatalf("teams %q and %q share tag %q", other, team, tg)
		}
		tags[tg] = team
	}

	// Random parts are distinct across many IDs of one team.
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id, err := credential.NewClientID("acme")
		if err != nil {
			t.Fatal(err)
		}
		if seen[id] {
			t.Fatalf("client id repeated after %d", i)
		}
		seen[id] = true
	}
}

func pepper(b byte) []byte { return bytes.Repeat([]byte{b}, credential.PepperLen) }

func TestHasher(t *testing.T) {
	h1, err := credential.NewHasher(pepper(1))
	if err != nil {
		t.Fatal(err)
	}
	h1again, err := credential.NewHasher(pepper(1))
	if err != nil {
		t.Fatal(err)
	}
	h2, err := credential.NewHasher(pepper(2))
	if err != nil {
		t.Fatal(err)
	}
	s := newSecret(t)
	other := newSecret(t)

	sum := h1.Hash(s)
	if len(sum) != 32 {
		t.Fatalf("hash is %d bytes, want 32 (HMAC-SHA-256)", len(sum))
	}
	if !bytes.Equal(sum, h1.Hash(s)) || !bytes.Equal(sum, h1again.Hash(s)) {
		t.Fatal("Hash is not deterministic for the same pepper")
	}
	if bytes.Equal(sum, h2.Hash(s)) {
		t.Fatal("Hash is the same under another pepper")
	}
	if bytes.Equal(sum, h1.Hash(other)) {
		t.Fatal("two secrets hash alike")
	}
	if bytes.Contains(sum, []byte(s)) {
		t.Fatal("hash contains the secret")
	}

	if !h1.Matches(s, sum) {
		t.Fatal("Matches(right secret) = false")
	}
	if h1.Matches(other, sum) {
		t.Fatal("Matches(wrong secret) = true")
	}
	if h2.Matches(s, sum) {
		t.Fatal("Matches under another pepper = true")
	}
	if h1.Matches(s, nil) || h1.Matches(s, []byte{}) {
		t.Fatal("Matches(empty want) = true")
	}
	if h1.Matches(s, sum[:16]) || h1.Matches(s, sum[:31]) {
		t.Fatal("Matches(short want) = true")
	}
	if h1.Matches(s, append(append([]byte{}, sum...), 0)) {
		t.Fatal("Matches(long want) = true")
	}
	if h1.Matches("", sum) {
		t.Fatal("Matches(empty secret) = true")
	}

	// The hasher keeps its own copy of the pepper.
	p := pepper(7)
	h7, err := credential.NewHasher(p)
	if err != nil {
		t.Fatal(err)
	}
	before := h7.Hash(s)
	p[0] ^= 0xff
	if !bytes.Equal(before, h7.Hash(s)) {
		t.Fatal("changing the caller's pepper slice changed the hasher")
	}
}

func TestNewHasherRejectsWrongPepperLength(t *testing.T) {
	for _, n := range []int{0, 1, 16, 31, 33, 64} {
		if _, err := credential.NewHasher(make([]byte, n)); err == nil {
			t.Errorf("NewHasher accepted a %d-byte pepper", n)
		}
	}
}

func FuzzCheckSecretFormat(f *testing.F) {
	good, err := credential.NewSecret()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("kgs_")
	f.Add(good[:len(good)-1])
	f.Add(good + "x")
	f.Add(replaceAt(good, 10))
	f.Add("kgs_" + strings.Repeat("0", 49))
	f.Add("kgs_" + strings.Repeat("\xff", 49))
	f.Fuzz(func(t *testing.T, s string) {
		err := credential.CheckSecretFormat(s)
		if err != nil {
			if !errors.Is(err, credential.ErrMalformedSecret) {
				t.Fatalf("error %v does not wrap ErrMalformedSecret", err)
			}
			return
		}
		// Accepted: it must be exactly NewSecret's shape with a valid checksum.
		if len(s) != credential.SecretLen || !strings.HasPrefix(s, "kgs_") || !isBase62(s[4:]) {
			t.Fatalf("accepted %q, which is not shaped like a secret", s)
		}
		if body, sum := s[4:4+43], s[4+43:]; crcSuffix(body) != sum {
			t.Fatalf("accepted %q with a wrong checksum", s)
		}
	})
}
