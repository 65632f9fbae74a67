package config

// console_frame_ancestors: which origins may embed the console in an
// iframe. The value goes verbatim into the console's Content-Security-Policy
// header, so it is held to a grammar far narrower than CSP's source lists:
// a character that ends a directive (;), a header line (CR, LF) or starts a
// keyword or nonce (') would let the setting rewrite the policy, and a
// wildcard or a plain-http origin would let any page (or anyone on the
// network path) frame a console holding a management token.

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// FrameAncestorsNone is the default: no page may frame the console.
const FrameAncestorsNone = "'none'"

// MaxFrameAncestors bounds the origins of console_frame_ancestors.
const MaxFrameAncestors = 16

// checkFrameAncestors checks v and puts it in canonical form: 'none' (also
// for an empty value), or origins separated by one space, each
// https://host[:port] or http://loopback[:port], lower case, no path.
func checkFrameAncestors(v *string) error {
	raw := *v
	if strings.TrimSpace(raw) == "" || strings.EqualFold(strings.TrimSpace(raw), FrameAncestorsNone) {
		*v = FrameAncestorsNone
		return nil
	}
	for _, r := range raw {
		switch {
		case r == ';' || r == ',' || r == '\'' || r == '"':
			return fmt.Errorf("%q is not allowed: list origins separated by spaces, e.g. https://platform.example https://admin.platform.example", string(r))
		case r == '*':
			return fmt.Errorf("wildcards are not allowed: name each origin that may embed the console")
		case r < 0x21 && r != ' ' || r >= 0x7f:
			return fmt.Errorf("only printable ASCII separated by spaces is allowed (no tabs, newlines or other control characters)")
		}
	}
	fields := strings.Fields(raw)
	if len(fields) > MaxFrameAncestors {
		return fmt.Errorf("%d origins; at most %d are allowed", len(fields), MaxFrameAncestors)
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		o, err := frameOrigin(f)
		if err != nil {
			return fmt.Errorf("origin %q: %w", f, err)
		}
		if seen[o] {
			return fmt.Errorf("origin %q is listed twice", o)
		}
		seen[o] = true
		out = append(out, o)
	}
	*v = strings.Join(out, " ")
	return nil
}

// frameOrigin checks one origin: scheme, host and optional port, nothing
// else (a path, query or user would be ignored or misread by browsers).
func frameOrigin(s string) (string, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "", fmt.Errorf("want an origin such as https://platform.example")
	}
	scheme = strings.ToLower(scheme)
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("scheme %q is not allowed: use https (http only for loopback)", scheme)
	}
	if strings.ContainsAny(rest, "/?#@\\%") {
		return "", fmt.Errorf("an origin has no path, query, fragment or user: give only scheme://host[:port]")
	}
	u, err := url.Parse(scheme + "://" + rest)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("not an origin such as https://platform.example")
	}
	host := strings.ToLower(u.Hostname())
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return "", fmt.Errorf("port %q is not a port number", port)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("empty port")
	}
	ip, ipErr := netip.ParseAddr(host)
	switch {
	case ipErr == nil:
		if ip.Zone() != "" {
			return "", fmt.Errorf("an address with a zone is not an origin")
		}
	case !validHostName(host):
		return "", fmt.Errorf("host %q is not a host name or IP address", host)
	}
	if scheme == "http" && !loopbackHost(host) { // config/webhook.go
		return "", fmt.Errorf("http is allowed only for loopback (localhost, 127.0.0.1, [::1]); use https")
	}
	h := host
	if ipErr == nil && ip.Is6() {
		h = "[" + host + "]"
	}
	if p := u.Port(); p != "" {
		h = net.JoinHostPort(strings.Trim(h, "[]"), p)
	}
	return scheme + "://" + h, nil
}

// validHostName: dot-separated labels of letters, digits and inner hyphens.
func validHostName(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
