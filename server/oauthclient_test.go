package server_test

import (
	"context"
	"testing"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// TestOAuthClientVerifiesThroughAuthenticate: the go-oauth2 view of a key
// exposes no secret (GetSecret is empty, so go-oauth2's fallback compare
// must never be reached; the compile-time ClientPasswordVerifier assertion
// keeps it on the verifier path) and its VerifyPassword is the one
// authentication of apikey.
func TestOAuthClientVerifiesThroughAuthenticate(t *testing.T) {
	env := servertest.Start(t, server.Options{}, nil)
	key := env.CreateKey(t, "acme", "a", "accounting_api")
	other := env.CreateKey(t, "acme", "b", "accounting_api")
	ctx := context.Background()
	c := server.OAuthClient(ctx, env.Server, key.ClientID)
	if c.GetID() != key.ClientID || c.GetSecret() != "" || c.IsPublic() {
		t.Fatalf("client %q, secret %q, public %v", c.GetID(), c.GetSecret(), c.IsPublic())
	}
	if !c.VerifyPassword(key.ClientSecret) {
		t.Error("the key's own secret is refused")
	}
	for name, secret := range map[string]string{"empty": "", "another key's": other.ClientSecret, "GetSecret's": c.GetSecret()} {
		if c.VerifyPassword(secret) {
			t.Errorf("%s secret accepted", name)
		}
	}
	if server.OAuthClient(ctx, env.Server, "acme.unknown").VerifyPassword(key.ClientSecret) {
		t.Error("an unknown client ID accepted")
	}
}
