package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/spf13/cobra"
	"golang.org/x/net/netutil"
	"golang.org/x/term"

	"github.com/keygate/keygate/certfile"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/console"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storemetrics"
	"github.com/keygate/keygate/webhook"
)

const (
	dbFileName            = "keygate.db"
	adminCredentialsFile  = "admin-credentials.json"
	envMasterKey          = "KEYGATE_MASTER_KEY"
	envAdminClientID      = "KEYGATE_ADMIN_CLIENT_ID"
	envAdminClientSecret  = "KEYGATE_ADMIN_CLIENT_SECRET"
	readHeaderTimeout     = 5 * time.Second
	maxRequestHeaderBytes = 16 << 10
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 30 * time.Second
)

// serveCommand is `keygate serve` on the stores in stores (storeBackends
// but in tests), reading the environment from e.
func serveCommand(e env, stores backends) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the keygate server",
		Long: `Run the keygate server. --store chooses where it keeps keys:

` + stores.help() + `
Settings come from defaults < --config YAML file < KEYGATE_* environment < flags.
Secrets come only from the environment: KEYGATE_MASTER_KEY or
KEYGATE_MASTER_KEY_FILE (else generated into the data dir; one of them is
required with a shared store), KEYGATE_MASTER_KEY_PREVIOUS (or _FILE) during
a master-key rotation (see keygate master-key rotate), KEYGATE_ADMIN_CLIENT_ID
and KEYGATE_ADMIN_CLIENT_SECRET.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadFor(cmd.Flags(), e.getenv, stores.names())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			e := e
			e.stderr = cmd.ErrOrStderr() // SetErr on the command wins, as for every cobra command
			return serve(ctx, cfg, e, stores)
		},
	}
	config.BindFlagsFor(cmd.Flags(), stores.names())
	return cmd
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs until ctx is cancelled, then drains requests, flushes
// last-used times and closes the store. It opens cfg.Store from stores,
// reads secrets through e.getenv and logs to e.stderr.
func serve(ctx context.Context, cfg config.Config, e env, stores backends) error {
	stderr := e.stderr
	log := newLogger(cfg, stderr)
	gin.SetMode(gin.ReleaseMode)

	// The certificate first: a wrong path stops serve before anything is
	// opened or created.
	var certs *certfile.Reloader
	if cfg.ServesTLS() {
		var err error
		if certs, err = certfile.Load(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			return err
		}
	} else if cfg.PlainHTTPBehindHTTPS() {
		log.Warn("the issuer is https but keygate serves plain HTTP and trusts no proxy: set tls_cert and tls_key, "+
			"or list the proxy that terminates TLS in trusted_proxies", "issuer", cfg.Issuer, "listen", cfg.Listen)
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, mk, err := stores.open(ctx, cfg, e.getenv, log)
	if err != nil {
		return err
	}
	defer st.Close()

	// Metrics exist only when they are served: without metrics_listen
	// nothing is recorded (server.Options.Metrics nil).
	var met *metrics.Metrics
	if cfg.MetricsListen != "" {
		met = metrics.New(metrics.BuildInfo{Version: versionString(), Revision: revisionString()})
		if kc, ok := st.(keyCacheObservable); ok {
			kc.ObserveKeyCache(met) // before the first request: store/redis/cache.go
		}
		// Measured from here on; the deferred Close above closes the
		// store inside, which is the same store.
		st = storemetrics.Wrap(st, cfg.Store, met)
	}

	// A generated first admin's credentials are in their 0600 file before
	// the key is stored, so no crash leaves an admin whose secret nobody
	// has; the file is removed again when the key is not stored.
	var adminFile string
	keepAdmin := func(admin server.AdminCredentials) (func() error, error) {
		path, err := writeAdminCredentials(admin, cfg)
		if err != nil {
			return nil, err
		}
		adminFile = path
		return func() error {
			adminFile = ""
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove admin credentials: %w", err)
			}
			return nil
		}, nil
	}
	// A shared store that comes to require a record format this build
	// cannot read (server/compat.go) stops serve: see the select below.
	incompatible := make(chan error, 1)
	srv, err := server.New(ctx, server.Options{
		OnIncompatible: func(err error) {
			select {
			case incompatible <- err:
			default:
			}
		},
		Store:      st,
		MasterKey:  mk,
		Issuer:     cfg.Issuer,
		Audience:   cfg.Audience,
		TokenTTL:   cfg.TokenTTL,
		SigningAlg: cfg.SigningAlg,
		// Key policy (issue 17); key_expiry_warning's 0 (never) is the
		// option's negative.
		MaxKeyTokenTTL:   cfg.MaxKeyTokenTTL,
		AudiencesAllowed: cfg.AudiencesAllowed,
		MaxKeyLifetime:   cfg.MaxKeyLifetime,
		KeyExpiryWarning: cmp.Or(cfg.KeyExpiryWarning, -1),
		MetadataClaims:   cfg.MetadataClaims,
		// The setting's 0 (manual only) is the option's negative.
		SigningKeyRotation:    cmp.Or(cfg.SigningKeyRotation, -1),
		SigningKeyPrepublish:  cfg.SigningKeyPrepublish,
		MaxKeysPerTeam:        cfg.MaxKeysPerTeam,
		StatusListTTL:         cfg.StatusListTTL,
		IntrospectionRate:     cfg.IntrospectionRate,
		LastUsedWriteRate:     cfg.LastUsedWriteRate,
		RevocationRate:        cfg.RevocationRate,
		TokenQuotaPerKey:      cfg.KeyQuota,
		TokenQuotaPerTeam:     cfg.TeamQuota,
		AuditRetention:        cfg.AuditRetention,
		Catalog:               cfg.Catalog,
		AdminClientID:         e.getenv(envAdminClientID),
		AdminClientSecret:     e.getenv(envAdminClientSecret),
		KeepNewAdmin:          keepAdmin,
		TrustedProxies:        cfg.TrustedProxyPrefixes,
		HSTS:                  cfg.HSTS(),
		AccessLog:             cfg.AccessLog,
		ConsoleFrameAncestors: cfg.ConsoleFrameAncestors,
		AccessLogOAuth:        cfg.AccessLogOAuth,
		Webhooks:              cfg.Webhooks,
		TrustedIssuers:        cfg.TrustedIssuers,
		Webhook:               webhook.Options{GiveUp: cfg.WebhookGiveUp},
		Logger:                log,
		Metrics:               met,
		// auth_failure_*: 0 in the config is "off", which Options spells -1.
		AuthFailureBurst:       offIfZero(cfg.AuthFailureBurst),
		AuthFailureRate:        cfg.AuthFailureRate,
		AuthFailureSourceBurst: offIfZero(cfg.AuthFailureSourceBurst),
		AuthFailureSourceRate:  cfg.AuthFailureSourceRate,
	})
	if err != nil {
		return masterKeyRotatedError(err)
	}
	defer srv.Close()
	if admin, ok := srv.GeneratedAdmin(); ok {
		terminal := e.isTerminal != nil && e.isTerminal(stderr)
		showAdminCredentials(admin, adminFile, stderr, terminal, log)
	}

	// The side listeners are bound before the main one: once /healthz
	// answers, /metrics and pprof do too (a scrape right after a start
	// was refused while they came up), and a side listener that cannot
	// bind fails the start before any request was served.
	if cfg.PprofListen != "" {
		stopPprof, err := servePprof(cfg.PprofListen, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	if met != nil {
		ms, err := serveMetrics(cfg.MetricsListen, met, log, cfg.IdleTimeout)
		if err != nil {
			return err
		}
		// Closed when serve returns, after the main server has drained
		// (below), so the last scrape can still see the drain's requests.
		defer ms.Close()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if cfg.MaxConnections > 0 {
		// Past the limit, Accept waits: new connections queue in the
		// kernel's backlog until one of the open ones closes.
		ln = netutil.LimitListener(ln, cfg.MaxConnections)
	}
	hs := newHTTPServer(srv, log, cfg.IdleTimeout)
	log.Info("keygate serving", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "tls", certs != nil, "hsts", cfg.HSTS() != "",
		"store", cfg.Store, "data_dir", cfg.DataDir, "signing_alg", cfg.SigningAlg, "version", versionString(), "revision", revisionString(),
		"console", strings.TrimSuffix(cfg.Issuer, "/")+console.Prefix, "trusted_proxies", len(cfg.TrustedProxyPrefixes), "webhooks", len(cfg.Webhooks),
		"max_connections", cfg.MaxConnections, "idle_timeout", cfg.IdleTimeout)

	errc := make(chan error, 1)
	if certs != nil {
		hs.TLSConfig = certs.TLSConfig()
		stopReloads := reloadCertificates(ctx, certs, e)
		defer stopReloads()
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
	var stopErr error
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	case stopErr = <-incompatible:
	}
	log.Info("shutting down: draining requests", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("shutdown did not drain in time", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http server", "err", err)
	}
	log.Info("stopped")
	return stopErr
}

// envMasterKeyFile names a file holding the master key, as an alternative
// to KEYGATE_MASTER_KEY: systemd's LoadCredential and Kubernetes Secret
// volumes hand secrets over as files, which keeps the key out of the
// process environment (readable in /proc by the same user, inherited by
// children). See deploy/systemd/keygate.service.
const envMasterKeyFile = "KEYGATE_MASTER_KEY_FILE"

// maxMasterKeyFileBytes bounds what is read from KEYGATE_MASTER_KEY_FILE:
// a base64 key of 32 bytes is 44 characters, so anything much larger is the
// wrong file, and reading it whole would be pointless.
const maxMasterKeyFileBytes = 4 << 10

// masterKeyConfigured reports whether the environment names a master key,
// in the variable or in a file, so a store shared by several instances can
// insist on one before anything is opened.
func masterKeyConfigured(getenv func(string) string) bool {
	return getenv(envMasterKey) != "" || getenv(envMasterKeyFile) != ""
}

// envMasterKeyPrevious and envMasterKeyPreviousFile name, during a
// master-key rotation, the key the store was sealed under before: keygate
// opens what either key sealed and seals only under the new one (see
// cmd/keygate/masterkey.go and README "Rotating the master key").
const (
	envMasterKeyPrevious     = "KEYGATE_MASTER_KEY_PREVIOUS"
	envMasterKeyPreviousFile = "KEYGATE_MASTER_KEY_PREVIOUS_FILE"
)

// masterKeyFromEnv reads the master key from KEYGATE_MASTER_KEY or the file
// KEYGATE_MASTER_KEY_FILE names; nil, nil when neither is set. Setting both
// is refused rather than one silently winning: with two keys around, a store
// sealed with the wrong one would fail later with a less obvious error.
// KEYGATE_MASTER_KEY_PREVIOUS (or _PREVIOUS_FILE), during a rotation, adds
// the old key (masterkey.Key.WithPrevious); it needs a new key beside it.
// Errors name the variable and the file, never the content.
func masterKeyFromEnv(getenv func(string) string) (*masterkey.Key, error) {
	k, err := keyFromEnv(getenv, envMasterKey, envMasterKeyFile)
	if err != nil {
		return nil, err
	}
	prev, err := keyFromEnv(getenv, envMasterKeyPrevious, envMasterKeyPreviousFile)
	switch {
	case err != nil:
		return nil, err
	case prev == nil:
		return k, nil
	case k == nil:
		return nil, fmt.Errorf("%s is set but %s is not: the previous master key is only for a rotation, beside the new key in %s (or %s)", envMasterKeyPrevious, envMasterKey, envMasterKey, envMasterKeyFile)
	case prev.ID() == k.ID():
		return nil, fmt.Errorf("%s is the same key as %s (ID %s): during a rotation it is the old key, the one the store was sealed under", envMasterKeyPrevious, envMasterKey, k.ID())
	}
	return k.WithPrevious(prev), nil
}

// keyFromEnv reads a master key from the variable name or the file
// fileVar names; nil, nil when neither is set.
func keyFromEnv(getenv func(string) string, name, fileVar string) (*masterkey.Key, error) {
	v, path := getenv(name), getenv(fileVar)
	switch {
	case v != "" && path != "":
		return nil, fmt.Errorf("both %s and %s are set: set only one, so that it is clear which master key the store is sealed with", name, fileVar)
	case v != "":
		k, err := masterkey.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("invalid %s: %w", name, err)
		}
		return k, nil
	case path != "":
		b, err := readMasterKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fileVar, err)
		}
		k, err := masterkey.Parse(string(b))
		if err != nil {
			return nil, fmt.Errorf("invalid %s %s: %w", fileVar, path, err)
		}
		return k, nil
	}
	return nil, nil
}

// masterKeyRotatedError turns a start's failure to open the store's
// secrets because they are sealed under a master key this instance was not
// given (the store was re-sealed by `keygate master-key rotate`) into the
// one line that says what happened and what to do; any other error is
// returned as it is.
func masterKeyRotatedError(err error) error {
	var unknown *masterkey.UnknownKeyError
	if !errors.As(err, &unknown) {
		return err
	}
	return fmt.Errorf("the store is sealed under master key %s, which this instance was not given (it has %s): after a master-key rotation, start it with the new master key in %s or %s; during one, give it the old key too in %s until `keygate master-key rotate` has finished",
		unknown.SealedBy, strings.Join(unknown.Held, " and "), envMasterKey, envMasterKeyFile, envMasterKeyPrevious)
}

// readMasterKeyFile reads at most maxMasterKeyFileBytes of path; a larger
// file is refused. The error names the file, never what is in it.
func readMasterKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read master key file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMasterKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read master key file %s: %w", path, err)
	}
	if len(b) > maxMasterKeyFileBytes {
		return nil, fmt.Errorf("master key file %s is larger than %d bytes: not a master key (want the base64 of %d random bytes, e.g. from `openssl rand -base64 32`)", path, maxMasterKeyFileBytes, masterkey.Size)
	}
	return b, nil
}

// loadMasterKey prefers KEYGATE_MASTER_KEY or KEYGATE_MASTER_KEY_FILE; on
// the embedded store it can fall back to a generated key file in the data
// dir.
func loadMasterKey(dataDir string, getenv func(string) string, log *slog.Logger) (*masterkey.Key, error) {
	if k, err := masterKeyFromEnvLogged(getenv, log); k != nil || err != nil {
		return k, err
	}
	return generatedMasterKey(dataDir, log)
}

// masterKeyFromEnvLogged is masterKeyFromEnv, warning when the key file can
// be read by group or others. Only a warning: Kubernetes mounts secret
// volumes 0644 unless told otherwise, and whoever can read the mount can
// usually read the secret through the API anyway.
func masterKeyFromEnvLogged(getenv func(string) string, log *slog.Logger) (*masterkey.Key, error) {
	k, err := masterKeyFromEnv(getenv)
	if k == nil || err != nil {
		return k, err
	}
	for _, name := range []string{envMasterKeyFile, envMasterKeyPreviousFile} {
		if path := getenv(name); path != "" {
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				log.Warn("the master key file is readable by group or others: restrict it (chmod 600, or defaultMode: 0400 on a Kubernetes secret volume)",
					"file", path, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
			}
		}
	}
	if prev := k.Previous(); prev != nil {
		log.Info("master-key rotation: opening secrets sealed under the previous master key too; drop it once `keygate master-key rotate` has run",
			"master_key_id", k.ID(), "previous_master_key_id", prev.ID())
	}
	return k, nil
}

// generatedMasterKey reads <dataDir>/master.key, generating it when absent.
func generatedMasterKey(dataDir string, log *slog.Logger) (*masterkey.Key, error) {
	k, created, err := masterkey.LoadOrCreate(dataDir)
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("generated a master key; back it up, or set KEYGATE_MASTER_KEY (or KEYGATE_MASTER_KEY_FILE) and delete the file: without it the stored secrets cannot be read",
			"file", filepath.Join(dataDir, masterkey.FileName))
	}
	return k, nil
}

// showAdminCredentials shows a generated admin key once; it is already kept
// in the 0600 file path for the keygate CLI (--admin-credentials-file, or
// the data-dir fallback when the file's token_url matches --url). On a
// terminal the ID and secret are printed for the person watching; otherwise
// only the file's path is logged, so the secret never lands in a log
// collector. Both ways end with a shell-ready export line that names the
// file, never the secret, which would otherwise land in the shell's history.
func showAdminCredentials(admin server.AdminCredentials, path string, stderr io.Writer, terminal bool, log *slog.Logger) {
	// The variable the CLI reads the file's path from (cmd/keygate/keys.go).
	export := "export KEYGATE_ADMIN_CREDENTIALS_FILE=" + shellQuote(path)
	if terminal {
		fmt.Fprintf(stderr, "\nCreated the first admin key. The secret is shown only now; store it safely.\n\n"+
			"  KEYGATE_ADMIN_CLIENT_ID=%s\n  KEYGATE_ADMIN_CLIENT_SECRET=%s\n\n"+
			"Both are also in %s (readable only by you), for the keygate CLI:\n\n"+
			"  %s\n\n", admin.ClientID, admin.ClientSecret, path, export)
		return
	}
	log.Warn("created the first admin key; its credentials are in a file readable only by this user, which the keygate CLI reads: keep it safe, or store them elsewhere and delete the file",
		"file", path, "cli", export)
}

// writeAdminCredentials writes admin's ID and secret, with the token URL they
// are valid at, to <data_dir>/admin-credentials.json (0600) and returns the
// file's absolute path. The token URL lets the CLI refuse to send the secret
// to any other server.
func writeAdminCredentials(admin server.AdminCredentials, cfg config.Config) (string, error) {
	path, err := filepath.Abs(filepath.Join(cfg.DataDir, adminCredentialsFile))
	if err != nil {
		return "", fmt.Errorf("admin credentials file: %w", err)
	}
	data, err := json.MarshalIndent(adminCredentialsJSON{
		ClientID:     admin.ClientID,
		ClientSecret: admin.ClientSecret,
		TokenURL:     strings.TrimSuffix(cfg.Issuer, "/") + "/oauth/token",
	}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode admin credentials: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("write admin credentials: %w", err)
	}
	_, werr := f.Write(append(data, '\n'))
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return "", fmt.Errorf("write admin credentials %s: %w", path, err)
	}
	// The file must outlive a crash right after the key is stored.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return path, nil
}

// shellQuote returns s as one POSIX shell word: unchanged when it holds only
// characters no shell treats specially, else in single quotes (a ' inside
// becomes '\”), so the printed export line can be pasted as it is.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,@%=", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writerIsTerminal reports whether w is a terminal: the real check behind
// env.isTerminal.
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// servePprof serves the runtime profiles on their own listener, so they are
// never reachable through the public address.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for pprof on %s: %w", addr, err)
	}
	ps := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	go ps.Serve(ln)
	log.Info("pprof serving", "addr", ln.Addr().String())
	return func() { ps.Close() }, nil
}

// keyCacheObservable is the Redis store's key cache hook
// (store/redis/cache.go), found by type assertion because serve opens
// whichever backend the configuration names.
type keyCacheObservable interface {
	ObserveKeyCache(redis.KeyCacheObserver)
}

// newHTTPServer is an http.Server for h with the limits every listener of
// keygate keeps (slow clients, header size, idle keep-alive connections:
// idle_timeout), logging its own errors at debug.
func newHTTPServer(h http.Handler, log *slog.Logger, idle time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    maxRequestHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// serveMetrics serves Prometheus metrics at /metrics on a listener of their
// own, so the address clients reach never exposes them (docs/metrics.md).
func serveMetrics(addr string, met *metrics.Metrics, log *slog.Logger, idle time.Duration) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", met.Handler())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	ms := newHTTPServer(mux, log, idle)
	go ms.Serve(ln)
	log.Info("metrics serving", "addr", ln.Addr().String(), "path", "/metrics")
	return ms, nil
}

// reloadCertificates keeps certs current until ctx ends or the returned
// stop is called: a look at the files every certfile.CheckEvery, and a
// reload on SIGHUP (e.certTicks and e.certReloads instead, when set).
// SIGHUP is caught only here, when keygate serves TLS: otherwise it keeps
// its default meaning.
func reloadCertificates(ctx context.Context, certs *certfile.Reloader, e env) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ticks, signals := e.certTicks, e.certReloads
	var stops []func()
	if ticks == nil {
		t := time.NewTicker(certfile.CheckEvery)
		ticks, stops = t.C, append(stops, t.Stop)
	}
	if signals == nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		signals, stops = hup, append(stops, func() { signal.Stop(hup) })
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		certs.Run(ctx, ticks, signals)
	}()
	return func() {
		cancel()
		<-done
		for _, f := range stops {
			f()
		}
	}
}

// offIfZero maps a burst setting's 0 (off) to server.Options' -1 (off;
// there 0 means the default).
func offIfZero(v int) int {
	if v == 0 {
		return -1
	}
	return v
}
