package config

import (
	"fmt"
	"net/url"
	"strings"
)

// The settings of key policy (issue 17): which audiences keys may be given
// and which metadata members reach tokens. The rules of a key's own policy
// fields live in apikey/rules.go; these are the operator's side.

// MaxAudiencesAllowed bounds audiences_allowed.
const MaxAudiencesAllowed = 64

// MaxMetadataClaims bounds metadata_claims (a key's metadata has at most 16
// members).
const MaxMetadataClaims = 16

// ValidResource reports whether s may be an RFC 8707 resource indicator:
// an absolute URI without a fragment, of printable ASCII (no spaces), at
// most 512 bytes. audiences_allowed entries and a token request's resource
// parameter are held to it.
func ValidResource(s string) bool {
	if len(s) == 0 || len(s) > 512 || !printable(s) || strings.Contains(s, "#") {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.IsAbs() && (u.Host != "" || u.Opaque != "")
}

func checkAudiencesAllowed(list []string) error {
	if len(list) > MaxAudiencesAllowed {
		return fmt.Errorf("at most %d entries", MaxAudiencesAllowed)
	}
	seen := map[string]bool{}
	for _, a := range list {
		if !ValidResource(a) {
			return fmt.Errorf("entry %q is not an absolute URI without a fragment, such as https://api.example.com/accounting", a)
		}
		if seen[a] {
			return fmt.Errorf("entry %q is listed twice", a)
		}
		seen[a] = true
	}
	return nil
}

func checkMetadataClaims(list []string) error {
	if len(list) > MaxMetadataClaims {
		return fmt.Errorf("at most %d entries", MaxMetadataClaims)
	}
	seen := map[string]bool{}
	for _, m := range list {
		if m == "" || len(m) > 64 || !printable(m) {
			return fmt.Errorf("entry %q is not a metadata member name (1 to 64 printable characters, no spaces)", m)
		}
		if seen[m] {
			return fmt.Errorf("entry %q is listed twice", m)
		}
		seen[m] = true
	}
	return nil
}
