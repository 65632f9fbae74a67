package scopes

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseScope: ParseScope accepts exactly the values RFC 6749 §3.3
// allows (scope-tokens of NQCHAR, %x21 / %x23-5B / %x5D-7E, separated by
// single spaces), and what it accepts round-trips: parse, join, parse gives
// the same list, without repeats, in first-occurrence order. A Set built
// from it agrees with Subset.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{
		"keys:read", "a b c", "a a b a", "a  b", " a", "a ", "", "a\tb", `a"b`, `a\b`,
		"é", "a\x7fb", "!#[]~", strings.Repeat("x ", 40) + "y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseScope(s)
		// Reference: the grammar read literally.
		wellFormed := s != ""
		for _, tok := range strings.Split(s, " ") {
			for i := 0; i < len(tok); i++ {
				b := tok[i]
				if b != 0x21 && (b < 0x23 || b > 0x5b) && (b < 0x5d || b > 0x7e) {
					wellFormed = false
				}
			}
			if tok == "" {
				wellFormed = false
			}
		}
		if (err == nil) != wellFormed {
			t.Fatalf("ParseScope(%q): err %v, but RFC 6749 §3.3 well-formed = %v", s, err, wellFormed)
		}
		if err != nil {
			return
		}
		var want []string
		for _, tok := range strings.Split(s, " ") {
			if !slices.Contains(want, tok) {
				want = append(want, tok)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ParseScope(%q) = %q, want %q", s, got, want)
		}
		for _, tok := range got {
			if !ValidScopeToken(tok) {
				t.Fatalf("ParseScope(%q) returned %q, not a scope-token", s, tok)
			}
		}
		again, err := ParseScope(Join(got))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("round trip of %q: %q, %v", got, again, err)
		}
		set := NewSet(got)
		if set.Len() != len(got) || set.String() != Join(got) || !set.ContainsAll(got) || !Subset(got, got) {
			t.Fatalf("Set of %q disagrees: len %d, %q", got, set.Len(), set.String())
		}
	})
}
