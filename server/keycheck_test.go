package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// TestKeyOutsideCatalog: a start whose catalog lost a stored key's
// permission is not refused (that check walked every key before the first
// request); the key gets invalid_client saying why, changes nothing in the
// store, is logged once however often it asks, and the background walk
// reports it, at every start until the permission is back. Another key of
// the same team is served.
func TestKeyOutsideCatalog(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e := startEnv(t, servertest.Config{Backend: b})
		admin := e.AdminToken(t)
		gone := e.CreateKeyWith(t, admin, "acme", "charts", permVisualization)
		kept := e.CreateKeyWith(t, admin, "acme", "books", permAccounting)

		def := scopes.Default()
		var perms []scopes.Permission
		for _, p := range def.Offered() {
			if p.ID != permVisualization {
				perms = append(perms, p)
			}
		}
		catalog, err := scopes.New(perms)
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		e2 := e.second(t, server.Options{Catalog: catalog, Logger: slog.New(slog.NewTextHandler(logs, nil))})

		before := e2.Snapshot(t)
		for range 3 {
			r := e2.TokenRequest(t, gone.ClientID, gone.ClientSecret, url.Values{"grant_type": {"client_credentials"}})
			var body map[string]string
			_ = json.Unmarshal(r.Body, &body)
			if r.Status != http.StatusUnauthorized || body["error"] != "invalid_client" ||
				!strings.Contains(body["error_description"], "permission catalog no longer has") {
				t.Fatalf("token for a key whose permission left the catalog: %s", r)
			}
		}
		e2.AssertUnchanged(t, before)
		if r := e2.TokenRequest(t, kept.ClientID, kept.ClientSecret, url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusOK {
			t.Fatalf("token for a key of the same team with catalog permissions: %s", r)
		}

		report, err := e2.Server.KeyCheck()
		if err != nil {
			t.Fatal(err)
		}
		if report.OutsideCatalogCount != 1 || len(report.OutsideCatalog) != 1 || report.OutsideCatalog[0] != gone.ClientID {
			t.Errorf("walk report %+v, want exactly %s outside the catalog", report, gone.ClientID)
		}
		if n := bytes.Count([]byte(logs.String()), []byte("permission="+permVisualization)); n != 1 {
			t.Errorf("the permission is named in %d log lines, want 1:\n%s", n, logs)
		}
		if !strings.Contains(logs.String(), "client_id="+gone.ClientID) {
			t.Errorf("the log does not name the key:\n%s", logs)
		}

		// While a key is outside the catalog no walk records the catalog as
		// checked (apikey's keycheck.go): every start reports it again. A
		// start with the permission back is a start with the catalog the
		// first start's walk found every key inside: it walks nothing.
		e3 := e.second(t, server.Options{Catalog: catalog})
		if r, err := e3.Server.KeyCheck(); err != nil || r.UpToDate || r.OutsideCatalogCount != 1 {
			t.Errorf("the next start's check: %+v, %v; want the key reported again", r, err)
		}
		e4 := e.second(t, server.Options{})
		if r, err := e4.Server.KeyCheck(); err != nil || !r.UpToDate || r.Keys != 0 {
			t.Errorf("a start with the permission back: %+v, %v; want no walk", r, err)
		}
	})
}
