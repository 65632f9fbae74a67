package loadgen

import "testing"

func TestChecks(t *testing.T) {
	cases := []struct {
		name  string
		check checkFunc
		body  string
		want  bool
	}{
		{"token", hasTokenField, `{"access_token":"eyJ.x.y","expires_in":900}`, true},
		{"token with spaces", hasTokenField, "{\n  \"access_token\" : \"eyJ\"\n}", true},
		{"empty token", hasTokenField, `{"access_token":"","expires_in":900}`, false},
		{"null token", hasTokenField, `{"access_token":null}`, false},
		{"token name as a value", hasTokenField, `{"error":"access_token","x":1}`, false},
		{"name as value, then member", hasTokenField, `{"error":"access_token","access_token":"a"}`, true},
		{"error body", hasTokenField, `{"error":"invalid_client"}`, false},
		{"truncated", hasTokenField, `{"access_token":"`, false},
		{"empty", hasTokenField, ``, false},
		{"jwks", hasKeys, `{"keys":[{"kty":"EC"}]}`, true},
		{"jwks empty", hasKeys, `{"keys":[]}`, false},
		{"jwks not array", hasKeys, `{"keys":null}`, false},
		{"active", isActive, `{"active":true,"scope":"a"}`, true},
		{"inactive", isActive, `{"active":false}`, false},
		{"no active", isActive, `{"error":"invalid_client"}`, false},
	}
	for _, c := range cases {
		if got := c.check([]byte(c.body)); got != c.want {
			t.Errorf("%s: check(%q) = %v, want %v", c.name, c.body, got, c.want)
		}
	}
}
