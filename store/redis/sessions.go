package redis

// Management sessions (store.Sessions), team erasure (store.TeamEraser).
//
// Sessions are few (human sign-ins), so all of them live in the kg slot:
// creating, deleting and a team's deletion are one script each, and a
// code's redemption is GETDEL (single use under concurrency). The audit
// event of CreateSession/DeleteSession belongs to the team's trail, in the
// team's slot: on Cluster it cannot join the script, so it is appended
// right after through AppendAudit (docs/redis.md says why that window is
// acceptable).

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

var (
	_ store.Sessions   = (*Store)(nil)
	_ store.TeamEraser = (*Store)(nil)
)

func (s *Store) sessionKey(id string) string { return s.prefix + "{kg}:session:" + id }
func (s *Store) sessionCodeKey(h []byte) string {
	return s.prefix + "{kg}:session-code:" + hex.EncodeToString(h)
}
func (s *Store) teamSessionsKey(team string) string { return s.prefix + "{kg}:sessions:" + team }
func (s *Store) allSessionsKey() string             { return s.prefix + "{kg}:sessions" }

// sessionRecord is the stored form: a private type, so a change to
// store.ManagementSession's tags cannot change the data.
type sessionRecord struct {
	ID        string    `json:"id"`
	TeamID    string    `json:"team_id"`
	User      string    `json:"user"`
	Kind      string    `json:"kind"`
	MintedBy  string    `json:"minted_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Code      string    `json:"code,omitempty"` // hex of the code hash, to drop it with the session
}

// createSessionScript stores a session and its code unless either exists.
// KEYS: session, team index, all index, [code]. ARGV: record, created (ms),
// Redis expiry (ms), id, code's Redis expiry (ms), expires (ms), code value.
var createSessionScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if #KEYS > 3 and redis.call('EXISTS', KEYS[4]) == 1 then return 2 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[4])
if #KEYS > 3 then redis.call('SET', KEYS[4], ARGV[7], 'PXAT', ARGV[5]) end
return 1
`)

// deleteSessionScript removes a session of the team and its code.
// KEYS: session, team index, all index. ARGV: team, id, code prefix.
var deleteSessionScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if not v then return 0 end
local r = cjson.decode(v)
if r.team_id ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
if r.code and r.code ~= '' then redis.call('DEL', ARGV[3] .. r.code) end
return 1
`)

// deleteTeamSessionsScript removes every session of a team.
// KEYS: team index, all index. ARGV: session prefix, code prefix.
var deleteTeamSessionsScript = goredis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, id in ipairs(ids) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then
    n = n + 1
    local r = cjson.decode(v)
    if r.code and r.code ~= '' then redis.call('DEL', ARGV[2] .. r.code) end
    redis.call('DEL', ARGV[1] .. id)
  end
  redis.call('ZREM', KEYS[2], id)
end
redis.call('DEL', KEYS[1])
return n
`)

// pruneSessionsScript removes up to ARGV[2] sessions expired at ARGV[1].
// KEYS: all index. ARGV: now (ms), batch, session prefix, code prefix,
// team index prefix.
var pruneSessionsScript = goredis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, id in ipairs(ids) do
  local v = redis.call('GET', ARGV[3] .. id)
  if v then
    local r = cjson.decode(v)
    if r.code and r.code ~= '' then redis.call('DEL', ARGV[4] .. r.code) end
    redis.call('DEL', ARGV[3] .. id)
    redis.call('ZREM', ARGV[5] .. r.team_id, id)
  end
  n = n + 1
  redis.call('ZREM', KEYS[1], id)
end
return n
`)

const pruneSessionBatch = 500

func encodeSession(sess store.ManagementSession, codeHash []byte) (string, error) {
	r := sessionRecord{ID: sess.ID, TeamID: sess.TeamID, User: sess.User, Kind: sess.Kind, MintedBy: sess.MintedBy,
		CreatedAt: sess.CreatedAt.UTC(), ExpiresAt: sess.ExpiresAt.UTC()}
	if len(codeHash) > 0 {
		r.Code = hex.EncodeToString(codeHash)
	}
	b, err := json.Marshal(r)
	return string(b), err
}

func decodeSession(v string) (store.ManagementSession, error) {
	var r sessionRecord
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return store.ManagementSession{}, fmt.Errorf("decode session: %w", err)
	}
	return store.ManagementSession{ID: r.ID, TeamID: r.TeamID, User: r.User, Kind: r.Kind, MintedBy: r.MintedBy,
		CreatedAt: utc(r.CreatedAt), ExpiresAt: utc(r.ExpiresAt)}, nil
}

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess store.ManagementSession, codeHash []byte, codeExpires time.Time, audit ...store.AuditEvent) error {
	ev, err := store.OneAuditEvent(audit)
	if err == nil && ev != nil {
		err = store.CheckAuditEvent(*ev, &sess.TeamID, nil)
	}
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	if sess.ID == "" || sess.TeamID == "" {
		return fmt.Errorf("create session: %w: id and team are required", store.ErrInvalid)
	}
	rec, err := encodeSession(sess, codeHash)
	if err != nil {
		return fmt.Errorf("create session %s: %w", sess.ID, err)
	}
	keys := []string{s.sessionKey(sess.ID), s.teamSessionsKey(sess.TeamID), s.allSessionsKey()}
	// PXAT must lie in the future or Redis drops the value at once; a
	// session created already expired is kept a moment for GetSession.
	exp := max(millis(sess.ExpiresAt), time.Now().UnixMilli()+1000)
	codeExp := max(millis(codeExpires), time.Now().UnixMilli()+1000)
	// The code's value carries its expiry as well, judged on the caller's
	// clock at redemption; Redis's own expiry only cleans up.
	args := []any{rec, millis(sess.CreatedAt), exp, sess.ID, codeExp, millis(sess.ExpiresAt),
		sess.ID + "|" + strconv.FormatInt(millis(codeExpires), 10)}
	if len(codeHash) > 0 {
		keys = append(keys, s.sessionCodeKey(codeHash))
	}
	octx, cancel := s.op(ctx)
	n, err := createSessionScript.Run(octx, s.rdb, keys, args...).Int()
	cancel()
	switch {
	case err != nil:
		return fail(octx, "create session "+sess.ID, err)
	case n == 0:
		return fmt.Errorf("create session %s: %w", sess.ID, store.ErrAlreadyExists)
	case n == 2:
		return fmt.Errorf("create session %s: code: %w", sess.ID, store.ErrAlreadyExists)
	}
	if ev != nil {
		if err := s.AppendAudit(ctx, *ev); err != nil {
			return fmt.Errorf("create session %s: audit (session stored): %w", sess.ID, err)
		}
	}
	return nil
}

// RedeemSessionCode implements store.Sessions. The code's value carries
// its expiry too, so that an injected clock is honoured, not only Redis's.
func (s *Store) RedeemSessionCode(ctx context.Context, codeHash []byte, now time.Time) (store.ManagementSession, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	name := s.sessionCodeKey(codeHash)
	// GETDEL makes the redemption single use.
	v, err := s.rdb.GetDel(octx, name).Result()
	if errors.Is(err, goredis.Nil) {
		return store.ManagementSession{}, fmt.Errorf("redeem session code: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.ManagementSession{}, fail(octx, "redeem session code", err)
	}
	id, expStr, _ := strings.Cut(v, "|")
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || now.UnixMilli() >= exp {
		return store.ManagementSession{}, fmt.Errorf("redeem session code: %w", store.ErrNotFound)
	}
	sess, err := s.GetSession(ctx, id)
	if err != nil {
		return store.ManagementSession{}, fmt.Errorf("redeem session code: %w", err)
	}
	return sess, nil
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (store.ManagementSession, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	v, err := s.rdb.Get(octx, s.sessionKey(id)).Result()
	if errors.Is(err, goredis.Nil) {
		return store.ManagementSession{}, fmt.Errorf("get session %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.ManagementSession{}, fail(octx, "get session "+id, err)
	}
	return decodeSession(v)
}

// ListSessions implements store.Sessions.
func (s *Store) ListSessions(ctx context.Context, team string, now time.Time) ([]store.ManagementSession, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	ids, err := s.rdb.ZRange(octx, s.teamSessionsKey(team), 0, -1).Result()
	if err != nil {
		return nil, fail(octx, "list sessions", err)
	}
	out := []store.ManagementSession{}
	if len(ids) == 0 {
		return out, nil
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = s.sessionKey(id)
	}
	vals, err := s.rdb.MGet(octx, names...).Result()
	if err != nil {
		return nil, fail(octx, "list sessions", err)
	}
	var gone []any
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			gone = append(gone, ids[i])
			continue
		}
		sess, err := decodeSession(str)
		if err != nil {
			return nil, err
		}
		if now.Before(sess.ExpiresAt) {
			out = append(out, sess)
		}
	}
	if len(gone) > 0 {
		// Index entries of sessions Redis expired.
		_ = s.rdb.ZRem(octx, s.teamSessionsKey(team), gone...).Err()
	}
	sortSessions(out)
	return out, nil
}

func sortSessions(out []store.ManagementSession) {
	for i := 1; i < len(out); i++ {
		for j := i; j > 0; j-- {
			a, b := out[j-1], out[j]
			if c := a.CreatedAt.Compare(b.CreatedAt); c > 0 || c == 0 && a.ID > b.ID {
				out[j-1], out[j] = b, a
			}
		}
	}
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, team, id string, audit ...store.AuditEvent) error {
	ev, err := store.OneAuditEvent(audit)
	if err == nil && ev != nil {
		err = store.CheckAuditEvent(*ev, &team, nil)
	}
	if err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	octx, cancel := s.op(ctx)
	n, err := deleteSessionScript.Run(octx, s.rdb,
		[]string{s.sessionKey(id), s.teamSessionsKey(team), s.allSessionsKey()},
		team, id, s.prefix+"{kg}:session-code:").Int()
	cancel()
	switch {
	case err != nil:
		return fail(octx, "delete session "+id, err)
	case n == 0:
		return fmt.Errorf("delete session %s: %w", id, store.ErrNotFound)
	}
	if ev != nil {
		if err := s.AppendAudit(ctx, *ev); err != nil {
			return fmt.Errorf("delete session %s: audit (session deleted): %w", id, err)
		}
	}
	return nil
}

// DeleteTeamSessions implements store.Sessions.
func (s *Store) DeleteTeamSessions(ctx context.Context, team string) (int, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	n, err := deleteTeamSessionsScript.Run(octx, s.rdb, []string{s.teamSessionsKey(team), s.allSessionsKey()},
		s.prefix+"{kg}:session:", s.prefix+"{kg}:session-code:").Int()
	if err != nil {
		return 0, fail(octx, "delete team sessions", err)
	}
	return n, nil
}

// PruneSessions implements store.Sessions. Codes expire with Redis's own
// expiry (PXAT); a session's record too, so what remains are index entries.
func (s *Store) PruneSessions(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		octx, cancel := s.op(ctx)
		n, err := pruneSessionsScript.Run(octx, s.rdb, []string{s.allSessionsKey()},
			now.UnixMilli(), pruneSessionBatch, s.prefix+"{kg}:session:", s.prefix+"{kg}:session-code:",
			s.prefix+"{kg}:sessions:").Int()
		cancel()
		if err != nil {
			return total, fail(octx, "prune sessions", err)
		}
		total += n
		if n < pruneSessionBatch {
			return total, nil
		}
	}
}

// DeleteTeamUsage implements store.TeamEraser: the team's buckets all
// carry its tag and end in its ID (usageKey).
func (s *Store) DeleteTeamUsage(ctx context.Context, team string) error {
	pattern := globEscape(s.prefix+"{"+credential.TeamTag(team)+"}:usage:") + "*:" + globEscape(team)
	del := func(ctx context.Context, c goredis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			name := iter.Val()
			// The glob's * may cover a ":"; the team ID must be what follows
			// the start's field exactly.
			if !usageNameOf(s.prefix+"{"+credential.TeamTag(team)+"}:usage:", name, team) {
				continue
			}
			if err := c.Del(ctx, name).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := s.rdb.(*goredis.ClusterClient); ok {
		var mu sync.Mutex
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return del(ctx, c)
		})
	} else {
		err = del(ctx, s.rdb)
	}
	if err != nil {
		return fail(ctx, "delete team usage", err)
	}
	return nil
}

// usageNameOf reports whether name is head + "<h|d>:<start>:" + team.
func usageNameOf(head, name, team string) bool {
	if len(name) < len(head)+2 || name[:len(head)] != head {
		return false
	}
	rest := name[len(head):]
	if rest[0] != 'h' && rest[0] != 'd' || rest[1] != ':' {
		return false
	}
	rest = rest[2:]
	i := 0
	for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '-') {
		i++
	}
	if _, err := strconv.ParseInt(rest[:i], 10, 64); err != nil {
		return false
	}
	return rest[i:] == ":"+team
}

// replaceMemberScript swaps one sorted set member for another at the same
// score, only if the old one is still there (a concurrent prune or move
// wins). KEYS: set. ARGV: old, new.
var replaceMemberScript = goredis.NewScript(`
local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not sc then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], sc, ARGV[2])
return 1
`)

// EraseAuditPersonalData implements store.TeamEraser: the team's trail,
// its slot's outbox (events not moved yet, which would bring the data back
// into the stream) and the operator-wide stream. Each event is rewritten
// on its own, at its own score; the count is of trail events (the copies
// elsewhere are the same events).
func (s *Store) EraseAuditPersonalData(ctx context.Context, team string) (int, error) {
	slot := s.slotTag(credential.TeamTag(team))
	n := 0
	for i, name := range []string{s.auditTrailKey(team), s.auditOutboxKey(slot), s.auditAllKey()} {
		c, err := s.eraseSet(ctx, name, team)
		if err != nil {
			return n, fmt.Errorf("erase audit personal data: %w", err)
		}
		if i == 0 {
			n = c
		}
	}
	return n, nil
}

func (s *Store) eraseSet(ctx context.Context, name, team string) (int, error) {
	members, err := s.rdb.ZRange(ctx, name, 0, -1).Result()
	if err != nil {
		return 0, fail(ctx, "read "+name, err)
	}
	n := 0
	for _, m := range members {
		ev, err := store.DecodeAuditEvent([]byte(m), 0)
		if err != nil {
			return n, err
		}
		if ev.TeamID != team || ev.SourceAddr == "" && ev.UserAgent == "" && ev.Actor.OnBehalfOf == "" {
			continue
		}
		ev.SourceAddr, ev.UserAgent, ev.Actor.OnBehalfOf = "", "", ""
		b, err := store.EncodeAuditEvent(ev)
		if err != nil {
			return n, err
		}
		octx, cancel := s.op(ctx)
		k, err := replaceMemberScript.Run(octx, s.rdb, []string{name}, m, string(b)).Int()
		cancel()
		if err != nil {
			return n, fail(octx, "erase event", err)
		}
		n += k
	}
	return n, nil
}
