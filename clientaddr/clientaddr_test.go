package clientaddr

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	proxies, err := New([]string{"10.0.0.0/8", "fd00::/8", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		proxies     *Proxies
		remote      string
		xff         []string // X-Forwarded-For lines, in order
		want        string
		peerTrusted bool
	}{
		{name: "no proxies: the peer", proxies: nil, remote: "203.0.113.9:4711", want: "203.0.113.9"},
		{name: "no proxies: X-Forwarded-For ignored", proxies: nil, remote: "203.0.113.9:4711", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "untrusted peer: spoofed X-Forwarded-For ignored", proxies: proxies, remote: "203.0.113.9:4711", xff: []string{"10.0.0.1, 198.51.100.1"}, want: "203.0.113.9"},
		{name: "untrusted peer claiming a proxy's address", proxies: proxies, remote: "203.0.113.9:4711", xff: []string{"10.0.0.1"}, want: "203.0.113.9"},
		{name: "trusted peer, no header: the peer", proxies: proxies, remote: "10.1.1.1:80", want: "10.1.1.1", peerTrusted: true},
		{name: "trusted peer, one hop", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"198.51.100.1"}, want: "198.51.100.1", peerTrusted: true},
		{name: "client prepends a forged hop", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"1.2.3.4, 198.51.100.1"}, want: "198.51.100.1", peerTrusted: true},
		{name: "client forges a trusted hop on the left", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"10.9.9.9, 198.51.100.1"}, want: "198.51.100.1", peerTrusted: true},
		{name: "two proxies", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"1.2.3.4, 198.51.100.1, 10.2.2.2"}, want: "198.51.100.1", peerTrusted: true},
		{name: "single-address entry trusted", proxies: proxies, remote: "192.0.2.7:80", xff: []string{"198.51.100.1, 192.0.2.7"}, want: "198.51.100.1", peerTrusted: true},
		{name: "single-address entry is only itself", proxies: proxies, remote: "192.0.2.8:80", xff: []string{"198.51.100.1"}, want: "192.0.2.8"},
		{name: "several header lines: the last is the latest", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"1.2.3.4", "198.51.100.1, 10.3.3.3"}, want: "198.51.100.1", peerTrusted: true},
		{name: "a forged second line is still left of the proxy's hop", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"6.6.6.6", "198.51.100.1"}, want: "198.51.100.1", peerTrusted: true},
		{name: "all hops trusted: the leftmost", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"10.4.4.4, 10.3.3.3"}, want: "10.4.4.4", peerTrusted: true},
		{name: "garbage hop: the last trusted address", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"198.51.100.1, not-an-ip, 10.3.3.3"}, want: "10.3.3.3", peerTrusted: true},
		{name: "garbage right next to the peer", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"198.51.100.1, unknown"}, want: "10.1.1.1", peerTrusted: true},
		{name: "empty entries skipped", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"198.51.100.1,, ,"}, want: "198.51.100.1", peerTrusted: true},
		{name: "hop with a port", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"198.51.100.1:5555"}, want: "198.51.100.1", peerTrusted: true},
		{name: "IPv6 hop in brackets with a port", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"[2001:db8::1]:443"}, want: "2001:db8::1", peerTrusted: true},
		{name: "IPv6 hop in brackets", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"[2001:db8::1]"}, want: "2001:db8::1", peerTrusted: true},
		{name: "IPv6 proxy", proxies: proxies, remote: "[fd00::5]:80", xff: []string{"2001:db8::1"}, want: "2001:db8::1", peerTrusted: true},
		{name: "IPv4-mapped peer unmapped before comparing", proxies: proxies, remote: "[::ffff:10.1.1.1]:80", xff: []string{"198.51.100.1"}, want: "198.51.100.1", peerTrusted: true},
		{name: "IPv4-mapped hop unmapped before comparing", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"198.51.100.1, ::ffff:10.3.3.3"}, want: "198.51.100.1", peerTrusted: true},
		{name: "IPv4-mapped client shown unmapped", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1", peerTrusted: true},
		{name: "IPv4-mapped untrusted peer shown unmapped", proxies: nil, remote: "[::ffff:203.0.113.9]:1", want: "203.0.113.9"},
		{name: "zoned peer: zone dropped", proxies: proxies, remote: "[fd00::5%eth0]:80", xff: []string{"2001:db8::1"}, want: "2001:db8::1", peerTrusted: true},
		{name: "too many hops: stop", proxies: proxies, remote: "10.1.1.1:80", xff: []string{"198.51.100.1," + strings.Repeat(" 10.0.0.1,", 40) + " 10.0.0.2"}, want: "10.0.0.1", peerTrusted: true},
		{name: "unreadable peer", proxies: proxies, remote: "pipe", xff: []string{"198.51.100.1"}, want: "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range tt.xff {
				h.Add("X-Forwarded-For", l)
			}
			// Headers a client could send to impersonate someone: never read.
			h.Set("X-Real-IP", "6.6.6.6")
			h.Set("Forwarded", "for=6.6.6.6")
			h.Set("True-Client-IP", "6.6.6.6")
			got := tt.proxies.Resolve(tt.remote, h)
			if got.Addr.String() != tt.want {
				t.Errorf("source %s, want %s", got.Addr, tt.want)
			}
			if got.PeerTrusted != tt.peerTrusted {
				t.Errorf("peer trusted %v, want %v", got.PeerTrusted, tt.peerTrusted)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	good := map[string]string{
		"10.0.0.0/8":            "10.0.0.0/8",
		" 10.1.2.3/8 ":          "10.0.0.0/8",
		"192.0.2.7":             "192.0.2.7/32",
		"::1":                   "::1/128",
		"fd00::/8":              "fd00::/8",
		"::ffff:10.0.0.0/104":   "10.0.0.0/8",
		"::ffff:192.0.2.7":      "192.0.2.7/32",
		"::ffff:192.0.2.7/128":  "192.0.2.7/32",
		"0.0.0.0/0":             "0.0.0.0/0",
		"2001:db8:abcd::/48":    "2001:db8:abcd::/48",
		"2001:db8:abcd::17/128": "2001:db8:abcd::17/128",
	}
	for in, want := range good {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "10.0.0/8", "example.com", "10.0.0.0/8/8", "fe80::1%eth0", "::ffff:0:0/80", "10.0.0.0 /8", "*"} {
		if p, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix(%q) = %v, want an error", bad, p)
		}
	}
	if _, err := New([]string{"10.0.0.0/8", "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("New with a bad entry: %v", err)
	}
}

func TestTrusted(t *testing.T) {
	var none *Proxies
	if none.Trusted(netip.MustParseAddr("10.0.0.1")) || none.Any() {
		t.Error("a nil set trusts someone")
	}
	empty, _ := New(nil)
	if empty.Trusted(netip.MustParseAddr("10.0.0.1")) || empty.Any() {
		t.Error("an empty set trusts someone")
	}
	p := FromPrefixes([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	if !p.Trusted(netip.MustParseAddr("::ffff:10.0.0.1")) {
		t.Error("a mapped address of a trusted prefix is not trusted")
	}
	if p.Trusted(netip.MustParseAddr("11.0.0.1")) || p.Trusted(netip.Addr{}) {
		t.Error("an address outside the prefixes is trusted")
	}
}

// Resolving allocates nothing: it runs for requests on the token path.
func TestResolveAllocs(t *testing.T) {
	p, _ := New([]string{"10.0.0.0/8"})
	h := http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1, 10.2.2.2"}}
	if n := testing.AllocsPerRun(100, func() { p.Resolve("10.1.1.1:80", h) }); n != 0 {
		t.Errorf("Resolve allocates %.0f times", n)
	}
}
