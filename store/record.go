package store

// The compact record: a key's fields in a binary encoding without
// reflection, decoded in a few hundred nanoseconds. Redis stores keys in
// it (store/redis/compact.go adds a chunk count in front and splits it
// into hash fields), and the key caches keep it in buffers without
// pointers, which the garbage collector does not visit (docs/scale.md).
//
//	bytes 0–5    last use, unix ms, big-endian (0: never)
//	byte 6       length of the team ID, then the team ID
//	then         length of the role, then the role
//	then         the body: fields as tag byte, uvarint length, value
//
// A tag a reader does not know is an error, not skipped: a field an older
// keygate would ignore is a new format. The client ID is not in the
// record: whoever stores it names it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Body tags.
const (
	tagName byte = iota + 1
	tagPermission
	tagCreated
	tagSecretHash
	tagPreviousSecretHash
	tagPreviousExpires
	tagRotated
	tagStatusIndex
	tagPreviousStatusIndex
	tagSuspended
	tagQuotaLimit
	tagQuotaPer
	tagQuotaMode
	tagExpires
	tagDisabled
	tagTokenTTL
	tagAudience
	tagCIDR
	tagMetadata
	tagNoPermissions // an empty, not absent, permission list
)

// RecordHeaderFixed is the record's fixed part: the last use.
const RecordHeaderFixed = 6

// ErrBadRecord is DecodeRecord's answer to bytes that are not a record.
var ErrBadRecord = errors.New("malformed compact record")

// AppendRecord appends k's compact record to dst (ErrInvalid for a key it
// cannot hold: a team ID or role over 255 bytes, an empty permission or
// audience).
func AppendRecord(dst []byte, k Key) ([]byte, error) {
	if len(k.TeamID) > 255 || len(k.Role) > 255 {
		return dst, fmt.Errorf("encode key %s: %w: team ID or role longer than 255 bytes", k.ClientID, ErrInvalid)
	}
	b := dst
	start := len(b)
	b = append(b, make([]byte, RecordHeaderFixed)...)
	putLastUse(b[start:], k.LastUsedAt)
	b = append(b, byte(len(k.TeamID)))
	b = append(b, k.TeamID...)
	b = append(b, byte(len(k.Role)))
	b = append(b, k.Role...)
	str := func(tag byte, v string) {
		if v != "" {
			b = append(b, tag)
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	num := func(tag byte, v int64) {
		if v != 0 {
			var t [binary.MaxVarintLen64]byte
			str(tag, string(binary.AppendVarint(t[:0], v)))
		}
	}
	tm := func(tag byte, t time.Time) {
		if !t.IsZero() {
			var buf [2 * binary.MaxVarintLen64]byte
			v := binary.AppendVarint(buf[:0], t.Unix())
			str(tag, string(binary.AppendUvarint(v, uint64(t.Nanosecond()))))
		}
	}
	str(tagName, k.Name)
	if k.Permissions != nil && len(k.Permissions) == 0 {
		b = append(b, tagNoPermissions, 0)
	}
	for _, p := range k.Permissions {
		if p == "" {
			return dst, fmt.Errorf("encode key %s: %w: empty permission", k.ClientID, ErrInvalid)
		}
		str(tagPermission, p)
	}
	tm(tagCreated, k.CreatedAt)
	str(tagSecretHash, string(k.SecretHash))
	str(tagPreviousSecretHash, string(k.PreviousSecretHash))
	tm(tagPreviousExpires, k.PreviousSecretExpiresAt)
	tm(tagRotated, k.SecretRotatedAt)
	num(tagStatusIndex, k.StatusIndex)
	num(tagPreviousStatusIndex, k.PreviousStatusIndex)
	tm(tagSuspended, k.SecretSuspendedAt)
	num(tagQuotaLimit, k.TokenQuota.Limit)
	str(tagQuotaPer, k.TokenQuota.Per)
	str(tagQuotaMode, k.TokenQuota.Mode)
	tm(tagExpires, k.ExpiresAt)
	tm(tagDisabled, k.DisabledAt)
	num(tagTokenTTL, int64(k.TokenTTL))
	for _, a := range k.Audiences {
		if a == "" {
			return dst, fmt.Errorf("encode key %s: %w: empty audience", k.ClientID, ErrInvalid)
		}
		str(tagAudience, a)
	}
	for _, p := range k.AllowedCIDRs {
		str(tagCIDR, p.String())
	}
	str(tagMetadata, string(k.Metadata))
	return b, nil
}

func putLastUse(b []byte, t time.Time) {
	var ms uint64
	if !t.IsZero() && t.UnixMilli() > 0 {
		ms = uint64(t.UnixMilli())
	}
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
}

// DecodeRecord rebuilds the key whose compact record is rec; its client ID
// is clientID, its strings are slices of rec.
func DecodeRecord(clientID, rec string) (Key, error) {
	bad := func(what string) (Key, error) {
		return Key{}, fmt.Errorf("decode key %s: %w: %s", clientID, ErrBadRecord, what)
	}
	if len(rec) < RecordHeaderFixed+2 {
		return bad("short header")
	}
	k := Key{ClientID: clientID}
	var ms int64
	for i := range RecordHeaderFixed {
		ms = ms<<8 | int64(rec[i])
	}
	if ms != 0 {
		k.LastUsedAt = time.UnixMilli(ms).UTC()
	}
	p := RecordHeaderFixed
	short := func(n int) bool { return p+n > len(rec) }
	tl := int(rec[p])
	if short(1 + tl + 1) {
		return bad("short team")
	}
	k.TeamID = rec[p+1 : p+1+tl]
	p += 1 + tl
	rl := int(rec[p])
	if short(1 + rl) {
		return bad("short role")
	}
	k.Role = rec[p+1 : p+1+rl]
	p += 1 + rl
	for p < len(rec) {
		tag := rec[p]
		l, n := binary.Uvarint([]byte(rec[p+1 : min(p+1+binary.MaxVarintLen64, len(rec))]))
		if n <= 0 || l > uint64(len(rec)) || short(1+n+int(l)) {
			return bad(fmt.Sprintf("field %d", tag))
		}
		v := rec[p+1+n : p+1+n+int(l)]
		p += 1 + n + int(l)
		var err error
		switch tag {
		case tagName:
			k.Name = v
		case tagPermission:
			k.Permissions = append(k.Permissions, v)
		case tagNoPermissions:
			k.Permissions = []string{}
		case tagCreated:
			k.CreatedAt, err = decodeTime(v)
		case tagSecretHash:
			k.SecretHash = nonEmpty(v)
		case tagPreviousSecretHash:
			k.PreviousSecretHash = nonEmpty(v)
		case tagPreviousExpires:
			k.PreviousSecretExpiresAt, err = decodeTime(v)
		case tagRotated:
			k.SecretRotatedAt, err = decodeTime(v)
		case tagStatusIndex:
			k.StatusIndex, err = decodeInt(v)
		case tagPreviousStatusIndex:
			k.PreviousStatusIndex, err = decodeInt(v)
		case tagSuspended:
			k.SecretSuspendedAt, err = decodeTime(v)
		case tagQuotaLimit:
			k.TokenQuota.Limit, err = decodeInt(v)
		case tagQuotaPer:
			k.TokenQuota.Per = v
		case tagQuotaMode:
			k.TokenQuota.Mode = v
		case tagExpires:
			k.ExpiresAt, err = decodeTime(v)
		case tagDisabled:
			k.DisabledAt, err = decodeTime(v)
		case tagTokenTTL:
			var d int64
			d, err = decodeInt(v)
			k.TokenTTL = time.Duration(d)
		case tagAudience:
			k.Audiences = append(k.Audiences, v)
		case tagCIDR:
			var pfx netip.Prefix
			if pfx, err = netip.ParsePrefix(v); err == nil {
				k.AllowedCIDRs = append(k.AllowedCIDRs, pfx)
			}
		case tagMetadata:
			k.Metadata = nonEmpty(v)
		default:
			return bad(fmt.Sprintf("unknown field %d", tag))
		}
		if err != nil {
			return bad(fmt.Sprintf("field %d: %v", tag, err))
		}
	}
	return k, nil
}

// nonEmpty is v's bytes, nil for "" (what the encoder omits).
func nonEmpty(v string) []byte {
	if v == "" {
		return nil
	}
	return []byte(v)
}

func decodeInt(v string) (int64, error) {
	x, n := binary.Varint([]byte(v))
	if n != len(v) {
		return 0, ErrBadRecord
	}
	return x, nil
}

func decodeTime(v string) (time.Time, error) {
	sec, n := binary.Varint([]byte(v))
	if n <= 0 {
		return time.Time{}, ErrBadRecord
	}
	ns, m := binary.Uvarint([]byte(v[n:]))
	if m <= 0 || n+m != len(v) || ns >= 1e9 {
		return time.Time{}, ErrBadRecord
	}
	return time.Unix(sec, int64(ns)).UTC(), nil
}
