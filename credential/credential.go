// Package credential mints and checks the two halves of an API key: the
// public client ID and the secret shown once.
//
// A secret looks like
//
//	kgs_<43 base62 characters: 256 random bits><6 base62 characters: CRC32>
//
// The prefix and the checksum exist for secret scanners (GitHub push
// protection, trufflehog, …): a leaked secret can be recognised offline,
// with almost no false positives, without asking keygate. The checksum is
// not a security measure — it only proves the string was not mistyped.
//
// Because secrets are 256 random bits and never chosen by people, a slow
// password hash buys nothing; keygate stores HMAC-SHA-256(pepper, secret) and
// compares in constant time. The pepper lives (encrypted) in the store, so a
// stolen database alone does not allow offline guessing either.
package credential

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/big"
	"strings"
	"sync"
)

const (
	// SecretPrefix starts every keygate secret.
	SecretPrefix = "kgs_"
	// ClientIDPrefix starts every generated client ID.
	ClientIDPrefix = "kgc_"

	secretRandomBytes = 32
	secretBodyLen     = 43 // ceil(256 / log2(62))
	checksumLen       = 6  // ceil(32 / log2(62))
	// SecretLen is the length of every well-formed secret.
	SecretLen = len(SecretPrefix) + secretBodyLen + checksumLen

	// TeamTagLen is the length of the team-derived tag inside a client ID.
	TeamTagLen = 6
	// PepperLen is the size of the HMAC key.
	PepperLen = 32
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrMalformedSecret: the string is not a keygate secret (wrong prefix,
// length, alphabet or checksum).
var ErrMalformedSecret = errors.New("not a keygate secret")

// NewSecret returns a fresh secret with 256 bits from crypto/rand.
func NewSecret() (string, error) {
	var b [secretRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	body := encodeBase62(new(big.Int).SetBytes(b[:]), secretBodyLen)
	return SecretPrefix + body + checksum(body), nil
}

// CheckSecretFormat reports whether s is shaped like a keygate secret with a
// valid checksum. It says nothing about whether the secret belongs to a key.
func CheckSecretFormat(s string) error {
	if len(s) != SecretLen || !strings.HasPrefix(s, SecretPrefix) {
		return fmt.Errorf("%w: want %q followed by %d base62 characters", ErrMalformedSecret, SecretPrefix, secretBodyLen+checksumLen)
	}
	rest := s[len(SecretPrefix):]
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(base62, rest[i]) < 0 {
			return fmt.Errorf("%w: character %d is not base62", ErrMalformedSecret, len(SecretPrefix)+i+1)
		}
	}
	body, sum := rest[:secretBodyLen], rest[secretBodyLen:]
	if subtle.ConstantTimeCompare([]byte(checksum(body)), []byte(sum)) != 1 {
		return fmt.Errorf("%w: checksum does not match (mistyped or truncated?)", ErrMalformedSecret)
	}
	return nil
}

// checksum is the CRC32 (IEEE) of the body, fixed-width base62, the same
// scheme GitHub uses for its tokens so scanners can reuse their logic.
func checksum(body string) string {
	return encodeBase62(new(big.Int).SetUint64(uint64(crc32.ChecksumIEEE([]byte(body)))), checksumLen)
}

func encodeBase62(n *big.Int, width int) string {
	out := make([]byte, width)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62[mod.Int64()]
	}
	return string(out)
}

// NewClientID returns a client ID for a key of team teamID:
//
//	kgc_<team tag: 6 base62 characters><22 base62 random characters>
//
// The random part (128 bits) makes IDs unguessable from one another. The
// team tag is derived from the team ID so a sharded store (Redis Cluster)
// can put a key and its team's index in one hash slot knowing only the
// client ID. Admin keys (teamID "") get a tag too, from the empty team.
func NewClientID(teamID string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate client id: %w", err)
	}
	return ClientIDPrefix + TeamTag(teamID) + encodeBase62(new(big.Int).SetBytes(b[:]), 22), nil
}

// TagOf returns the slot tag a client ID carries: the TeamTagLen characters
// after ClientIDPrefix, or, for an ID not in that form (an operator-chosen
// admin ID), the tag of the empty team, where admin keys live. Stores use it
// to find a key's shard from its ID alone.
func TagOf(clientID string) string {
	if len(clientID) >= len(ClientIDPrefix)+TeamTagLen && strings.HasPrefix(clientID, ClientIDPrefix) {
		return clientID[len(ClientIDPrefix) : len(ClientIDPrefix)+TeamTagLen]
	}
	return TeamTag("")
}

// TeamTag is the short, stable, team-derived tag embedded in client IDs.
func TeamTag(teamID string) string {
	sum := sha256.Sum256([]byte("keygate team tag\x00" + teamID))
	return encodeBase62(new(big.Int).SetBytes(sum[:8]), TeamTagLen)
}

// Hasher turns secrets into their stored form. It is safe for concurrent use
// and holds no process-wide lock: keyed HMAC states are recycled through a
// sync.Pool, because keying an HMAC costs more than hashing a secret.
type Hasher struct {
	pepper []byte
	macs   sync.Pool // hash.Hash keyed with pepper
}

// NewHasher returns a Hasher keyed with pepper (PepperLen bytes).
func NewHasher(pepper []byte) (*Hasher, error) {
	if len(pepper) != PepperLen {
		return nil, fmt.Errorf("pepper must be %d bytes, got %d", PepperLen, len(pepper))
	}
	h := &Hasher{pepper: append([]byte(nil), pepper...)}
	h.macs.New = func() any { return hmac.New(sha256.New, h.pepper) }
	return h, nil
}

// Hash returns HMAC-SHA-256(pepper, secret).
func (h *Hasher) Hash(secret string) []byte {
	return h.AppendHash(make([]byte, 0, sha256.Size), secret)
}

// AppendHash appends HMAC-SHA-256(pepper, secret) to dst.
func (h *Hasher) AppendHash(dst []byte, secret string) []byte {
	m := h.macs.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, secret)
	dst = m.Sum(dst)
	h.macs.Put(m)
	return dst
}

// Matches reports, in constant time with respect to the hash contents,
// whether secret hashes to want. An empty want never matches.
func (h *Hasher) Matches(secret string, want []byte) bool {
	if len(want) != sha256.Size {
		// Still do the work so that a missing hash is not faster to detect.
		h.Hash(secret)
		return false
	}
	return hmac.Equal(h.Hash(secret), want)
}
