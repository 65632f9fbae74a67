package redis

// The compact key layout (issue 18 item 2): the keys of one team tag share
// one hash, so a key costs its fields and none of a Redis name of its own,
// and the team index is that same hash.
//
//	P{t}:k                  hash: the records of the keys whose client IDs
//	                        carry tag t (a team's keys, and any other team
//	                        whose tag collides). A record is split into
//	                        chunks of at most 64 bytes, so the hash stays a
//	                        listpack (hash-max-listpack-value's default):
//	                        field f → chunk 0, "\x00" + byte(i) + f → chunk i
//	Psx:<4 hex>             hash: the secret index, bucketed by the first
//	                        two bytes of the secret hash: bytes 2–17 of the
//	                        hash → client ID
//
// f is the client ID without its "kgc_" and tag (the 22 random characters),
// or "~" and the whole ID for an ID of another shape (admin keys an
// operator named) or one whose rest starts with "~" or "\x00": no two IDs
// of one bucket share an f, and no f starts with "\x00", which is what
// tells a chunk-0 field from a later chunk's.
//
// A record is a header Lua reads and a body only Go reads, the chunk count
// followed by the compact record of store/record.go:
//
//	byte 0       the number of chunks n
//	bytes 1–6    last use, unix ms, big-endian (0: never), rewritten in
//	             place by the touch script
//	byte 7       length of the team ID, then the team ID
//	then         length of the role, then the role
//	then         the body: fields as tag byte, uvarint length, value
//
// Chunk 0 holds the whole header (it is longer than 64 bytes only for a
// header that is), so the scripts read a key's team, role and last use
// from chunk 0 alone.
//
// The old layout (P{t}:key:<id> hashes with a JSON record, P{t}:team:<id>
// sorted sets, Psecret:<hex> strings) stays readable: every read looks in
// both until the migration (compactmigrate.go) has moved every key, and
// keys are written compact only once every live instance reads the format
// (FormatCompactKeys, the compatibility record of schema.go).

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// FormatCompactKeys is this layout's name in the compatibility record: a
// keygate that does not read it would find none of the keys it holds. It
// is this package's alone (a bbolt file never holds it), so it is not in
// store.ReadableFormats.
const FormatCompactKeys store.Format = "compact-keys"

// readableFormats are the formats an instance announces by default.
func readableFormats() []store.Format {
	return append(slices.Clone(store.ReadableFormats), FormatCompactKeys)
}

// chunkLen is the longest chunk: Redis's default hash-max-listpack-value.
// A longer value would turn its whole bucket into a hashtable, about
// twice the memory per key (docs/scale.md).
const chunkLen = 64

// firstRead is how many chunks a read asks for before it knows a
// record's count: a key without a policy has two.
const firstRead = 4

func (s *Store) bucketKey(tag string) string { return s.prefix + "{" + tag + "}:k" }

// bucketOf names the bucket of clientID and its field there.
func (s *Store) bucketOf(clientID string) (bucket, field string) {
	tag := credential.TagOf(clientID)
	return s.bucketKey(tag), fieldOf(tag, clientID)
}

func fieldOf(tag, clientID string) string {
	head := credential.ClientIDPrefix + tag
	if rest, ok := strings.CutPrefix(clientID, head); ok && rest != "" && rest[0] != '~' && rest[0] != 0 {
		return rest
	}
	return "~" + clientID
}

// idOf is fieldOf's inverse.
func idOf(tag, field string) string {
	if id, ok := strings.CutPrefix(field, "~"); ok {
		return id
	}
	return credential.ClientIDPrefix + tag + field
}

// chunkFields are the fields of a record of n chunks under field f.
func chunkFields(f string, n int) []string {
	out := make([]string, n)
	out[0] = f
	for i := 1; i < n; i++ {
		out[i] = string(appendChunkField(nil, f, i))
	}
	return out
}

// appendChunkField appends the field of chunk i ≥ 1 of the record under f:
// a 0 byte (no record's own field starts with one), i, then f.
func appendChunkField(dst []byte, f string, i int) []byte {
	return append(append(dst, 0, byte(i)), f...)
}

// secretBucket names the bucket and field of a secret hash's entry; any
// length is accepted (a lookup of a malformed hash finds nothing).
func (s *Store) secretBucket(hash []byte) (bucket, field string) {
	b := min(2, len(hash))
	return s.prefix + "sx:" + hex.EncodeToString(hash[:b]), string(hash[b:min(18, len(hash))])
}

// compactLua is the scripts' view of the layout above.
const compactLua = `
local function kg_fields(f, n)
  local t = {f}
  for i = 1, n - 1 do t[i + 1] = '\0' .. string.char(i) .. f end
  return t
end
local function kg_team(c0)
  return string.sub(c0, 9, 8 + string.byte(c0, 8))
end
local function kg_role(c0)
  local tl = string.byte(c0, 8)
  return string.sub(c0, 10 + tl, 9 + tl + string.byte(c0, 9 + tl))
end
local function kg_lu(c0)
  local v = 0
  for i = 2, 7 do v = v * 256 + string.byte(c0, i) end
  return v
end
local function kg_setlu(c0, ms)
  local b = {}
  for i = 6, 1, -1 do b[i] = string.char(ms % 256); ms = math.floor(ms / 256) end
  return string.sub(c0, 1, 1) .. table.concat(b) .. string.sub(c0, 8)
end
-- kg_record is the record of field f without its last use, or nil.
local function kg_record(b, f)
  local c0 = redis.call('HGET', b, f)
  if not c0 then return nil end
  local n = string.byte(c0, 1)
  local parts = {string.sub(c0, 1, 1) .. string.sub(c0, 8)}
  if n > 1 then
    local fs = kg_fields(f, n)
    table.remove(fs, 1)
    for _, c in ipairs(redis.call('HMGET', b, unpack(fs))) do parts[#parts + 1] = c or '' end
  end
  return table.concat(parts)
end
local function kg_del(b, f)
  local c0 = redis.call('HGET', b, f)
  if not c0 then return false end
  redis.call('HDEL', b, unpack(kg_fields(f, string.byte(c0, 1))))
  return true
end
-- kg_each calls fn(f, c0) for every record of bucket b.
local function kg_each(b, fn)
  local all = redis.call('HGETALL', b)
  for i = 1, #all, 2 do
    if string.byte(all[i], 1) ~= 0 then fn(all[i], all[i + 1]) end
  end
end
local function kg_count(b, team)
  local n = 0
  kg_each(b, function(_, c0) if kg_team(c0) == team then n = n + 1 end end)
  return n
end
`

// headerFixed is a record's fixed part here: the chunk count, then the
// compact record's own (store.RecordHeaderFixed: the last use).
const headerFixed = 1 + store.RecordHeaderFixed

// encodeCompact returns the chunks of k's record: the chunk count, then
// k's compact record (store.AppendRecord).
func encodeCompact(k store.Key) ([]string, error) {
	b, err := store.AppendRecord(make([]byte, 1, 128), k)
	if err != nil {
		return nil, err
	}
	header := headerFixed + 1 + len(k.TeamID) + 1 + len(k.Role)
	first := max(chunkLen, header)
	n := 1 + (max(len(b)-first, 0)+chunkLen-1)/chunkLen
	if n > 255 {
		return nil, fmt.Errorf("encode key %s: %w: record of %d bytes", k.ClientID, store.ErrInvalid, len(b))
	}
	b[0] = byte(n)
	chunks := make([]string, 0, n)
	chunks = append(chunks, string(b[:min(first, len(b))]))
	for rest := b[min(first, len(b)):]; len(rest) > 0; rest = rest[min(chunkLen, len(rest)):] {
		chunks = append(chunks, string(rest[:min(chunkLen, len(rest))]))
	}
	return chunks, nil
}

// decodeCompact rebuilds a key from its record's chunks, all of them: the
// chunk count, then the compact record (store.DecodeRecord).
func decodeCompact(clientID string, chunks []string) (store.Key, error) {
	rec := strings.Join(chunks, "")
	if rec == "" || int(rec[0]) != len(chunks) {
		return store.Key{}, fmt.Errorf("decode key %s: %w: %d chunks, not the record's count", clientID, store.ErrBadRecord, len(chunks))
	}
	return store.DecodeRecord(clientID, rec[1:])
}
