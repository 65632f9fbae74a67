package apikey_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/quota"
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

func TestCheckTokenQuota(t *testing.T) {
	for p, want := range map[quota.Policy]string{
		{}: "",
		{Limit: 1, Per: quota.Hour, Mode: quota.Enforce}:             "",
		{Limit: quota.MaxLimit, Per: quota.Day, Mode: quota.Log}:     "",
		{Limit: 0, Per: quota.Hour, Mode: quota.Enforce}:             `"token_quota.limit" is 0; use a whole number of tokens from 1 to 1000000000`,
		{Limit: quota.MaxLimit + 1, Per: quota.Day, Mode: quota.Log}: `"token_quota.limit" is 1000000001; use a whole number of tokens from 1 to 1000000000`,
		{Limit: 5, Per: "week", Mode: quota.Enforce}:                 `"token_quota.per" must be "hour" or "day" (the window the limit counts in)`,
		{Limit: 5, Per: quota.Hour, Mode: "warn"}:                    `"token_quota.mode" must be "enforce" (refuse tokens over the limit) or "log" (issue them and log once per window)`,
		{Limit: 5, Per: quota.Hour, Mode: ""}:                        `"token_quota.mode" must be "enforce"`,
	} {
		err := apikey.CheckTokenQuota(p)
		var inv *apikey.InvalidError
		switch {
		case want == "" && err != nil:
			t.Errorf("CheckTokenQuota(%+v) = %v, want nil", p, err)
		case want != "" && (!errors.As(err, &inv) || !strings.HasPrefix(inv.Detail, want)):
			t.Errorf("CheckTokenQuota(%+v) = %v, want an *InvalidError starting %q", p, err, want)
		}
	}
}
