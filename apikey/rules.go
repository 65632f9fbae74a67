package apikey

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/store"
)

// MaxNameLen is the longest key name, in characters.
const MaxNameLen = 64

// Grace periods of a rotation: how long the replaced secret keeps working.
const (
	DefaultGracePeriod = 24 * time.Hour
	MaxGracePeriod     = 7 * 24 * time.Hour
)

var (
	teamIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// teamPrefixPattern is what a prefix of a valid team ID looks like.
	teamPrefixPattern = regexp.MustCompile(`^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$`)
	// adminClientIDPattern: 3–64 URL-safe characters (RFC 3986 unreserved).
	adminClientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{3,64}$`)
)

// ValidTeamID reports whether id is a team ID: 1–64 characters of A-Z a-z
// 0-9 . _ -, starting with a letter or digit. Team IDs go into client IDs
// and store key names, so the alphabet is deliberately small.
func ValidTeamID(id string) bool { return teamIDPattern.MatchString(id) }

// ValidTeamPrefix reports whether p can start a team ID (empty included).
func ValidTeamPrefix(p string) bool { return teamPrefixPattern.MatchString(p) }

// TeamIDRule describes a valid team ID, for error messages.
const TeamIDRule = "use 1–64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"

// ValidateName trims a key's name and checks it is 1–64 printable
// characters; the error says which rule it broke.
func ValidateName(raw string) (string, error) {
	name := strings.TrimSpace(raw)
	if !utf8.ValidString(name) {
		return "", invalid(`"name" must be valid UTF-8`)
	}
	n := utf8.RuneCountInString(name)
	if n == 0 {
		return "", invalid(`"name" must not be empty: give the key a name people will recognise`)
	}
	if n > MaxNameLen {
		return "", invalid(`"name" is %d characters long; use at most %d`, n, MaxNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) || !(unicode.IsPrint(r) || r == ' ') {
			return "", invalid(`"name" must not contain control or non-printable characters`)
		}
	}
	return name, nil
}

// CheckGracePeriod checks a rotation's grace period: 0 (the old secret ends
// at once, the way to cut a leaked secret off) to MaxGracePeriod.
func CheckGracePeriod(d time.Duration) error {
	if d < 0 || d > MaxGracePeriod {
		return invalid("grace period %s is out of range: want 0s to %s", d, MaxGracePeriod)
	}
	return nil
}

// CheckTokenQuota checks a key's own issuance quota (the key policy field
// token_quota): a limit of 1 to quota.MaxLimit tokens per "hour" or "day",
// mode "enforce" or "log". The zero Policy (none of the key's own: the
// server's default applies) is valid. The error names the member at fault.
func CheckTokenQuota(p quota.Policy) error {
	if p.IsZero() {
		return nil
	}
	switch err := p.Validate(); err {
	case nil:
		return nil
	case quota.ErrLimit:
		return invalid(`"token_quota.limit" is %d; use a whole number of tokens from 1 to %d`, p.Limit, quota.MaxLimit)
	case quota.ErrPeriod:
		return invalid(`"token_quota.per" must be "hour" or "day" (the window the limit counts in)`)
	default:
		return invalid(`"token_quota.mode" must be "enforce" (refuse tokens over the limit) or "log" (issue them and log once per window)`)
	}
}

// TokenQuotaOf is a key's own issuance quota as package quota reads it
// (the zero Policy when it has none). It allocates nothing: the token path
// calls it.
func TokenQuotaOf(k store.Key) quota.Policy {
	q := k.TokenQuota
	return quota.Policy{Limit: q.Limit, Per: quota.Period(q.Per), Mode: quota.Mode(q.Mode)}
}

func storedQuota(p quota.Policy) store.TokenQuota {
	return store.TokenQuota{Limit: p.Limit, Per: string(p.Per), Mode: string(p.Mode)}
}

// ValidateAdminCredentials checks operator-supplied admin credentials.
func ValidateAdminCredentials(id, secret string) error {
	if !adminClientIDPattern.MatchString(id) {
		return fmt.Errorf("invalid KEYGATE_ADMIN_CLIENT_ID %q: want 3–64 characters of A-Z a-z 0-9 . _ ~ -", id)
	}
	if err := credential.CheckSecretFormat(secret); err != nil {
		return fmt.Errorf("invalid KEYGATE_ADMIN_CLIENT_SECRET: %v; generate one with `keygate secret generate`", err)
	}
	return nil
}

// LoggableClientID reports whether s, sent as a client ID, may be written
// to a log: it has the form of a client ID (a generated kgc_ ID, or an
// operator-chosen admin ID) and not of a secret. Integrators paste secrets
// into the client ID field; such a value must never reach a log.
func LoggableClientID(s string) bool {
	return adminClientIDPattern.MatchString(s) && !MayHoldSecret(s) // generated IDs fit the pattern too
}

// MayHoldSecret reports whether s, a value a caller sent in a field that is
// not a credential (a client ID, an X-Request-Id), might be a credential all
// the same and so must not be logged: it holds the secret prefix (in any
// case), is a secret without its prefix, or starts like a JWT (base64 of
// `{"`).
func MayHoldSecret(s string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(credential.SecretPrefix)) ||
		strings.HasPrefix(s, "eyJ") ||
		credential.CheckSecretFormat(credential.SecretPrefix+s) == nil
}
