// Package deprule checks keygate's dependency rule — which package may
// import which — against the import graph that `go list` reports. The rules
// themselves are the table in rules.go; the test in this directory fails
// the build when the code breaks one of them, so the layering of issue #11
// cannot decay unnoticed.
package deprule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Graph maps an import path to the import paths it imports directly.
// Test-only imports are not in it: a test may use what the package may not.
type Graph map[string][]string

// Rule is one line of the dependency rule. Patterns are import paths, and
// one ending in "/..." matches that path and every path below it, as in
// `go list` ("a/..." matches "a" and "a/b" but not "ab").
type Rule struct {
	Name string
	// Why is printed with every violation, so that whoever breaks the rule
	// learns what it protects, not only that it exists.
	Why string
	// Packages are the packages the rule is about. A pattern that matches
	// no package is fine (the package may not be written yet), but a rule
	// that matches none at all fails the check: it would pass vacuously.
	Packages []string
	// Except are packages that match Packages but that the rule is not about.
	Except []string
	// Forbid are the packages they may not depend on, except those that
	// also match Allow.
	Forbid []string
	Allow  []string
	// Direct limits the rule to direct imports; otherwise it covers every
	// package reachable through imports.
	Direct bool
}

// Violation is a package that depends on a forbidden one.
type Violation struct {
	Rule    string
	Package string
	Dep     string
	// Chain is the shortest import chain from Package to Dep, both
	// included; its last link is the import to remove or move.
	Chain []string
}

func (v Violation) String() string {
	return fmt.Sprintf("rule %s: %s depends on %s, import chain: %s",
		v.Rule, v.Package, v.Dep, strings.Join(v.Chain, " → "))
}

// Match reports whether importPath matches pattern (see Rule).
func Match(pattern, importPath string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return importPath == prefix || strings.HasPrefix(importPath, prefix+"/")
	}
	return importPath == pattern
}

func matchAny(patterns []string, importPath string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return Match(p, importPath) })
}

func (r Rule) forbids(importPath string) bool {
	return matchAny(r.Forbid, importPath) && !matchAny(r.Allow, importPath)
}

// Check returns every violation of rules in g, ordered by rule, then
// package, then distance. A package is reported once per forbidden package
// it reaches first: a search does not go on through a forbidden package,
// so importing gin reports gin, not each of gin's own packages as well.
// The error names the rules that matched no package of g.
func Check(g Graph, rules []Rule) ([]Violation, error) {
	pkgs := make([]string, 0, len(g))
	for p := range g {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)

	var vs []Violation
	var errs []error
	for _, r := range rules {
		matched := 0
		for _, p := range pkgs {
			if !matchAny(r.Packages, p) || matchAny(r.Except, p) {
				continue
			}
			matched++
			vs = append(vs, r.check(g, p)...)
		}
		if matched == 0 {
			errs = append(errs, fmt.Errorf("rule %s: none of its packages %v is in the import graph, so it checks nothing; were they renamed?", r.Name, r.Packages))
		}
	}
	return vs, errors.Join(errs...)
}

// check searches breadth first from pkg, so each chain is a shortest one.
func (r Rule) check(g Graph, pkg string) []Violation {
	var vs []Violation
	parent := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		from := queue[0]
		queue = queue[1:]
		for _, to := range g[from] {
			if _, seen := parent[to]; seen {
				continue
			}
			parent[to] = from
			if r.forbids(to) {
				vs = append(vs, Violation{Rule: r.Name, Package: pkg, Dep: to, Chain: chain(parent, to)})
				continue
			}
			if !r.Direct {
				queue = append(queue, to)
			}
		}
	}
	return vs
}

func chain(parent map[string]string, to string) []string {
	var c []string
	for p := to; p != ""; p = parent[p] {
		c = append(c, p)
	}
	slices.Reverse(c)
	return c
}

// Module is a main module: the one module, or each module of go.work.
type Module struct {
	Path string
	Dir  string
}

// Root returns the directory of the go.work that dir is in, or else of its
// go.mod: the directory the rule is checked from.
func Root(ctx context.Context, dir string) (string, error) {
	out, err := goCmd(ctx, dir, "env", "-json", "GOWORK", "GOMOD")
	if err != nil {
		return "", err
	}
	var env struct{ GOWORK, GOMOD string }
	if err := json.Unmarshal(out, &env); err != nil {
		return "", fmt.Errorf("decode go env: %w", err)
	}
	switch {
	case env.GOWORK != "" && env.GOWORK != "off":
		return filepath.Dir(env.GOWORK), nil
	case env.GOMOD != "" && env.GOMOD != os.DevNull:
		return filepath.Dir(env.GOMOD), nil
	}
	return "", fmt.Errorf("%s is in neither a Go workspace nor a module", dir)
}

// MainModules returns the main modules as the go command sees them from
// dir: every module of go.work in workspace mode, the one module otherwise.
func MainModules(ctx context.Context, dir string) ([]Module, error) {
	out, err := goCmd(ctx, dir, "list", "-m", "-json")
	if err != nil {
		return nil, err
	}
	var mods []Module
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m Module
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list -m: %w", err)
		}
		mods = append(mods, m)
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("go list -m in %s listed no module", dir)
	}
	return mods, nil
}

// Load returns the import graph of every package of mods and of all they
// depend on. Each module's directory is named: in workspace mode "./..."
// stops at a nested module's go.mod, so it would miss verify or client
// once they are modules of their own.
func Load(ctx context.Context, dir string, mods []Module) (Graph, error) {
	args := []string{"list", "-deps", "-json=ImportPath,Imports,Error"}
	for _, m := range mods {
		args = append(args, filepath.Join(m.Dir, "..."))
	}
	out, err := goCmd(ctx, dir, args...)
	if err != nil {
		return nil, err
	}
	g := Graph{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list -deps: %w", err)
		}
		// A package go list could not load has no reliable imports, and a
		// hole in the graph could hide a violation.
		if p.Error != nil {
			return nil, fmt.Errorf("go list: package %s: %s", p.ImportPath, p.Error.Err)
		}
		g[p.ImportPath] = p.Imports
	}
	return g, nil
}

// Unlisted returns the directories below root, relative to it, that hold a
// go.mod but are not main modules: Load does not see their packages, and
// the rule would pass without checking them. Directories the go command
// ignores (testdata, vendor, names starting with "." or "_") are skipped.
func Unlisted(root string, mods []Module) ([]string, error) {
	main := map[string]bool{}
	for _, m := range mods {
		main[filepath.Clean(m.Dir)] = true
	}
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || name == "node_modules" ||
				strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() != "go.mod" || main[filepath.Dir(path)] {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look for go.mod files below %s: %w", root, err)
	}
	return out, nil
}

func goCmd(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, stderr.Bytes())
	}
	return out, nil
}
