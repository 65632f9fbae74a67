package config

import (
	"strings"
	"testing"
	"time"
)

// tls_cert and tls_key come together; the listener's settings are held to
// their ranges, each refusal one line naming the setting and its origin.
func TestServingValidation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"cert without key", []string{"--tls-cert", "/etc/keygate/tls.crt"}, nil,
			[]string{`invalid tls_cert "/etc/keygate/tls.crt" (from --tls-cert)`, "tls_key must be set too"}},
		{"key without cert", nil, map[string]string{"KEYGATE_TLS_KEY": "/etc/keygate/tls.key"},
			[]string{`invalid tls_key "/etc/keygate/tls.key" (from KEYGATE_TLS_KEY)`, "tls_cert must be set too"}},
		{"cert path with NUL", []string{"--tls-cert", "a\x00b", "--tls-key", "k"}, nil,
			[]string{"invalid tls_cert", "must be a file path"}},
		{"hsts_max_age negative", []string{"--hsts-max-age", "-1s"}, nil,
			[]string{`invalid hsts_max_age "-1s"`, "between 0s (no header) and 730d"}},
		{"hsts_max_age too long", nil, map[string]string{"KEYGATE_HSTS_MAX_AGE": "731d"},
			[]string{`invalid hsts_max_age "17544h0m0s" (from KEYGATE_HSTS_MAX_AGE)`, "730d"}},
		{"hsts_include_subdomains not a bool", nil, map[string]string{"KEYGATE_HSTS_INCLUDE_SUBDOMAINS": "maybe"},
			[]string{`invalid KEYGATE_HSTS_INCLUDE_SUBDOMAINS "maybe": want true or false`}},
		{"max_connections negative", []string{"--max-connections", "-1"}, nil,
			[]string{"invalid max_connections -1 (from --max-connections)", "between 0 (unlimited) and 1000000"}},
		{"max_connections too many", nil, map[string]string{"KEYGATE_MAX_CONNECTIONS": "1000001"},
			[]string{"invalid max_connections 1000001", "between 0 (unlimited) and 1000000"}},
		{"idle_timeout zero", []string{"--idle-timeout", "0s"}, nil,
			[]string{`invalid idle_timeout "0s" (from --idle-timeout)`, "between 1s and 1h0m0s"}},
		{"idle_timeout too long", nil, map[string]string{"KEYGATE_IDLE_TIMEOUT": "2h"},
			[]string{`invalid idle_timeout "2h0m0s"`, "between 1s and 1h0m0s"}},
		{"idle_timeout syntax", nil, map[string]string{"KEYGATE_IDLE_TIMEOUT": "2 minutes"},
			[]string{`invalid KEYGATE_IDLE_TIMEOUT "2 minutes"`, "Go duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(flags(t, tt.args...), env(tt.env))
			if err == nil {
				t.Fatal("Load accepted it")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// The serving settings reach Config from every layer, in ParseDuration's
// syntax for durations; a flag without a value turns
// hsts_include_subdomains on, and the environment can turn it off again.
func TestServingLayers(t *testing.T) {
	file := writeFile(t, "max_connections: 0\nhsts_max_age: 0s\nidle_timeout: 5s\nhsts_include_subdomains: true\n")
	c := mustLoad(t, flags(t, "--tls-cert", "c.pem", "--tls-key", "k.pem"),
		map[string]string{"KEYGATE_CONFIG": file, "KEYGATE_MAX_CONNECTIONS": "7"})
	if c.TLSCert != "c.pem" || c.TLSKey != "k.pem" || !c.HSTSIncludeSubdomains || c.MaxConnections != 7 || c.HSTSMaxAge != 0 || c.IdleTimeout != 5*time.Second {
		t.Errorf("got tls %q %q, include %v, max_connections %d, hsts_max_age %s, idle_timeout %s",
			c.TLSCert, c.TLSKey, c.HSTSIncludeSubdomains, c.MaxConnections, c.HSTSMaxAge, c.IdleTimeout)
	}
	c = mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": file, "KEYGATE_HSTS_INCLUDE_SUBDOMAINS": "false", "KEYGATE_IDLE_TIMEOUT": "0d90s"})
	if c.HSTSIncludeSubdomains || c.IdleTimeout != 90*time.Second || c.MaxConnections != 0 {
		t.Errorf("environment over file: include %v, idle_timeout %s, max_connections %d", c.HSTSIncludeSubdomains, c.IdleTimeout, c.MaxConnections)
	}
	c = mustLoad(t, flags(t, "--hsts-include-subdomains"), nil)
	if !c.HSTSIncludeSubdomains {
		t.Error("--hsts-include-subdomains without a value did not turn it on")
	}
}

// Without an explicit issuer, a keygate serving TLS derives an https one.
func TestServingTLSDerivesHTTPSIssuer(t *testing.T) {
	c := mustLoad(t, flags(t, "--listen", "0.0.0.0:8443", "--tls-cert", "c.pem", "--tls-key", "k.pem"), nil)
	if c.Issuer != "https://localhost:8443" || c.Audience != c.Issuer {
		t.Errorf("issuer %q, audience %q", c.Issuer, c.Audience)
	}
	c = mustLoad(t, flags(t, "--listen", "0.0.0.0:8443"), nil)
	if c.Issuer != "http://localhost:8443" {
		t.Errorf("without TLS: issuer %q", c.Issuer)
	}
}

// HSTS is sent only when keygate serves TLS for an https issuer named by a
// host name other than localhost, with a max-age other than 0.
func TestHSTS(t *testing.T) {
	tls := []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"TLS, https host name", append([]string{"--issuer", "https://auth.example.com"}, tls...), "max-age=31536000"},
		{"TLS, https host name with port and path", append([]string{"--issuer", "https://Auth.Example.com:8443/kg"}, tls...), "max-age=31536000"},
		{"includeSubDomains", append([]string{"--issuer", "https://auth.example.com", "--hsts-include-subdomains"}, tls...), "max-age=31536000; includeSubDomains"},
		{"max-age set", append([]string{"--issuer", "https://auth.example.com", "--hsts-max-age", "1h"}, tls...), "max-age=3600"},
		{"max-age 0", append([]string{"--issuer", "https://auth.example.com", "--hsts-max-age", "0s"}, tls...), ""},
		{"plain HTTP", []string{"--issuer", "https://auth.example.com"}, ""},
		{"http issuer", append([]string{"--issuer", "http://auth.example.com"}, tls...), ""},
		{"localhost", append([]string{"--issuer", "https://localhost:8443"}, tls...), ""},
		{"LOCALHOST.", append([]string{"--issuer", "https://LOCALHOST.:8443"}, tls...), ""},
		{"a .localhost name", append([]string{"--issuer", "https://kg.localhost"}, tls...), ""},
		{"IPv4", append([]string{"--issuer", "https://192.0.2.7:8443"}, tls...), ""},
		{"IPv6", append([]string{"--issuer", "https://[2001:db8::1]:8443"}, tls...), ""},
		{"derived issuer", append([]string{"--listen", "0.0.0.0:8443"}, tls...), ""}, // https://localhost:8443
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, flags(t, tt.args...), nil)
			if got := c.HSTS(); got != tt.want {
				t.Errorf("HSTS() = %q, want %q (issuer %s)", got, tt.want, c.Issuer)
			}
		})
	}
}

// The start-up warning's condition: an https issuer, plain HTTP, no
// trusted proxy.
func TestPlainHTTPBehindHTTPS(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"--issuer", "https://auth.example.com"}, true},
		{[]string{"--issuer", "https://auth.example.com", "--trusted-proxies", "10.0.0.0/8"}, false},
		{[]string{"--issuer", "https://auth.example.com", "--tls-cert", "c", "--tls-key", "k"}, false},
		{[]string{"--issuer", "http://auth.example.com"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := mustLoad(t, flags(t, tt.args...), nil).PlainHTTPBehindHTTPS(); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.args, got, tt.want)
		}
	}
}
