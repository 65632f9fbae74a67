package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/keygate/keygate/signing"
)

// FuzzLoadFile: whatever a YAML config file holds, Load either refuses it
// or gives a Config whose every ranged setting is inside the range the
// README documents (the Min*/Max* constants), whose enumerated settings
// are canonical members of their lists, and which validates again.
func FuzzLoadFile(f *testing.F) {
	for _, s := range []string{
		"listen: 127.0.0.1:8080\ntoken_ttl: 15m\n",
		"token_ttl: 0s\n", "token_ttl: 999999h\n", "token_ttl: -1m\n",
		"max_keys_per_team: 0\n", "max_keys_per_team: 99999999999999999999\n",
		"shutdown_timeout: 1ns\nstore_timeout: 2s\n", "redis_key_cache: -5s\n",
		"status_list_ttl: 1h\naudit_retention: 90d\n", "audit_retention: 0d\n",
		"introspection_rate: 1000\n", "signing_alg: es256\nlog_level: DEBUG\n",
		"trusted_proxies: [10.0.0.0/8, '::1']\n", "listen: [a]\n", "a: &x 1\nb: *x\n",
		"token_ttl: 1m\ntoken_ttl: 2m\n", "--- \n...\n---\n", "permissions:\n  - id: x\n",
		"webhooks:\n  - url: http://x\n", "{}", "[]", "",
		"tls_cert: a.pem\ntls_key: b.pem\nhsts_include_subdomains: yes\n", "max_connections: -1\nidle_timeout: 0s\nhsts_max_age: 731d\n",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, yamlText string) {
		p := filepath.Join(dir, "keygate.yaml")
		if err := os.WriteFile(p, []byte(yamlText), 0o600); err != nil {
			t.Fatal(err)
		}
		fs := pflag.NewFlagSet("keygate", pflag.ContinueOnError)
		BindFlags(fs)
		if err := fs.Parse([]string{"--" + ConfigFileFlag, p}); err != nil {
			t.Fatal(err)
		}
		c, err := Load(fs, func(string) string { return "" })
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(yamlText, "\n") {
				t.Fatalf("multi-line error for a one-line file: %q", err)
			}
			return
		}
		type rng struct {
			name        string
			v, min, max int64
		}
		for _, r := range []rng{
			{"token_ttl", int64(c.TokenTTL), int64(MinTokenTTL), int64(MaxTokenTTL)},
			{"max_keys_per_team", int64(c.MaxKeysPerTeam), int64(MinMaxKeysPerTeam), int64(MaxMaxKeysPerTeam)},
			{"shutdown_timeout", int64(c.ShutdownTimeout), int64(MinShutdownTimeout), int64(MaxShutdownTimeout)},
			{"store_timeout", int64(c.StoreTimeout), int64(MinStoreTimeout), int64(MaxStoreTimeout)},
			{"redis_key_cache", int64(c.RedisKeyCache), 0, int64(MaxRedisKeyCache)},
			{"redis_key_cache_size", int64(c.RedisKeyCacheSize), MinRedisKeyCacheSize, MaxRedisKeyCacheSize},
			{"bolt_key_cache_size", int64(c.BoltKeyCacheSize), MinRedisKeyCacheSize, MaxRedisKeyCacheSize},
			{"status_list_ttl", int64(c.StatusListTTL), int64(MinStatusListTTL), int64(MaxStatusListTTL)},
			{"audit_retention", int64(c.AuditRetention), int64(MinAuditRetention), int64(MaxAuditRetention)},
			{"introspection_rate", int64(c.IntrospectionRate), int64(MinIntrospectionRate), int64(MaxIntrospectionRate)},
			{"last_used_write_rate", int64(c.LastUsedWriteRate), int64(MinLastUsedWriteRate), int64(MaxLastUsedWriteRate)},
			{"hsts_max_age", int64(c.HSTSMaxAge), 0, int64(MaxHSTSMaxAge)},
			{"max_connections", int64(c.MaxConnections), 0, int64(MaxMaxConnections)},
			{"idle_timeout", int64(c.IdleTimeout), int64(MinIdleTimeout), int64(MaxIdleTimeout)},
		} {
			if r.v < r.min || r.v > r.max {
				t.Fatalf("accepted %s = %d outside [%d, %d] from %q", r.name, r.v, r.min, r.max, yamlText)
			}
		}
		for name, e := range map[string]struct {
			v       string
			allowed []string
		}{
			"signing_alg": {c.SigningAlg, signing.Algorithms}, "log_level": {c.LogLevel, logLevels},
			"log_format": {c.LogFormat, logFormats}, "store": {c.Store, DefaultStores},
			"access_log": {c.AccessLog, AccessLogModes}, "access_log_oauth": {c.AccessLogOAuth, AccessLogModes},
		} {
			if !slices.Contains(e.allowed, e.v) {
				t.Fatalf("accepted %s = %q, not one of %q, from %q", name, e.v, e.allowed, yamlText)
			}
		}
		if !validRedisPrefix(c.RedisPrefix) || len(c.TrustedProxyPrefixes) != len(c.TrustedProxies) || c.Catalog == nil {
			t.Fatalf("accepted an inconsistent config from %q", yamlText)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a loaded config does not validate again: %v (from %q)", err, yamlText)
		}
	})
}
