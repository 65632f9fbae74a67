package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/loadgen"
	"github.com/keygate/keygate/signing"
)

// benchTeam is the team --create-key creates its key in, by default.
const benchTeam = "bench"

// floorShutdownTimeout bounds draining the floor's requests on SIGINT.
const floorShutdownTimeout = 10 * time.Second

type benchFlags struct {
	url                            string
	moreURLs                       []string
	clientID, clientSecret         string
	clientSecretFile               string
	credentialsFile                string
	resource                       string
	createKey                      bool
	adminClientID, adminSecretFile string
	adminCredentialsFile           string
	team                           string
	endpoint                       string
	duration, timeout              time.Duration
	connections                    int
	rate                           float64
	json                           bool
	floor                          bool
	listen, signingAlg             string
	getenv                         func(string) string
}

func benchCommand(e env) *cobra.Command {
	f := benchFlags{getenv: e.getenv}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a keygate endpoint, checking every answer; or serve the floor",
		Long: `Load-test a running keygate (like redis-benchmark or wrk) and report
requests/s, errors by cause and latency percentiles from an HDR histogram.

Every answer is checked: a token request counts only if it answered 200 with
an access_token, a JWKS request only with a key, an introspection only with
"active":true. Failures are counted by status ("401", "503"), "bad body",
"timeout" or "transport", and never as throughput.

By default each of --connections sends its next request when the previous
answer arrived (closed loop: maximum throughput). --rate N sends N requests/s
in total on a fixed schedule whatever the answers (open loop), and measures
latency from when each request was due, so stalls are not hidden.

Credentials are a team key's, not the admin's: --client-id with
--client-secret-file (or --client-secret), or --credentials-file with one
"client_id secret" pair a line to spread the load over many keys
round-robin. --create-key instead creates a key in team "bench" with admin
credentials, found as "keygate keys" finds them (--admin-credentials-file,
or --admin-client-id with --admin-client-secret-file; else
KEYGATE_ADMIN_CREDENTIALS_FILE, KEYGATE_ADMIN_CLIENT_ID and
KEYGATE_ADMIN_CLIENT_SECRET, or <data_dir>/admin-credentials.json) and
deletes it afterwards. The JWKS endpoint needs no credentials; introspection asks about
a token fetched once with the first credential.

--floor serves the floor instead: the cheapest token endpoint possible —
form parsing and signing keygate's claim set with keygate's signer, no
authentication, no store — to measure keygate against on the same machine:

  keygate bench --floor --listen 127.0.0.1:9090 --signing-alg ES256
  keygate bench --url http://127.0.0.1:9090 --client-id x --client-secret y

Live progress goes to stderr when it is a terminal. The exit status is 1
when no request succeeded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if f.floor {
				return runFloor(ctx, cmd, &f)
			}
			return runBench(ctx, cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "", "keygate base URL (env "+envURL+", default "+defaultURL+")")
	fl.StringSliceVar(&f.moreURLs, "also-url", nil, "base URL of another instance sharing the store; requests go to --url and these in turn (repeat or comma-separate)")
	fl.StringVar(&f.clientID, "client-id", "", "client ID of the key to load with")
	fl.StringVar(&f.clientSecret, "client-secret", "", "its secret; visible in the process list, prefer --client-secret-file")
	fl.StringVar(&f.clientSecretFile, "client-secret-file", "", "file holding the key's secret")
	fl.StringVar(&f.credentialsFile, "credentials-file", "", `file of "client_id secret" lines, used round-robin`)
	fl.BoolVar(&f.createKey, "create-key", false, `create a key in team "bench" with admin credentials, delete it afterwards`)
	fl.StringVar(&f.adminClientID, "admin-client-id", "", "admin client ID for --create-key (env "+envAdminClientID+")")
	fl.StringVar(&f.adminSecretFile, "admin-client-secret-file", "", "file holding the admin secret for --create-key (env "+envAdminClientSecret+")")
	fl.StringVar(&f.adminCredentialsFile, flagAdminCredentialsFile, "", "for --create-key: "+adminCredentialsFileUsage)
	fl.StringVar(&f.team, "team", benchTeam, "team --create-key creates its key in")
	fl.StringVar(&f.endpoint, "endpoint", loadgen.EndpointToken, "endpoint to load: token, jwks or introspect")
	fl.StringVar(&f.resource, "resource", "", "RFC 8707 resource parameter of each token request (one of the key's audiences)")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long to send requests")
	fl.IntVar(&f.connections, "connections", 16, "concurrent connections")
	fl.Float64Var(&f.rate, "rate", 0, "open loop: requests/s in total on a fixed schedule; 0 = closed loop")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "per-request timeout")
	fl.BoolVar(&f.json, "json", false, "print the result as JSON (durations in ms)")
	fl.BoolVar(&f.floor, "floor", false, "serve the floor token endpoint instead of loading one")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:9090", "address the floor listens on (with --floor)")
	fl.StringVar(&f.signingAlg, "signing-alg", signing.DefaultAlg, "the floor's signing algorithm: "+strings.Join(signing.Algorithms, ", ")+" (with --floor)")
	return cmd
}

func runBench(ctx context.Context, cmd *cobra.Command, f *benchFlags) error {
	for _, name := range []string{"listen", "signing-alg"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s only applies with --floor", name)
		}
	}
	from := "--url"
	if f.url == "" {
		from = envURL
	}
	// As the keys commands: 127.0.0.1:8080 means http://127.0.0.1:8080.
	baseURL, err := normalizeURL(firstNonEmpty(f.url, f.getenv(envURL), defaultURL), from)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	cfg := loadgen.Config{
		URL: baseURL, Endpoint: f.endpoint, Duration: f.duration, Connections: f.connections,
		Rate: f.rate, Timeout: f.timeout, Resource: f.resource,
	}
	for _, m := range f.moreURLs {
		u, err := normalizeURL(m, "--also-url")
		if err != nil {
			return err
		}
		cfg.MoreURLs = append(cfg.MoreURLs, u)
	}
	if f.resource != "" && f.endpoint != loadgen.EndpointToken {
		return errors.New("--resource only applies to --endpoint token")
	}
	if f.connections < 1 {
		return errors.New("--connections must be at least 1")
	}
	switch f.endpoint {
	case loadgen.EndpointToken, loadgen.EndpointJWKS, loadgen.EndpointIntrospect:
	default:
		return fmt.Errorf("--endpoint %q: use token, jwks or introspect", f.endpoint)
	}
	creds, cleanup, err := f.credentials(ctx, cmd, baseURL)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.Credentials = creds
	if f.endpoint != loadgen.EndpointJWKS && len(creds) == 0 {
		return errors.New("credentials missing: pass --client-id and --client-secret-file, --credentials-file, or --create-key")
	}
	if f.endpoint == loadgen.EndpointIntrospect {
		if cfg.IntrospectToken, err = loadgen.FetchToken(ctx, baseURL, creds[0]); err != nil {
			return err
		}
	}
	if file, ok := stderr.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		cfg.Progress = stderr
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.json {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else {
		writeBenchResult(out, res)
	}
	if res.Successes == 0 {
		return fmt.Errorf("no request succeeded (%d failed)", res.Requests)
	}
	return nil
}

// credentials are the keys to load with, and what to do once done (delete
// a key --create-key made).
func (f *benchFlags) credentials(ctx context.Context, cmd *cobra.Command, baseURL string) ([]loadgen.Credential, func(), error) {
	noop := func() {}
	given := 0
	for _, set := range []bool{f.clientID != "" || f.clientSecret != "" || f.clientSecretFile != "", f.credentialsFile != "", f.createKey} {
		if set {
			given++
		}
	}
	if given > 1 {
		return nil, noop, errors.New("use one of --client-id/--client-secret(-file), --credentials-file and --create-key")
	}
	switch {
	case f.credentialsFile != "":
		creds, err := readCredentialsFile(f.credentialsFile)
		return creds, noop, err
	case f.createKey:
		return f.createBenchKey(ctx, cmd, baseURL)
	case f.clientID != "" || f.clientSecret != "" || f.clientSecretFile != "":
		secret := f.clientSecret
		if secret != "" {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning: --client-secret is visible to other users in the process list; prefer --client-secret-file")
		}
		if f.clientSecretFile != "" {
			b, err := os.ReadFile(f.clientSecretFile)
			if err != nil {
				return nil, noop, fmt.Errorf("read --client-secret-file: %w", err)
			}
			secret = strings.TrimSpace(string(b))
		}
		if f.clientID == "" || secret == "" {
			return nil, noop, errors.New("--client-id needs --client-secret-file or --client-secret, and they need --client-id")
		}
		return []loadgen.Credential{{ID: f.clientID, Secret: secret}}, noop, nil
	}
	return nil, noop, nil
}

// mustOrigin is originOf for a URL already checked, or the text itself.
func mustOrigin(raw string) string {
	if o, err := originOf(raw); err == nil {
		return o
	}
	return raw
}

// readCredentialsFile reads "client_id secret" lines; blank lines and lines
// starting with # are skipped.
func readCredentialsFile(name string) ([]loadgen.Credential, error) {
	file, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read --credentials-file: %w", err)
	}
	defer file.Close()
	var creds []loadgen.Credential
	sc := bufio.NewScanner(file)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("--credentials-file %s line %d: want \"client_id secret\"", name, n)
		}
		creds = append(creds, loadgen.Credential{ID: fields[0], Secret: fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read --credentials-file: %w", err)
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("--credentials-file %s holds no credentials", name)
	}
	return creds, nil
}

// createBenchKey creates an accounting_api key (the full claim set) in the
// bench team; cleanup deletes it even when the run was interrupted.
func (f *benchFlags) createBenchKey(ctx context.Context, cmd *cobra.Command, baseURL string) ([]loadgen.Credential, func(), error) {
	noop := func() {}
	a, err := resolveAdmin(cmd, adminInput{
		url: f.url, clientID: f.adminClientID, clientSecretFile: f.adminSecretFile,
		credentialsFile: f.adminCredentialsFile, getenv: f.getenv,
		idFlag: "--admin-client-id", secretFlag: "--admin-client-secret", secretFileFlag: "--admin-client-secret-file",
	})
	if err != nil {
		return nil, noop, fmt.Errorf("--create-key needs admin credentials: %w", err)
	}
	// An admin credentials file may have supplied the URL: the key must be
	// created on the keygate being benched.
	if ao, _ := originOf(a.url); ao != mustOrigin(baseURL) {
		return nil, noop, fmt.Errorf("--create-key: the admin credentials are for %s, but the bench runs against %s; pass --url %s", a.url, baseURL, a.url)
	}
	c := client.New(client.Config{URL: a.url, ClientID: a.id, ClientSecret: a.secret})
	name := "keygate bench " + time.Now().UTC().Format("2006-01-02T15:04:05Z")
	k, err := c.CreateKey(ctx, f.team, name, []string{"accounting_api"})
	if err != nil {
		return nil, noop, fmt.Errorf("--create-key: %w", err)
	}
	stderr := cmd.ErrOrStderr()
	fmt.Fprintf(stderr, "created key %s in team %s for this run\n", k.ClientID, f.team)
	cleanup := func() {
		// The run's context may be cancelled (Ctrl-C): delete regardless.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.DeleteKey(dctx, f.team, k.ClientID); err != nil {
			fmt.Fprintf(stderr, "warning: could not delete key %s of team %s: %v\n", k.ClientID, f.team, err)
			return
		}
		fmt.Fprintf(stderr, "deleted key %s\n", k.ClientID)
	}
	return []loadgen.Credential{{ID: k.ClientID, Secret: k.ClientSecret}}, cleanup, nil
}

func writeBenchResult(w io.Writer, r *loadgen.Result) {
	mode := "closed loop"
	if r.Rate > 0 {
		mode = fmt.Sprintf("open loop at %g requests/s", r.Rate)
	}
	fmt.Fprintf(w, "%s %s, %d connections, %s, %s\n\n", r.Endpoint, r.URL, r.Connections, mode, r.Duration.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "requests/s\t%.1f (successes only)\n", r.RPS)
	fmt.Fprintf(tw, "requests\t%d\n", r.Requests)
	fmt.Fprintf(tw, "successes\t%d\n", r.Successes)
	if n := r.ErrorCount(); n > 0 {
		fmt.Fprintf(tw, "errors\t%d %s\n", n, formatErrors(r.Errors))
	} else {
		fmt.Fprintf(tw, "errors\t0\n")
	}
	if r.Unsent > 0 {
		fmt.Fprintf(tw, "unsent\t%d (due before the end but no connection was free: rate not sustained, latencies understate)\n", r.Unsent)
	}
	switch {
	case r.Successes == 0:
		fmt.Fprintf(tw, "latency\tno successes\n")
	default:
		from := "from sending"
		if r.Rate > 0 {
			from = "from the time each request was due"
		}
		fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%s)\n",
			fmtMS(r.P50), fmtMS(r.P90), fmtMS(r.P99), fmtMS(r.P999), fmtMS(r.Max), from)
	}
	tw.Flush()
}

// formatErrors is "(401: 3, transport: 1)", causes in order.
func formatErrors(errs map[string]int64) string {
	if len(errs) == 0 {
		return ""
	}
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, errs[k])
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

func runFloor(ctx context.Context, cmd *cobra.Command, f *benchFlags) error {
	h, err := loadgen.NewFloorHandler(f.signingAlg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	return serveFloor(ctx, ln, h, f.signingAlg, cmd.ErrOrStderr())
}

// serveFloor serves the floor on ln until ctx ends, then drains. The HTTP
// server has keygate's settings (serve.go), so only the handler differs.
func serveFloor(ctx context.Context, ln net.Listener, h http.Handler, alg string, stderr io.Writer) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       config.DefaultIdleTimeout,
		MaxHeaderBytes:    maxRequestHeaderBytes,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
	}
	fmt.Fprintf(stderr, "floor (%s) serving on http://%s: POST %s, GET %s; stop with Ctrl-C\n",
		alg, ln.Addr(), loadgen.TokenPath, loadgen.JWKSPath)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("floor: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), floorShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		fmt.Fprintf(stderr, "floor: shutdown did not drain in time: %v\n", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("floor: %w", err)
	}
	fmt.Fprintln(stderr, "floor stopped")
	return nil
}
