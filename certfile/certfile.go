// Package certfile serves a TLS certificate from a pair of PEM files and
// keeps it current while the process runs.
//
// Certificates are replaced under a running server — by cert-manager, by
// certbot, by a Kubernetes Secret volume — and a server that read them once
// would go on presenting the old one until it expires. A Reloader holds the
// parsed certificate behind an atomic pointer that tls.Config.GetCertificate
// reads on every handshake. Swapping the pointer changes what new
// connections are shown and nothing else: a connection does its handshake
// once, so established connections (keep-alive, HTTP/2) carry on with the
// certificate they were shown, and nothing is closed or dropped. The
// handshake takes no lock.
//
// Run reloads on two triggers:
//
//   - a tick (every CheckEvery in production; a channel a test drives),
//     when the files' content differs from what was last read. Content,
//     not modification time: a Kubernetes Secret volume swaps a symlink,
//     some file systems keep mtimes to the second, and two small files
//     every ten seconds cost nothing to read;
//   - a signal (SIGHUP in cmd/keygate), which reloads even unchanged files,
//     for an operator who wants the confirmation in the log now.
//
// A reload that fails — a half-written file, a key that does not belong to
// the certificate, a file that is missing for a moment — keeps the
// certificate in use and logs one warning. The same bad content is not
// warned about again at every tick, only once it changes: a writer that
// replaces the certificate first and the key second may cause one warning
// in between, and the pair loads at the next tick. A successful reload
// logs one info line with the new certificate's subject, serial number and
// expiry; nothing of a key is ever logged or put in an error.
package certfile

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CheckEvery is how often Run's production caller looks at the files:
// a renewed certificate is served at most this long after it is written.
const CheckEvery = 10 * time.Second

// MaxFileBytes bounds what is read of either file. A certificate chain or
// a key is a few kilobytes; anything much larger is the wrong file, and
// reading it at every tick would be waste.
const MaxFileBytes = 1 << 20

// ErrUnchanged is what Check returns when the files hold what was last
// read (loaded, or refused and already warned about): nothing was done.
var ErrUnchanged = errors.New("certfile: files unchanged")

// Reloader is a certificate loaded from a certificate file and a key file,
// replaced by Check, Reload and Run. Its methods are safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	// cert is what handshakes are shown; GetCertificate only loads it.
	cert atomic.Pointer[tls.Certificate]

	// mu serialises reloads (Run, and direct calls in tests); handshakes
	// never take it.
	mu sync.Mutex
	// seen is the digest of the files' content last read, whether it
	// loaded or was refused, so that unchanged files cost no parsing and a
	// refusal is warned about once.
	seen [sha256.Size]byte
}

// Load reads and checks the pair of files and returns a Reloader serving
// them, logging the certificate's subject and expiry to log (nil: none).
// The error is one line naming the file at fault; it never quotes the
// files' content.
func Load(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return nil, err
	}
	cert, err := r.parse(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	r.cert.Store(cert)
	r.seen = digest(certPEM, keyPEM)
	r.log.Info("TLS certificate loaded", describe(r, cert)...)
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate: the certificate loaded last.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate is the certificate loaded last, its Leaf parsed.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// TLSConfig is a server configuration serving r's certificate: TLS 1.2 at
// least (set here rather than left to the default, which GODEBUG
// tls10server=1 lowers to TLS 1.0), Go's default cipher suites and curves,
// which are the ones Go keeps current.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
	}
}

// Check loads the files if their content changed since they were last
// read. It returns ErrUnchanged when it did nothing, nil when it loaded a
// new certificate (logged at info), and the reason when the new content was
// refused (logged as a warning; the certificate in use stays).
func (r *Reloader) Check() error { return r.reload(false) }

// Reload loads the files whatever they hold, as Check does otherwise.
func (r *Reloader) Reload() error { return r.reload(true) }

// Run calls Check at every tick and Reload at every signal until ctx ends
// (or both channels are closed).
func (r *Reloader) Run(ctx context.Context, ticks <-chan time.Time, signals <-chan os.Signal) {
	for ticks != nil || signals != nil {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ticks:
			if !ok {
				ticks = nil
				continue
			}
			_ = r.Check() // logged
		case _, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			_ = r.Reload() // logged
		}
	}
}

func (r *Reloader) reload(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, keyPEM, err := r.read()
	var sum [sha256.Size]byte
	if err != nil {
		// A file that cannot be read has no content to compare; its
		// error stands in for it, so the same error is warned about once.
		sum = sha256.Sum256([]byte(err.Error()))
	} else {
		sum = digest(certPEM, keyPEM)
	}
	if !force && sum == r.seen {
		return ErrUnchanged
	}
	r.seen = sum
	var cert *tls.Certificate
	if err == nil {
		cert, err = r.parse(certPEM, keyPEM)
	}
	if err != nil {
		r.log.Warn("TLS certificate not reloaded: still serving the previous one",
			append(describe(r, r.cert.Load()), "err", err)...)
		return err
	}
	r.cert.Store(cert)
	r.log.Info("TLS certificate reloaded", describe(r, cert)...)
	return nil
}

// read reads both files, each at most MaxFileBytes.
func (r *Reloader) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = readFile(r.certFile); err != nil {
		return nil, nil, fmt.Errorf("TLS certificate file %s: %w", r.certFile, err)
	}
	if keyPEM, err = readFile(r.keyFile); err != nil {
		return nil, nil, fmt.Errorf("TLS key file %s: %w", r.keyFile, err)
	}
	return certPEM, keyPEM, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err // the caller names the file
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes: not a PEM certificate or key", MaxFileBytes)
	}
	return b, nil
}

// parse checks the certificate file on its own first, so that an error
// names the file at fault, then the pair (tls.X509KeyPair: the key parses
// and matches the first certificate's public key).
func (r *Reloader) parse(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	var certs int
	rest := certPEM
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return nil, fmt.Errorf("TLS certificate file %s: certificate %d: %w", r.certFile, certs+1, err)
			}
			certs++
		case strings.HasSuffix(b.Type, "PRIVATE KEY") && certs == 0:
			return nil, fmt.Errorf("TLS certificate file %s holds a private key, not a certificate: are the certificate and key files swapped?", r.certFile)
		}
	}
	if certs == 0 {
		return nil, fmt.Errorf("TLS certificate file %s holds no complete PEM CERTIFICATE block", r.certFile)
	}
	if !hasPrivateKey(keyPEM) {
		return nil, fmt.Errorf("TLS key file %s holds no complete PEM PRIVATE KEY block", r.keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls's errors quote no key material ("tls: private key
		// does not match public key").
		return nil, fmt.Errorf("TLS key file %s with certificate file %s: %w", r.keyFile, r.certFile, err)
	}
	return &cert, nil
}

func hasPrivateKey(keyPEM []byte) bool {
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return false
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return true
		}
	}
}

// digest identifies the content of the pair; the lengths keep the two
// files apart, so moving bytes from one to the other changes it.
func digest(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(certPEM)))
	h.Write(n[:])
	h.Write(certPEM)
	h.Write(keyPEM)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// describe is what the log says of a certificate: where it came from and
// who it names until when; public facts only.
func describe(r *Reloader, cert *tls.Certificate) []any {
	attrs := []any{"cert_file", r.certFile, "key_file", r.keyFile}
	if cert == nil || cert.Leaf == nil {
		return attrs
	}
	leaf := cert.Leaf
	return append(attrs, "subject", leaf.Subject.String(), "dns_names", strings.Join(leaf.DNSNames, ","),
		"serial", serialHex(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}

func serialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	return fmt.Sprintf("%X", c.SerialNumber)
}
