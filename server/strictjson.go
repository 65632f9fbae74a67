package server

// The one check every management request body passes before it is decoded.
// encoding/json is lenient where a request must not be: it keeps the last
// of two members with the same name, matches member names case-insensitively,
// turns a lone surrogate escape into U+FFFD, and json.Decoder stops at the
// end of the first value. Each leniency lets a body mean something other
// than what a reader of it sees, so each is refused here.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf16"
)

// unknownFieldError is a top-level member whose name is not exactly one of
// the fields the endpoint takes; each endpoint words the answer.
type unknownFieldError struct{ name string }

func (e *unknownFieldError) Error() string { return fmt.Sprintf("unknown field %q", e.name) }

// checkStrictJSON reports why body is not exactly one JSON object whose
// members are named exactly as in fields, with no member twice in any
// object and no lone surrogate escape in any string. A nil error means
// encoding/json reads the body as a reader of it would.
func checkStrictJSON(body []byte, fields []string) error {
	return checkStrict(body, fields, nil)
}

// checkStrictJSONList is checkStrictJSON for a body that may also be one
// JSON array of objects, each with members named exactly as in
// elemFields (POST /v1/leaked-secrets takes either shape).
func checkStrictJSONList(body []byte, fields, elemFields []string) error {
	return checkStrict(body, fields, elemFields)
}

// checkStrict is both: a top-level array is allowed only when elemFields
// is not nil.
func checkStrict(body []byte, fields, elemFields []string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // no float parsing: only the structure matters here
	type frame struct {
		object    bool
		expectKey bool
		seen      map[string]struct{}
	}
	var stack []frame
	started := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return tokenError(err, started, len(stack) > 0)
		}
		if !started {
			started = true
			d, ok := tok.(json.Delim)
			switch {
			case ok && d == '{':
			case ok && d == '[' && elemFields != nil:
			case elemFields != nil:
				return fmt.Errorf("the body must be a JSON object or array, not %s", jsonKind(tok))
			default:
				return fmt.Errorf("the body must be a JSON object, not %s", jsonKind(tok))
			}
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
			if name, ok := tok.(string); ok {
				top := &stack[n-1]
				if _, dup := top.seen[name]; dup {
					return fmt.Errorf("member %q appears twice in an object; give each member once", truncate(name, 80))
				}
				top.seen[name] = struct{}{}
				if n == 1 && !slices.Contains(fields, name) {
					return &unknownFieldError{name: truncate(name, 80)}
				}
				if n == 2 && !stack[0].object && !slices.Contains(elemFields, name) {
					return &unknownFieldError{name: truncate(name, 80)}
				}
				top.expectKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, expectKey: true, seen: map[string]struct{}{}})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended (a scalar, or the object or array just closed).
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].expectKey = true
			}
			continue
		}
		// The top-level value ended: only white space may follow.
		end := int(dec.InputOffset())
		if rest := bytes.TrimLeft(body[end:], " \t\r\n"); len(rest) > 0 {
			// Counted from 1, as json.SyntaxError counts.
			what := "object"
			if elemFields != nil {
				what = "value"
			}
			return fmt.Errorf("the body must hold exactly one JSON %s, with nothing after it (byte %d on)", what, len(body)-len(rest)+1)
		}
		break
	}
	if at, ok := loneSurrogate(body); ok {
		return fmt.Errorf("a string has a lone UTF-16 surrogate escape at byte %d; escape a character outside the Basic Multilingual Plane as a surrogate pair (RFC 8259 §7)", at)
	}
	return nil
}

// tokenError describes a json.Decoder.Token error without echoing the body.
func tokenError(err error, started, open bool) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		// Token's offset is mostly the bad byte's index (one less inside a
		// literal or an escape): "near", counted from 1 as elsewhere.
		return fmt.Errorf("syntax error near byte %d", syn.Offset+1)
	case errors.Is(err, io.EOF) && !started:
		return errors.New("the body is empty")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), open:
		return errors.New("the body ends before the JSON object does")
	default:
		return errors.New("malformed JSON")
	}
}

// jsonKind names the JSON type of a first token that does not open an object.
func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "a JSON array"
		}
	case string:
		return "a JSON string"
	case json.Number:
		return "a JSON number"
	case bool:
		return "true or false"
	case nil:
		return "null"
	}
	return "this"
}

// loneSurrogate finds a \uD800–\uDFFF escape that is not half of a
// surrogate pair in body, which must be valid JSON; encoding/json would
// store U+FFFD for it, a character nobody sent.
func loneSurrogate(body []byte) (offset int, found bool) {
	hex := func(i int) (rune, bool) {
		if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	inString := false
	for i := 0; i < len(body); i++ {
		switch b := body[i]; {
		case !inString:
			inString = b == '"'
		case b == '"':
			inString = false
		case b == '\\':
			r, ok := hex(i)
			if !ok {
				i++ // a one-character escape such as \" or \\
				continue
			}
			if utf16.IsSurrogate(r) {
				next, ok := hex(i + 6)
				if r >= 0xDC00 || !ok || utf16.DecodeRune(r, next) == unicode.ReplacementChar {
					return i + 1, true // counted from 1, as json.SyntaxError counts
				}
				i += 6 // the pair's second half
			}
			i += 5
		}
	}
	return 0, false
}
