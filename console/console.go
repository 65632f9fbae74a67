// Package console is keygate's web console: the "Developers > API Keys"
// page, where an operator signs in with an admin key, picks a team, and
// generates, lists, rotates and deletes that team's API keys, and its
// "Activity" page, that team's audit trail.
//
// The page is plain HTML, CSS and ES modules embedded in the binary (no
// build step, no CDN, no third-party request). It talks only to keygate's
// own public HTTP API, exactly as any other client does: the token endpoint
// for an admin access token, then /v1/… with that token. So the console
// holds no privilege of its own, and everything it can do is what the
// management API allows.
//
// Every answer from Handler carries the console's security headers (a
// strict Content-Security-Policy with no inline script, X-Frame-Options
// DENY, Referrer-Policy no-referrer). They are set here, on the console's
// routes only, so the token endpoint's answers stay as small as they are.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// Prefix is where the console is served.
const Prefix = "/console/"

// ContentSecurityPolicy allows the page its own scripts, styles and images
// and same-origin fetches, and nothing else: no inline script or style, no
// plugin, no framing, no form posting elsewhere. A name like
// <img src=x onerror=…> that slipped into the DOM as markup would still not
// run; the page renders every server value as text in the first place.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// contentTypes is fixed rather than mime.TypeByExtension, which reads the
// host's MIME tables: a host mapping .js to something odd would make the
// browser refuse the module scripts (nosniff).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the console's files under Prefix. Anything else below
// Prefix is 404; the page itself is index.html. No page may frame it.
func Handler() http.Handler { return HandlerFor("") }

// PolicyFor is ContentSecurityPolicy with frame-ancestors set to
// frameAncestors (config's console_frame_ancestors, already checked:
// 'none' or origins); "" is 'none'.
func PolicyFor(frameAncestors string) string {
	if frameAncestors == "" || frameAncestors == "'none'" {
		return ContentSecurityPolicy
	}
	return strings.Replace(ContentSecurityPolicy, "frame-ancestors 'none'", "frame-ancestors "+frameAncestors, 1)
}

// HandlerFor is Handler for a console the origins of frameAncestors may
// embed. X-Frame-Options cannot name an origin (ALLOW-FROM is gone from
// browsers), and DENY would override the CSP in older ones, so it is sent
// only while nobody may frame the console.
func HandlerFor(frameAncestors string) http.Handler {
	csp := PolicyFor(frameAncestors)
	deny := csp == ContentSecurityPolicy
	files := map[string]file{}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("%s: no content type for %q files", p, path.Ext(p))
		}
		sum := sha256.Sum256(body)
		files[strings.TrimPrefix(p, "assets/")] = file{
			body:        body,
			contentType: ct,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a broken build.
		panic(fmt.Sprintf("console: read embedded assets: %v", err))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		if deny {
			h.Set("X-Frame-Options", "DENY")
		}
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")

		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, Prefix)
		if !ok {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", f.contentType)
		// Revalidate every time: a new keygate binary must never run
		// against a cached, older script. The ETag makes that a 304.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	})
}
