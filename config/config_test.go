package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/signing"
)

// env turns a map into a getenv function.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// flags returns a FlagSet with keygate's flags, parsed from args.
func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("keygate", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	return fs
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keygate.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, fs *pflag.FlagSet, e map[string]string) Config {
	t.Helper()
	c, err := Load(fs, env(e))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	for name, fs := range map[string]*pflag.FlagSet{"nil flags": nil, "bound flags": flags(t)} {
		t.Run(name, func(t *testing.T) {
			c := mustLoad(t, fs, nil)
			checks := []struct {
				name      string
				got, want any
			}{
				{"listen", c.Listen, "127.0.0.1:8080"},
				{"data_dir", c.DataDir, "./keygate-data"},
				{"issuer", c.Issuer, "http://127.0.0.1:8080"},
				{"audience", c.Audience, "http://127.0.0.1:8080"},
				{"token_ttl", c.TokenTTL, 15 * time.Minute},
				{"signing_alg", c.SigningAlg, "ES256"},
				{"max_keys_per_team", c.MaxKeysPerTeam, 5},
				{"log_level", c.LogLevel, "info"},
				{"log_format", c.LogFormat, "text"},
				{"shutdown_timeout", c.ShutdownTimeout, 10 * time.Second},
				{"file", c.File, ""},
				{"metrics_listen", c.MetricsListen, ""},                                     // metrics are off by default
				{"trusted_proxies", len(c.TrustedProxies) + len(c.TrustedProxyPrefixes), 0}, // no proxy is trusted by default
				{"access_log", c.AccessLog, "all"},
				{"access_log_oauth", c.AccessLogOAuth, "errors"},
				{"tls_cert", c.TLSCert + c.TLSKey, ""}, // plain HTTP by default
				{"hsts_max_age", c.HSTSMaxAge, 365 * 24 * time.Hour},
				{"hsts_include_subdomains", c.HSTSIncludeSubdomains, false},
				{"max_connections", c.MaxConnections, 10000},
				{"idle_timeout", c.IdleTimeout, 2 * time.Minute},
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
				}
			}
			if c.Permissions != nil {
				t.Errorf("permissions = %v, want nil", c.Permissions)
			}
			if c.Catalog == nil || !reflect.DeepEqual(c.Catalog.Permissions(), scopes.Default().Permissions()) {
				t.Error("catalog is not the default catalog")
			}
		})
	}
	// nil getenv is an empty environment, not os.Getenv.
	t.Setenv("KEYGATE_LISTEN", "127.0.0.1:1")
	c, err := Load(nil, nil)
	if err != nil || c.Listen != "127.0.0.1:8080" {
		t.Errorf("Load(nil, nil) = %q, %v", c.Listen, err)
	}
}

func TestDefaultValidates(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "http://127.0.0.1:8080" || c.Audience != c.Issuer || c.Catalog == nil {
		t.Errorf("after Validate: issuer %q audience %q catalog %v", c.Issuer, c.Audience, c.Catalog)
	}
}

func TestDerivedIssuer(t *testing.T) {
	tests := []struct{ listen, issuer string }{
		{":9000", "http://localhost:9000"},
		{"0.0.0.0:9000", "http://localhost:9000"},
		{"[::]:9000", "http://localhost:9000"},
		{"[::1]:9000", "http://[::1]:9000"},
		{"10.1.2.3:80", "http://10.1.2.3:80"},
		{"auth.internal:8443", "http://auth.internal:8443"},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			c := mustLoad(t, flags(t, "--listen", tt.listen), nil)
			if c.Issuer != tt.issuer || c.Audience != tt.issuer {
				t.Errorf("issuer %q audience %q, want both %q", c.Issuer, c.Audience, tt.issuer)
			}
		})
	}
}

func TestExplicitIssuerAndAudience(t *testing.T) {
	c := mustLoad(t, flags(t, "--issuer", "https://auth.example.com/"), nil)
	if c.Issuer != "https://auth.example.com" || c.Audience != "https://auth.example.com" {
		t.Errorf("issuer %q audience %q: want the trailing slash stripped, audience = issuer", c.Issuer, c.Audience)
	}
	c = mustLoad(t, nil, map[string]string{
		"KEYGATE_ISSUER":   "https://example.com/tenants/acme",
		"KEYGATE_AUDIENCE": "https://api.example.com",
	})
	if c.Issuer != "https://example.com/tenants/acme" || c.Audience != "https://api.example.com" {
		t.Errorf("issuer %q audience %q", c.Issuer, c.Audience)
	}
}

func TestPrecedence(t *testing.T) {
	path := writeFile(t, "signing_alg: RS256\nlisten: 127.0.0.1:7000\n")
	tests := []struct {
		name   string
		file   bool
		env    bool
		flag   bool
		want   string
		listen string
	}{
		{name: "default", want: "ES256"},
		{name: "file over default", file: true, want: "RS256"},
		{name: "env over file", file: true, env: true, want: "EdDSA"},
		{name: "flag over env and file", file: true, env: true, flag: true, want: "ES256"},
		{name: "flag over default", flag: true, want: "ES256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{}
			var args []string
			if tt.file {
				e["KEYGATE_CONFIG"] = path
			}
			if tt.env {
				e["KEYGATE_SIGNING_ALG"] = "EdDSA"
			}
			if tt.flag {
				args = append(args, "--signing-alg", "es256")
			}
			c := mustLoad(t, flags(t, args...), e)
			if c.SigningAlg != tt.want {
				t.Errorf("signing_alg = %q, want %q", c.SigningAlg, tt.want)
			}
		})
	}

	// All four layers on one field, for every kind of field.
	fileYAML := "listen: 127.0.0.1:7001\ntoken_ttl: 20m\nmax_keys_per_team: 7\nlog_level: warn\n"
	e := map[string]string{
		"KEYGATE_CONFIG":            writeFile(t, fileYAML),
		"KEYGATE_LISTEN":            "127.0.0.1:7002",
		"KEYGATE_TOKEN_TTL":         "30m",
		"KEYGATE_MAX_KEYS_PER_TEAM": "9",
		"KEYGATE_LOG_LEVEL":         "error",
	}
	c := mustLoad(t, flags(t, "--listen", "127.0.0.1:7003", "--token-ttl", "40m", "--max-keys-per-team", "11", "--log-level", "debug"), e)
	if c.Listen != "127.0.0.1:7003" || c.TokenTTL != 40*time.Minute || c.MaxKeysPerTeam != 11 || c.LogLevel != "debug" {
		t.Errorf("flags did not win: %+v", c)
	}
	if c.Issuer != "http://127.0.0.1:7003" {
		t.Errorf("issuer %q not derived from the final listen", c.Issuer)
	}
	c = mustLoad(t, flags(t), e)
	if c.Listen != "127.0.0.1:7002" || c.TokenTTL != 30*time.Minute || c.MaxKeysPerTeam != 9 || c.LogLevel != "error" {
		t.Errorf("env did not win over file: %+v", c)
	}
	delete(e, "KEYGATE_LISTEN")
	e["KEYGATE_TOKEN_TTL"] = "" // empty counts as unset
	c = mustLoad(t, flags(t), e)
	if c.Listen != "127.0.0.1:7001" || c.TokenTTL != 20*time.Minute || c.File != e["KEYGATE_CONFIG"] {
		t.Errorf("file did not win over defaults: %+v", c)
	}
	// A flag left at its default does not override lower layers.
	c = mustLoad(t, flags(t, "--data-dir", "/var/lib/keygate"), e)
	if c.Listen != "127.0.0.1:7001" {
		t.Errorf("an unset --listen overrode the file: %q", c.Listen)
	}
}

func TestConfigFilePath(t *testing.T) {
	fromEnv := writeFile(t, "log_format: json\n")
	fromFlag := writeFile(t, "log_format: JSON\nlog_level: warn\n")
	c := mustLoad(t, flags(t, "--config", fromFlag), map[string]string{"KEYGATE_CONFIG": fromEnv})
	if c.File != fromFlag || c.LogLevel != "warn" || c.LogFormat != "json" {
		t.Errorf("--config did not win over KEYGATE_CONFIG: file %q level %q format %q", c.File, c.LogLevel, c.LogFormat)
	}
	c = mustLoad(t, flags(t, "--config", ""), map[string]string{"KEYGATE_CONFIG": fromEnv})
	if c.File != "" || c.LogFormat != "text" {
		t.Errorf(`--config "" still read %q`, c.File)
	}
	for _, empty := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		c = mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": writeFile(t, empty)})
		if c.Listen != "127.0.0.1:8080" {
			t.Errorf("empty file %q changed listen", empty)
		}
	}
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(flags(t, "--config", missing), nil)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: error %v does not name %s", err, missing)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: error %v does not wrap os.ErrNotExist", err)
	}
	dir := t.TempDir()
	if _, err := Load(nil, env(map[string]string{"KEYGATE_CONFIG": dir})); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("directory as config file: error %v does not name %s", err, dir)
	}
}

func TestAllYAMLKeys(t *testing.T) {
	c := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": writeFile(t, `
listen: "0.0.0.0:9443"
tls_cert: /etc/keygate/tls.crt
tls_key: /etc/keygate/tls.key
hsts_max_age: 30d
hsts_include_subdomains: true
max_connections: 500
idle_timeout: 30s
data_dir: /var/lib/keygate
issuer: https://auth.example.com
audience: https://api.example.com
token_ttl: 5m
max_token_ttl: 1h
audiences_allowed: [https://api.example.com/accounting, "https://api.example.com/banking"]
max_key_lifetime: 90d
key_expiry_warning: 14d
metadata_claims: [tenant, plan]
signing_alg: EdDSA
signing_key_rotation: 30d
signing_key_prepublish: 2h
max_keys_per_team: 50
log_level: debug
log_format: json
shutdown_timeout: 30s
store: redis
redis_url: redis://10.0.0.5:6379/2
redis_prefix: "prod:"
store_timeout: 500ms
redis_key_cache: 5s
status_list_ttl: 30s
introspection_rate: 250
revocation_rate: 20
audit_retention: 30d
metrics_listen: "0.0.0.0:9464"
trusted_proxies: [10.0.0.0/8, "::ffff:192.0.2.7"]
access_log: errors
access_log_oauth: "off"
console_frame_ancestors: "https://platform.example http://localhost:3000"
webhook_give_up: 2d
token_quota_per_key: 1000/hour
token_quota_per_team: "50000/day:log"
auth_failure_burst: 0
auth_failure_rate: 2
auth_failure_source_burst: 500
auth_failure_source_rate: 50
redis_key_cache_size: 1000000
last_used_write_rate: 5000
`)})
	want := Config{
		Listen: "0.0.0.0:9443", TLSCert: "/etc/keygate/tls.crt", TLSKey: "/etc/keygate/tls.key", HSTSMaxAge: 30 * Day,
		HSTSIncludeSubdomains: true, MaxConnections: 500, IdleTimeout: 30 * time.Second, DataDir: "/var/lib/keygate", Issuer: "https://auth.example.com",
		Audience: "https://api.example.com", TokenTTL: 5 * time.Minute, SigningAlg: "EdDSA",
		MaxKeyTokenTTL: time.Hour, MaxKeyLifetime: 90 * Day, KeyExpiryWarning: 14 * Day,
		AudiencesAllowed:   []string{"https://api.example.com/accounting", "https://api.example.com/banking"},
		MetadataClaims:     []string{"tenant", "plan"},
		SigningKeyRotation: 30 * Day, SigningKeyPrepublish: 2 * time.Hour,
		MaxKeysPerTeam: 50, LogLevel: "debug", LogFormat: "json", ShutdownTimeout: 30 * time.Second,
		Store: "redis", RedisURL: "redis://10.0.0.5:6379/2", RedisPrefix: "prod:", StoreTimeout: 500 * time.Millisecond,
		RedisKeyCache: 5 * time.Second, RedisKeyCacheSize: 1_000_000, BoltKeyCacheSize: DefaultBoltKeyCacheSize, StatusListTTL: 30 * time.Second, LastUsedWriteRate: 5000, IntrospectionRate: 250, RevocationRate: 20,
		AuthFailureBurst: 0, AuthFailureRate: 2, AuthFailureSourceBurst: 500, AuthFailureSourceRate: 50,
		MetricsListen: "0.0.0.0:9464", TrustedProxies: []string{"10.0.0.0/8", "::ffff:192.0.2.7"},
		AccessLog: "errors", AccessLogOAuth: "off", ConsoleFrameAncestors: "https://platform.example http://localhost:3000",
		TrustedProxyPrefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")},
		AuditRetention:       30 * Day,
		WebhookGiveUp:        2 * Day,
		TokenQuotaPerKey:     "1000/hour",
		TokenQuotaPerTeam:    "50000/day:log",
		KeyQuota:             quota.Policy{Limit: 1000, Per: quota.Hour, Mode: quota.Enforce},
		TeamQuota:            quota.Policy{Limit: 50000, Per: quota.Day, Mode: quota.Log},
	}
	c.Catalog, c.File, c.origins = nil, "", nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

// The setting table and the struct tags must agree, or a field would be
// unreachable from YAML/env/flags.
func TestSettingsMatchStructTags(t *testing.T) {
	var tags []string
	rt := reflect.TypeFor[Config]()
	for i := 0; i < rt.NumField(); i++ {
		tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" && tag != "permissions" && tag != "webhooks" && tag != "trusted_issuers" {
			tags = append(tags, tag)
		}
	}
	var keys []string
	for _, s := range settings {
		keys = append(keys, s.key)
	}
	if !slices.Equal(tags, keys) {
		t.Errorf("yaml tags %v != settings %v", tags, keys)
	}
	fs := flags(t)
	for _, s := range settings {
		if fs.Lookup(s.flagName()) == nil {
			t.Errorf("no flag --%s", s.flagName())
		}
	}
}

// A validated Config marshals to YAML that loads back to the same Config,
// so a "print effective config" command can rely on it.
func TestYAMLRoundTrip(t *testing.T) {
	c := mustLoad(t, flags(t, "--token-ttl", "90m", "--signing-alg", "RS256"), nil)
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": writeFile(t, string(out))})
	c.Catalog, c.File, c.origins = nil, "", nil
	back.Catalog, back.File, back.origins = nil, "", nil
	if !reflect.DeepEqual(c, back) {
		t.Errorf("round trip through\n%s\ngot  %+v\nwant %+v", out, back, c)
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"token_quota_per_key no period", []string{"--token-quota-per-key", "1000"}, nil,
			[]string{`invalid token_quota_per_key "1000"`, "LIMIT/hour or LIMIT/day", "--token-quota-per-key"}},
		{"token_quota_per_team bad mode", nil, map[string]string{"KEYGATE_TOKEN_QUOTA_PER_TEAM": "10/day:warn"},
			[]string{`invalid token_quota_per_team "10/day:warn"`, ":log", "KEYGATE_TOKEN_QUOTA_PER_TEAM"}},
		{"token_quota_per_key zero", []string{"--token-quota-per-key", "0/hour"}, nil,
			[]string{`invalid token_quota_per_key "0/hour"`}},
		{"signing_alg", []string{"--signing-alg", "HS256"}, nil,
			[]string{`invalid signing_alg "HS256"`, "ES256, RS256, EdDSA", "--signing-alg"}},
		{"signing_key_prepublish", []string{"--signing-key-prepublish", "5m"}, nil,
			[]string{`invalid signing_key_prepublish`, "10m30s", "--signing-key-prepublish"}},
		{"signing_key_rotation", []string{"--signing-key-rotation", "12h"}, nil,
			[]string{`invalid signing_key_rotation`, "0 (manual only)", "--signing-key-rotation"}},
		{"signing_key_rotation not longer than prepublish", []string{"--signing-key-rotation", "2d", "--signing-key-prepublish", "3d"}, nil,
			[]string{`invalid signing_key_rotation`, "longer than signing_key_prepublish"}},
		{"token_ttl too short", []string{"--token-ttl", "2s"}, nil,
			[]string{`invalid token_ttl "2s"`, "between 1m0s and 24h0m0s"}},
		{"token_ttl too long", nil, map[string]string{"KEYGATE_TOKEN_TTL": "25h"},
			[]string{`invalid token_ttl "25h0m0s"`, "between 1m0s and 24h0m0s", "KEYGATE_TOKEN_TTL"}},
		{"max_token_ttl below token_ttl", []string{"--token-ttl", "30m", "--max-token-ttl", "10m"}, nil,
			[]string{`invalid max_token_ttl`, "between token_ttl (30m0s) and 24h0m0s"}},
		{"max_token_ttl too long", nil, map[string]string{"KEYGATE_MAX_TOKEN_TTL": "48h"},
			[]string{`invalid max_token_ttl`, "KEYGATE_MAX_TOKEN_TTL"}},
		{"audiences_allowed relative", []string{"--audiences-allowed", "/accounting"}, nil,
			[]string{`invalid audiences_allowed`, `entry "/accounting" is not an absolute URI`}},
		{"audiences_allowed with a fragment", nil, map[string]string{"KEYGATE_AUDIENCES_ALLOWED": "https://api.example.com/a#b"},
			[]string{`invalid audiences_allowed`, "without a fragment"}},
		{"audiences_allowed twice", []string{"--audiences-allowed", "https://a.example", "--audiences-allowed", "https://a.example"}, nil,
			[]string{`invalid audiences_allowed`, "listed twice"}},
		{"max_key_lifetime too short", []string{"--max-key-lifetime", "1h"}, nil,
			[]string{`invalid max_key_lifetime`, "0 (none) or between 1d and 3650d"}},
		{"key_expiry_warning negative", []string{"--key-expiry-warning", "-1h"}, nil,
			[]string{`invalid key_expiry_warning`}},
		{"key_expiry_warning too long", []string{"--key-expiry-warning", "400d"}, nil,
			[]string{`invalid key_expiry_warning`, "between 0 (never) and 365d"}},
		{"metadata_claims with a space", []string{"--metadata-claims", "a b"}, nil,
			[]string{`invalid metadata_claims`, "not a metadata member name"}},
		{"listen nonsense", []string{"--listen", "nonsense"}, nil,
			[]string{`invalid listen "nonsense"`, "want host:port, e.g. 127.0.0.1:8080"}},
		{"listen bad port", []string{"--listen", "127.0.0.1:99999"}, nil,
			[]string{`invalid listen "127.0.0.1:99999"`, "1 to 65535"}},
		{"listen port zero", []string{"--listen", ":0"}, nil,
			[]string{`invalid listen ":0"`, "1 to 65535"}},
		{"listen bad host", []string{"--listen", "a b:80"}, nil,
			[]string{`invalid listen "a b:80"`, "host:port"}},
		{"metrics_listen nonsense", []string{"--metrics-listen", "9090"}, nil,
			[]string{`invalid metrics_listen "9090"`, "want host:port, e.g. 127.0.0.1:9090", "--metrics-listen"}},
		{"metrics_listen bad port", nil, map[string]string{"KEYGATE_METRICS_LISTEN": "127.0.0.1:70000"},
			[]string{`invalid metrics_listen "127.0.0.1:70000"`, "1 to 65535", "KEYGATE_METRICS_LISTEN"}},
		{"metrics_listen same as listen", []string{"--listen", "127.0.0.1:8080", "--metrics-listen", "127.0.0.1:8080"}, nil,
			[]string{`invalid metrics_listen "127.0.0.1:8080"`, "must differ from listen"}},
		{"issuer scheme", []string{"--issuer", "ftp://x"}, nil,
			[]string{`invalid issuer "ftp://x"`, "absolute http or https URL without query or fragment"}},
		{"issuer query", []string{"--issuer", "https://x/?a=b"}, nil,
			[]string{`invalid issuer "https://x/?a=b"`, "without query"}},
		{"issuer fragment", []string{"--issuer", "https://x#f"}, nil,
			[]string{`invalid issuer "https://x#f"`, "fragment"}},
		{"issuer relative", []string{"--issuer", "/auth"}, nil,
			[]string{`invalid issuer "/auth"`}},
		{"issuer no host", []string{"--issuer", "https:///"}, nil,
			[]string{`invalid issuer "https:///"`}},
		{"issuer userinfo", []string{"--issuer", "https://u:p@x"}, nil,
			[]string{`invalid issuer "https://u:p@x"`}},
		{"issuer space", []string{"--issuer", "https://x/a b"}, nil,
			[]string{`invalid issuer "https://x/a b"`}},
		{"audience space", []string{"--audience", "my api"}, nil,
			[]string{`invalid audience "my api"`, "without spaces"}},
		{"max_keys_per_team zero", []string{"--max-keys-per-team", "0"}, nil,
			[]string{"invalid max_keys_per_team 0", "between 1 and 1000"}},
		{"max_keys_per_team too many", nil, map[string]string{"KEYGATE_MAX_KEYS_PER_TEAM": "1001"},
			[]string{"invalid max_keys_per_team 1001", "between 1 and 1000", "KEYGATE_MAX_KEYS_PER_TEAM"}},
		{"log_level", []string{"--log-level", "verbose"}, nil,
			[]string{`invalid log_level "verbose"`, "debug, info, warn, error"}},
		{"log_format", []string{"--log-format", "xml"}, nil,
			[]string{`invalid log_format "xml"`, "text, json"}},
		{"shutdown_timeout", nil, map[string]string{"KEYGATE_SHUTDOWN_TIMEOUT": "0s"},
			[]string{`invalid shutdown_timeout "0s"`, "between 1s and 5m0s"}},
		{"data_dir", []string{"--data-dir", " "}, nil,
			[]string{`invalid data_dir " "`}},
		{"env duration", nil, map[string]string{"KEYGATE_TOKEN_TTL": "abc"},
			[]string{`invalid KEYGATE_TOKEN_TTL "abc": want a Go duration such as 15m`}},
		{"env bare number duration", nil, map[string]string{"KEYGATE_SHUTDOWN_TIMEOUT": "30"},
			[]string{`invalid KEYGATE_SHUTDOWN_TIMEOUT "30"`, "Go duration"}},
		{"env int", nil, map[string]string{"KEYGATE_MAX_KEYS_PER_TEAM": "five"},
			[]string{`invalid KEYGATE_MAX_KEYS_PER_TEAM "five"`, "whole number"}},
		{"trusted_proxies bad CIDR", nil, map[string]string{"KEYGATE_TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.0/33"},
			[]string{`invalid trusted_proxies "10.0.0.0/8,10.0.0.0/33" (from KEYGATE_TRUSTED_PROXIES)`, `entry "10.0.0.0/33" is not a CIDR such as 10.0.0.0/8`}},
		{"trusted_proxies host name", []string{"--trusted-proxies", "lb.internal"}, nil,
			[]string{`invalid trusted_proxies "lb.internal" (from --trusted-proxies)`, `"lb.internal" is not an IP address or a CIDR`}},
		{"access_log", []string{"--access-log", "some"}, nil,
			[]string{`invalid access_log "some" (from --access-log)`, "allowed values are all, errors, off"}},
		{"access_log_oauth", nil, map[string]string{"KEYGATE_ACCESS_LOG_OAUTH": "verbose"},
			[]string{`invalid access_log_oauth "verbose" (from KEYGATE_ACCESS_LOG_OAUTH)`, "allowed values are all, errors, off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(flags(t, tt.args...), env(tt.env))
			if err == nil {
				t.Fatal("Load accepted it")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestCanonicalSpelling(t *testing.T) {
	c := mustLoad(t, flags(t, "--signing-alg", "eddsa", "--log-level", "WARN", "--log-format", "Json"), nil)
	if c.SigningAlg != "EdDSA" || c.LogLevel != "warn" || c.LogFormat != "json" {
		t.Errorf("got %q %q %q", c.SigningAlg, c.LogLevel, c.LogFormat)
	}
}

// An error names the layer that set the value only while the value is
// still that layer's.
func TestErrorOrigin(t *testing.T) {
	path := writeFile(t, "# keygate\nsigning_alg: HS256\n")
	_, err := Load(nil, env(map[string]string{"KEYGATE_CONFIG": path}))
	if err == nil || !strings.Contains(err.Error(), path+", line 2") {
		t.Errorf("error %v does not point at %s, line 2", err, path)
	}
	c, err := Load(nil, env(map[string]string{"KEYGATE_SIGNING_ALG": "RS256"}))
	if err != nil {
		t.Fatal(err)
	}
	c.SigningAlg = "none"
	err = c.Validate()
	if err == nil || strings.Contains(err.Error(), "KEYGATE_SIGNING_ALG") || !strings.Contains(err.Error(), `"none"`) {
		t.Errorf("value changed in code blamed on the environment: %v", err)
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "listen: 127.0.0.1:8080\nlisen: :9000\n",
			[]string{`unknown setting "lisen"`, "line 2", "known settings are listen, tls_cert, tls_key"}},
		{"duplicate key", "listen: 127.0.0.1:8080\nlisten: :9000\n",
			[]string{`"listen" appears twice`, "line 2", "first on line 1"}},
		{"bad duration", "token_ttl: 900\n",
			[]string{`invalid token_ttl "900"`, "line 1", "Go duration such as 15m"}},
		{"bad int", "max_keys_per_team: lots\n",
			[]string{`invalid max_keys_per_team "lots"`, "whole number"}},
		{"list for scalar", "listen:\n  - a\n",
			[]string{"invalid listen", "single value"}},
		{"not a mapping", "- listen\n",
			[]string{"key: value"}},
		{"syntax", "listen: [\n",
			[]string{"yaml:"}},
		{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n",
			[]string{"single YAML document"}},
		{"invalid value from file", "signing_alg: HS256\n",
			[]string{`invalid signing_alg "HS256"`, "line 1", "ES256, RS256, EdDSA"}},
		{"unknown permission field", "permissions:\n  - id: a\n    name: A\n    scope: [x]\n",
			[]string{"invalid permissions", `unknown field "scope"`, "line 4", "id, name, description, scopes, operator_only"}},
		{"permissions not a list", "permissions: accounting_api\n",
			[]string{"invalid permissions", "list of permissions"}},
		{"permission scopes as a string", "permissions:\n  - id: a\n    name: A\n    scopes: x:read y:read\n",
			[]string{"invalid permissions", "line 4"}},
		{"empty permissions list", "permissions: []\n",
			[]string{"invalid permissions: ", "at least one permission"}},
		{"reserved scope", "permissions:\n  - id: admin\n    name: Admin\n    scopes: [keys:admin]\n",
			[]string{"invalid permissions: ", `"admin"`, `"keys:admin"`, "reserved for keygate"}},
		{"tokens scope in offered entry", "permissions:\n  - id: a\n    name: A\n    scopes: [a:read]\n  - id: intro\n    name: I\n    scopes: [tokens:introspect]\n",
			[]string{"invalid permissions: ", `"intro"`, `"tokens:introspect"`, "operator_only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			_, err := Load(flags(t, "--config", path), nil)
			if err == nil {
				t.Fatal("Load accepted it")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestFilePermissionsReplaceCatalog(t *testing.T) {
	path := writeFile(t, `
permissions:
  - id: reports
    name: Reports — read
    description: Read the monthly reports.
    scopes: [reports:read, common:read]
  - id: introspect
    name: Token introspection
    scopes: [tokens:introspect]
    operator_only: true
`)
	c := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": path})
	want := []scopes.Permission{
		{ID: "reports", Name: "Reports — read", Description: "Read the monthly reports.", Scopes: []string{"reports:read", "common:read"}},
		{ID: "introspect", Name: "Token introspection", Scopes: []string{"tokens:introspect"}, OperatorOnly: true},
	}
	// The catalog ends with keygate's built-in operator-only entries.
	if cat := c.Catalog.Permissions(); !reflect.DeepEqual(c.Permissions, want) || len(cat) != len(want)+2 || !reflect.DeepEqual(cat[:len(want)], want) ||
		cat[len(want)].ID != scopes.KeyManagement || cat[len(want)+1].ID != scopes.TokenExchange {
		t.Errorf("permissions %+v, catalog %+v; want %+v and the built-ins", c.Permissions, c.Catalog.Permissions(), want)
	}
	if _, ok := c.Catalog.Lookup("accounting_api"); ok {
		t.Error("default permissions survived a configured catalog")
	}
	if got := c.Catalog.AllScopes(); !slices.Equal(got, []string{"reports:read", "common:read", scopes.AdminScope}) {
		t.Errorf("AllScopes = %v", got)
	}

	// `permissions:` with no value keeps the default catalog.
	c = mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": writeFile(t, "permissions:\n")})
	if _, ok := c.Catalog.Lookup("accounting_api"); !ok {
		t.Error("a null permissions key dropped the default catalog")
	}
}

func TestValidateKeepsHandSetCatalog(t *testing.T) {
	cat, err := scopes.New([]scopes.Permission{{ID: "x", Name: "X", Scopes: []string{"x"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Catalog = cat
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Catalog != cat {
		t.Error("Validate replaced a catalog set by hand")
	}
}

func TestFlagParseErrors(t *testing.T) {
	fs := pflag.NewFlagSet("keygate", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	BindFlags(fs)
	if err := fs.Parse([]string{"--token-ttl", "soon"}); err == nil || !strings.Contains(err.Error(), "token-ttl") {
		t.Errorf("bad --token-ttl: %v", err)
	}
}

func TestBindFlagsHelp(t *testing.T) {
	fs := flags(t)
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	help := b.String()
	for _, w := range []string{"--config", "KEYGATE_CONFIG", "--token-ttl", "15m0s", "KEYGATE_TOKEN_TTL", "ES256, RS256, EdDSA", "--shutdown-timeout"} {
		if !strings.Contains(help, w) {
			t.Errorf("help does not mention %q:\n%s", w, help)
		}
	}
}

func TestRedisSettings(t *testing.T) {
	base := map[string]string{"KEYGATE_STORE": "redis", "KEYGATE_ISSUER": "https://auth.example.com"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c := mustLoad(t, nil, with("KEYGATE_REDIS_URL", "redis://127.0.0.1:6379/15"))
	if c.Store != "redis" || c.RedisURL != "redis://127.0.0.1:6379/15" || c.RedisPrefix != "keygate:" || c.StoreTimeout != time.Second {
		t.Fatalf("redis config: %+v", c)
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		want []string
	}{
		"no url":        {with(), []string{"redis_url", "redis://"}},
		"http url":      {with("KEYGATE_REDIS_URL", "http://127.0.0.1:6379"), []string{"redis_url"}},
		"no issuer":     {map[string]string{"KEYGATE_STORE": "redis", "KEYGATE_REDIS_URL": "redis://127.0.0.1:6379"}, []string{"issuer is required with store redis"}},
		"brace prefix":  {with("KEYGATE_REDIS_URL", "redis://x:1", "KEYGATE_REDIS_PREFIX", "{kg}"), []string{"redis_prefix", "{kg}", "braces"}},
		"unknown store": {with("KEYGATE_STORE", "etcd"), []string{"store", "etcd", "bolt, redis"}},
		"timeout range": {with("KEYGATE_REDIS_URL", "redis://x:1", "KEYGATE_STORE_TIMEOUT", "1ms"), []string{"store_timeout", "1ms"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(nil, env(tc.env))
			if err == nil {
				t.Fatal("Load: no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// A password in the URL never appears in an error.
	_, err := Load(nil, env(with("KEYGATE_REDIS_URL", "redis://user:hunter2@127.0.0.1:6379", "KEYGATE_REDIS_PREFIX", "{bad}")))
	if err == nil {
		t.Fatal("want an error for the prefix")
	}
	_, err = Load(nil, env(with("KEYGATE_REDIS_URL", "ftp://user:hunter2@127.0.0.1:6379")))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error must not show the password: %v", err)
	}
}

// TestRedisKeyCacheDefault: the cache is on by default (10 s), can be turned
// off with 0, takes up to an hour (the store refuses more than a minute on
// Cluster and Sentinel: store/redis TestKeyCacheAgeByTopology) and refuses
// values past that.
func TestRedisKeyCacheDefault(t *testing.T) {
	if c := mustLoad(t, nil, nil); c.RedisKeyCache != 10*time.Second {
		t.Fatalf("default redis_key_cache %v, want 10s", c.RedisKeyCache)
	}
	if c := mustLoad(t, nil, map[string]string{"KEYGATE_REDIS_KEY_CACHE": "0s"}); c.RedisKeyCache != 0 {
		t.Fatalf("redis_key_cache 0s: %v", c.RedisKeyCache)
	}
	if c := mustLoad(t, nil, map[string]string{"KEYGATE_REDIS_KEY_CACHE": "1h"}); c.RedisKeyCache != time.Hour {
		t.Fatalf("redis_key_cache 1h: %v", c.RedisKeyCache)
	}
	for _, bad := range []string{"61m", "-1s"} {
		if _, err := Load(nil, env(map[string]string{"KEYGATE_REDIS_KEY_CACHE": bad})); err == nil || !strings.Contains(err.Error(), "redis_key_cache") {
			t.Errorf("redis_key_cache %s: %v, want refused naming the setting", bad, err)
		}
	}
}

// TestRedisKeyCacheSize: 200 000 records by default (bbolt: 100 000), settable, bounded.
func TestRedisKeyCacheSize(t *testing.T) {
	if c := mustLoad(t, nil, nil); c.RedisKeyCacheSize != 200_000 {
		t.Fatalf("default redis_key_cache_size %d, want 200000", c.RedisKeyCacheSize)
	}
	if c := mustLoad(t, nil, map[string]string{"KEYGATE_REDIS_KEY_CACHE_SIZE": "1500000"}); c.RedisKeyCacheSize != 1_500_000 {
		t.Fatalf("redis_key_cache_size 1500000: %d", c.RedisKeyCacheSize)
	}
	for _, bad := range []string{"999", "16000001", "-1", "0"} {
		if _, err := Load(nil, env(map[string]string{"KEYGATE_REDIS_KEY_CACHE_SIZE": bad})); err == nil || !strings.Contains(err.Error(), "redis_key_cache_size") {
			t.Errorf("redis_key_cache_size %s: %v, want refused naming the setting", bad, err)
		}
		if _, err := Load(nil, env(map[string]string{"KEYGATE_BOLT_KEY_CACHE_SIZE": bad})); err == nil || !strings.Contains(err.Error(), "bolt_key_cache_size") {
			t.Errorf("bolt_key_cache_size %s: %v, want refused naming the setting", bad, err)
		}
	}
	if c := mustLoad(t, nil, nil); c.BoltKeyCacheSize != 100_000 {
		t.Fatalf("default bolt_key_cache_size %d, want 100000", c.BoltKeyCacheSize)
	}
	if c := mustLoad(t, nil, map[string]string{"KEYGATE_BOLT_KEY_CACHE_SIZE": "2000000"}); c.BoltKeyCacheSize != 2_000_000 {
		t.Fatalf("bolt_key_cache_size 2000000: %d", c.BoltKeyCacheSize)
	}
}

// TestLastUsedWriteRate: 1 000 keys a second by default, settable, bounded.
func TestLastUsedWriteRate(t *testing.T) {
	if c := mustLoad(t, nil, nil); c.LastUsedWriteRate != 250 {
		t.Fatalf("default last_used_write_rate %d, want 250", c.LastUsedWriteRate)
	}
	if c := mustLoad(t, nil, map[string]string{"KEYGATE_LAST_USED_WRITE_RATE": "20000"}); c.LastUsedWriteRate != 20_000 {
		t.Fatalf("last_used_write_rate 20000: %d", c.LastUsedWriteRate)
	}
	for _, bad := range []string{"9", "1000001", "-1", "0"} {
		if _, err := Load(nil, env(map[string]string{"KEYGATE_LAST_USED_WRITE_RATE": bad})); err == nil || !strings.Contains(err.Error(), "last_used_write_rate") {
			t.Errorf("last_used_write_rate %s: %v, want refused naming the setting", bad, err)
		}
	}
}

// TestDefaultIsTheConstants: Default() is built from the exported
// constants that server.New and the CLI use for their zero values, so a
// default changed in one place is changed everywhere.
func TestDefaultIsTheConstants(t *testing.T) {
	want := Config{
		Listen:                 DefaultListen,
		HSTSMaxAge:             DefaultHSTSMaxAge,
		MaxConnections:         DefaultMaxConnections,
		IdleTimeout:            DefaultIdleTimeout,
		DataDir:                DefaultDataDir,
		TokenTTL:               DefaultTokenTTL,
		KeyExpiryWarning:       DefaultKeyExpiryWarning,
		SigningAlg:             DefaultSigningAlg,
		SigningKeyRotation:     DefaultSigningKeyRotation,
		SigningKeyPrepublish:   DefaultSigningKeyPrepublish,
		MaxKeysPerTeam:         DefaultMaxKeysPerTeam,
		LogLevel:               DefaultLogLevel,
		LogFormat:              DefaultLogFormat,
		ShutdownTimeout:        DefaultShutdownTimeout,
		Store:                  DefaultStore,
		RedisPrefix:            DefaultRedisPrefix,
		StoreTimeout:           DefaultStoreTimeout,
		RedisKeyCache:          DefaultRedisKeyCache,
		RedisKeyCacheSize:      DefaultRedisKeyCacheSize,
		BoltKeyCacheSize:       DefaultBoltKeyCacheSize,
		StatusListTTL:          DefaultStatusListTTL,
		IntrospectionRate:      DefaultIntrospectionRate,
		LastUsedWriteRate:      DefaultLastUsedWriteRate,
		RevocationRate:         DefaultRevocationRate,
		AccessLog:              DefaultAccessLog,
		AccessLogOAuth:         DefaultAccessLogOAuth,
		ConsoleFrameAncestors:  FrameAncestorsNone,
		AuditRetention:         DefaultAuditRetention,
		WebhookGiveUp:          DefaultWebhookGiveUp,
		AuthFailureBurst:       DefaultAuthFailureBurst,
		AuthFailureRate:        DefaultAuthFailureRate,
		AuthFailureSourceBurst: DefaultAuthFailureSourceBurst,
		AuthFailureSourceRate:  DefaultAuthFailureSourceRate,
	}
	// A new setting with a default must get its constant here too: want
	// would lack it and the comparison fail.
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Default() = %+v\nconstants  %+v", got, want)
	}
	// The derived issuer of the default listen address is the one server.New
	// falls back to, and what the CLI connects to by default.
	c := mustLoad(t, nil, nil)
	if c.Issuer != DefaultIssuer(DefaultListen) {
		t.Errorf("loaded issuer %q, DefaultIssuer(DefaultListen) %q", c.Issuer, DefaultIssuer(DefaultListen))
	}
	if DefaultSigningAlg != signing.Algorithms[0] {
		t.Errorf("DefaultSigningAlg %q is not signing.Algorithms[0] %q", DefaultSigningAlg, signing.Algorithms[0])
	}
	if !slices.Contains(DefaultStores, DefaultStore) {
		t.Errorf("DefaultStore %q is not in DefaultStores %v", DefaultStore, DefaultStores)
	}

	// Each default lies in its setting's range.
	for _, r := range []struct {
		name        string
		v, min, max time.Duration
	}{
		{"token_ttl", DefaultTokenTTL, MinTokenTTL, MaxTokenTTL},
		{"status_list_ttl", DefaultStatusListTTL, MinStatusListTTL, MaxStatusListTTL},
		{"store_timeout", DefaultStoreTimeout, MinStoreTimeout, MaxStoreTimeout},
		{"shutdown_timeout", DefaultShutdownTimeout, MinShutdownTimeout, MaxShutdownTimeout},
		{"redis_key_cache", DefaultRedisKeyCache, 0, MaxRedisKeyCache},
		{"audit_retention", DefaultAuditRetention, MinAuditRetention, MaxAuditRetention},
		{"hsts_max_age", DefaultHSTSMaxAge, 0, MaxHSTSMaxAge},
		{"idle_timeout", DefaultIdleTimeout, MinIdleTimeout, MaxIdleTimeout},
		{"max_connections", DefaultMaxConnections, 0, MaxMaxConnections},
		{"max_keys_per_team", DefaultMaxKeysPerTeam, MinMaxKeysPerTeam, MaxMaxKeysPerTeam},
		{"redis_key_cache_size", DefaultRedisKeyCacheSize, MinRedisKeyCacheSize, MaxRedisKeyCacheSize},
		{"bolt_key_cache_size", DefaultBoltKeyCacheSize, MinRedisKeyCacheSize, MaxRedisKeyCacheSize},
		{"introspection_rate", DefaultIntrospectionRate, MinIntrospectionRate, MaxIntrospectionRate},
		{"last_used_write_rate", DefaultLastUsedWriteRate, MinLastUsedWriteRate, MaxLastUsedWriteRate},
		{"revocation_rate", DefaultRevocationRate, MinRevocationRate, MaxRevocationRate},
		{"auth_failure_burst", DefaultAuthFailureBurst, 1, MaxAuthFailureBurst},
		{"auth_failure_rate", DefaultAuthFailureRate, MinAuthFailureRate, MaxAuthFailureRate},
		{"auth_failure_source_burst", DefaultAuthFailureSourceBurst, 1, MaxAuthFailureBurst},
		{"auth_failure_source_rate", DefaultAuthFailureSourceRate, MinAuthFailureRate, MaxAuthFailureRate},
	} {
		if r.v < r.min || r.v > r.max {
			t.Errorf("default %s %d outside %d..%d", r.name, r.v, r.min, r.max)
		}
	}
}

// TestDefaultIssuer is the README's rule: http://<listen>, localhost for an
// empty or unspecified host.
func TestDefaultIssuer(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:8080":     "http://127.0.0.1:8080",
		":9000":              "http://localhost:9000",
		"0.0.0.0:9000":       "http://localhost:9000",
		"[::]:9000":          "http://localhost:9000",
		"[::1]:9000":         "http://[::1]:9000",
		"auth.internal:8443": "http://auth.internal:8443",
		"no-port":            "http://no-port",
	} {
		if got := DefaultIssuer(listen); got != want {
			t.Errorf("DefaultIssuer(%q) = %q, want %q", listen, got, want)
		}
	}
}

// TestLoadForStores: the stores a program passes are the only ones the
// store setting accepts, the ones its error names and its flag's help
// lists; Load and BindFlags mean DefaultStores.
func TestLoadForStores(t *testing.T) {
	stores := []string{"bolt", "memory"}
	fs := pflag.NewFlagSet("keygate", pflag.ContinueOnError)
	BindFlagsFor(fs, stores)
	if err := fs.Parse([]string{"--store", "Memory"}); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFor(fs, nil, stores)
	if err != nil || c.Store != "memory" {
		t.Fatalf("LoadFor --store Memory: store %q, %v", c.Store, err)
	}
	if u := fs.Lookup("store").Usage; !strings.Contains(u, "bolt, memory") || strings.Contains(u, "redis") {
		t.Errorf("--store help %q, want the stores passed in", u)
	}
	_, err = LoadFor(nil, env(map[string]string{"KEYGATE_STORE": "redis"}), stores)
	if err == nil || !strings.Contains(err.Error(), "allowed values are bolt, memory") {
		t.Errorf("LoadFor store redis where only bolt, memory: %v", err)
	}
	if _, err := Load(nil, env(map[string]string{"KEYGATE_STORE": "memory"})); err == nil || !strings.Contains(err.Error(), "allowed values are bolt, redis") {
		t.Errorf("Load store memory: %v", err)
	}
	if u := flags(t).Lookup("store").Usage; !strings.Contains(u, "bolt, redis") {
		t.Errorf("BindFlags --store help %q", u)
	}
}

// metrics_listen reaches Config from the environment and from a flag, and
// the flag wins, as for every setting.
func TestMetricsListenLayers(t *testing.T) {
	c := mustLoad(t, nil, map[string]string{"KEYGATE_METRICS_LISTEN": "127.0.0.1:9464"})
	if c.MetricsListen != "127.0.0.1:9464" {
		t.Errorf("from the environment: %q", c.MetricsListen)
	}
	c = mustLoad(t, flags(t, "--metrics-listen", ":9465"), map[string]string{"KEYGATE_METRICS_LISTEN": "127.0.0.1:9464"})
	if c.MetricsListen != ":9465" {
		t.Errorf("flag over environment: %q", c.MetricsListen)
	}
}

// trusted_proxies reaches Config as a list from every layer (YAML list or
// comma-separated string, the environment, a repeated or comma-separated
// flag), later layers replacing earlier ones whole; the parsed prefixes
// follow it.
func TestTrustedProxiesLayers(t *testing.T) {
	prefixes := func(c Config) string {
		var out []string
		for _, p := range c.TrustedProxyPrefixes {
			out = append(out, p.String())
		}
		return strings.Join(out, " ")
	}
	file := writeFile(t, "trusted_proxies:\n  - 10.0.0.0/8\n  - fd00::/8\n")
	c := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": file})
	if got := prefixes(c); got != "10.0.0.0/8 fd00::/8" {
		t.Errorf("from a YAML list: %q", got)
	}
	c = mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": writeFile(t, "trusted_proxies: 10.0.0.0/8, 192.0.2.7\n")})
	if got := prefixes(c); got != "10.0.0.0/8 192.0.2.7/32" {
		t.Errorf("from a YAML string: %q", got)
	}
	c = mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": file, "KEYGATE_TRUSTED_PROXIES": " 172.16.0.0/12 ,, ::1 "})
	if got := prefixes(c); got != "172.16.0.0/12 ::1/128" || !slices.Equal(c.TrustedProxies, []string{"172.16.0.0/12", "::1"}) {
		t.Errorf("environment over file: %q %q", got, c.TrustedProxies)
	}
	c = mustLoad(t, flags(t, "--trusted-proxies", "10.1.0.0/16", "--trusted-proxies", "10.2.0.0/16,10.3.0.0/16"),
		map[string]string{"KEYGATE_TRUSTED_PROXIES": "172.16.0.0/12"})
	if got := prefixes(c); got != "10.1.0.0/16 10.2.0.0/16 10.3.0.0/16" {
		t.Errorf("flags over environment: %q", got)
	}
	if u := flags(t).Lookup("trusted-proxies").Usage; !strings.Contains(u, "KEYGATE_TRUSTED_PROXIES") {
		t.Errorf("--trusted-proxies help %q", u)
	}
	_, err := Load(nil, env(map[string]string{"KEYGATE_CONFIG": writeFile(t, "trusted_proxies:\n  - [10.0.0.0/8]\n")}))
	if err == nil || !strings.Contains(err.Error(), "invalid trusted_proxies") || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a nested list: %v", err)
	}
	_, err = Load(nil, env(map[string]string{"KEYGATE_CONFIG": writeFile(t, "trusted_proxies:\n  - 10.0.0.0/8\n  - nope\n")}))
	if err == nil || !strings.Contains(err.Error(), `invalid trusted_proxies "10.0.0.0/8,nope" (from config file`) {
		t.Errorf("a bad entry in the file: %v", err)
	}
}

func TestAccessLogSettings(t *testing.T) {
	c := mustLoad(t, flags(t, "--access-log", "OFF"), map[string]string{"KEYGATE_ACCESS_LOG_OAUTH": "All"})
	if c.AccessLog != AccessLogOff || c.AccessLogOAuth != AccessLogAll {
		t.Errorf("access_log %q, access_log_oauth %q", c.AccessLog, c.AccessLogOAuth)
	}
}

// TestSigningKeySchedule: 0 turns scheduled rotation off; days work.
func TestSigningKeySchedule(t *testing.T) {
	c := mustLoad(t, flags(t, "--signing-key-rotation", "0", "--signing-key-prepublish", "2h"), nil)
	if c.SigningKeyRotation != 0 || c.SigningKeyPrepublish != 2*time.Hour {
		t.Fatalf("rotation %v prepublish %v", c.SigningKeyRotation, c.SigningKeyPrepublish)
	}
	c = mustLoad(t, nil, map[string]string{"KEYGATE_SIGNING_KEY_ROTATION": "30d"})
	if c.SigningKeyRotation != 30*Day || c.SigningKeyPrepublish != DefaultSigningKeyPrepublish {
		t.Fatalf("rotation %v prepublish %v", c.SigningKeyRotation, c.SigningKeyPrepublish)
	}
}
