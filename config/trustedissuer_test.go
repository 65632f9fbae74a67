package config

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestTrustedIssuersLoad(t *testing.T) {
	cfg := writeFile(t, `
issuer: https://keygate.example.com
trusted_issuers:
  - issuer: https://idp.example.com/
    jwks_uri: https://idp.example.com/.well-known/jwks.json
    audience: keygate
    team_claim: org_id
    user_claim: email
    teams: [acme-, "globex"]
    clients: [kg_platform_1]
    algorithms: [es256, RS256, PS384]
  - issuer: http://127.0.0.1:9999
    jwks_uri: http://127.0.0.1:9999/jwks
    audience: https://keygate.example.com
    team_claim: team
    user_claim: sub
    teams: [t]
`)
	c := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": cfg})
	if len(c.TrustedIssuers) != 2 {
		t.Fatalf("got %d trusted issuers, want 2", len(c.TrustedIssuers))
	}
	a, b := c.TrustedIssuers[0], c.TrustedIssuers[1]
	if a.Issuer != "https://idp.example.com/" || a.JWKSURI != "https://idp.example.com/.well-known/jwks.json" || a.Audience != "keygate" ||
		a.TeamClaim != "org_id" || a.UserClaim != "email" || !slices.Equal(a.Teams, []string{"acme-", "globex"}) ||
		!slices.Equal(a.Clients, []string{"kg_platform_1"}) {
		t.Errorf("trusted_issuers[0] = %+v", a)
	}
	// Algorithms are spelt canonically; the issuer keeps its trailing
	// slash (iss is compared exactly).
	if !slices.Equal(a.Algorithms, []string{"ES256", "RS256", "PS384"}) {
		t.Errorf("trusted_issuers[0].algorithms = %q", a.Algorithms)
	}
	if b.Clients != nil || !slices.Equal(b.Algorithms, DefaultTrustedIssuerAlgorithms) {
		t.Errorf("trusted_issuers[1]: clients %q (want nil: any), algorithms %q (want the default)", b.Clients, b.Algorithms)
	}
	if !slices.Equal(DefaultTrustedIssuerAlgorithms, []string{"ES256", "RS256", "EdDSA"}) {
		t.Errorf("default algorithms %q", DefaultTrustedIssuerAlgorithms)
	}

	// The marshalled config loads back to the same issuers.
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": writeFile(t, string(out))})
	if len(back.TrustedIssuers) != 2 {
		t.Fatalf("after a YAML round trip: %d trusted issuers", len(back.TrustedIssuers))
	}
	for i := range c.TrustedIssuers {
		x, y := c.TrustedIssuers[i], back.TrustedIssuers[i]
		if x.Issuer != y.Issuer || x.JWKSURI != y.JWKSURI || !slices.Equal(x.Teams, y.Teams) || !slices.Equal(x.Clients, y.Clients) || !slices.Equal(x.Algorithms, y.Algorithms) {
			t.Errorf("trusted_issuers[%d] after a YAML round trip: %+v, want %+v", i, y, x)
		}
	}

	// None configured: none.
	if c := mustLoad(t, nil, nil); c.TrustedIssuers != nil {
		t.Errorf("default trusted_issuers = %+v, want none", c.TrustedIssuers)
	}
}

func TestTrustedIssuersRefused(t *testing.T) {
	const good = "    jwks_uri: https://idp.example.com/jwks\n    audience: keygate\n    team_claim: org\n    user_claim: email\n    teams: [acme-]\n"
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"not a list", "trusted_issuers: {issuer: x}\n", []string{"invalid trusted_issuers", "want a list"}},
		{"unknown field", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks: x\n", []string{"unknown field \"jwks\""}},
		{"repeated field", "trusted_issuers:\n  - issuer: https://idp.example.com\n    issuer: https://idp.example.com\n", []string{"\"issuer\" appears twice"}},
		{"no issuer", "trusted_issuers:\n  - audience: keygate\n", []string{"invalid trusted_issuers[0]", "issuer is required"}},
		{"keygate's own issuer", "trusted_issuers:\n  - issuer: https://keygate.example.com/\n" + good, []string{"invalid trusted_issuers[0]", "keygate's own"}},
		{"keygate's own issuer, other case", "trusted_issuers:\n  - issuer: HTTPS://KEYGATE.example.com\n" + good, []string{"keygate's own"}},
		{"http jwks_uri off loopback", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: http://idp.example.com/jwks\n    audience: a\n    team_claim: t\n    user_claim: u\n    teams: [x]\n",
			[]string{"invalid trusted_issuers[0]", "jwks_uri", "must use https", "line 3"}},
		{"jwks_uri relative", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: /jwks\n    audience: a\n    team_claim: t\n    user_claim: u\n    teams: [x]\n",
			[]string{"jwks_uri", "not an absolute URL"}},
		{"jwks_uri with credentials", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://u:p@idp.example.com/jwks\n    audience: a\n    team_claim: t\n    user_claim: u\n    teams: [x]\n",
			[]string{"jwks_uri", "credentials"}},
		{"no audience", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://idp.example.com/jwks\n    team_claim: t\n    user_claim: u\n    teams: [x]\n",
			[]string{"audience is required"}},
		{"no team claim", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://idp.example.com/jwks\n    audience: a\n    user_claim: u\n    teams: [x]\n",
			[]string{"team_claim is required"}},
		{"registered claim as team claim", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://idp.example.com/jwks\n    audience: a\n    team_claim: aud\n    user_claim: u\n    teams: [x]\n",
			[]string{"team_claim \"aud\" is a registered JWT claim"}},
		{"same claim twice", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://idp.example.com/jwks\n    audience: a\n    team_claim: u\n    user_claim: u\n    teams: [x]\n",
			[]string{"must be different"}},
		{"no teams", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://idp.example.com/jwks\n    audience: a\n    team_claim: t\n    user_claim: u\n",
			[]string{"teams is required"}},
		{"empty teams", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://idp.example.com/jwks\n    audience: a\n    team_claim: t\n    user_claim: u\n    teams: []\n",
			[]string{"teams is required"}},
		{"empty team prefix", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://idp.example.com/jwks\n    audience: a\n    team_claim: t\n    user_claim: u\n    teams: [\"\"]\n",
			[]string{"teams: \"\" is not a team-ID prefix"}},
		{"bad team prefix", "trusted_issuers:\n  - issuer: https://idp.example.com\n    jwks_uri: https://idp.example.com/jwks\n    audience: a\n    team_claim: t\n    user_claim: u\n    teams: [\"a/b\"]\n",
			[]string{"not a team-ID prefix"}},
		{"empty clients", "trusted_issuers:\n  - issuer: https://idp.example.com\n" + good + "    clients: []\n", []string{"clients is empty"}},
		{"HMAC algorithm", "trusted_issuers:\n  - issuer: https://idp.example.com\n" + good + "    algorithms: [HS256]\n", []string{"\"HS256\" is not allowed", "never HS* or none"}},
		{"alg none", "trusted_issuers:\n  - issuer: https://idp.example.com\n" + good + "    algorithms: [none]\n", []string{"\"none\" is not allowed"}},
		{"empty algorithms", "trusted_issuers:\n  - issuer: https://idp.example.com\n" + good + "    algorithms: []\n", []string{"algorithms is empty"}},
		{"duplicate issuer", "trusted_issuers:\n  - issuer: https://idp.example.com\n" + good + "  - issuer: https://idp.example.com\n" + good,
			[]string{"invalid trusted_issuers[1].issuer", "trusted_issuers[0] has the same issuer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeFile(t, "issuer: https://keygate.example.com\n"+tc.yaml)
			_, err := Load(nil, env(map[string]string{"KEYGATE_CONFIG": cfg}))
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
