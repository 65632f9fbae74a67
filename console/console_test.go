package console_test

// The console's handler serves exactly its embedded files with its security
// headers, and the files themselves keep to what that Content-Security-Policy
// allows: no inline script or style, no event-handler attributes, nothing
// from another origin, and no script API that turns a string into markup or
// code. The static checks read the files from disk (the same files go:embed
// compiles in; TestEveryAssetServed compares the two).

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/console"
)

// securityHeaders is what every answer of the handler carries, exactly.
var securityHeaders = map[string]string{
	"Content-Security-Policy":      console.ContentSecurityPolicy,
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"X-Content-Type-Options":       "nosniff",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

func checkSecurityHeaders(t *testing.T, label string, h http.Header) {
	t.Helper()
	for name, want := range securityHeaders {
		got := h.Values(name)
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: header %s = %q, want exactly [%q]", label, name, got, want)
		}
	}
}

// serve sends one request straight to the handler.
func serve(h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// mediaType is the Content-Type without parameters ("" when unparsable).
func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}

// readAsset reads an asset from disk or fails the test.
func readAsset(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(path.Join("assets", name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

// assetNames lists the files under assets/ (slash-separated, sorted).
func assetNames(t *testing.T) []string {
	t.Helper()
	var names []string
	err := fs.WalkDir(os.DirFS("assets"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		t.Fatalf("walk assets: %v", err)
	}
	if len(names) == 0 {
		t.Fatal("assets/ holds no files")
	}
	slices.Sort(names)
	return names
}

func TestContentSecurityPolicy(t *testing.T) {
	csp := console.ContentSecurityPolicy
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		fields := strings.Fields(d)
		if len(fields) == 0 {
			t.Errorf("CSP %q has an empty directive", csp)
			continue
		}
		if _, dup := directives[fields[0]]; dup {
			t.Errorf("CSP %q repeats directive %s (browsers ignore the second)", csp, fields[0])
		}
		directives[fields[0]] = strings.Join(fields[1:], " ")
	}
	for _, want := range []string{"script-src 'self'", "default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "'wasm-unsafe-eval'", "*", "data:", "blob:", "http:", "https:"} {
		for name, value := range directives {
			if slices.Contains(strings.Fields(value), bad) {
				t.Errorf("CSP directive %s %q allows %s", name, value, bad)
			}
		}
	}
	if got := directives["script-src"]; got != "'self'" {
		t.Errorf("CSP script-src %q, want exactly 'self'", got)
	}
}

func TestHandlerServesAssets(t *testing.T) {
	h := console.Handler()
	cases := []struct {
		target    string
		file      string
		mediaType string
	}{
		{console.Prefix, "index.html", "text/html"},
		{console.Prefix + "index.html", "index.html", "text/html"},
		{console.Prefix + "app.js", "app.js", "text/javascript"},
		{console.Prefix + "api.js", "api.js", "text/javascript"},
		{console.Prefix + "activity.js", "activity.js", "text/javascript"},
		{console.Prefix + "dom.js", "dom.js", "text/javascript"},
		{console.Prefix + "dialogs.js", "dialogs.js", "text/javascript"},
		{console.Prefix + "validate.js", "validate.js", "text/javascript"},
		{console.Prefix + "console.css", "console.css", "text/css"},
		{console.Prefix + "icon.svg", "icon.svg", "image/svg+xml"},
		{console.Prefix + "?tab=keys", "index.html", "text/html"},
	}
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			want := readAsset(t, tc.file)
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				rec := serve(h, method, tc.target, nil)
				label := method + " " + tc.target
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: status %d, want 200 (body %q)", label, rec.Code, rec.Body.String())
				}
				if ct := rec.Header().Get("Content-Type"); mediaType(ct) != tc.mediaType {
					t.Errorf("%s: Content-Type %q, want %s", label, ct, tc.mediaType)
				}
				checkSecurityHeaders(t, label, rec.Header())
				if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
					t.Errorf("%s: Cache-Control %q, want no-cache", label, cc)
				}
				if etag := rec.Header().Get("ETag"); len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
					t.Errorf("%s: ETag %q, want a strong quoted entity tag", label, etag)
				}
				if lm := rec.Header().Get("Last-Modified"); lm != "" {
					t.Errorf("%s: Last-Modified %q; embedded files have no meaningful time", label, lm)
				}
				if cl := rec.Header().Get("Content-Length"); cl != fmt.Sprint(len(want)) {
					t.Errorf("%s: Content-Length %q, want %d", label, cl, len(want))
				}
				switch method {
				case http.MethodGet:
					if !bytes.Equal(rec.Body.Bytes(), want) {
						t.Errorf("%s: body (%d bytes) is not assets/%s (%d bytes)", label, rec.Body.Len(), tc.file, len(want))
					}
				case http.MethodHead:
					if rec.Body.Len() != 0 {
						t.Errorf("%s: HEAD answer has a %d-byte body", label, rec.Body.Len())
					}
				}
			}
		})
	}
}

// TestEveryAssetServed: each file on disk is served as is with a known
// media type, and every served file has its own ETag.
func TestEveryAssetServed(t *testing.T) {
	h := console.Handler()
	etags := map[string]string{}
	for _, name := range assetNames(t) {
		rec := serve(h, http.MethodGet, console.Prefix+name, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("assets/%s: GET %s%s status %d, want 200", name, console.Prefix, name, rec.Code)
			continue
		}
		if !bytes.Equal(rec.Body.Bytes(), readAsset(t, name)) {
			t.Errorf("assets/%s: served body differs from the file on disk", name)
		}
		if ct := rec.Header().Get("Content-Type"); mediaType(ct) == "" || mediaType(ct) == "application/octet-stream" {
			t.Errorf("assets/%s: Content-Type %q; with nosniff a browser will not use it", name, ct)
		}
		etag := rec.Header().Get("ETag")
		if other, dup := etags[etag]; dup {
			t.Errorf("assets/%s and assets/%s share ETag %s", name, other, etag)
		}
		etags[etag] = name
	}
}

func TestHandlerETag(t *testing.T) {
	h := console.Handler()
	for _, name := range assetNames(t) {
		t.Run(name, func(t *testing.T) {
			target := console.Prefix + name
			first := serve(h, http.MethodGet, target, nil)
			etag := first.Header().Get("ETag")
			if first.Code != http.StatusOK || etag == "" {
				t.Fatalf("GET %s: status %d, ETag %q", target, first.Code, etag)
			}
			if again := serve(h, http.MethodGet, target, nil).Header().Get("ETag"); again != etag {
				t.Errorf("ETag changed between two requests: %q then %q", etag, again)
			}
			notModified := []struct {
				method, ifNoneMatch string
			}{
				{http.MethodGet, etag},
				{http.MethodHead, etag},
				{http.MethodGet, "W/" + etag},                 // If-None-Match compares weakly
				{http.MethodGet, `"something-else", ` + etag}, // a list
				{http.MethodGet, "*"},                         // any current representation
			}
			for _, nm := range notModified {
				rec := serve(h, nm.method, target, http.Header{"If-None-Match": {nm.ifNoneMatch}})
				label := fmt.Sprintf("%s %s If-None-Match %s", nm.method, target, nm.ifNoneMatch)
				if rec.Code != http.StatusNotModified {
					t.Errorf("%s: status %d, want 304", label, rec.Code)
				}
				if rec.Body.Len() != 0 {
					t.Errorf("%s: 304 with a %d-byte body %q", label, rec.Body.Len(), rec.Body.String())
				}
				if got := rec.Header().Get("ETag"); got != etag {
					t.Errorf("%s: 304 ETag %q, want %q", label, got, etag)
				}
				if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
					t.Errorf("%s: 304 Cache-Control %q, want no-cache", label, cc)
				}
				checkSecurityHeaders(t, label, rec.Header())
			}
			stale := serve(h, http.MethodGet, target, http.Header{"If-None-Match": {`"stale-version"`}})
			if stale.Code != http.StatusOK || !bytes.Equal(stale.Body.Bytes(), first.Body.Bytes()) {
				t.Errorf("GET %s with a stale If-None-Match: status %d and %d bytes, want 200 and the file", target, stale.Code, stale.Body.Len())
			}
		})
	}
}

func TestHandlerNotFound(t *testing.T) {
	h := console.Handler()
	for _, target := range []string{
		console.Prefix + "missing.js",
		console.Prefix + "assets/app.js",
		console.Prefix + "APP.JS",
		console.Prefix + "index.html/",
		console.Prefix + "app.js/",
		console.Prefix + "../console.go",
		console.Prefix + "%2e%2e/console.go",
		console.Prefix + "sub/",
	} {
		t.Run(target, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				rec := serve(h, method, target, nil)
				label := method + " " + target
				if rec.Code != http.StatusNotFound {
					t.Errorf("%s: status %d, want 404", label, rec.Code)
				}
				if etag := rec.Header().Get("ETag"); etag != "" {
					t.Errorf("%s: 404 carries ETag %q", label, etag)
				}
				checkSecurityHeaders(t, label, rec.Header())
			}
		})
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	h := console.Handler()
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "PROPFIND"} {
		for _, target := range []string{console.Prefix, console.Prefix + "app.js", console.Prefix + "missing"} {
			label := method + " " + target
			rec := serve(h, method, target, nil)
			if rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("%s: status %d, want 405", label, rec.Code)
			}
			if allow := rec.Header().Values("Allow"); !slices.Equal(allow, []string{"GET, HEAD"}) {
				t.Errorf("%s: Allow %q, want [\"GET, HEAD\"]", label, allow)
			}
			if bytes.Contains(rec.Body.Bytes(), []byte("<html")) || bytes.Contains(rec.Body.Bytes(), []byte("import ")) {
				t.Errorf("%s: 405 body leaks a file: %q", label, rec.Body.String())
			}
			checkSecurityHeaders(t, label, rec.Header())
		}
	}
}

func TestHandlerOutsidePrefixRedirects(t *testing.T) {
	h := console.Handler()
	for _, target := range []string{"/console", "/consolex"} {
		rec := serve(h, http.MethodGet, target, nil)
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != console.Prefix {
			t.Errorf("GET %s: status %d Location %q, want 301 to %s", target, rec.Code, rec.Header().Get("Location"), console.Prefix)
		}
		checkSecurityHeaders(t, "GET "+target, rec.Header())
	}
}

// --- Static checks over the files -------------------------------------------

// lineOf is the 1-based line of byte offset i in s.
func lineOf(s string, i int) int { return strings.Count(s[:i], "\n") + 1 }

// excerpt is the text around [i, j) on its line, for failure messages.
func excerpt(s string, i, j int) string {
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := j + strings.IndexByte(s[j:], '\n')
	if end < j {
		end = len(s)
	}
	line := strings.TrimSpace(s[start:end])
	if len(line) > 160 {
		line = line[:160] + "…"
	}
	return line
}

// blankMatches replaces every match of re with spaces, keeping newlines, so
// offsets and line numbers stay valid.
func blankMatches(s string, re *regexp.Regexp) string {
	return re.ReplaceAllStringFunc(s, func(m string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' {
				return r
			}
			return ' '
		}, m)
	})
}

var (
	htmlComment = regexp.MustCompile(`(?s)<!--.*?-->`)
	// A start tag with its attributes (double-, single- or un-quoted).
	tagRE   = regexp.MustCompile(`<([A-Za-z][A-Za-z0-9:-]*)((?:\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>` + "`" + `]+))?)*)\s*/?>`)
	attrRE  = regexp.MustCompile(`([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>` + "`" + `]+)))?`)
	tagOpen = regexp.MustCompile(`<[A-Za-z]`)
	// The brief's raw patterns, as a second net under the tag parser.
	rawEventHandler = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	rawStyleAttr    = regexp.MustCompile(`(?i)\sstyle\s*=`)
	scriptEnd       = regexp.MustCompile(`(?i)</script\s*>`)
	// A URL that leaves the origin (or is not a plain path): a scheme,
	// protocol-relative //, or a backslash browsers read as a slash.
	foreignURL = regexp.MustCompile(`(?i)^\s*(?:[a-z][a-z0-9+.\-]*:|//|\\|/\\)`)
)

// urlAttrs are the attributes through which markup makes a browser fetch
// or navigate.
var urlAttrs = map[string]bool{
	"src": true, "href": true, "xlink:href": true, "action": true, "formaction": true,
	"srcset": true, "imagesrcset": true, "poster": true, "data": true, "cite": true,
	"background": true, "manifest": true, "ping": true, "longdesc": true, "codebase": true,
}

type attr struct{ name, value string }

type tag struct {
	name       string
	attrs      []attr
	start, end int
}

func (t tag) get(name string) (string, bool) {
	for _, a := range t.attrs {
		if a.name == name {
			return a.value, true
		}
	}
	return "", false
}

// parseTags finds the start tags of a markup file (comments blanked) and
// fails when a '<' that opens a tag does not parse, so no tag escapes the
// checks.
func parseTags(t *testing.T, file, src string) []tag {
	t.Helper()
	var tags []tag
	parsed := map[int]bool{}
	for _, m := range tagRE.FindAllStringSubmatchIndex(src, -1) {
		tg := tag{name: strings.ToLower(src[m[2]:m[3]]), start: m[0], end: m[1]}
		for _, a := range attrRE.FindAllStringSubmatch(src[m[4]:m[5]], -1) {
			tg.attrs = append(tg.attrs, attr{name: strings.ToLower(a[1]), value: a[2] + a[3] + a[4]})
		}
		tags = append(tags, tg)
		parsed[m[0]] = true
	}
	for _, m := range tagOpen.FindAllStringIndex(src, -1) {
		if !parsed[m[0]] {
			t.Errorf("%s line %d: cannot parse the tag in %q; the checks would not see it", file, lineOf(src, m[0]), excerpt(src, m[0], m[1]))
		}
	}
	return tags
}

// checkMarkup applies the CSP rules to an HTML or SVG file: no inline
// script, no event-handler or style attribute, no <style>/<base>, and no URL
// attribute pointing outside the origin. It returns the parsed tags.
func checkMarkup(t *testing.T, file, raw string) []tag {
	t.Helper()
	src := blankMatches(raw, htmlComment)
	tags := parseTags(t, file, src)
	for _, tg := range tags {
		at := fmt.Sprintf("%s line %d: %s", file, lineOf(src, tg.start), excerpt(src, tg.start, tg.end))
		for _, a := range tg.attrs {
			switch {
			case strings.HasPrefix(a.name, "on"):
				t.Errorf("%s: inline event handler %s=%q; the CSP blocks it, use addEventListener in a module", at, a.name, a.value)
			case a.name == "style":
				t.Errorf("%s: style=%q attribute; the CSP blocks inline style, use a class in console.css", at, a.value)
			case urlAttrs[a.name] && foreignURL.MatchString(a.value):
				t.Errorf("%s: %s=%q is not a relative URL; the console loads nothing from another origin", at, a.name, a.value)
			}
		}
		switch tg.name {
		case "script":
			if ref, ok := tg.get("src"); !ok || strings.TrimSpace(ref) == "" {
				t.Errorf("%s: <script> without src; the CSP allows only script files", at)
			}
			if end := scriptEnd.FindStringIndex(src[tg.end:]); end == nil {
				t.Errorf("%s: <script> is never closed", at)
			} else if body := src[tg.end : tg.end+end[0]]; strings.TrimSpace(body) != "" {
				t.Errorf("%s: inline script %q", at, strings.TrimSpace(body))
			}
		case "style":
			t.Errorf("%s: inline <style>; the CSP blocks it, use console.css", at)
		case "base":
			t.Errorf("%s: <base> element; the CSP has base-uri 'none'", at)
		}
	}
	for _, check := range []struct {
		re   *regexp.Regexp
		what string
	}{
		{rawEventHandler, "an on…= event-handler attribute"},
		{rawStyleAttr, "a style= attribute"},
	} {
		for _, m := range check.re.FindAllStringIndex(src, -1) {
			t.Errorf("%s line %d: %s in %q", file, lineOf(src, m[0]), check.what, excerpt(src, m[0], m[1]))
		}
	}
	return tags
}

func TestIndexHTMLStatic(t *testing.T) {
	const file = "index.html"
	raw := string(readAsset(t, file))
	tags := checkMarkup(t, file, raw)

	onDisk := assetNames(t)
	var scripts, styles int
	for _, tg := range tags {
		at := fmt.Sprintf("%s line %d", file, lineOf(raw, tg.start))
		for _, a := range tg.attrs {
			if (a.name != "src" && a.name != "href") || strings.HasPrefix(a.value, "#") || foreignURL.MatchString(a.value) {
				continue
			}
			// Relative references must name a file the handler serves.
			ref := a.value
			if i := strings.IndexAny(ref, "?#"); i >= 0 {
				ref = ref[:i]
			}
			if !slices.Contains(onDisk, path.Clean(ref)) {
				t.Errorf("%s: %s=%q names no file in assets/", at, a.name, a.value)
			}
		}
		if tg.name == "script" {
			scripts++
			if typ, _ := tg.get("type"); typ != "module" {
				t.Errorf("%s: <script type=%q>, want type=\"module\"", at, typ)
			}
		}
		if rel, _ := tg.get("rel"); tg.name == "link" && rel == "stylesheet" {
			styles++
		}
	}
	if scripts == 0 || styles == 0 {
		t.Errorf("%s: %d script and %d stylesheet tags found; the parser missed them", file, scripts, styles)
	}
	for _, m := range regexp.MustCompile(`(?i)https?://`).FindAllStringIndex(raw, -1) {
		t.Errorf("%s line %d: absolute URL in %q", file, lineOf(raw, m[0]), excerpt(raw, m[0], m[1]))
	}
}

func TestSVGStatic(t *testing.T) {
	for _, name := range assetNames(t) {
		if path.Ext(name) != ".svg" {
			continue
		}
		raw := string(readAsset(t, name))
		for _, tg := range checkMarkup(t, name, raw) {
			if tg.name == "script" || tg.name == "foreignobject" {
				t.Errorf("%s line %d: <%s> in an image", name, lineOf(raw, tg.start), tg.name)
			}
		}
	}
}

func TestCSSStatic(t *testing.T) {
	cssURL := regexp.MustCompile(`(?i)url\(\s*(?:"([^"]*)"|'([^']*)'|([^)]*))\s*\)`)
	cssImport := regexp.MustCompile(`(?i)@import\s+(?:url\()?\s*["']?([^"');\s]*)`)
	for _, name := range assetNames(t) {
		if path.Ext(name) != ".css" {
			continue
		}
		src := string(readAsset(t, name))
		for _, m := range cssURL.FindAllStringSubmatchIndex(src, -1) {
			u := ""
			for g := 2; g < 8; g += 2 {
				if m[g] >= 0 {
					u = src[m[g]:m[g+1]]
				}
			}
			if foreignURL.MatchString(u) {
				t.Errorf("%s line %d: url(%s) is not relative: %q", name, lineOf(src, m[0]), u, excerpt(src, m[0], m[1]))
			}
		}
		for _, m := range cssImport.FindAllStringSubmatchIndex(src, -1) {
			if u := src[m[2]:m[3]]; foreignURL.MatchString(u) {
				t.Errorf("%s line %d: @import of %q is not relative: %q", name, lineOf(src, m[0]), u, excerpt(src, m[0], m[1]))
			}
		}
	}
}

// forbiddenJS are script APIs that parse a string as markup or code. The
// console renders every value as text, so none of them has a use there.
var forbiddenJS = []struct {
	re   *regexp.Regexp
	what string
}{
	{regexp.MustCompile(`\binnerHTML\b`), "innerHTML"},
	{regexp.MustCompile(`\bouterHTML\b`), "outerHTML"},
	{regexp.MustCompile(`\binsertAdjacentHTML\b`), "insertAdjacentHTML"},
	{regexp.MustCompile(`\bdocument\s*\.\s*write(?:ln)?\b`), "document.write"},
	{regexp.MustCompile(`\beval\s*\(`), "eval("},
	// One match per use: "new Function(" or a bare "Function(" call.
	{regexp.MustCompile(`\bnew\s+Function\b|(?:^|[^.\w$])Function\s*\(`), "new Function / Function("},
	{regexp.MustCompile(`\b(?:setTimeout|setInterval)\s*\(\s*["'` + "`" + `]`), "a timer with a code string"},
	{regexp.MustCompile(`\bcreateContextualFragment\b`), "createContextualFragment"},
	{regexp.MustCompile(`\bsrcdoc\b`), "srcdoc"},
	{regexp.MustCompile(`\b(?:setHTMLUnsafe|parseHTMLUnsafe)\b`), "setHTMLUnsafe/parseHTMLUnsafe"},
	{regexp.MustCompile(`(?i)https?://`), "an absolute URL (connect-src is 'self')"},
}

var jsImport = regexp.MustCompile(`(?m)(?:^|[;\s])(?:import|export)\b[^;"'` + "`" + `]*?\bfrom\s*["']([^"']*)["']|\bimport\s*\(\s*["']([^"']*)["']|(?m)^\s*import\s*["']([^"']*)["']`)

func TestScriptsStatic(t *testing.T) {
	onDisk := assetNames(t)
	var seen int
	for _, name := range onDisk {
		if path.Ext(name) != ".js" && path.Ext(name) != ".mjs" {
			continue
		}
		seen++
		raw := string(readAsset(t, name))
		code, err := stripJSComments(raw)
		if err != nil {
			t.Errorf("%s: %v; cannot check it", name, err)
			continue
		}
		for _, f := range forbiddenJS {
			for _, m := range f.re.FindAllStringIndex(code, -1) {
				t.Errorf("%s line %d: uses %s: %q", name, lineOf(code, m[0]), f.what, excerpt(raw, m[0], m[1]))
			}
		}
		// Module imports stay inside the console: relative, existing files.
		for _, m := range jsImport.FindAllStringSubmatch(code, -1) {
			spec := m[1] + m[2] + m[3]
			if !strings.HasPrefix(spec, "./") || !slices.Contains(onDisk, path.Clean(path.Join(path.Dir(name), spec))) {
				t.Errorf("%s: import %q is not a relative path to a file in assets/", name, spec)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no .js file in assets/")
	}
}

// stripJSComments returns src with every comment turned into spaces (line
// breaks kept, so offsets and lines stay put), leaving code, strings,
// template literals and regular-expression literals as they are. It is a
// lexer just good enough for the console's own scripts: anything it cannot
// follow is an error, never a silently skipped stretch of code.
func stripJSComments(src string) (string, error) {
	const (
		code = iota
		lineComment
		blockComment
		singleQuoted
		doubleQuoted
		template
		regexLit
		regexClass
	)
	out := []byte(src)
	blank := func(i int) {
		if out[i] != '\n' {
			out[i] = ' '
		}
	}
	isIdent := func(c byte) bool {
		return c == '_' || c == '$' || c >= 0x80 || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	// A '/' starts a regular expression where an operand is expected.
	regexAfterWord := map[string]bool{
		"return": true, "typeof": true, "instanceof": true, "in": true, "of": true, "new": true,
		"delete": true, "void": true, "throw": true, "case": true, "do": true, "else": true,
		"yield": true, "await": true,
	}
	state := code
	var (
		braces []int  // open template substitutions ${…}: nesting depth of { inside each
		prev   byte   // last significant byte of code, 0 at the start
		word   string // identifier or keyword that ends at prev, if any
		start  int    // where the current comment or literal began
	)
	names := map[int]string{blockComment: "block comment", singleQuoted: "string", doubleQuoted: "string",
		template: "template literal", regexLit: "regular expression", regexClass: "regular expression"}
	unterminated := func() error {
		return fmt.Errorf("unterminated %s starting at line %d", names[state], lineOf(src, start))
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		var next byte
		if i+1 < len(src) {
			next = src[i+1]
		}
		switch state {
		case code:
			switch {
			case c == '/' && next == '/':
				state, start = lineComment, i
				blank(i)
			case c == '/' && next == '*':
				state, start = blockComment, i
				blank(i)
				blank(i + 1)
				i++
			case c == '/' && (word != "" && regexAfterWord[word] || word == "" && (prev == 0 || strings.IndexByte("(,=:[!&|?{};+-*%<>~^", prev) >= 0)):
				state, start = regexLit, i
			case c == '\'':
				state, start = singleQuoted, i
			case c == '"':
				state, start = doubleQuoted, i
			case c == '`':
				state, start = template, i
			case c == '}' && len(braces) > 0 && braces[len(braces)-1] == 0:
				braces = braces[:len(braces)-1]
				state = template
			case c == ' ' || c == '\t' || c == '\n' || c == '\r':
				// keeps prev and word
			case isIdent(c):
				j := i
				for j < len(src) && isIdent(src[j]) {
					j++
				}
				word, prev = src[i:j], src[j-1]
				i = j - 1
			default:
				if c == '{' && len(braces) > 0 {
					braces[len(braces)-1]++
				}
				if c == '}' && len(braces) > 0 {
					braces[len(braces)-1]--
				}
				prev, word = c, ""
			}
		case lineComment:
			if c == '\n' {
				state = code
			} else {
				blank(i)
			}
		case blockComment:
			blank(i)
			if c == '*' && next == '/' {
				blank(i + 1)
				i++
				state = code
			}
		case singleQuoted, doubleQuoted:
			switch {
			case c == '\\':
				i++
			case c == '\n':
				return "", unterminated()
			case c == '\'' && state == singleQuoted, c == '"' && state == doubleQuoted:
				state, prev, word = code, c, ""
			}
		case template:
			switch {
			case c == '\\':
				i++
			case c == '`':
				state, prev, word = code, c, ""
			case c == '$' && next == '{':
				braces = append(braces, 0)
				state, prev, word = code, '{', ""
				i++
			}
		case regexLit:
			switch c {
			case '\\':
				i++
			case '[':
				state = regexClass
			case '\n':
				return "", unterminated()
			case '/':
				state, prev, word = code, c, ""
			}
		case regexClass:
			switch c {
			case '\\':
				i++
			case ']':
				state = regexLit
			case '\n':
				return "", unterminated()
			}
		}
	}
	switch {
	case state != code && state != lineComment:
		return "", unterminated()
	case len(braces) > 0:
		return "", errors.New("unterminated ${ in a template literal")
	}
	return string(out), nil
}

func TestStripJSComments(t *testing.T) {
	cases := []struct {
		name, in, want string
		err            bool
	}{
		{"line comment", "a = 1; // innerHTML\nb", "a = 1; " + strings.Repeat(" ", len("// innerHTML")) + "\nb", false},
		{"block comment", "a /* eval(x)\n */ b", "a           \n    b", false},
		{"comment opener in a string", `s = "// not a comment"; t = '/* nor this */'`, `s = "// not a comment"; t = '/* nor this */'`, false},
		{"escaped quote", `s = "a\"// x"; // y`, `s = "a\"// x";     `, false},
		{"regex with slashes", `r = /\/\/[/*]/.test(s); // c`, `r = /\/\/[/*]/.test(s);     `, false},
		{"regex after return", "return /'/g // c", "return /'/g     ", false},
		{"division", "x = a / b / c // c", "x = a / b / c     ", false},
		{"division after call", "x = f(a) / 2; y = 'z' // q", "x = f(a) / 2; y = 'z'     ", false},
		{"template with substitution", "t = `a ${ {k: \"}\"}.k + `in${1}` } // b` // c", "t = `a ${ {k: \"}\"}.k + `in${1}` } // b`     ", false},
		{"identifier ending in a keyword", "returned / 2 // c", "returned / 2     ", false},
		{"unterminated string", "s = 'abc\n", "", true},
		{"unterminated block comment", "/* abc", "", true},
		{"unterminated template", "`abc ${x", "", true},
		{"regex across lines", "x = (/abc\n/)", "", true},
	}
	for _, tc := range cases {
		got, err := stripJSComments(tc.in)
		switch {
		case tc.err && err == nil:
			t.Errorf("%s: stripJSComments(%q) = %q, want an error", tc.name, tc.in, got)
		case !tc.err && err != nil:
			t.Errorf("%s: stripJSComments(%q): %v", tc.name, tc.in, err)
		case !tc.err && got != tc.want:
			t.Errorf("%s: stripJSComments(%q)\n got %q\nwant %q", tc.name, tc.in, got, tc.want)
		}
	}
}
