package scopes

import (
	"fmt"
	"slices"
	"strings"
)

// smallSet is the size up to which linear scans beat a map: scope lists are
// a dozen entries in practice, and a scan allocates nothing. Above it, a map
// keeps a hostile scope parameter with thousands of tokens from costing
// quadratic time.
const smallSet = 32

// ValidScopeToken reports whether s is a scope-token of RFC 6749 §3.3:
// one or more of %x21 / %x23-5B / %x5D-7E (printable ASCII except space,
// '"' and '\').
func ValidScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !scopeChar(s[i]) {
			return false
		}
	}
	return true
}

func scopeChar(b byte) bool {
	return b >= 0x21 && b <= 0x7e && b != '"' && b != '\\'
}

// ParseScope splits an OAuth scope parameter. RFC 6749 §3.3 delimits scopes
// by single spaces and nothing else, so anything looser (tabs, runs of
// spaces, a leading or trailing space, an empty value) is refused rather
// than guessed at: a client that sends it has a bug it should hear about.
// Repeated scopes collapse (the request means the same thing); order is that
// of first occurrence. The result shares memory with s and costs one
// allocation.
func ParseScope(s string) ([]string, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: the scope parameter is empty", ErrMalformedScope)
	}
	n := 1
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b == ' ' {
			switch {
			case i == 0:
				return nil, fmt.Errorf("%w: leading space", ErrMalformedScope)
			case i == len(s)-1:
				return nil, fmt.Errorf("%w: trailing space", ErrMalformedScope)
			case s[i-1] == ' ':
				return nil, fmt.Errorf("%w: more than one space between scopes at byte %d", ErrMalformedScope, i)
			}
			n++
			continue
		}
		if !scopeChar(b) {
			return nil, fmt.Errorf("%w: invalid character %s at byte %d; scopes are printable ASCII other than '\"' and '\\', separated by single spaces", ErrMalformedScope, describeByte(b), i)
		}
	}
	out := make([]string, 0, n)
	var seen map[string]struct{}
	if n > smallSet {
		seen = make(map[string]struct{}, n)
	}
	for rest := s; ; {
		tok, tail, more := strings.Cut(rest, " ")
		if seen != nil {
			if _, dup := seen[tok]; !dup {
				seen[tok] = struct{}{}
				out = append(out, tok)
			}
		} else if !contains(out, tok) {
			out = append(out, tok)
		}
		if !more {
			return out, nil
		}
		rest = tail
	}
}

func describeByte(b byte) string {
	if b >= 0x20 && b < 0x7f {
		return fmt.Sprintf("%q", rune(b))
	}
	return fmt.Sprintf("0x%02X", b)
}

// Subset reports whether every requested scope is among the granted ones:
// the check behind narrowing a token's scope at the token endpoint.
// An empty request is a subset of anything.
func Subset(requested, granted []string) bool {
	if len(requested) > smallSet && len(granted) > smallSet {
		return NewSet(granted).ContainsAll(requested)
	}
	for _, r := range requested {
		if !contains(granted, r) {
			return false
		}
	}
	return true
}

// Join renders scopes as a scope parameter or the scope claim of RFC 9068.
func Join(scopes []string) string { return strings.Join(scopes, " ") }

// Set is a key's granted scopes, prepared once (when the key is loaded or
// its permissions resolved) so that each token request only does lookups.
// The zero Set is empty. A Set is immutable and safe for concurrent use.
type Set struct {
	ordered []string // first-occurrence order, for the scope claim
	sorted  []string // for binary search; only for sets past smallSet
	joined  string
}

// NewSet copies scopes (dropping repeats) into a Set.
func NewSet(scopes []string) Set {
	ordered := make([]string, 0, len(scopes))
	var seen map[string]struct{}
	if len(scopes) > smallSet {
		seen = make(map[string]struct{}, len(scopes))
	}
	for _, s := range scopes {
		if seen != nil {
			if _, dup := seen[s]; dup {
				continue
			}
			seen[s] = struct{}{}
		} else if contains(ordered, s) {
			continue
		}
		ordered = append(ordered, s)
	}
	var sorted []string
	if len(ordered) > smallSet {
		sorted = slices.Clone(ordered)
		slices.Sort(sorted)
	}
	return Set{ordered: ordered, sorted: sorted, joined: Join(ordered)}
}

// Contains reports whether s is in the set.
func (s Set) Contains(scope string) bool {
	if len(s.ordered) <= smallSet {
		return contains(s.ordered, scope)
	}
	_, ok := slices.BinarySearch(s.sorted, scope)
	return ok
}

// ContainsAll is Subset against this set.
func (s Set) ContainsAll(requested []string) bool {
	for _, r := range requested {
		if !s.Contains(r) {
			return false
		}
	}
	return true
}

// Len is the number of distinct scopes.
func (s Set) Len() int { return len(s.ordered) }

// Scopes returns the scopes in their original order (a copy).
func (s Set) Scopes() []string { return slices.Clone(s.ordered) }

// String is the space-separated form, computed once, so that a token that
// carries all of a key's scopes costs no string building.
func (s Set) String() string { return s.joined }
