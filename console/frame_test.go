package console_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/console"
)

// console_frame_ancestors replaces only the frame-ancestors directive, and
// X-Frame-Options: DENY goes exactly when someone may frame the console
// (DENY would win over the CSP in browsers that honour both).
func TestHandlerFrameAncestors(t *testing.T) {
	for _, tc := range []struct {
		ancestors, wantCSP, wantXFO string
	}{
		{"", console.ContentSecurityPolicy, "DENY"},
		{"'none'", console.ContentSecurityPolicy, "DENY"},
		{"https://platform.example http://localhost:3000",
			strings.Replace(console.ContentSecurityPolicy, "frame-ancestors 'none'", "frame-ancestors https://platform.example http://localhost:3000", 1), ""},
	} {
		rec := serve(console.HandlerFor(tc.ancestors), http.MethodGet, console.Prefix, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("%q: status %d", tc.ancestors, rec.Code)
		}
		if got := rec.Header().Values("Content-Security-Policy"); len(got) != 1 || got[0] != tc.wantCSP {
			t.Errorf("%q: CSP %q, want %q", tc.ancestors, got, tc.wantCSP)
		}
		if got := rec.Header().Get("X-Frame-Options"); got != tc.wantXFO {
			t.Errorf("%q: X-Frame-Options %q, want %q", tc.ancestors, got, tc.wantXFO)
		}
		if strings.Count(rec.Header().Get("Content-Security-Policy"), "frame-ancestors") != 1 {
			t.Errorf("%q: frame-ancestors not exactly once", tc.ancestors)
		}
	}
	if console.PolicyFor("https://a.example") == console.ContentSecurityPolicy {
		t.Error("PolicyFor ignored its origins")
	}
}
