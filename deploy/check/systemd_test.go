package check

import (
	"bytes"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/keygate/keygate/config"
)

// unitPath is the systemd unit under test. systemd-analyze verify checks
// it too, in scripts/ci/deploy.sh: verify knows every directive systemd
// has, this test knows what keygate needs.
var unitPath = deployPath("systemd", "keygate.service")

// unitProblems parses a unit file with go-systemd's parser and checks the
// hardening and the settings keygate reads.
func unitProblems(text []byte, known map[string]bool) ([]string, error) {
	opts, err := unit.DeserializeOptions(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// values lists a [Service] directive's assignments, as systemd applies
	// them: an empty assignment resets the list.
	values := func(name string) []string {
		var vs []string
		for _, o := range opts {
			if o.Section == "Service" && o.Name == name {
				if o.Value == "" {
					vs = []string{}
					continue
				}
				vs = append(vs, o.Value)
			}
		}
		return vs
	}
	set := func(name string) bool {
		return slices.ContainsFunc(opts, func(o *unit.UnitOption) bool { return o.Section == "Service" && o.Name == name })
	}
	last := func(name string) string {
		vs := values(name)
		if len(vs) == 0 {
			return ""
		}
		return vs[len(vs)-1]
	}
	for name, want := range map[string]string{
		"DynamicUser":     "yes",
		"ProtectSystem":   "strict",
		"NoNewPrivileges": "yes",
		"ProtectHome":     "yes",
	} {
		if got := last(name); got != want {
			bad("%s=%s, want %s", name, got, want)
		}
	}
	if !set("CapabilityBoundingSet") || len(values("CapabilityBoundingSet")) != 0 {
		bad("CapabilityBoundingSet is not empty: %v", values("CapabilityBoundingSet"))
	}
	if len(values("AmbientCapabilities")) != 0 {
		bad("AmbientCapabilities grants %v", values("AmbientCapabilities"))
	}
	if f := values("SystemCallFilter"); len(f) == 0 || f[0] != "@system-service" {
		bad("SystemCallFilter does not start with an allow-list of @system-service: %v", f)
	}
	state := values("StateDirectory")
	if len(state) != 1 || strings.ContainsAny(state[0], " /") {
		bad("want one StateDirectory, got %v", state)
		return problems, nil
	}
	exec := values("ExecStart")
	if len(exec) != 1 || !strings.HasSuffix(exec[0], "/keygate serve") {
		bad("ExecStart %v does not run `keygate serve`", exec)
	}

	// Environment: names keygate reads, values keygate accepts.
	env := map[string]string{}
	for _, v := range values("Environment") {
		for _, assignment := range strings.Fields(v) {
			name, value, ok := strings.Cut(strings.Trim(assignment, `"`), "=")
			if !ok {
				bad("Environment=%s is not NAME=value", assignment)
				continue
			}
			if !known[name] {
				bad("Environment=%s: keygate does not read %s", assignment, name)
			}
			env[name] = value
		}
	}
	if _, ok := env["KEYGATE_MASTER_KEY"]; ok {
		bad("KEYGATE_MASTER_KEY in Environment: the key would be in the unit; use LoadCredential and KEYGATE_MASTER_KEY_FILE")
	}
	var credentials []string
	for _, lc := range values("LoadCredential") {
		id, _, _ := strings.Cut(lc, ":")
		credentials = append(credentials, id)
	}
	keyFile := env["KEYGATE_MASTER_KEY_FILE"]
	if dir, id := path.Split(keyFile); dir != "%d/" || !slices.Contains(credentials, id) {
		bad("KEYGATE_MASTER_KEY_FILE=%q is not %%d/<a LoadCredential id> (credentials: %v)", keyFile, credentials)
	}
	if want := "%S/" + state[0]; env["KEYGATE_DATA_DIR"] != want {
		bad("KEYGATE_DATA_DIR=%q, want %q: ProtectSystem=strict leaves only the StateDirectory writable", env["KEYGATE_DATA_DIR"], want)
	}
	// The specifiers as systemd expands them for a system service.
	expand := strings.NewReplacer("%S", "/var/lib", "%d", "/run/credentials/keygate.service")
	cfg, err := config.Load(nil, func(name string) string { return expand.Replace(env[name]) })
	if err != nil {
		bad("keygate refuses the unit's settings: %v", err)
	} else if cfg.Store != config.StoreBolt {
		bad("store %q: the unit is for the embedded store (its data in the StateDirectory)", cfg.Store)
	}
	return problems, nil
}

func TestSystemdUnit(t *testing.T) {
	problems, err := unitProblems(readFile(t, unitPath), knownEnv(t))
	if err != nil {
		t.Fatalf("parse %s: %v", unitPath, err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestSystemdUnitCheckCatchesMistakes makes one deliberate mistake at a time
// in the unit and expects the check to name it.
func TestSystemdUnitCheckCatchesMistakes(t *testing.T) {
	known := knownEnv(t)
	good := string(readFile(t, unitPath))
	tests := []struct{ old, new, want string }{
		{"ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem=full, want strict"},
		{"DynamicUser=yes", "DynamicUser=no", "DynamicUser=no, want yes"},
		{"NoNewPrivileges=yes", "NoNewPrivilege=yes", "NoNewPrivileges=, want yes"},
		{"CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet is not empty"},
		{"SystemCallFilter=@system-service", "SystemCallFilter=@default", "SystemCallFilter does not start"},
		{"KEYGATE_MASTER_KEY_FILE=%d/master-key", "KEYGATE_MASTER_KEY_FILE=%d/masterkey", `KEYGATE_MASTER_KEY_FILE="%d/masterkey" is not`},
		{"KEYGATE_LISTEN=", "KEYGATE_LISTN=", "keygate does not read KEYGATE_LISTN"},
		{"KEYGATE_LISTEN=127.0.0.1:8080", "KEYGATE_LISTEN=127.0.0.1", "keygate refuses the unit's settings"},
		{"KEYGATE_DATA_DIR=%S/keygate", "KEYGATE_DATA_DIR=/opt/keygate", "KEYGATE_DATA_DIR=\"/opt/keygate\", want \"%S/keygate\""},
	}
	for _, tt := range tests {
		t.Run(tt.new, func(t *testing.T) {
			if !strings.Contains(good, tt.old) {
				t.Fatalf("%q is not in %s: the mistake was not made", tt.old, unitPath)
			}
			problems, err := unitProblems([]byte(strings.Replace(good, tt.old, tt.new, 1)), known)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("the check says %q, want a line containing %q", problems, tt.want)
			}
		})
	}
}
