package apikey_test

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/credential"
)

// A client ID field may be logged only when it holds something shaped like
// a client ID; a secret pasted there, whole or in part, never.
func TestLoggableClientID(t *testing.T) {
	id, err := credential.NewClientID("acme")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{id, "test-admin", "golden-admin", "ops.admin~1"} {
		if !apikey.LoggableClientID(ok) {
			t.Errorf("%q is a client ID but not loggable", ok)
		}
	}
	for _, bad := range []string{
		secret,
		strings.ToUpper(secret[:4]) + secret[4:],
		secret[len(credential.SecretPrefix):], // a secret without its prefix
		"x" + secret,
		secret[:20], // a truncated secret still has the prefix
		"",          // nothing
		"ab",        // too short for any client ID
		"a b",       // not URL-safe
		"id:secret", // Basic's form pasted into the ID
		"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln", // a token
		strings.Repeat("a", 65),
	} {
		if apikey.LoggableClientID(bad) {
			t.Errorf("%q would be logged as a client ID", bad)
		}
	}
}

func TestMayHoldSecret(t *testing.T) {
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secret, "trace-" + secret, secret[len(credential.SecretPrefix):], "KGS_x", "eyJhbGciOiJFUzI1NiJ9"} {
		if !apikey.MayHoldSecret(s) {
			t.Errorf("%q might be a credential, but MayHoldSecret says no", s)
		}
	}
	for _, s := range []string{"req-1", "0f8fad5b-d9cb-469f-a165-70867728950e", "kgc_abc", ""} {
		if apikey.MayHoldSecret(s) {
			t.Errorf("%q is taken for a credential", s)
		}
	}
}
