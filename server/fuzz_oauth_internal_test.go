package server

// Fuzz targets for what a client sends to the OAuth endpoints before any
// key is looked up: the form body and the HTTP Basic header. Each asserts
// a property against an independent reference (net/url, encoding/base64),
// not only that nothing panics. .ci/run runs each for a few seconds.

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseBasic: a malformed header yields neither ID nor secret; a
// well-formed one (RFC 6749 §2.3.1: form-urlencoded, then Base64) gives
// back exactly the ID and secret that were encoded.
func FuzzParseBasic(f *testing.F) {
	enc := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	}
	f.Add(enc("kgc_1", "kgs_secret"), "kgc_1", "kgs_secret")
	f.Add("basic "+base64.StdEncoding.EncodeToString([]byte("a%3Ab:c%25d")), "a:b", "c%d")
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte(":secret-without-id")), "", "s")
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte("no-colon")), "id", "")
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte("id:%zz")), "id", "%")
	f.Add("Basic !!!", "ü", "\x00")
	f.Add("Bearer abc", "id", "secret")
	f.Add("Basic  "+base64.StdEncoding.EncodeToString([]byte("id:s"))+" ", "id", "s")
	f.Fuzz(func(t *testing.T, h, id, secret string) {
		gotID, gotSecret, ok := parseBasic(h)
		if !ok {
			if gotID != "" || gotSecret != "" {
				t.Fatalf("parseBasic(%q) refused the header but returned id %q secret %q", h, gotID, gotSecret)
			}
		} else {
			// Accepted: the header must be what the reference decoding
			// of RFC 7617 + RFC 6749 §2.3.1 makes of it.
			if len(h) < 6 || !strings.EqualFold(h[:6], "basic ") {
				t.Fatalf("parseBasic(%q) accepted a header without the Basic scheme", h)
			}
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[6:]))
			if err != nil {
				t.Fatalf("parseBasic(%q) accepted invalid Base64: %v", h, err)
			}
			rid, rsec, found := strings.Cut(string(raw), ":")
			wantID, err1 := url.QueryUnescape(rid)
			wantSecret, err2 := url.QueryUnescape(rsec)
			if !found || err1 != nil || err2 != nil || gotID != wantID || gotSecret != wantSecret || gotID == "" {
				t.Fatalf("parseBasic(%q) = %q, %q; reference decoding gives %q, %q (found %v, %v, %v)",
					h, gotID, gotSecret, wantID, wantSecret, found, err1, err2)
			}
		}
		// Round trip of a well-formed header built from id and secret.
		rid, rsec, rok := parseBasic(enc(id, secret))
		if id == "" {
			if rok || rid != "" || rsec != "" {
				t.Fatalf("an empty client ID was accepted: %q, %q, %v", rid, rsec, rok)
			}
			return
		}
		if !rok || rid != id || rsec != secret {
			t.Fatalf("round trip of (%q, %q) gave (%q, %q, %v)", id, secret, rid, rsec, rok)
		}
	})
}

// FuzzParseForm: parseForm accepts a body exactly when url.ParseQuery
// does and no name occurs twice (RFC 6749 §3.2), and then holds the same
// values as url.ParseQuery for the parameters it keeps, with "sent"
// recorded for exactly those present.
func FuzzParseForm(f *testing.F) {
	f.Add("grant_type=client_credentials&scope=a+b&client_id=kgc_1&client_secret=kgs_x")
	f.Add("grant_type=client_credentials&grant_type=client_credentials")
	f.Add("x=1&x=2")
	f.Add("token=%zz")
	f.Add("a=1;b=2")
	f.Add("&&scope=&=x&client_id")
	f.Add("scope=%E2%82%AC+%20%2B&token=t%26u")
	f.Fuzz(func(t *testing.T, body string) {
		form, name, err := parseForm(body)
		ref, refErr := url.ParseQuery(body)
		var repeated []string
		for k, vs := range ref {
			if len(vs) > 1 {
				repeated = append(repeated, k)
			}
		}
		if err == nil {
			if refErr != nil || len(repeated) > 0 {
				t.Fatalf("parseForm(%q) accepted; url.ParseQuery: %v, repeated %q", body, refErr, repeated)
			}
			for key, bit := range formParams {
				vs, present := ref[key]
				if form.sent(bit) != present {
					t.Fatalf("parseForm(%q): %s sent=%v, url.ParseQuery present=%v", body, key, form.sent(bit), present)
				}
				got := map[uint16]string{pGrantType: form.grantType, pScope: form.scope, pClientID: form.clientID,
					pClientSecret: form.clientSecret, pToken: form.token, pSubjectToken: form.subjectToken,
					pSubjectTokenType: form.subjectTokenType, pActorToken: form.actorToken, pResource: form.resource}[bit]
				if present && got != vs[0] || !present && got != "" {
					t.Fatalf("parseForm(%q): %s = %q, url.ParseQuery %q", body, key, got, vs)
				}
			}
			return
		}
		if refErr == nil && len(repeated) == 0 {
			t.Fatalf("parseForm(%q) refused (%v) a body url.ParseQuery takes without repeats", body, err)
		}
		if name != "" {
			if vs := ref[name]; len(vs) < 2 {
				t.Fatalf("parseForm(%q) named %q as repeated; url.ParseQuery has it %d times", body, name, len(vs))
			}
		}
	})
}

// FuzzParseTokenRequest drives the token endpoint's whole parse step with a
// fuzzed body and Authorization header. What it lets through is a
// client_credentials request with a non-empty ID and secret that came from
// exactly one authentication method; a refusal never carries the secret.
func FuzzParseTokenRequest(f *testing.F) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("kgc_1:kgs_s"))
	f.Add("grant_type=client_credentials&client_id=kgc_1&client_secret=kgs_s", "", "application/x-www-form-urlencoded")
	f.Add("grant_type=client_credentials", basic, "application/x-www-form-urlencoded; charset=utf-8")
	f.Add("grant_type=client_credentials&client_id=kgc_2", basic, "application/x-www-form-urlencoded")
	f.Add("grant_type=client_credentials&client_secret=kgs_s", basic, "application/x-www-form-urlencoded")
	f.Add("grant_type=password&client_id=a&client_secret=b", "", "application/x-www-form-urlencoded")
	f.Add("grant_type=client_credentials&scope=a&scope=b", "", "application/json")
	f.Add("grant_type=client_credentials", "Basic Og==", "application/x-www-form-urlencoded")
	f.Fuzz(func(t *testing.T, body, auth, ct string) {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
		r.Header = http.Header{} // httptest would otherwise add nothing, but be explicit
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		if ct != "" {
			r.Header["Content-Type"] = []string{ct}
		}
		w := httptest.NewRecorder()
		form, creds, oerr := parseTokenRequest(w, r)
		if oerr != nil {
			if creds.secret != "" {
				t.Fatalf("refusal %v carries a secret", oerr)
			}
			return
		}
		if len(body) > maxTokenRequestBody || !isFormContentType(ct) {
			t.Fatalf("accepted a body of %d bytes with Content-Type %q", len(body), ct)
		}
		if form.grantType != grantClientCredentials || creds.id == "" || creds.secret == "" {
			t.Fatalf("accepted grant %q id %q secret set %v", form.grantType, creds.id, creds.secret != "")
		}
		if auth == "" {
			if creds.id != form.clientID || creds.secret != form.clientSecret {
				t.Fatalf("form credentials not taken from the form")
			}
			return
		}
		id, secret, ok := parseBasic(auth)
		if !ok || form.sent(pClientSecret) || creds.id != id || creds.secret != secret ||
			form.sent(pClientID) && form.clientID != id {
			t.Fatalf("accepted Basic %q with form %+v: creds do not come from one method", auth, form.has)
		}
	})
}

// Found by FuzzParseBasic: a header with an empty client ID was refused but
// the secret after the colon was still returned to the caller.
func TestParseBasicEmptyIDReturnsNoSecret(t *testing.T) {
	h := "Basic " + base64.StdEncoding.EncodeToString([]byte(":kgs_secret"))
	if id, secret, ok := parseBasic(h); ok || id != "" || secret != "" {
		t.Fatalf("parseBasic(%q) = %q, %q, %v; want a refusal with nothing returned", h, id, secret, ok)
	}
}
