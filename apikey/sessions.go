package apikey

// Console sessions (#16): a platform's backend (a full admin key) mints a
// session for one person of a team, and gets a link whose fragment carries
// a one-time code. The console redeems the code for a team-bound management
// token whose act names the person. The code is 256 bits from crypto/rand,
// kept only as its SHA-256 (a lookup by hash: nothing to compare in
// variable time), redeemable once within SessionCodeTTL; the store removes
// it in the same atomic step that returns its session. The session record
// is what the token's sid names and what every call re-checks, so ending it
// ends the token.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// Lifetimes of a console session.
const (
	// MinSessionTTL and MaxSessionTTL bound a session's (its token's)
	// lifetime.
	MinSessionTTL = time.Minute
	MaxSessionTTL = time.Hour
	// SessionCodeTTL is how long the link's one-time code may be redeemed:
	// long enough to open a link just handed out, short enough that a link
	// left in a history or a log is dead.
	SessionCodeTTL = 60 * time.Second
)

// sessionCodeBytes is the code's randomness: 256 bits, well over the 128
// an unguessable one-time credential needs.
const sessionCodeBytes = 32

var (
	// ErrSessionsUnsupported: the store keeps no sessions.
	ErrSessionsUnsupported = errors.New("this store keeps no console sessions")
	// ErrSessionNotFound: the team has no such session (also one of
	// another team: the team is the scope).
	ErrSessionNotFound = errors.New("no such console session in this team")
	// ErrSessionCode: the code is unknown, was redeemed or expired.
	// Deliberately one error: the caller must not learn which.
	ErrSessionCode = errors.New("the console link was already used or has expired")
)

// ValidateUser trims the user a session acts for and checks it as key
// names are checked (ValidateName): 1–64 printable characters.
func ValidateUser(raw string) (string, error) {
	u, err := ValidateName(raw)
	var inv *InvalidError
	if errors.As(err, &inv) {
		// The same rule, said about the field the caller sent.
		return "", invalid("%s", replaceField(inv.Detail, `"name"`, `"user"`))
	}
	return u, err
}

func replaceField(detail, from, to string) string {
	if len(detail) >= len(from) && detail[:len(from)] == from {
		detail = to + detail[len(from):]
	}
	if to == `"user"` {
		// ValidateName's advice is about keys.
		detail = replaceSuffix(detail, ": give the key a name people will recognise", ": name the person the session is for")
	}
	return detail
}

func replaceSuffix(s, from, to string) string {
	if len(s) >= len(from) && s[len(s)-len(from):] == from {
		return s[:len(s)-len(from)] + to
	}
	return s
}

// CheckSessionTTL checks a console session's lifetime.
func CheckSessionTTL(d time.Duration) error {
	if d < MinSessionTTL || d > MaxSessionTTL {
		return invalid(`"ttl" %s is out of range: want %s to %s`, d, "1m", "1h")
	}
	return nil
}

// SessionCodeHash is what the store keeps of a one-time code.
func SessionCodeHash(code string) []byte {
	h := sha256.Sum256([]byte(code))
	return h[:]
}

func (s *Service) sessions() (store.Sessions, error) {
	ss, ok := store.Feature[store.Sessions](s.store)
	if !ok {
		return nil, ErrSessionsUnsupported
	}
	return ss, nil
}

// ViaConsoleSession is the audit Via of what a console session's user does
// (and of the session's redemption): Actor.ID is the key that minted it,
// OnBehalfOf the user.
const ViaConsoleSession = "console_session"

// CreateConsoleSession mints a console session of team for user, lasting
// ttl, on behalf of by (a full admin: the route's authorization). It
// returns the session and its one-time code, which only the caller ever
// sees. The team need not have keys: a platform may hand its team the
// console before the team's first key.
func (s *Service) CreateConsoleSession(ctx context.Context, by Request, team, user string, ttl time.Duration) (store.ManagementSession, string, error) {
	if !ValidTeamID(team) {
		return store.ManagementSession{}, "", invalid("team id %q is not valid: %s", team, TeamIDRule)
	}
	user, err := ValidateUser(user)
	if err != nil {
		return store.ManagementSession{}, "", err
	}
	if err := CheckSessionTTL(ttl); err != nil {
		return store.ManagementSession{}, "", err
	}
	ss, err := s.sessions()
	if err != nil {
		return store.ManagementSession{}, "", err
	}
	if err := s.requireSchemaLevel(ctx, store.SchemaLevelAdminRoles, "create console session"); err != nil {
		return store.ManagementSession{}, "", err
	}
	id, err := newSessionID()
	if err != nil {
		return store.ManagementSession{}, "", err
	}
	code, err := randomToken(sessionCodeBytes)
	if err != nil {
		return store.ManagementSession{}, "", err
	}
	now := s.cfg.Now().UTC()
	sess := store.ManagementSession{
		ID:        id,
		TeamID:    team,
		User:      user,
		Kind:      store.SessionConsole,
		MintedBy:  by.Actor.ID,
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}
	by.Actor.OnBehalfOf = user
	ev := s.newEvent(by, store.AuditConsoleSessionCreated, team, "")
	ev.Fields = []string{sess.ID}
	if err := ss.CreateSession(ctx, sess, SessionCodeHash(code), now.Add(SessionCodeTTL), ev); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return store.ManagementSession{}, "", ErrConflict
		}
		return store.ManagementSession{}, "", fmt.Errorf("create console session of team %s: %w", team, err)
	}
	s.logAudit(ctx, ev)
	return sess, code, nil
}

// RedeemSessionCode exchanges a console link's one-time code for its
// session, once: any failure is ErrSessionCode with nothing changed. by
// says where the redemption came from; the event names the key that
// minted the session and the user.
func (s *Service) RedeemSessionCode(ctx context.Context, by Request, code string) (store.ManagementSession, time.Time, error) {
	ss, err := s.sessions()
	if err != nil {
		return store.ManagementSession{}, time.Time{}, err
	}
	now := s.cfg.Now()
	if code == "" || len(code) > 256 {
		return store.ManagementSession{}, now, ErrSessionCode
	}
	sess, err := ss.RedeemSessionCode(ctx, SessionCodeHash(code), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ManagementSession{}, now, ErrSessionCode
	case err != nil:
		return store.ManagementSession{}, now, fmt.Errorf("redeem console session code: %w", err)
	}
	// An exchange session has no code; a session that ended before its
	// code did (ttl ≥ 1m > the code's 60 s makes it unlikely) gives no
	// token either.
	if sess.Kind != store.SessionConsole || !now.Before(sess.ExpiresAt) {
		return store.ManagementSession{}, now, ErrSessionCode
	}
	by.Actor = store.AuditActor{Type: store.ActorAdminKey, ID: sess.MintedBy, OnBehalfOf: sess.User, Via: ViaConsoleSession}
	ev := s.newEvent(by, store.AuditConsoleSessionRedeemed, sess.TeamID, "")
	ev.Fields = []string{sess.ID}
	// The code is spent either way; a token whose redemption is not on
	// record is not handed out.
	if err := s.store.AppendAudit(ctx, ev); err != nil {
		return store.ManagementSession{}, now, fmt.Errorf("audit event %s: %w", ev.Action, err)
	}
	s.logAudit(ctx, ev)
	return sess, now, nil
}

// ConsoleSessions lists the team's sessions not expired now (console and
// exchanged ones alike: each is a token someone holds), oldest first.
func (s *Service) ConsoleSessions(ctx context.Context, team string) ([]store.ManagementSession, error) {
	if !ValidTeamID(team) {
		return nil, invalid("team id %q is not valid: %s", team, TeamIDRule)
	}
	ss, err := s.sessions()
	if err != nil {
		return nil, err
	}
	list, err := ss.ListSessions(ctx, team, s.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("list sessions of team %s: %w", team, err)
	}
	return list, nil
}

// EndSession ends the team's session id: its token stops opening the API
// at the next call, and an unredeemed code stops working.
// ErrSessionNotFound for a session the team does not have.
func (s *Service) EndSession(ctx context.Context, by Request, team, id string) error {
	if !ValidTeamID(team) {
		return invalid("team id %q is not valid: %s", team, TeamIDRule)
	}
	ss, err := s.sessions()
	if err != nil {
		return err
	}
	if !ValidSessionID(id) {
		return ErrSessionNotFound
	}
	ev := s.newEvent(by, store.AuditConsoleSessionEnded, team, "")
	ev.Fields = []string{id}
	switch err := ss.DeleteSession(ctx, team, id, ev); {
	case errors.Is(err, store.ErrNotFound):
		return ErrSessionNotFound
	case err != nil:
		return fmt.Errorf("end session %s of team %s: %w", id, team, err)
	}
	s.logAudit(ctx, ev)
	return nil
}

// ValidSessionID reports whether id looks like a session's ID: "ses_" and
// 22 characters of base64url.
func ValidSessionID(id string) bool {
	if len(id) != 26 || id[:4] != "ses_" {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id[4:])
	return err == nil
}

// newSessionID is "ses_" and 22 characters of base64url: 128 bits of
// randomness (ValidSessionID's shape), for sessions of either kind.
func newSessionID() (string, error) {
	id, err := randomToken(16)
	if err != nil {
		return "", fmt.Errorf("session ID: %w", err)
	}
	return "ses_" + id, nil
}

// randomToken is n bytes from crypto/rand, base64url without padding.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
