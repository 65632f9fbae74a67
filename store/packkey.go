package store

import (
	"slices"
	"strings"
)

// PackKey returns a copy of k for a cache to keep, and a copy of raw (the
// record's bytes as a backend stores them, when it keeps them beside the
// decoded key; nil for none). The copy's strings share one allocation, its
// byte slices and raw's copy another, its permissions and audiences a
// third.
//
// A backend's key cache is most of a busy instance's heap (a million
// cached keys at 10 000 000 keys, docs/scale.md), and what the garbage
// collector pays to mark it grows with the number of objects in it more
// than with their bytes: a key decoded field by field is about ten objects
// (each string, list and hash its own), so marking a million of them took
// a third of the process's CPU. Packed, it is three, each marked in one
// step.
//
// The copy shares memory between its fields: a cache must never hand it
// out or change it, only copies of it (a byte slice of it cannot grow
// into its neighbour, its capacity ends where its length does, but a
// write through it would still change what the cache serves).
func PackKey(k Key, raw []byte) (Key, []byte) {
	var sb strings.Builder
	sb.Grow(len(k.ClientID) + len(k.TeamID) + len(k.Name) + len(k.Role) +
		len(k.TokenQuota.Per) + len(k.TokenQuota.Mode) + strLen(k.Permissions) + strLen(k.Audiences))
	for _, s := range [...]string{k.ClientID, k.TeamID, k.Name, k.Role, k.TokenQuota.Per, k.TokenQuota.Mode} {
		sb.WriteString(s)
	}
	for _, list := range [2][]string{k.Permissions, k.Audiences} {
		for _, s := range list {
			sb.WriteString(s)
		}
	}
	all := sb.String()
	off := 0
	next := func(s string) string {
		if s == "" {
			return ""
		}
		off += len(s)
		return all[off-len(s) : off]
	}
	k.ClientID = next(k.ClientID)
	k.TeamID = next(k.TeamID)
	k.Name = next(k.Name)
	k.Role = next(k.Role)
	k.TokenQuota.Per = next(k.TokenQuota.Per)
	k.TokenQuota.Mode = next(k.TokenQuota.Mode)
	var lists []string
	if n := len(k.Permissions) + len(k.Audiences); n > 0 {
		lists = make([]string, 0, n)
	}
	packList := func(src []string) []string {
		if src == nil {
			return nil
		}
		start := len(lists)
		for _, s := range src {
			lists = append(lists, next(s))
		}
		if len(src) == 0 {
			return []string{}
		}
		return lists[start:len(lists):len(lists)]
	}
	k.Permissions = packList(k.Permissions)
	k.Audiences = packList(k.Audiences)

	buf := make([]byte, 0, len(k.SecretHash)+len(k.PreviousSecretHash)+len(k.Metadata)+len(raw))
	packBytes := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	k.SecretHash = packBytes(k.SecretHash)
	k.PreviousSecretHash = packBytes(k.PreviousSecretHash)
	k.Metadata = packBytes(k.Metadata)
	raw = packBytes(raw)
	// Prefixes hold no strings of their own: a clone is one object, and
	// only a key with a policy has one.
	k.AllowedCIDRs = slices.Clone(k.AllowedCIDRs)
	return k, raw
}

func strLen(list []string) int {
	n := 0
	for _, s := range list {
		n += len(s)
	}
	return n
}
