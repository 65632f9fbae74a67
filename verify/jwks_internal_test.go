package verify

// Tables for the JWKS helpers; the behaviour they add up to is tested from
// outside in jwks_test.go.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCacheTTL(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                             defaultCacheTTL,
		"public":                       defaultCacheTTL,
		"max-age=60":                   60 * time.Second,
		"max-age=1":                    30 * time.Second,
		"max-age=0":                    30 * time.Second,
		"max-age=29":                   30 * time.Second,
		"max-age=30":                   30 * time.Second,
		"max-age=31":                   31 * time.Second,
		"max-age=86400":                24 * time.Hour,
		"max-age=86401":                24 * time.Hour,
		"max-age=999999":               24 * time.Hour,
		"max-age=99999999999999999999": defaultCacheTTL, // overflows int64: ignored
		"max-age=-1":                   defaultCacheTTL,
		"max-age=":                     defaultCacheTTL,
		"max-age=1h":                   defaultCacheTTL,
		`max-age="120"`:                120 * time.Second,
		"MAX-AGE=120":                  120 * time.Second,
		" max-age=120 ":                120 * time.Second,
		"no-store":                     30 * time.Second,
		"no-cache":                     30 * time.Second,
		"max-age=600, no-store":        30 * time.Second,
		"no-store, max-age=600":        30 * time.Second,
		"public, max-age=300, stale-while-revalidate=60": 300 * time.Second,
		"s-maxage=600":                defaultCacheTTL,
		"max-age=9223372036854775807": 24 * time.Hour,
	} {
		if got := cacheTTL(cc); got != want {
			t.Errorf("cacheTTL(%q) = %v, want %v", cc, got, want)
		}
	}
}

func TestPlausibleKID(t *testing.T) {
	for _, kid := range []string{"a", "ec-1", "rsa_2", "Abc.def", strings.Repeat("k", 128),
		"dGhpcyBpcyBhIHRodW1icHJpbnQ_-base64url0123456789"} {
		if !plausibleKID(kid) {
			t.Errorf("%q not plausible", kid)
		}
	}
	for _, kid := range []string{"", strings.Repeat("k", 129), "../../etc/passwd", "' OR 1=1 --", "a b", "a/b",
		"a\x00", "a\n", "ключ", "a+b", "a=", "a%2F", `a"`, "a;b", "a:b"} {
		if plausibleKID(kid) {
			t.Errorf("%q plausible", kid)
		}
	}
}

func TestCheckFetchURL(t *testing.T) {
	for _, tc := range []struct {
		raw      string
		insecure bool
		ok       bool
	}{
		{"https://auth.example.com", false, true},
		{"https://auth.example.com/tenant", false, true},
		{"http://127.0.0.1:8080", false, true},
		{"http://127.9.9.9", false, true},
		{"http://[::1]:8080", false, true},
		{"http://localhost:8080", false, true},
		{"http://LOCALHOST", false, true},
		{"http://auth.example.com", false, false},
		{"http://auth.example.com", true, true},
		{"http://localhost.example.com", false, false},
		{"http://127.0.0.1.nip.io", false, false},
		{"http://10.0.0.1", false, false},
		{"http://0.0.0.0", false, false},
		{"http://[::]:80", false, false},
		{"ftp://auth.example.com", true, false},
		{"file:///etc/passwd", true, false},
		{"auth.example.com", true, false},
		{"/jwks.json", true, false},
		{"https://", true, false},
		{"", true, false},
		{"https://auth.example.com\x00", true, false},
	} {
		_, err := checkFetchURL("x", tc.raw, tc.insecure)
		if (err == nil) != tc.ok {
			t.Errorf("checkFetchURL(%q, insecure=%v): err = %v, want ok=%v", tc.raw, tc.insecure, err, tc.ok)
		}
	}
}

func TestMetadataURL(t *testing.T) {
	for iss, want := range map[string]string{
		"https://auth.example.com":           "https://auth.example.com/.well-known/oauth-authorization-server",
		"https://auth.example.com/":          "https://auth.example.com/.well-known/oauth-authorization-server",
		"https://auth.example.com/tenant/a":  "https://auth.example.com/.well-known/oauth-authorization-server/tenant/a",
		"https://auth.example.com/tenant/a/": "https://auth.example.com/.well-known/oauth-authorization-server/tenant/a",
		"http://127.0.0.1:8080":              "http://127.0.0.1:8080/.well-known/oauth-authorization-server",
	} {
		u, err := url.Parse(iss)
		if err != nil {
			t.Fatal(err)
		}
		if got := metadataURL(u); got != want {
			t.Errorf("metadataURL(%q) = %q, want %q", iss, got, want)
		}
	}
}

// parseJWKS keeps exactly the usable signature keys.
func TestParseJWKSKeepsOnlyUsableKeys(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	ec := func() (x, y string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := k.PublicKey.Bytes()
		return enc(b[1:33]), enc(b[33:])
	}
	x1, y1 := ec()
	x2, y2 := ec()
	ecJWK := func(kid, x, y string, extra ...string) string {
		s := `{"kty":"EC","crv":"P-256","kid":"` + kid + `","x":"` + x + `","y":"` + y + `"`
		for _, e := range extra {
			s += "," + e
		}
		return s + "}"
	}
	doc := `{"keys":[` + strings.Join([]string{
		ecJWK("good", x1, y1, `"alg":"ES256"`, `"use":"sig"`),
		ecJWK("no-alg-no-use", x2, y2),
		ecJWK("enc", x1, y1, `"use":"enc"`),
		ecJWK("alg-rs", x1, y1, `"alg":"RS256"`),
		ecJWK("off-curve", x1, enc(append(make([]byte, 31), 1))),
		ecJWK("dup", x1, y1),
		ecJWK("dup", x2, y2),
		`"not an object"`,
		`{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"` + enc(make([]byte, 32)) + `","alg":"Ed25519"}`,
		`{"kty":"OKP","crv":"X25519","kid":"x25519","x":"` + enc(make([]byte, 32)) + `"}`,
	}, ",") + `]}`
	keys, err := parseJWKS([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for kid := range keys {
		got = append(got, kid)
	}
	slices.Sort(got)
	if want := []string{"ed", "good", "no-alg-no-use"}; !slices.Equal(got, want) {
		t.Fatalf("kids %v, want %v", got, want)
	}
	if keys["good"].alg != "ES256" || keys["ed"].alg != "EdDSA" {
		t.Fatalf("algs %+v", keys)
	}
	for _, bad := range []string{`{"keys":[]}`, `{}`, `[]`, `null`, `{"keys":[` + ecJWK("enc", x1, y1, `"use":"enc"`) + `]}`} {
		if _, err := parseJWKS([]byte(bad)); err == nil {
			t.Errorf("parseJWKS(%s) accepted", bad)
		}
	}
}
