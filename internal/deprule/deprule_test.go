package deprule

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDependencyRule checks Rules against the import graph of every module
// of the repository (of go.work, once there is one).
func TestDependencyRule(t *testing.T) {
	start := time.Now()
	ctx := t.Context()
	root, err := Root(ctx, ".")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := MainModules(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	unlisted, err := Unlisted(root, mods)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range unlisted {
		t.Errorf("%s has a go.mod but is not a module of the workspace: the dependency rule does not see its packages; add it to go.work", dir)
	}
	g, err := Load(ctx, root, mods)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := slices.Collect(maps.Keys(g))
	for _, m := range mods {
		if !slices.ContainsFunc(pkgs, func(p string) bool { return Match(m.Path+"/...", p) }) {
			t.Errorf("no package of module %s (%s) in the import graph: go list did not reach it", m.Path, m.Dir)
		}
	}
	vs, err := Check(g, Rules)
	if err != nil {
		t.Error(err)
	}
	why := map[string]string{}
	for _, r := range Rules {
		why[r.Name] = r.Why
	}
	for _, v := range vs {
		t.Errorf("%v\n\twhy: %s", v, why[v.Rule])
	}
	paths := make([]string, len(mods))
	for i, m := range mods {
		paths[i] = m.Path
	}
	t.Logf("checked %d packages of modules %v in %v", len(g), paths, time.Since(start).Round(time.Millisecond))
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{K + "/store/...", K + "/store", true},
		{K + "/store/...", K + "/store/bolt", true},
		{K + "/store/...", K + "/storetest", false},
		{K + "/store/...", K, false},
		{K + "/scopes", K + "/scopes", true},
		{K + "/scopes", K + "/scopes/internal", false},
		{K + "/...", K, true},
		{K + "/...", K + "-other", false},
	} {
		if got := Match(tc.pattern, tc.path); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

// TestCheckReportsEachRule breaks each of the real Rules once in a small
// graph shaped like keygate's and expects exactly those violations, each
// with the chain of imports that leads to it.
func TestCheckReportsEachRule(t *testing.T) {
	const ginPkg = "github.com/gin-gonic/gin"
	g := Graph{
		K + "/scopes": {"strings"},
		// Rule 1, transitively: config → internal/httpx → gin. Gin's own
		// packages are reached only through gin and are not reported again.
		K + "/config":         {K + "/internal/httpx", K + "/scopes"},
		K + "/internal/httpx": {ginPkg, "net/http"},
		ginPkg:                {ginPkg + "/render", "net/http"},
		ginPkg + "/render":    {"net/http"},
		"net/http":            nil,
		"strings":             nil,
		// Rule 2: verify reaches store through a package of its own, which
		// is allowed and searched through.
		K + "/verify":              {K + "/verify/internal/jwk"},
		K + "/verify/internal/jwk": {K + "/store"},
		K + "/store":               {K + "/credential"},
		K + "/credential":          nil,
		K + "/masterkey":           nil,
		// Rule 3: loadgen imports a package of the command; the command
		// itself may.
		K + "/loadgen":             {K + "/cmd/keygate/flagset"},
		K + "/cmd/keygate/flagset": nil,
		K + "/cmd/keygate":         {K + "/cmd/keygate/flagset", K + "/server"},
		// Rule 4: server imports credential and masterkey directly; its gin
		// and verify imports are allowed.
		K + "/server": {K + "/credential", K + "/masterkey", K + "/verify", ginPkg},
	}
	vs, err := Check(g, Rules)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	want := []Violation{
		{Rule: Rules[0].Name, Package: K + "/config", Dep: ginPkg, Chain: []string{K + "/config", K + "/internal/httpx", ginPkg}},
		{Rule: Rules[1].Name, Package: K + "/verify", Dep: K + "/store", Chain: []string{K + "/verify", K + "/verify/internal/jwk", K + "/store"}},
		{Rule: Rules[2].Name, Package: K + "/loadgen", Dep: K + "/cmd/keygate/flagset", Chain: []string{K + "/loadgen", K + "/cmd/keygate/flagset"}},
		{Rule: Rules[3].Name, Package: K + "/server", Dep: K + "/credential", Chain: []string{K + "/server", K + "/credential"}},
		{Rule: Rules[3].Name, Package: K + "/server", Dep: K + "/masterkey", Chain: []string{K + "/server", K + "/masterkey"}},
	}
	if !reflect.DeepEqual(vs, want) {
		t.Errorf("violations:\n%s\nwant:\n%s", lines(vs), lines(want))
	}
}

// TestCheckCleanGraph guards against false alarms: the layers issue #11
// aims at, with gin where it may be (server, verify/ginverify) and verify
// using a package of its own.
func TestCheckCleanGraph(t *testing.T) {
	const ginPkg = "github.com/gin-gonic/gin"
	g := Graph{
		K + "/scopes":              nil,
		K + "/config":              {K + "/scopes"},
		K + "/credential":          nil,
		K + "/store":               {K + "/credential"},
		K + "/apikey":              {K + "/store", K + "/credential", K + "/masterkey"},
		K + "/masterkey":           nil,
		K + "/verify":              {K + "/verify/internal/jwk"},
		K + "/verify/internal/jwk": nil,
		K + "/verify/ginverify":    {K + "/verify", ginPkg},
		ginPkg:                     nil,
		K + "/server":              {K + "/apikey", K + "/verify", ginPkg},
		K + "/cmd/keygate":         {K + "/server", K + "/config"},
	}
	vs, err := Check(g, Rules)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(vs) > 0 {
		t.Errorf("violations in a clean graph:\n%s", lines(vs))
	}
}

// TestCheckRefusesVacuousRule: a rule whose packages are all gone (renamed,
// or a go list that returned nothing useful) must fail, not pass.
func TestCheckRefusesVacuousRule(t *testing.T) {
	_, err := Check(Graph{"example.com/other": nil}, Rules)
	if err == nil {
		t.Fatal("Check of a graph without keygate packages: no error")
	}
	for _, r := range Rules {
		if !strings.Contains(err.Error(), "rule "+r.Name+": none of its packages") {
			t.Errorf("error does not name rule %s:\n%v", r.Name, err)
		}
	}
}

func lines(vs []Violation) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString("\t" + v.String() + "\n")
	}
	return b.String()
}
