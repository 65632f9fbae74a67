package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// validateServing checks the settings of the listener itself: TLS files,
// HSTS, the connection limit and the idle time.
func (c *Config) validateServing() error {
	for _, f := range []struct{ key, path string }{{"tls_cert", c.TLSCert}, {"tls_key", c.TLSKey}} {
		if strings.TrimSpace(f.path) != f.path || strings.ContainsRune(f.path, 0) {
			return c.invalid(f.key, "must be a file path")
		}
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return c.invalid("tls_cert", "tls_key must be set too: the PEM file of the certificate's private key")
	case c.TLSCert == "" && c.TLSKey != "":
		return c.invalid("tls_key", "tls_cert must be set too: the PEM file of the certificate (and its chain)")
	}
	if c.HSTSMaxAge < 0 || c.HSTSMaxAge > MaxHSTSMaxAge {
		return c.invalid("hsts_max_age", "must be between 0s (no header) and 730d, e.g. 365d")
	}
	if c.MaxConnections < 0 || c.MaxConnections > MaxMaxConnections {
		return c.invalid("max_connections", fmt.Sprintf("must be between 0 (unlimited) and %d", MaxMaxConnections))
	}
	if c.IdleTimeout < MinIdleTimeout || c.IdleTimeout > MaxIdleTimeout {
		return c.invalid("idle_timeout", fmt.Sprintf("must be between %s and %s", MinIdleTimeout, MaxIdleTimeout))
	}
	return nil
}

// ServesTLS reports whether keygate serves HTTPS itself (tls_cert and
// tls_key are set).
func (c Config) ServesTLS() bool { return c.TLSCert != "" }

// HSTS is the Strict-Transport-Security value to send on every answer, or
// "" for none. It is sent only when all of these hold:
//
//   - keygate serves TLS itself: the header is ignored over plain HTTP, and
//     behind a proxy that terminates TLS the proxy is the one to send it;
//   - the issuer, the name clients reach keygate by, is https;
//   - the issuer's host is a name, not localhost (HSTS pins a host in the
//     browser for max-age: on localhost it would force https onto every
//     other development server of the machine) nor an IP literal (RFC 6797
//     §8.1.1: browsers ignore it there);
//   - hsts_max_age is not 0.
//
// includeSubDomains only when hsts_include_subdomains says so: keygate
// cannot know what else runs under its domain.
func (c Config) HSTS() string {
	if !c.ServesTLS() || c.HSTSMaxAge <= 0 {
		return ""
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Scheme != "https" {
		return ""
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	v := "max-age=" + strconv.FormatInt(int64(c.HSTSMaxAge/time.Second), 10)
	if c.HSTSIncludeSubdomains {
		v += "; includeSubDomains"
	}
	return v
}

// PlainHTTPBehindHTTPS reports the setting that deserves a warning at start:
// the issuer is https, yet keygate serves plain HTTP and trusts no proxy,
// so either clients reach it over plain HTTP under an https name, or a
// proxy terminates TLS without being listed in trusted_proxies (its
// clients' addresses are then lost in logs, audit and throttling).
func (c Config) PlainHTTPBehindHTTPS() bool {
	return !c.ServesTLS() && strings.HasPrefix(c.Issuer, "https://") && len(c.TrustedProxies) == 0
}
