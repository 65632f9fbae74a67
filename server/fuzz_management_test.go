package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/keygate/keygate/server/servertest"
)

// FuzzManagementBody sends fuzzed bodies to the two management routes that
// decode one (create a key: decodeJSON; change a key: readKeyPatch) of a
// keygate on the memory store. A refused body gets a problem+json 4xx and
// leaves the team's keys exactly as they were; an accepted body is one
// JSON object that decodes and re-encodes, and the answer is JSON.
func FuzzManagementBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"fuzz","permissions":["accounting_api"]}`,
		`{"name":"renamed"}`,
		`{"permissions":["accounting_api"],"grant_operator_permissions":false}`,
		`{"name":null}`, `{"name":5}`, `null`, `[]`, `{}`, ``, `{"name":"x"`,
		`{"name":"x"} {"name":"y"}`, "{\"name\":\"x\xff\"}", `{"team_id":"globex"}`,
		`{"name":"\ud800"}`, `{"name":"a","name":"b"}`,
		`{"name":"renamed"}}`, `{"name":"renamed"}]]]xyz`, // known: issue #14 item 7, skipped until branch strict
	} {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	e := servertest.StartWith(f, servertest.Config{Backend: servertest.Memory()})
	admin := e.AdminToken(f)
	k := e.CreateKeyWith(f, admin, "acme", "fuzzed", "accounting_api")
	snapshot := func(t *testing.T) []byte {
		r := e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("list keys: %s", r)
		}
		return r.Body
	}
	f.Fuzz(func(t *testing.T, patch bool, body []byte) {
		before := snapshot(t)
		req := e.NewRequest(t, http.MethodPost, "/v1/teams/acme/keys", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if patch {
			req = e.NewRequest(t, http.MethodPatch, "/v1/teams/acme/keys/"+k.ClientID, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/merge-patch+json")
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		r := e.Do(t, req)
		switch {
		case r.Status >= 500:
			t.Fatalf("server error for %q: %s", body, r)
		case r.Status >= 400:
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("refusal of %q is %q, not problem+json: %s", body, ct, r)
			}
			if after := snapshot(t); !bytes.Equal(before, after) {
				t.Fatalf("refused body %q (%d) changed the keys:\nbefore %s\nafter  %s", body, r.Status, before, after)
			}
			return
		}
		if !json.Valid(r.Body) {
			t.Fatalf("answer to %q is not JSON: %s", body, r)
		}
		if !patch {
			var created struct {
				ClientID string `json:"client_id"`
			}
			if json.Unmarshal(r.Body, &created) != nil || created.ClientID == "" {
				t.Fatalf("201 without a client_id: %s", r)
			}
			// Keep the team under its key limit for the next inputs.
			if d := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+created.ClientID, nil); d.Status >= 300 {
				t.Fatalf("delete: %s", d)
			}
		}
		var v map[string]any
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON (data after the value?): %q", body)
		}
		if err := json.Unmarshal(body, &v); err != nil || v == nil {
			t.Fatalf("accepted %q, which is not one JSON object: %v", body, err)
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("accepted %q, which does not re-encode: %v", body, err)
		}
	})
}
