package server

import "testing"

// TestTokenAudience: a keys:… entry anywhere in the granted scope makes a
// management token; a scope merely containing "keys:" inside an entry does
// not. The decision allocates nothing (the token path's budget).
func TestTokenAudience(t *testing.T) {
	s := &Server{cfg: Options{Issuer: "https://kg.example", Audience: "https://api.example"}, mgmtAudience: "https://kg.example/v1"}
	for scope, mgmt := range map[string]bool{
		"keys:admin":                         true,
		"keys:read":                          true,
		"accounting:read keys:manage":        true,
		"keys:manage accounting:read":        true,
		"accounting:read":                    false,
		"":                                   false,
		"apikeys:read":                       false,
		"monkeys:read accounting:write":      false,
		"apikeys:read monkeys:x keys:manage": true,
	} {
		want := "https://api.example"
		if mgmt {
			want = "https://kg.example/v1"
		}
		if got := s.tokenAudience(scope); got != want {
			t.Errorf("tokenAudience(%q) = %q, want %q", scope, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = s.tokenAudience("accounting:read banking:write keys:manage") }); n != 0 {
		t.Errorf("tokenAudience allocates %v times", n)
	}
}
