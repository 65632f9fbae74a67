package check

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
)

var composePath = deployPath("compose.yaml")

// loadCompose loads a compose file as `docker compose` v2 does, with
// compose-spec's loader: schema validation (unknown keys fail),
// interpolation from env only (never this process's environment or a .env
// file), merges and normalisation.
func loadCompose(t *testing.T, path string, env map[string]string) (*types.Project, error) {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	var vars []string
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithEnv(vars),
		cli.WithInterpolation(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

// composeProblems checks what the keygate services need: names keygate
// reads, settings it accepts, a health check on its readiness route at its
// listen port, a data volume, and an issuer that is the load balancer.
func composeProblems(p *types.Project, known map[string]bool) (problems []string, healthPaths []string) {
	bad := func(format string, args ...any) { problems = append(problems, sprintf(format, args...)) }
	lb, ok := p.Services["lb"]
	if !ok {
		bad("no lb service")
		return problems, nil
	}
	var published []string
	for _, port := range lb.Ports {
		published = append(published, port.Published)
	}
	for _, name := range []string{"keygate-a", "keygate-b"} {
		svc, ok := p.Services[name]
		if !ok {
			bad("no %s service", name)
			continue
		}
		env := map[string]string{}
		for k, v := range svc.Environment {
			if !known[k] {
				bad("%s: environment %s is not read by keygate", name, k)
			}
			if v != nil {
				env[k] = *v
			}
		}
		cfg, err := config.Load(nil, func(n string) string { return env[n] })
		if err != nil {
			bad("%s: keygate refuses its settings: %v", name, err)
			continue
		}
		if cfg.Store != config.StoreRedis {
			bad("%s: store %q, want redis", name, cfg.Store)
		}
		_, port, _ := net.SplitHostPort(cfg.Listen)
		if !slices.Contains(svc.Expose, port) {
			bad("%s: expose %v lacks keygate's listen port %s", name, svc.Expose, port)
		}
		// Metrics on, reachable by a scraper on the compose network, and
		// never published on the host or behind the load balancer.
		if _, mport, err := net.SplitHostPort(cfg.MetricsListen); cfg.MetricsListen == "" || err != nil {
			bad("%s: metrics are off or metrics_listen %q is not host:port", name, cfg.MetricsListen)
		} else {
			if !slices.Contains(svc.Expose, mport) {
				bad("%s: expose %v lacks the metrics port %s", name, svc.Expose, mport)
			}
			for _, pc := range svc.Ports {
				if pc.Target == mustPort(mport) && pc.Published != "" {
					bad("%s: the metrics port %s is published on the host", name, mport)
				}
			}
		}
		if !strings.HasPrefix(cfg.Issuer, "http://localhost:") || !slices.Contains(published, strings.TrimPrefix(cfg.Issuer, "http://localhost:")) {
			bad("%s: issuer %s is not the load balancer's published port %v", name, cfg.Issuer, published)
		}
		if svc.HealthCheck == nil {
			bad("%s: no healthcheck", name)
		} else {
			prefix := "http://127.0.0.1:" + port + "/"
			var url string
			for _, arg := range svc.HealthCheck.Test {
				if strings.HasPrefix(arg, "http://") {
					url = arg
				}
			}
			if !strings.HasPrefix(url, prefix) {
				bad("%s: healthcheck %v does not ask %s…", name, svc.HealthCheck.Test, prefix)
			} else {
				healthPaths = append(healthPaths, "/"+strings.TrimPrefix(url, prefix))
			}
		}
		if !slices.ContainsFunc(svc.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == cfg.DataDir }) {
			bad("%s: no volume at the data dir %s", name, cfg.DataDir)
		}
	}
	return problems, healthPaths
}

func mustPort(p string) uint32 {
	n, _ := strconv.Atoi(p)
	return uint32(n)
}

func composeEnv(t *testing.T) map[string]string {
	t.Helper()
	mk, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"KEYGATE_MASTER_KEY": mk}
}

func TestCompose(t *testing.T) {
	p, err := loadCompose(t, composePath, composeEnv(t))
	if err != nil {
		t.Fatalf("compose-go cannot load %s: %v", composePath, err)
	}
	problems, paths := composeProblems(p, knownEnv(t))
	for _, pr := range problems {
		t.Error(pr)
	}
	kg := startKeygate(t, server.Options{})
	for _, path := range paths {
		if status, _ := get(t, kg, path); status != http.StatusOK {
			t.Errorf("the healthcheck asks %s, which keygate answers %d", path, status)
		}
	}
	if len(paths) != 2 {
		t.Errorf("health check paths %v, want one per keygate service", paths)
	}
}

func TestComposeNeedsMasterKey(t *testing.T) {
	_, err := loadCompose(t, composePath, nil)
	if err == nil || !strings.Contains(err.Error(), "set KEYGATE_MASTER_KEY") {
		t.Fatalf("loading without KEYGATE_MASTER_KEY: err = %v, want the file's own message", err)
	}
}

// TestComposeCheckCatchesMistakes makes one deliberate mistake at a time in
// a copy of compose.yaml and expects the loader or the check to name it.
func TestComposeCheckCatchesMistakes(t *testing.T) {
	known := knownEnv(t)
	good := string(readFile(t, composePath))
	tests := []struct{ old, new, want string }{
		{"  healthcheck:\n    test: [\"CMD\", \"/usr", "  healthchek:\n    test: [\"CMD\", \"/usr", "healthchek"},
		{"KEYGATE_REDIS_URL:", "KEYGATE_REDISURL:", "environment KEYGATE_REDISURL is not read by keygate"},
		{"127.0.0.1:8080/readyz", "127.0.0.1:8080/ready", "" /* checked against keygate below */},
		{"KEYGATE_ISSUER: http://localhost:8080", "KEYGATE_ISSUER: http://localhost:9090", "is not the load balancer's published port"},
		{"KEYGATE_STORE: redis", "KEYGATE_STORE: bolt", `store "bolt", want redis`},
		{"    - \"9464\"\n", "", `expose [8080] lacks the metrics port 9464`},
	}
	kg := startKeygate(t, server.Options{})
	for _, tt := range tests {
		t.Run(tt.new, func(t *testing.T) {
			if !strings.Contains(good, tt.old) {
				t.Fatalf("%q is not in %s: the mistake was not made", tt.old, composePath)
			}
			path := filepath.Join(t.TempDir(), "compose.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(good, tt.old, tt.new, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := loadCompose(t, path, composeEnv(t))
			var got []string
			if err != nil {
				got = []string{err.Error()}
			} else {
				var paths []string
				got, paths = composeProblems(p, known)
				for _, path := range paths {
					if status, _ := get(t, kg, path); status != http.StatusOK {
						got = append(got, sprintf("keygate answers %s with %d", path, status))
					}
				}
			}
			want := tt.want
			if want == "" {
				want = "keygate answers /ready with 404"
			}
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
				t.Errorf("the check says %q, want a line containing %q", got, want)
			}
		})
	}
}
