// Package openapi is keygate's OpenAPI 3.1 description of its HTTP API (the
// OAuth endpoints, discovery, health checks and the management API),
// embedded in the binary and served by package server at Path.
//
// openapi.json is the one source: edit it, not a copy. The tests in this
// directory validate it against the OpenAPI 3.1 schema and every example
// against its schema; server/openapi_test.go holds it to the routes the
// server mounts and to real answers of a running keygate.
package openapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"time"
)

// Path is where keygate serves the document.
const Path = "/openapi.json"

// cacheControl: the document changes only with the binary, so clients may
// keep it as long as the RFC 8414 metadata (server/discovery.go) and
// revalidate with the ETag afterwards.
const cacheControl = "public, max-age=3600"

//go:embed openapi.json
var document []byte

// etag is the document's strong entity tag, computed once.
var etag = func() string {
	sum := sha256.Sum256(document)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}()

// Document returns a copy of the document.
func Document() []byte { return bytes.Clone(document) }

// Handler serves the document as application/json with an ETag. The
// conditional-request rules (If-None-Match → 304 without a body, HEAD) are
// net/http's ServeContent, as for the console's assets.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", cacheControl)
		h.Set("ETag", etag)
		h.Set("Content-Type", "application/json")
		http.ServeContent(w, r, Path, time.Time{}, bytes.NewReader(document))
	})
}
