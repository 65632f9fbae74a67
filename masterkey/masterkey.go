// Package masterkey holds keygate's one root secret and the envelope it
// puts around every other secret it stores.
//
// Everything else secret — the pepper that keys secret hashes, the signing
// private keys — is generated once and kept in the store sealed with
// AES-256-GCM under the master key. Instances that share a store therefore
// need only the master key, and a copy of the store without it reveals
// nothing usable.
package masterkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
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

// Key is the master key. Its zero value is unusable; build it with Parse or
// LoadOrCreate.
type Key struct {
	aead cipher.AEAD
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
	return &Key{aead: aead}, nil
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

// Seal encrypts plaintext. purpose is bound to the ciphertext as associated
// data, so a value sealed as one thing (say the pepper) cannot be swapped in
// for another (a signing key) by someone who can write to the store.
func (k *Key) Seal(purpose string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal %s: %w", purpose, err)
	}
	return k.aead.Seal(nonce, nonce, plaintext, []byte(purpose)), nil
}

// Open decrypts what Seal made for the same purpose.
func (k *Key) Open(purpose string, sealed []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < ns+k.aead.Overhead() {
		return nil, fmt.Errorf("open %s: %w", purpose, ErrOpen)
	}
	plain, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(purpose))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", purpose, ErrOpen)
	}
	return plain, nil
}
