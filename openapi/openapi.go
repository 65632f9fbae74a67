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
	"strings"
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

// Handler serves the document as application/json with an ETag; a request
// whose If-None-Match lists that tag gets 304 and no body.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", cacheControl)
		h.Set("ETag", etag)
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(document)
		}
	})
}

// etagMatch is If-None-Match's weak comparison (RFC 9110 §13.1.2) against
// one strong ETag: "*" or any listed tag equal to it, W/ ignored.
func etagMatch(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}
