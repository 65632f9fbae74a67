package scopes

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var accountingScopes = []string{
	"common:read", "common:write",
	"accounting:read", "accounting:write",
	"banking:read", "banking:write",
	"commerce:read", "commerce:write",
	"analytics:read", "analytics:write",
}

func TestDefaultCatalog(t *testing.T) {
	c := Default()
	perms := c.Permissions()
	if len(perms) != 5 {
		t.Fatalf("default catalog has %d permissions, want 3 and the 2 built-in ones", len(perms))
	}
	// The built-in operator-only entries every catalog ends with.
	if p := perms[3]; p.ID != KeyManagement || !p.OperatorOnly || !slices.Equal(p.Scopes, []string{ManageScope}) {
		t.Errorf("permission 3 = %+v, want built-in operator-only key_management with keys:manage", p)
	}
	if p := perms[4]; p.ID != TokenExchange || !p.OperatorOnly || !slices.Equal(p.Scopes, []string{ExchangeScope}) {
		t.Errorf("permission 4 = %+v, want built-in operator-only token_exchange with tokens:exchange", p)
	}
	// The operator-only entry for resource servers that introspect: never
	// offered to teams, never in scopes_supported.
	if p := perms[2]; p.ID != "token_introspection" || !p.OperatorOnly || !slices.Equal(p.Scopes, []string{"tokens:introspect"}) {
		t.Errorf("permission 2 = %+v, want operator-only token_introspection with tokens:introspect", p)
	}
	want := []struct {
		id, name string
		scopes   []string
	}{
		{"accounting_api", "Accounting Data as a Service API — full read/write", accountingScopes},
		{"visualization_sdk", "Visualization SDK — read", []string{"visualizations:read"}},
	}
	for i, w := range want {
		p := perms[i]
		if p.ID != w.id || p.Name != w.name || !slices.Equal(p.Scopes, w.scopes) || p.OperatorOnly {
			t.Errorf("permission %d = %+v, want id %q name %q scopes %v", i, p, w.id, w.name, w.scopes)
		}
		if p.Description == "" {
			t.Errorf("permission %q has no description", p.ID)
		}
		if got, ok := c.Lookup(w.id); !ok || got.ID != w.id {
			t.Errorf("Lookup(%q) = %+v, %v", w.id, got, ok)
		}
	}
	if _, ok := c.Lookup("nope"); ok {
		t.Error("Lookup(nope) found something")
	}
	if got := len(c.Offered()); got != 2 {
		t.Errorf("Offered() has %d entries, want 2", got)
	}
	wantAll := append(slices.Clone(accountingScopes), "visualizations:read", AdminScope)
	if got := c.AllScopes(); !slices.Equal(got, wantAll) {
		t.Errorf("AllScopes() = %v, want %v", got, wantAll)
	}
}

func TestCatalogIsImmutable(t *testing.T) {
	input := []Permission{{ID: "a", Name: "A", Scopes: []string{"x:read"}}}
	c, err := New(input)
	if err != nil {
		t.Fatal(err)
	}
	input[0].Scopes[0] = "changed"
	c.Permissions()[0].Scopes[0] = "changed"
	p, _ := c.Lookup("a")
	p.Scopes[0] = "changed"
	c.Offered()[0].Scopes[0] = "changed"
	c.AllScopes()[0] = "changed"
	if got, _ := c.Resolve([]string{"a"}); !slices.Equal(got, []string{"x:read"}) {
		t.Errorf("catalog changed through a returned slice: Resolve = %v", got)
	}
	if got := c.AllScopes(); got[0] != "x:read" {
		t.Errorf("AllScopes changed through a returned slice: %v", got)
	}
}

func TestZeroCatalog(t *testing.T) {
	var c Catalog
	if _, ok := c.Lookup("a"); ok {
		t.Error("zero catalog found a permission")
	}
	if _, err := c.Resolve([]string{"a"}); !errors.Is(err, ErrUnknownPermission) {
		t.Errorf("zero catalog Resolve error = %v", err)
	}
	if err := c.ValidateIDs([]string{"a"}, false); err == nil {
		t.Error("zero catalog accepted an ID")
	}
	if got := c.AllScopes(); !slices.Equal(got, []string{AdminScope}) {
		t.Errorf("zero catalog AllScopes = %v", got)
	}
}

func testCatalog(t *testing.T) *Catalog {
	t.Helper()
	c, err := New([]Permission{
		{ID: "reports", Name: "Reports", Scopes: []string{"reports:read", "common:read"}},
		{ID: "ledger", Name: "Ledger", Scopes: []string{"common:read", "ledger:read", "ledger:write"}},
		{ID: "introspect", Name: "Introspection", Scopes: []string{"tokens:introspect"}, OperatorOnly: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResolve(t *testing.T) {
	c := testCatalog(t)
	tests := []struct {
		name string
		ids  []string
		want []string
	}{
		{"one", []string{"ledger"}, []string{"common:read", "ledger:read", "ledger:write"}},
		{"union in catalog order, not request order", []string{"ledger", "reports"},
			[]string{"reports:read", "common:read", "ledger:read", "ledger:write"}},
		{"duplicate IDs collapse", []string{"reports", "reports"}, []string{"reports:read", "common:read"}},
		{"operator-only resolves", []string{"introspect"}, []string{"tokens:introspect"}},
		{"none", nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Resolve(tt.ids)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) || got == nil {
				t.Errorf("Resolve(%q) = %#v, want %#v", tt.ids, got, tt.want)
			}
		})
	}

	got, err := Default().Resolve([]string{"visualization_sdk", "accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(accountingScopes), "visualizations:read"); !slices.Equal(got, want) {
		t.Errorf("default Resolve = %v, want %v", got, want)
	}

	_, err = c.Resolve([]string{"ledger", "payroll"})
	if !errors.Is(err, ErrUnknownPermission) {
		t.Fatalf("unknown ID: err = %v, want ErrUnknownPermission", err)
	}
	for _, want := range []string{`"payroll"`, "reports, ledger"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("unknown ID error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "introspect") {
		t.Errorf("unknown ID error %q lists an operator-only permission", err)
	}
}

func TestValidateIDs(t *testing.T) {
	c := testCatalog(t)
	tests := []struct {
		name    string
		ids     []string
		wantErr []string // substrings; nil means valid
		unknown bool
		// allowOperator is the admin's explicit flag for operator-only IDs.
		allowOperator bool
	}{
		{name: "valid", ids: []string{"reports", "ledger"}},
		{name: "empty", ids: nil, wantErr: []string{"no permissions", "reports, ledger"}},
		{name: "duplicate", ids: []string{"ledger", "ledger"}, wantErr: []string{`"ledger"`, "more than once"}},
		{name: "unknown", ids: []string{"payroll"}, wantErr: []string{`"payroll"`, "reports, ledger"}, unknown: true},
		{name: "operator-only", ids: []string{"introspect"}, wantErr: []string{`"introspect"`, "operator-only", "reports, ledger"}},
		{name: "operator-only with the flag", ids: []string{"introspect"}, allowOperator: true},
		{name: "unknown even with the flag", ids: []string{"payroll"}, allowOperator: true, wantErr: []string{`"payroll"`}, unknown: true},
		{name: "long unknown ID is cut", ids: []string{strings.Repeat("x", 5000)}, wantErr: []string{"…"}, unknown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.ValidateIDs(tt.ids, tt.allowOperator)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if errors.Is(err, ErrUnknownPermission) != tt.unknown {
				t.Errorf("errors.Is(err, ErrUnknownPermission) = %v, want %v", !tt.unknown, tt.unknown)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	ok := func(id string, scopes ...string) Permission {
		return Permission{ID: id, Name: "Some name", Scopes: scopes}
	}
	tests := []struct {
		name    string
		perms   []Permission
		wantErr []string
	}{
		{"no permissions", nil, []string{"at least one"}},
		{"reserved keys:admin", []Permission{ok("admin", "keys:admin")}, []string{`"admin"`, `"keys:admin"`, "reserved for keygate"}},
		{"reserved keys:admin even operator-only", []Permission{ok("a", "x"), {ID: "admin", Name: "A", Scopes: []string{"keys:admin"}, OperatorOnly: true}}, []string{`"admin"`, `"keys:admin"`, "reserved for keygate"}},
		{"reserved bare keys", []Permission{ok("k", "keys")}, []string{`"k"`, `"keys"`, "reserved for keygate"}},
		{"tokens: in offered entry", []Permission{ok("intro", "api:read", "tokens:x")}, []string{`"intro"`, `"tokens:x"`, "reserved for keygate", "operator_only"}},
		{"space in scope", []Permission{ok("p", "a b")}, []string{`"p"`, `"a b"`, "invalid scope"}},
		{"quote in scope", []Permission{ok("p", `a"b`)}, []string{`"p"`, `a\"b`, "invalid scope"}},
		{"backslash in scope", []Permission{ok("p", `a\b`)}, []string{`"p"`, `a\\b`, "invalid scope"}},
		{"non-ASCII scope", []Permission{ok("p", "café:read")}, []string{`"p"`, "caf", "invalid scope"}},
		{"control char in scope", []Permission{ok("p", "a\x01b")}, []string{`"p"`, `a\x01b`, "invalid scope"}},
		{"empty scope string", []Permission{ok("p", "")}, []string{`"p"`, `""`, "invalid scope"}},
		{"empty scope list", []Permission{ok("p")}, []string{`"p"`, "at least one scope"}},
		{"duplicate IDs", []Permission{ok("p", "a"), ok("q", "b"), ok("p", "c")}, []string{`"p"`, "more than one"}},
		{"empty name", []Permission{{ID: "p", Name: " ", Scopes: []string{"a"}}}, []string{`"p"`, "name is missing"}},
		{"missing ID", []Permission{ok("p", "a"), ok("", "b")}, []string{"#2", "id is missing"}},
		{"bad ID chars", []Permission{ok("a b", "a")}, []string{`"a b"`, "invalid id"}},
		{"ID starts with punctuation", []Permission{ok("_a", "a")}, []string{`"_a"`, "invalid id"}},
		{"ID too long", []Permission{ok(strings.Repeat("a", 65), "a")}, []string{"invalid id", "1-64"}},
		{"only operator-only entries", []Permission{{ID: "i", Name: "I", Scopes: []string{"tokens:introspect"}, OperatorOnly: true}}, []string{"operator_only", "at least one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.perms)
			if err == nil {
				t.Fatalf("New accepted %+v: %+v", tt.perms, c.Permissions())
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error has more than one line: %q", msg)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	c, err := New([]Permission{
		{ID: "Reports.v2-beta_1", Name: "Reports", Scopes: []string{"reports:read", "reports:read", "!#[]^~"}},
		{ID: "introspect", Name: "Introspection", Scopes: []string{"tokens:introspect", "tokens"}, OperatorOnly: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Lookup("Reports.v2-beta_1")
	if want := []string{"reports:read", "!#[]^~"}; !slices.Equal(p.Scopes, want) {
		t.Errorf("scopes = %v, want duplicates collapsed: %v", p.Scopes, want)
	}
	if got := c.Offered(); len(got) != 1 || got[0].ID != "Reports.v2-beta_1" {
		t.Errorf("Offered() = %+v", got)
	}
	if got, want := c.AllScopes(), []string{"reports:read", "!#[]^~", AdminScope}; !slices.Equal(got, want) {
		t.Errorf("AllScopes() = %v, want %v (no operator-only scopes)", got, want)
	}
	// Scopes that merely start with a reserved word are the operator's.
	if _, err := New([]Permission{{ID: "k", Name: "K", Scopes: []string{"keystore:read", "tokenizer"}}}); err != nil {
		t.Errorf("keystore:read refused: %v", err)
	}
}

func TestIsReserved(t *testing.T) {
	for s, want := range map[string]bool{
		"keys": true, "keys:admin": true, "tokens": true, "tokens:introspect": true,
		"keystore": false, "tokens_x": false, "api:keys": false, "": false,
	} {
		if got := IsReserved(s); got != want {
			t.Errorf("IsReserved(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestParseScope(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string // substring; "" means valid
	}{
		{in: "common:read", want: []string{"common:read"}},
		{in: "common:read banking:write", want: []string{"common:read", "banking:write"}},
		{in: "b a b a", want: []string{"b", "a"}},
		{in: "!#[]^~ x", want: []string{"!#[]^~", "x"}},
		{in: "", wantErr: "empty"},
		{in: " ", wantErr: "leading space"},
		{in: "a  b", wantErr: "more than one space"},
		{in: " a", wantErr: "leading space"},
		{in: "a ", wantErr: "trailing space"},
		{in: "a\tb", wantErr: "0x09"},
		{in: "a\nb", wantErr: "0x0A"},
		{in: `a"b`, wantErr: `'"'`},
		{in: `a\b`, wantErr: `'\\'`},
		{in: "café", wantErr: "0xC3"},
		{in: "a\x7f", wantErr: "0x7F"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseScope(tt.in)
			if tt.wantErr == "" {
				if err != nil || !slices.Equal(got, tt.want) {
					t.Errorf("ParseScope(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrMalformedScope) {
				t.Fatalf("ParseScope(%q) error = %v, want ErrMalformedScope", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseScope(%q) error %q does not contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestParseScopeManyTokens(t *testing.T) {
	// Past the linear-scan threshold the map path must give the same answer.
	var parts []string
	for i := 0; i < 200; i++ {
		parts = append(parts, "s"+strings.Repeat("x", i%50))
	}
	got, err := ParseScope(strings.Join(parts, " "))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 || got[0] != "s" || got[49] != "s"+strings.Repeat("x", 49) {
		t.Errorf("got %d scopes, first %q", len(got), got[0])
	}
}

func TestValidScopeToken(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "keys:admin": true, "!": true, "~": true, "[x]": true,
		"": false, " ": false, `"`: false, `\`: false, "é": false, "a\x00": false, "a\x7f": false,
	} {
		if got := ValidScopeToken(s); got != want {
			t.Errorf("ValidScopeToken(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestSubset(t *testing.T) {
	granted := []string{"common:read", "banking:read", "banking:write"}
	many := make([]string, 100)
	for i := range many {
		many[i] = strings.Repeat("m", i+1)
	}
	tests := []struct {
		name               string
		requested, granted []string
		want               bool
	}{
		{"equal", granted, granted, true},
		{"narrower", []string{"banking:write"}, granted, true},
		{"empty request", nil, granted, true},
		{"empty grant", []string{"common:read"}, nil, false},
		{"one extra", []string{"common:read", "common:write"}, granted, false},
		{"case-sensitive", []string{"Common:read"}, granted, false},
		{"large sets", many[10:90], many, true},
		{"large sets, one missing", append(slices.Clone(many[10:90]), "nope"), many, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Subset(tt.requested, tt.granted); got != tt.want {
				t.Errorf("Subset = %v, want %v", got, tt.want)
			}
			if got := NewSet(tt.granted).ContainsAll(tt.requested); got != tt.want {
				t.Errorf("Set.ContainsAll = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSet(t *testing.T) {
	s := NewSet([]string{"b", "a", "b", "c"})
	if s.Len() != 3 || s.String() != "b a c" || !slices.Equal(s.Scopes(), []string{"b", "a", "c"}) {
		t.Errorf("set = %d %q %v", s.Len(), s.String(), s.Scopes())
	}
	for _, x := range []string{"a", "b", "c"} {
		if !s.Contains(x) {
			t.Errorf("Contains(%q) = false", x)
		}
	}
	if s.Contains("d") || s.Contains("") {
		t.Error("Contains of a missing scope = true")
	}
	var zero Set
	if zero.Contains("a") || zero.Len() != 0 || zero.String() != "" || !zero.ContainsAll(nil) {
		t.Error("zero Set is not empty")
	}
	if got := Join([]string{"a", "b"}); got != "a b" {
		t.Errorf("Join = %q", got)
	}
}

func TestHotPathAllocations(t *testing.T) {
	in := "common:read banking:read banking:write"
	granted := NewSet(accountingScopes)
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseScope(in) }); n > 1 {
		t.Errorf("ParseScope allocates %v times, want at most 1", n)
	}
	req, _ := ParseScope(in)
	if n := testing.AllocsPerRun(100, func() { _ = Subset(req, accountingScopes) }); n != 0 {
		t.Errorf("Subset allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = granted.ContainsAll(req) }); n != 0 {
		t.Errorf("Set.ContainsAll allocates %v times, want 0", n)
	}
}

func BenchmarkParseScope(b *testing.B) {
	in := "common:read common:write accounting:read banking:read analytics:read"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseScope(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubset(b *testing.B) {
	req := []string{"common:read", "banking:read", "analytics:write"}
	b.ReportAllocs()
	for b.Loop() {
		if !Subset(req, accountingScopes) {
			b.Fatal("not a subset")
		}
	}
}

func BenchmarkSetContainsAll(b *testing.B) {
	req := []string{"common:read", "banking:read", "analytics:write"}
	s := NewSet(accountingScopes)
	b.ReportAllocs()
	for b.Loop() {
		if !s.ContainsAll(req) {
			b.Fatal("not a subset")
		}
	}
}

// An operator's catalog cannot take the built-in IDs, nor grant keys:…
// scopes even as operator-only, and every catalog gets the built-ins.
func TestBuiltinPermissions(t *testing.T) {
	for _, id := range []string{KeyManagement, TokenExchange} {
		_, err := New([]Permission{{ID: "a", Name: "A", Scopes: []string{"a:read"}}, {ID: id, Name: "X", Scopes: []string{"x:read"}, OperatorOnly: true}})
		if err == nil || !strings.Contains(err.Error(), "built-in") {
			t.Errorf("catalog taking id %s: err = %v, want a refusal naming the built-in", id, err)
		}
	}
	if _, err := New([]Permission{{ID: "a", Name: "A", Scopes: []string{"a:read"}}, {ID: "m", Name: "M", Scopes: []string{ManageScope}, OperatorOnly: true}}); err == nil {
		t.Error("an operator-only entry with keys:manage was accepted")
	}
	c, err := New([]Permission{{ID: "a", Name: "A", Scopes: []string{"a:read"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Resolve([]string{KeyManagement}); !slices.Equal(got, []string{ManageScope}) {
		t.Errorf("Resolve(key_management) = %v", got)
	}
	if err := c.ValidateIDs([]string{KeyManagement}, false); err == nil {
		t.Error("key_management granted without the operator's flag")
	}
	for _, p := range c.Offered() {
		if p.ID == KeyManagement || p.ID == TokenExchange {
			t.Errorf("built-in %s offered to teams", p.ID)
		}
	}
	if slices.Contains(c.AllScopes(), ManageScope) || slices.Contains(c.AllScopes(), ExchangeScope) {
		t.Errorf("AllScopes %v advertises a built-in operator-only scope", c.AllScopes())
	}
}
