package check

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// repoRoot is the repository root, from this package's directory
// (deploy/check): the artefacts are read where they are committed.
const repoRoot = "../.."

// deployPath is a path under deploy/.
func deployPath(parts ...string) string {
	return filepath.Join(append([]string{repoRoot, "deploy"}, parts...)...)
}

var envName = regexp.MustCompile(`^KEYGATE_[A-Z0-9_]+$`)

// keygateEnvNames are the environment variables keygate reads: every name
// package config asks its getenv for (all settings, read through one
// table), and every KEYGATE_* string constant of cmd/keygate's non-test
// sources (the secrets, which only the binary reads: master key, admin
// credentials, KEYGATE_URL…). A manifest or unit that sets any other name
// has a typo keygate would silently ignore.
var keygateEnvNames = sync.OnceValues(func() (map[string]bool, error) {
	names := map[string]bool{}
	record := func(name string) string { names[name] = true; return "" }
	if _, err := config.Load(nil, record); err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(repoRoot, "cmd", "keygate", "*.go"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && envName.MatchString(s) {
					names[s] = true
				}
			}
			return true
		})
	}
	return names, nil
})

// knownEnv fails the test unless keygate reads name.
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	names, err := keygateEnvNames()
	if err != nil {
		t.Fatalf("collect keygate's environment variables: %v", err)
	}
	return names
}

func TestKnownEnvNames(t *testing.T) {
	names := knownEnv(t)
	// Both sources must contribute, or the check above proves little.
	for _, want := range []string{"KEYGATE_LISTEN", "KEYGATE_STORE", "KEYGATE_REDIS_URL", "KEYGATE_CONFIG",
		"KEYGATE_MASTER_KEY", "KEYGATE_MASTER_KEY_FILE", "KEYGATE_ADMIN_CLIENT_ID", "KEYGATE_ADMIN_CLIENT_SECRET"} {
		if !names[want] {
			t.Errorf("%s is not among the names keygate reads: %v", want, slices.Sorted(func(yield func(string) bool) {
				for n := range names {
					if !yield(n) {
						return
					}
				}
			}))
		}
	}
	if names["KEYGATE_LISTENN"] {
		t.Error("a misspelt name counts as known")
	}
}

// startKeygate runs a real keygate (server.New behind the test harness, on
// the in-memory store) with opts, for checking paths against its routes.
func startKeygate(t *testing.T, opts server.Options) *servertest.Env {
	t.Helper()
	return servertest.StartWith(t, servertest.Config{Options: opts, Backend: servertest.Memory()})
}

// get fetches path from e and returns the status and body.
func get(t *testing.T, e *servertest.Env, path string) (int, []byte) {
	t.Helper()
	resp, err := e.Client.Get(e.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, body
}

// readFile reads a committed artefact.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
