// Package clientaddr decides which address a request came from when
// keygate runs behind proxies: the source address of audit events, access
// log lines and (later) throttling.
//
// The rule (issue #13, `trusted_proxies`): the TCP peer is the source
// unless it is a trusted proxy. When it is, X-Forwarded-For is walked from
// the right — each proxy appends the address it received the request from
// — and the first hop that is not a trusted proxy is the source. Hops to
// the left of it were written by someone keygate does not trust (the
// client itself can send any X-Forwarded-For it likes), so they are never
// read. IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) are unmapped, and
// IPv6 zones dropped, before any comparison, so one address cannot match
// or miss a prefix depending on how a socket spelt it.
//
// Only X-Forwarded-For is read. RFC 7239 Forwarded and X-Real-IP are
// ignored: a proxy that writes one of them usually passes the others
// through untouched, so believing two headers would let a client forge
// whichever one its proxy does not rewrite. Every common proxy (nginx,
// Envoy, Caddy, HAProxy, cloud load balancers) appends X-Forwarded-For.
//
// The package imports nothing of HTTP frameworks; it allocates nothing
// per request.
package clientaddr

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Header is the header the rule reads.
const Header = "X-Forwarded-For"

// maxHops bounds the walk: a chain of proxies is a handful of hops, and the
// header's size is already bounded by the server's header limit.
const maxHops = 32

// Proxies is a set of trusted proxy prefixes. The zero value and nil trust
// no one: the peer is always the source.
type Proxies struct {
	prefixes []netip.Prefix
}

// ParsePrefix reads one trusted_proxies entry: a CIDR (10.0.0.0/8,
// fd00::/8) or a single address (10.0.0.5, ::1), which stands for itself
// alone. An IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) is read as the
// IPv4 prefix it maps (10.0.0.0/8), as addresses are. The prefix comes back
// masked (10.1.2.3/8 is 10.0.0.0/8).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR such as 10.0.0.0/8 or fd00::/8", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8", s)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q is wider than the IPv4-mapped range ::ffff:0:0/96; write the IPv4 CIDR", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// New returns the set of the given prefixes (see ParsePrefix for what an
// entry may be). An empty list trusts no one.
func New(entries []string) (*Proxies, error) {
	p := &Proxies{}
	for _, e := range entries {
		pre, err := ParsePrefix(e)
		if err != nil {
			return nil, err
		}
		p.prefixes = append(p.prefixes, pre)
	}
	return p, nil
}

// FromPrefixes returns the set of prefixes already parsed (by ParsePrefix:
// IPv4 prefixes in IPv4 form).
func FromPrefixes(prefixes []netip.Prefix) *Proxies {
	return &Proxies{prefixes: append([]netip.Prefix(nil), prefixes...)}
}

// Any reports whether any proxy is trusted.
func (p *Proxies) Any() bool { return p != nil && len(p.prefixes) > 0 }

// Trusted reports whether a is a trusted proxy's address.
func (p *Proxies) Trusted(a netip.Addr) bool {
	if p == nil || !a.IsValid() {
		return false
	}
	a = normalize(a)
	for _, pre := range p.prefixes {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// Source is where a request came from.
type Source struct {
	// Addr is the client's address by the rule above; invalid when the
	// peer's address could not be read (a test request without one).
	Addr netip.Addr
	// Peer is the TCP peer's address (unmapped).
	Peer netip.Addr
	// PeerTrusted: the peer is a trusted proxy, so what it says about the
	// request (X-Forwarded-For, an X-Request-Id) may be believed.
	PeerTrusted bool
}

// Resolve applies the rule to a request: remoteAddr is its
// http.Request.RemoteAddr ("ip:port"), h its headers.
func (p *Proxies) Resolve(remoteAddr string, h http.Header) Source {
	peer := parseHop(remoteAddr)
	src := Source{Addr: peer, Peer: peer}
	if !p.Trusted(peer) {
		return src
	}
	src.PeerTrusted = true
	lines := h[Header]
	hops := 0
	// The last line of the header is the latest; within a line the last
	// entry is: walk lines and entries from the right.
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for line != "" {
			hop := line
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				hop, line = line[j+1:], line[:j]
			} else {
				line = ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue // "a,,b": an empty entry says nothing
			}
			if hops++; hops > maxHops {
				return src
			}
			a := parseHop(hop)
			if !a.IsValid() {
				// Garbage written by the hop before the last trusted one:
				// nothing further left can be believed, and the nearest
				// address known is the trusted proxy that forwarded it.
				return src
			}
			src.Addr = a
			if !p.Trusted(a) {
				return src
			}
		}
	}
	// Every hop is a trusted proxy: the leftmost one is as far as the
	// chain goes.
	return src
}

// parseHop reads an address as it appears in RemoteAddr or an
// X-Forwarded-For entry: "1.2.3.4", "1.2.3.4:5678", "2001:db8::1",
// "[2001:db8::1]:443", "[2001:db8::1]"; the invalid Addr for anything
// else. The form is told apart before parsing: a failed parse allocates its
// error, and this runs per request.
func parseHop(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	switch colons := strings.Count(s, ":"); {
	case s[0] == '[' && s[len(s)-1] == ']':
		s = s[1 : len(s)-1]
	case s[0] == '[' || colons == 1:
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}
		}
		return normalize(ap.Addr())
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return normalize(a)
}

// normalize unmaps IPv4-mapped IPv6 addresses and drops zones, so an
// address compares the same however the socket spelt it.
func normalize(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }
