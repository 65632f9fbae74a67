package server

import (
	"errors"
	"testing"
)

// TestCheckStrictJSON: the checker's edges, where a scan of escapes or
// a walk of tokens could miscount.
func TestCheckStrictJSON(t *testing.T) {
	fields := []string{"a", "b"}
	for body, want := range map[string]string{
		`{}`:                       "",
		` {"a":1} ` + "\r\n\t":     "",
		`{"a":"\ud83d\ude00"}`:     "",
		`{"a":"\\ud800"}`:          "",
		`{"a":"\\\\ud800"}`:        "",
		`{"a":"\"\ud83d\udc4d\""}`: "",
		`{"a":{"a":1,"b":[{"a":1},{"a":2}]},"b":[]}`: "",
		`{"a":"\\\ud800"}`:                           "a string has a lone UTF-16 surrogate escape at byte 9; escape a character outside the Basic Multilingual Plane as a surrogate pair (RFC 8259 §7)",
		`{"a":"\ud800\ud800"}`:                       "a string has a lone UTF-16 surrogate escape at byte 7; escape a character outside the Basic Multilingual Plane as a surrogate pair (RFC 8259 §7)",
		`{"a":"x","b":"\udbff"}`:                     "a string has a lone UTF-16 surrogate escape at byte 15; escape a character outside the Basic Multilingual Plane as a surrogate pair (RFC 8259 §7)",
		`{"a":{"b":1},"a":2}`:                        `member "a" appears twice in an object; give each member once`,
		`{"a":[{"c":1,"c":1}]}`:                      `member "c" appears twice in an object; give each member once`,
		`{"a":{"x":1},"b":{"x":1}}`:                  "",
		`{"a":1}{}`:                                  "the body must hold exactly one JSON object, with nothing after it (byte 8 on)",
		`{"a":1} x`:                                  "the body must hold exactly one JSON object, with nothing after it (byte 9 on)",
		`[]`:                                         "the body must be a JSON object, not a JSON array",
		`true`:                                       "the body must be a JSON object, not true or false",
		`{"a":`:                                      "the body ends before the JSON object does",
		`{"a" 1}`:                                    "syntax error near byte 6",
		`{"a":1,}`:                                   "syntax error near byte 8",
		"":                                           "the body is empty",
		"  ":                                         "the body is empty",
	} {
		got := ""
		if err := checkStrictJSON([]byte(body), fields); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("%s:\n got: %s\nwant: %s", body, got, want)
		}
	}
	var unknown *unknownFieldError
	if err := checkStrictJSON([]byte(`{"a":1,"A":2}`), fields); !errors.As(err, &unknown) || unknown.name != "A" {
		t.Errorf("upper-case member: %v", err)
	}
}
