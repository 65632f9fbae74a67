package loadgen

import "bytes"

// The checks look for one JSON member with byte searches instead of
// decoding the body: on the hot path the generator must stay far cheaper
// than the server it measures. They accept optional whitespace around the
// colon, as any JSON encoder may emit.

// checkFunc reports whether a 200 answer's body is a success.
type checkFunc func(body []byte) bool

// hasTokenField: "access_token" is a string with at least one character.
func hasTokenField(body []byte) bool {
	v := memberValue(body, `"access_token"`)
	return len(v) >= 2 && v[0] == '"' && v[1] != '"'
}

// hasKeys: "keys" is an array holding at least one object.
func hasKeys(body []byte) bool {
	v := memberValue(body, `"keys"`)
	if len(v) == 0 || v[0] != '[' {
		return false
	}
	v = skipSpace(v[1:])
	return len(v) > 0 && v[0] == '{'
}

// isActive: "active" is true.
func isActive(body []byte) bool {
	return bytes.HasPrefix(memberValue(body, `"active"`), []byte("true"))
}

// memberValue returns the body from the first value of a member named
// quotedName (quotes included) onwards, or nil. Occurrences of the name that
// are not followed by a colon (a string value, say) are skipped.
func memberValue(body []byte, quotedName string) []byte {
	name := []byte(quotedName)
	for {
		i := bytes.Index(body, name)
		if i < 0 {
			return nil
		}
		body = body[i+len(name):]
		rest := skipSpace(body)
		if len(rest) > 0 && rest[0] == ':' {
			return skipSpace(rest[1:])
		}
	}
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
