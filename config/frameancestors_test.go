package config

import (
	"strings"
	"testing"
)

func TestConsoleFrameAncestors(t *testing.T) {
	good := []struct{ in, want string }{
		{"", "'none'"},
		{"'none'", "'none'"},
		{" 'NONE' ", "'none'"},
		{"https://platform.example", "https://platform.example"},
		{"HTTPS://Platform.Example:8443", "https://platform.example:8443"},
		{"https://a.example  https://b.example", "https://a.example https://b.example"},
		{"http://localhost:3000", "http://localhost:3000"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"https://192.0.2.7", "https://192.0.2.7"},
	}
	for _, g := range good {
		v := g.in
		if err := checkFrameAncestors(&v); err != nil || v != g.want {
			t.Errorf("%q: got %q, %v; want %q", g.in, v, err, g.want)
		}
	}
	bad := []struct{ in, why string }{
		{"*", "wildcards"},
		{"https://*.example", "wildcards"},
		{"'self'", `"'" is not allowed`},
		{"'none' https://a.example", `"'" is not allowed`},
		{`"https://a.example"`, `"\"" is not allowed`},
		{"https://a.example; script-src *", `";" is not allowed`},
		{"https://a.example,https://b.example", `"," is not allowed`},
		{"https://a.example\nX-Evil: 1", "control characters"},
		{"https://a.example\r\n", "control characters"},
		{"https://a.example\thttps://b.example", "control characters"},
		{"https://a.example/path", "no path"},
		{"https://a.example/", "no path"},
		{"https://a.example?x", "no path"},
		{"https://user@a.example", "no path"},
		{"http://platform.example", "only for loopback"},
		{"http://10.0.0.1", "only for loopback"},
		{"ftp://a.example", "scheme"},
		{"a.example", "want an origin"},
		{"https://", "not an origin"},
		{"https://a.example:0", "not a port"},
		{"https://a.example:99999", "not a port"},
		{"https://a_b.example", "not a host name"},
		{"https://a.example https://a.example", "listed twice"},
		{"https://é.example", "printable ASCII"},
		{strings.Repeat("https://a.example ", 0) + manyOrigins(17), "at most 16"},
	}
	for _, b := range bad {
		v := b.in
		err := checkFrameAncestors(&v)
		if err == nil || !strings.Contains(err.Error(), b.why) {
			t.Errorf("%q: got %v, want an error containing %q", b.in, err, b.why)
		}
		if v != b.in {
			t.Errorf("%q: value changed to %q on error", b.in, v)
		}
	}
}

func manyOrigins(n int) string {
	var s []string
	for i := range n {
		s = append(s, "https://h"+string(rune('a'+i))+".example")
	}
	return strings.Join(s, " ")
}

// The setting reaches Config from the environment, is validated by Load
// and defaults to 'none'.
func TestConsoleFrameAncestorsLoad(t *testing.T) {
	c := mustLoad(t, nil, nil)
	if c.ConsoleFrameAncestors != FrameAncestorsNone {
		t.Errorf("default = %q", c.ConsoleFrameAncestors)
	}
	c = mustLoad(t, nil, map[string]string{"KEYGATE_CONSOLE_FRAME_ANCESTORS": "https://Platform.example"})
	if c.ConsoleFrameAncestors != "https://platform.example" {
		t.Errorf("from env = %q", c.ConsoleFrameAncestors)
	}
	_, err := Load(nil, env(map[string]string{"KEYGATE_CONSOLE_FRAME_ANCESTORS": "*"}))
	if err == nil || !strings.Contains(err.Error(), "invalid console_frame_ancestors") || !strings.Contains(err.Error(), "KEYGATE_CONSOLE_FRAME_ANCESTORS") {
		t.Errorf("wildcard: %v", err)
	}
}
