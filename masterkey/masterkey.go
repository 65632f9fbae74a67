// Package masterkey holds keygate's one root secret and the envelope it
// puts around every other secret it stores.
//
// Everything else secret — the pepper that keys secret hashes, the signing
// private keys — is generated once and kept in the store sealed with
// AES-256-GCM under the master key. Instances that share a store therefore
// need only the master key, and a copy of the store without it reveals
// nothing usable.
//
// # Sealed format and rotation
//
// A sealed value is versioned and names the master key that sealed it:
//
//	"kg" 0x01 | key ID (8 bytes) | nonce (12 bytes) | AES-GCM ciphertext and tag
//
// The associated data is the header ("kg" 0x01 and the key ID) followed by
// the purpose, so neither the version nor the ID can be changed, and a
// value opens only as what it was sealed as. The key ID (Key.ID) is an HMAC
// of a fixed label under the key: it names the key without revealing
// anything of it, so it may appear in errors and logs.
//
// During a master-key rotation a Key also holds the previous key
// (WithPrevious): it still seals under the new key only, and opens what
// either sealed; the ID in a value's header says which one to use, and an
// ID neither of them has is reported as an *UnknownKeyError naming it.
package masterkey

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Size is the master key length in bytes (AES-256).
const Size = 32

// FileName is where a generated master key lives inside the data dir.
const FileName = "master.key"

// ErrOpen: a sealed value could not be decrypted — it was sealed under
// another master key, for another purpose, or it was tampered with.
var ErrOpen = errors.New("cannot decrypt: wrong master key or corrupted data")

// UnknownKeyError: a sealed value names (in its header) a master key that
// this Key does not hold, neither as the current key nor as the previous
// one — typically because the store was re-sealed under a newer master key
// (`keygate master-key rotate`) that this process was not given. It
// matches ErrOpen with errors.Is.
type UnknownKeyError struct {
	// SealedBy is the ID of the master key that sealed the value.
	SealedBy string
	// Held are the IDs of the keys this Key holds: the current one first.
	Held []string
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("sealed under master key %s, which is not held (held: %s)", e.SealedBy, strings.Join(e.Held, ", "))
}

// Is makes an UnknownKeyError an ErrOpen.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrOpen }

// idLen is the length of a key ID in a sealed value's header.
const idLen = 8

// idLabel is what a key ID is the HMAC of (see the package comment).
const idLabel = "keygate master key id v1"

// header1 starts every value of the current sealed format: a 2-byte mark
// and the version. Unversioned values (before the format had a version)
// start with their random nonce, which begins with these three bytes once
// in 2^24 values; Open tries such a value both ways, so it still opens.
var header1 = []byte{'k', 'g', 0x01}

// headerLen is the length of the version-1 header: mark, version, key ID.
var headerLen = len(header1) + idLen

// Key is the master key. Its zero value is unusable; build it with Parse or
// LoadOrCreate.
type Key struct {
	aead cipher.AEAD
	id   [idLen]byte
	// previous, during a rotation, is the master key the store was sealed
	// under before: Open accepts what it sealed, Seal never uses it.
	previous *Key
}

// Parse decodes a base64 (standard or URL alphabet, padding optional) master
// key of exactly Size bytes.
func Parse(encoded string) (*Key, error) {
	encoded = strings.TrimSpace(encoded)
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(encoded); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("master key is not base64 (want %d random bytes, e.g. from `openssl rand -base64 32`)", Size)
	}
	if len(raw) != Size {
		return nil, fmt.Errorf("master key must be %d bytes, got %d (e.g. `openssl rand -base64 32`)", Size, len(raw))
	}
	return fromBytes(raw)
}

func fromBytes(raw []byte) (*Key, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	k := &Key{aead: aead}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(idLabel))
	copy(k.id[:], mac.Sum(nil))
	return k, nil
}

// ID names the key (the current one, for a Key holding a previous one): 16
// hex digits, the same for every spelling of the key, revealing nothing of
// it (see the package comment).
func (k *Key) ID() string { return hex.EncodeToString(k.id[:]) }

// WithPrevious returns a Key that seals under k and opens what k or
// previous sealed: the master key of a process during a rotation
// (KEYGATE_MASTER_KEY_PREVIOUS). k itself is not changed; a previous key's
// own previous key is not kept.
func (k *Key) WithPrevious(previous *Key) *Key {
	out := &Key{aead: k.aead, id: k.id}
	if previous != nil {
		out.previous = &Key{aead: previous.aead, id: previous.id}
	}
	return out
}

// Previous is the previous key WithPrevious added, or nil.
func (k *Key) Previous() *Key { return k.previous }

// Held lists the IDs of the keys k opens with: its own first, then the
// previous one's.
func (k *Key) Held() []string {
	ids := []string{k.ID()}
	if k.previous != nil {
		ids = append(ids, k.previous.ID())
	}
	return ids
}

// Holding returns the key k holds (its own or the previous one) whose ID is
// id, as a Key that seals under it, or false.
func (k *Key) Holding(id string) (*Key, bool) {
	for _, c := range []*Key{k, k.previous} {
		if c != nil && c.ID() == id {
			return &Key{aead: c.aead, id: c.id}, true
		}
	}
	return nil, false
}

// SealedBy returns the ID of the master key a sealed value names in its
// header, and false for a value without one (sealed before the format had
// a version). It checks nothing: only Open says whether the value is
// genuine.
func SealedBy(sealed []byte) (string, bool) {
	if len(sealed) < headerLen || !bytes.HasPrefix(sealed, header1) {
		return "", false
	}
	return hex.EncodeToString(sealed[len(header1):headerLen]), true
}

// Generate returns a new random master key, base64-encoded.
func Generate() (string, error) {
	raw := make([]byte, Size)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate master key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// LoadOrCreate reads the master key from dir/FileName, creating it (mode
// 0600; two first starts cannot both win) when it does
// not exist. created reports whether this call made it, so the caller can
// warn that the key should be backed up or moved to KEYGATE_MASTER_KEY.
func LoadOrCreate(dir string) (k *Key, created bool, err error) {
	path := filepath.Join(dir, FileName)
	if b, err := os.ReadFile(path); err == nil {
		k, err := Parse(string(b))
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return k, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("read master key: %w", err)
	}
	encoded, err := Generate()
	if err != nil {
		return nil, false, err
	}
	// Write a complete temp file, then link it into place: link fails if the
	// name exists, so exactly one first start wins, and no reader ever sees
	// the file empty or half-written.
	tmp, err := os.CreateTemp(dir, FileName+".tmp-*")
	if err != nil {
		return nil, false, fmt.Errorf("create master key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(encoded + "\n")
	if err := errors.Join(werr, tmp.Chmod(0o600), tmp.Sync(), tmp.Close()); err != nil {
		return nil, false, fmt.Errorf("write master key file %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadOrCreate(dir) // another process won the race; use its key
	} else if err != nil {
		return nil, false, fmt.Errorf("create master key file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable
		d.Close()
	}
	k, err = Parse(encoded)
	return k, true, err
}

// Seal encrypts plaintext under k's own key (never the previous one), in
// the versioned format of the package comment. purpose is bound to the
// ciphertext as associated data, so a value sealed as one thing (say the
// pepper) cannot be swapped in for another (a signing key) by someone who
// can write to the store; so is the header, so the key ID cannot be changed.
func (k *Key) Seal(purpose string, plaintext []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	out := make([]byte, headerLen+ns, headerLen+ns+len(plaintext)+k.aead.Overhead())
	copy(out, header1)
	copy(out[len(header1):], k.id[:])
	if _, err := rand.Read(out[headerLen:]); err != nil {
		return nil, fmt.Errorf("seal %s: %w", purpose, err)
	}
	return k.aead.Seal(out, out[headerLen:], plaintext, associated(out[:headerLen], purpose)), nil
}

// associated is the associated data of a versioned value: its header, then
// the purpose. An unversioned value's is the purpose alone; no purpose
// keygate uses starts with the header's mark, so the two never coincide.
func associated(header []byte, purpose string) []byte {
	return append(bytes.Clone(header), purpose...)
}

// Open decrypts what Seal made for the same purpose, under k's own key or
// its previous one.
//
// Values sealed before the format had a version (a nonce, then the
// ciphertext; the purpose alone as associated data: what stores written by
// earlier keygate versions hold) still open: a value whose header does not
// name a key k holds is tried in that older format, under k's own key and
// then the previous one. Only when that fails too is the header's key
// reported (UnknownKeyError), or ErrOpen.
func (k *Key) Open(purpose string, sealed []byte) ([]byte, error) {
	if id, ok := SealedBy(sealed); ok {
		if c, ok := k.Holding(id); ok {
			if plain, err := c.open1(purpose, sealed); err == nil {
				return plain, nil
			}
		}
	}
	for _, c := range []*Key{k, k.previous} {
		if c == nil {
			continue
		}
		if plain, err := c.openUnversioned(purpose, sealed); err == nil {
			return plain, nil
		}
	}
	if id, ok := SealedBy(sealed); ok {
		if _, held := k.Holding(id); !held {
			return nil, fmt.Errorf("open %s: %w", purpose, &UnknownKeyError{SealedBy: id, Held: k.Held()})
		}
	}
	return nil, fmt.Errorf("open %s: %w", purpose, ErrOpen)
}

func (k *Key) open1(purpose string, sealed []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < headerLen+ns+k.aead.Overhead() {
		return nil, ErrOpen
	}
	body := sealed[headerLen:]
	plain, err := k.aead.Open(nil, body[:ns], body[ns:], associated(sealed[:headerLen], purpose))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

func (k *Key) openUnversioned(purpose string, sealed []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < ns+k.aead.Overhead() {
		return nil, ErrOpen
	}
	plain, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(purpose))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
