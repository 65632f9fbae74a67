package server_test

// Strict input (issue #14, item 7): a management request body is exactly
// one JSON object, with no member twice, member names matched exactly, no
// lone surrogate, and errors in JSON's words. Each hostile body gets its
// exact answer and changes nothing; the nearest legitimate body still works.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

func TestStrictJSONBodiesChangeNothing(t *testing.T) {
	e := newClockEnv(t)
	k := e.CreateKey(t, "acme", "Production sync", permAccounting)
	admin := e.AdminToken(t)
	e.AssertLastUsedStored(t, e.AdminID)

	const (
		jsonCT  = "application/json"
		prefix  = "the body is not the expected JSON object: "
		surr    = "a string has a lone UTF-16 surrogate escape at byte %d; escape a character outside the Basic Multilingual Plane as a surrogate pair (RFC 8259 §7)"
		createF = `; allowed fields are "name", "permissions", "grant_operator_permissions", "token_quota", "expires_at", "disabled", "token_ttl", "audiences", "allowed_cidrs", "metadata"`
		patchF  = `; a key's patch may hold "name", "permissions", "grant_operator_permissions", "token_quota", "expires_at", "disabled", "token_ttl", "audiences", "allowed_cidrs", "metadata"`
	)
	create, rotate, update := "/v1/teams/acme/keys", rotatePath("acme", k.ClientID), keyPath("acme", k.ClientID)
	for _, c := range []struct {
		name, method, path, ctype, body, detail string
	}{
		// Trailing data after a complete object.
		{"create: a closing brace after the object", http.MethodPost, create, jsonCT, `{"name":"x","permissions":["accounting_api"]}}`,
			prefix + "the body must hold exactly one JSON object, with nothing after it (byte 46 on)"},
		{"create: brackets and text after the object", http.MethodPost, create, jsonCT, `{"name":"x","permissions":["accounting_api"]}]]]xyz`,
			prefix + "the body must hold exactly one JSON object, with nothing after it (byte 46 on)"},
		{"create: a second object", http.MethodPost, create, jsonCT, `{"name":"x","permissions":["accounting_api"]} {}`,
			prefix + "the body must hold exactly one JSON object, with nothing after it (byte 47 on)"},
		{"rotate: a closing brace after the object", http.MethodPost, rotate, jsonCT, `{"grace_period":"1h"}}`,
			prefix + "the body must hold exactly one JSON object, with nothing after it (byte 22 on)"},
		{"patch: text after the object", http.MethodPatch, update, mergePatch, `{"name":"x"}xyz`,
			prefix + "the body must hold exactly one JSON object, with nothing after it (byte 13 on)"},
		// Not an object at all.
		{"rotate: null", http.MethodPost, rotate, jsonCT, `null`, prefix + "the body must be a JSON object, not null"},
		{"create: null", http.MethodPost, create, jsonCT, `null`, prefix + "the body must be a JSON object, not null"},
		{"patch: null", http.MethodPatch, update, mergePatch, ` null `, prefix + "the body must be a JSON object, not null"},
		{"create: a string", http.MethodPost, create, jsonCT, `"x"`, prefix + "the body must be a JSON object, not a JSON string"},
		{"rotate: a number", http.MethodPost, rotate, jsonCT, `24`, prefix + "the body must be a JSON object, not a JSON number"},
		{"rotate: an array", http.MethodPost, rotate, jsonCT, `["24h"]`, prefix + "the body must be a JSON object, not a JSON array"},
		{"create: cut short", http.MethodPost, create, jsonCT, `{"name":`, prefix + "the body ends before the JSON object does"},
		// Duplicate members: encoding/json would keep the last.
		{"create: name twice", http.MethodPost, create, jsonCT, `{"name":"shown","permissions":["accounting_api"],"name":"stored"}`,
			prefix + `member "name" appears twice in an object; give each member once`},
		{"rotate: grace_period twice", http.MethodPost, rotate, jsonCT, `{"grace_period":"168h","grace_period":"0s"}`,
			prefix + `member "grace_period" appears twice in an object; give each member once`},
		{"patch: permissions twice", http.MethodPatch, update, mergePatch, `{"permissions":["accounting_api"],"permissions":["visualization_sdk"]}`,
			prefix + `member "permissions" appears twice in an object; give each member once`},
		{"patch: a duplicate inside a nested object", http.MethodPatch, update, mergePatch, `{"name":{"a":1,"a":2}}`,
			prefix + `member "a" appears twice in an object; give each member once`},
		// Names matched exactly.
		{"create: upper-case field", http.MethodPost, create, jsonCT, `{"name":"x","permissions":["token_introspection"],"GRANT_OPERATOR_PERMISSIONS":true}`,
			prefix + `unknown field "GRANT_OPERATOR_PERMISSIONS"` + createF},
		{"create: capitalised name", http.MethodPost, create, jsonCT, `{"Name":"x","permissions":["accounting_api"]}`,
			prefix + `unknown field "Name"` + createF},
		{"rotate: upper-case field", http.MethodPost, rotate, jsonCT, `{"GRACE_PERIOD":"0s"}`,
			`unknown field "GRACE_PERIOD"; the only field allowed is "grace_period" (or send no body for the default of 24h)`},
		{"patch: upper-case field", http.MethodPatch, update, mergePatch, `{"NAME":"x"}`, `unknown field "NAME"` + patchF},
		// Lone surrogates: encoding/json would store U+FFFD.
		{"create: lone high surrogate", http.MethodPost, create, jsonCT, `{"name":"a\ud800b","permissions":["accounting_api"]}`, prefix + fmt.Sprintf(surr, 11)},
		{"create: lone low surrogate", http.MethodPost, create, jsonCT, `{"name":"\udc00","permissions":["accounting_api"]}`, prefix + fmt.Sprintf(surr, 10)},
		{"create: reversed pair", http.MethodPost, create, jsonCT, `{"name":"\ude00\ud83d","permissions":["accounting_api"]}`, prefix + fmt.Sprintf(surr, 10)},
		{"create: high surrogate then a letter escape", http.MethodPost, create, jsonCT, `{"name":"\ud83d\u0041","permissions":["accounting_api"]}`, prefix + fmt.Sprintf(surr, 10)},
		{"patch: lone surrogate at the end", http.MethodPatch, update, mergePatch, `{"name":"x\uD800"}`, prefix + fmt.Sprintf(surr, 11)},
		{"rotate: lone surrogate", http.MethodPost, rotate, jsonCT, `{"grace_period":"1h\udfff"}`, prefix + fmt.Sprintf(surr, 20)},
		// Wrong types in JSON's words, never Go's.
		{"create: name a number", http.MethodPost, create, jsonCT, `{"name":7,"permissions":["accounting_api"]}`, prefix + `field "name" must be a string`},
		{"create: permissions a string", http.MethodPost, create, jsonCT, `{"name":"x","permissions":"accounting_api"}`, prefix + `field "permissions" must be an array of strings`},
		{"create: permissions of numbers", http.MethodPost, create, jsonCT, `{"name":"x","permissions":[1]}`, prefix + `field "permissions" must be an array of strings`},
		{"create: consent a string", http.MethodPost, create, jsonCT, `{"name":"x","permissions":["accounting_api"],"grant_operator_permissions":"yes"}`,
			prefix + `field "grant_operator_permissions" must be true or false`},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.fullSnapshot(t)
			r := e.rawRequest(t, admin, c.method, c.path, c.ctype, c.body)
			if p := checkProblem(t, r, http.StatusBadRequest); p.Detail != c.detail {
				t.Errorf("detail\n got: %s\nwant: %s", p.Detail, c.detail)
			}
			for _, goType := range []string{"*string", "[]string", "bool", "map["} {
				if bytes.Contains(r.Body, []byte(goType)) {
					t.Errorf("the answer names a Go type (%s): %s", goType, r.Body)
				}
			}
			e.assertFullyUnchanged(t, before)
		})
	}

	// The legitimate neighbours still work: a surrogate pair, an escaped
	// backslash before "ud800", white space after the object.
	for body, want := range map[string]string{
		`{"name":"smile \ud83d\ude00","permissions":["accounting_api"]}` + " \n": "smile \U0001F600",
		`{"name":"\\ud800","permissions":["accounting_api"]}`:                    `\ud800`,
	} {
		r := e.rawRequest(t, admin, http.MethodPost, create, jsonCT, body)
		if r.Status != http.StatusCreated {
			t.Fatalf("create %s: %s", body, r)
		}
		var got struct{ Name string }
		if err := json.Unmarshal(r.Body, &got); err != nil || got.Name != want {
			t.Fatalf("create %s: name %q (%v), want %q", body, got.Name, err, want)
		}
	}
	if r := e.rawRequest(t, admin, http.MethodPost, rotate, jsonCT, `{"grace_period":"1h"}`+"\r\n"); r.Status != http.StatusOK {
		t.Fatalf("rotate with trailing white space: %s", r)
	}
}
