package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/quota"
)

const (
	envURL                    = "KEYGATE_URL"
	envAdminCredentialsFile   = "KEYGATE_ADMIN_CREDENTIALS_FILE"
	flagAdminCredentialsFile  = "admin-credentials-file"
	adminCredentialsFileUsage = "JSON file of admin credentials as serve writes it (env " + envAdminCredentialsFile + ")"
)

// defaultURL is where a keygate started without settings answers.
var defaultURL = config.DefaultIssuer(config.DefaultListen)

// keysFlags are the connection flags every `keys` command shares, and the
// environment the defaults of the unset ones come from.
type keysFlags struct {
	url, clientID, clientSecret, clientSecretFile string
	adminCredentialsFile, dataDir                 string
	json, quiet                                   bool
	getenv                                        func(string) string
}

func keysCommand(e env) *cobra.Command {
	f := keysFlags{getenv: e.getenv}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage API keys through a running server's management API",
		Long: `Manage API keys through a running keygate's management API.

Admin credentials come from, in this order:
  1. --admin-credentials-file FILE, the JSON file serve writes
     (<data_dir>/admin-credentials.json), or --client-id with
     --client-secret-file (or --client-secret, which other users can see in
     the process list);
  2. KEYGATE_ADMIN_CREDENTIALS_FILE, else KEYGATE_ADMIN_CLIENT_ID with
     KEYGATE_ADMIN_CLIENT_SECRET;
  3. <data_dir>/admin-credentials.json (data_dir as serve resolves it:
     --data-dir, KEYGATE_DATA_DIR, the file KEYGATE_CONFIG names, else
     ./keygate-data).
A credentials file is used only with the keygate it belongs to: when --url
(or KEYGATE_URL) is set, its origin must be the origin of the file's
token_url; an explicitly given file supplies the URL when neither is set.

--url may omit the scheme: 127.0.0.1:8080 means http://127.0.0.1:8080.`,
	}
	f.bindFlags(cmd.PersistentFlags())

	cmd.AddCommand(keysCreateCommand(&f), keysListCommand(&f), keysGetCommand(&f), keysUpdateCommand(&f), keysDeleteCommand(&f), keysRotateCommand(&f),
		keysSuspendCommand(&f, false), keysSuspendCommand(&f, true),
		keysTeamsCommand(&f), keysPermissionsCommand(&f), keysUsageCommand(&f))
	return cmd
}

// bindFlags defines the connection flags (and --json) on fs: the keys
// commands and events share them.
func (f *keysFlags) bindFlags(pf *pflag.FlagSet) {
	pf.StringVar(&f.url, "url", "", "keygate base URL (env "+envURL+", default "+defaultURL+")")
	pf.StringVar(&f.clientID, "client-id", "", "admin client ID (env "+envAdminClientID+")")
	pf.StringVar(&f.clientSecret, "client-secret", "", "admin client secret; visible in the process list, prefer --client-secret-file (env "+envAdminClientSecret+")")
	pf.StringVar(&f.clientSecretFile, "client-secret-file", "", "file holding the admin client secret (the secret alone)")
	pf.StringVar(&f.adminCredentialsFile, flagAdminCredentialsFile, "", adminCredentialsFileUsage)
	pf.StringVar(&f.dataDir, "data-dir", "", "serve's data directory, where admin-credentials.json is looked for when no credentials are given (env KEYGATE_DATA_DIR, default "+config.DefaultDataDir+")")
	pf.BoolVar(&f.json, "json", false, "print JSON instead of a table")
}

// admin finds the admin credentials and the URL to use them with.
func (f *keysFlags) admin(cmd *cobra.Command) (adminCreds, error) {
	return resolveAdmin(cmd, adminInput{
		url: f.url, clientID: f.clientID, clientSecret: f.clientSecret, clientSecretFile: f.clientSecretFile,
		credentialsFile: f.adminCredentialsFile, dataDir: f.dataDir, getenv: f.getenv,
		idFlag: "--client-id", secretFlag: "--client-secret", secretFileFlag: "--client-secret-file",
	})
}

// adminInput is what a command was given to find admin credentials with:
// its flags (whose names differ between keys and bench) and the
// environment.
type adminInput struct {
	url                                      string
	clientID, clientSecret, clientSecretFile string
	credentialsFile, dataDir                 string
	getenv                                   func(string) string
	// Flag names, for messages.
	idFlag, secretFlag, secretFileFlag string
}

// adminCreds are resolved admin credentials and the URL to use them with.
type adminCreds struct {
	url, id, secret string
}

// adminCredentialsJSON is the admin credentials file: serve writes it
// (writeAdminCredentials in serve.go) and the keys commands read it.
type adminCredentialsJSON struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	TokenURL     string `json:"token_url"`
}

// resolveAdmin finds admin credentials in the order keysCommand's help
// gives. A credentials file's secret is only ever sent to the keygate the
// file names (its token_url's origin), so that a file of one instance is
// not offered to another.
func resolveAdmin(cmd *cobra.Command, in adminInput) (adminCreds, error) {
	rawURL := firstNonEmpty(in.url, in.getenv(envURL))
	urlSource := "--url"
	if in.url == "" {
		urlSource = envURL
	}
	flagCreds := in.clientID != "" || in.clientSecret != "" || in.clientSecretFile != ""
	if flagCreds && in.credentialsFile != "" {
		return adminCreds{}, fmt.Errorf("use either --%s or %s with %s, not both", flagAdminCredentialsFile, in.idFlag, in.secretFileFlag)
	}
	fromFile := func(path, how string, explicit bool) (adminCreds, error) {
		c, err := readAdminCredentialsFile(path, how)
		if err != nil {
			return adminCreds{}, err
		}
		origin, err := originOf(c.TokenURL)
		if err != nil {
			return adminCreds{}, fmt.Errorf("%s %s: its token_url %q is not a URL", how, path, c.TokenURL)
		}
		if rawURL == "" {
			if explicit {
				// The base URL is the token URL without the token endpoint's
				// path (an issuer may have a path of its own).
				base := strings.TrimSuffix(strings.TrimRight(c.TokenURL, "/"), "/oauth/token")
				return adminCreds{url: base, id: c.ClientID, secret: c.ClientSecret}, nil
			}
			rawURL, urlSource = defaultURL, "the default URL"
		}
		u, err := normalizeURL(rawURL, urlSource)
		if err != nil {
			return adminCreds{}, err
		}
		if uo, _ := originOf(u); uo != origin {
			return adminCreds{}, fmt.Errorf("the admin credentials in %s belong to the keygate at %s (their token_url), not to %s (%s); "+
				"pass --url %s, or give the credentials of %s with --%s or %s and %s",
				path, origin, u, urlSource, origin, u, flagAdminCredentialsFile, in.idFlag, in.secretFileFlag)
		}
		return adminCreds{url: u, id: c.ClientID, secret: c.ClientSecret}, nil
	}

	switch {
	case in.credentialsFile != "":
		return fromFile(in.credentialsFile, "--"+flagAdminCredentialsFile, true)
	case !flagCreds && in.getenv(envAdminCredentialsFile) != "":
		return fromFile(in.getenv(envAdminCredentialsFile), envAdminCredentialsFile, true)
	}

	id := firstNonEmpty(in.clientID, in.getenv(envAdminClientID))
	secret := in.clientSecret
	if secret != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is visible to other users in the process list; prefer %s or %s\n", in.secretFlag, in.secretFileFlag, envAdminClientSecret)
	}
	if in.clientSecretFile != "" {
		s, err := readSecretFile(in.clientSecretFile, in.secretFileFlag)
		if err != nil {
			return adminCreds{}, err
		}
		secret = s
	}
	if secret == "" {
		secret = in.getenv(envAdminClientSecret)
	}
	if id != "" && secret != "" {
		u, err := normalizeURL(firstNonEmpty(rawURL, defaultURL), urlSource)
		if err != nil {
			return adminCreds{}, err
		}
		return adminCreds{url: u, id: id, secret: secret}, nil
	}
	missing := "admin credentials missing: pass --" + flagAdminCredentialsFile + " (the file serve writes) or " + in.idFlag + " and " + in.secretFileFlag +
		", or set " + envAdminCredentialsFile + ", or " + envAdminClientID + " and " + envAdminClientSecret
	if id != "" || secret != "" || flagCreds {
		return adminCreds{}, errors.New(missing)
	}
	// Nothing given at all: serve's own file, if there is one.
	path, err := defaultAdminCredentialsPath(in.dataDir, in.getenv)
	if err != nil {
		return adminCreds{}, fmt.Errorf("%s (looking for serve's admin-credentials.json: %w)", missing, err)
	}
	if _, err := os.Stat(path); err != nil {
		return adminCreds{}, fmt.Errorf("%s (no %s either)", missing, path)
	}
	return fromFile(path, "the default credentials file", false)
}

// defaultAdminCredentialsPath is <data_dir>/admin-credentials.json, with
// data_dir resolved as serve resolves it (config.Load: flag, environment,
// config file, default).
func defaultAdminCredentialsPath(dataDirFlag string, getenv func(string) string) (string, error) {
	fs := pflag.NewFlagSet("keys", pflag.ContinueOnError)
	fs.String("data-dir", "", "")
	if dataDirFlag != "" {
		if err := fs.Set("data-dir", dataDirFlag); err != nil {
			return "", err
		}
	}
	cfg, err := config.Load(fs, getenv)
	if err != nil {
		return "", err
	}
	return filepath.Join(cfg.DataDir, adminCredentialsFile), nil
}

// readAdminCredentialsFile reads the JSON file serve writes; how names
// where the path came from, for messages. Its secret never appears in one.
func readAdminCredentialsFile(path, how string) (adminCredentialsJSON, error) {
	var c adminCredentialsJSON
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read %s: %w", how, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s %s does not hold admin credentials as serve writes them (JSON with client_id, client_secret and token_url)", how, path)
	}
	switch {
	case c.ClientID == "" || c.ClientSecret == "" || c.TokenURL == "":
		return c, fmt.Errorf("%s %s lacks client_id, client_secret or token_url", how, path)
	case credential.CheckSecretFormat(c.ClientSecret) != nil:
		return c, fmt.Errorf("%s %s: its client_secret is not a keygate secret (kgs_…)", how, path)
	}
	return c, nil
}

// readSecretFile reads a file that holds a secret alone. The JSON file
// serve writes is refused with a pointer to the flag that reads it, rather
// than sent as a secret (which the server would answer with invalid_client).
func readSecretFile(path, flag string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", flag, err)
	}
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, "{") {
		return "", fmt.Errorf("%s %s holds JSON, not a secret alone; for the admin credentials file serve writes, use --%s %s", flag, path, flagAdminCredentialsFile, path)
	}
	if credential.CheckSecretFormat(s) != nil {
		return "", fmt.Errorf("%s %s does not hold a keygate secret (kgs_ followed by 49 letters and digits)", flag, path)
	}
	return s, nil
}

// normalizeURL checks a keygate base URL; one without a scheme
// (127.0.0.1:8080) is taken as http://. from names the flag or variable it
// came from.
func normalizeURL(raw, from string) (string, error) {
	s := strings.TrimSpace(raw)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%s %q is not a keygate URL: want http://host:port or https://host", from, raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// originOf is scheme://host[:port] of a URL, lower-cased, without a default
// port.
func originOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("not an absolute URL")
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// teamCommand runs fn with a management client for commands scoped to a
// team, after checking the --team flag.
func (f *keysFlags) teamCommand(team *string, fn func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	run := f.command(fn)
	return func(cmd *cobra.Command, args []string) error {
		if *team == "" {
			return fmt.Errorf("%s needs --team T; list the teams with `keygate keys teams`", cmd.CommandPath())
		}
		return run(cmd, args)
	}
}

// command runs fn with a management client, and words its errors for the
// command line.
func (f *keysFlags) command(fn func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if f.json && f.quiet {
			return errors.New("use either --json or --quiet, not both")
		}
		a, err := f.admin(cmd)
		if err != nil {
			return err
		}
		c := client.New(client.Config{URL: a.url, ClientID: a.id, ClientSecret: a.secret})
		return cliError(fn(cmd, c, args), a.url)
	}
}

// cliError words an error of the management API for the command line: a
// connection failure says keygate is not reachable and which settings name
// it, and problem details that point at HTTP routes point at the CLI
// commands that call them instead.
func cliError(err error, baseURL string) error {
	if err == nil {
		return nil
	}
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &op) && op.Op == "dial" || errors.As(err, &dns) {
		return fmt.Errorf("cannot reach keygate at %s — is it running? (--url, %s)", baseURL, envURL)
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		out := *ce
		out.Detail = routesToCommands(ce.Detail)
		return &out
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("keygate at %s did not answer: %v", baseURL, ue.Err)
	}
	return err
}

// routeWords maps the routes the management API's problem details mention
// to the commands that call them, most specific first.
var routeWords = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`GET /v1/teams/\{team_id\}/keys\b`), "`keygate keys list --team T`"},
	{regexp.MustCompile(`GET /v1/teams/([^\s/]+)/keys\b`), "`keygate keys list --team $1`"},
	{regexp.MustCompile(`GET /v1/teams\b`), "`keygate keys teams`"},
	{regexp.MustCompile(`GET /v1/permissions\b`), "`keygate keys permissions`"},
	{regexp.MustCompile(`GET /v1/signing-keys\b`), "`keygate signing-keys list`"},
}

func routesToCommands(detail string) string {
	for _, r := range routeWords {
		detail = r.re.ReplaceAllString(detail, r.with)
	}
	return detail
}

// oneArg accepts exactly one argument, named name (as in the command's
// usage), and says what is missing in words rather than cobra's "accepts 1
// arg(s), received 0".
func oneArg(name, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch len(args) {
		case 1:
			return nil
		case 0:
			return fmt.Errorf("%s needs %s (%s): %s", cmd.CommandPath(), name, what, cmd.UseLine())
		default:
			return fmt.Errorf("%s takes one %s, not %d arguments: %s", cmd.CommandPath(), name, len(args), cmd.UseLine())
		}
	}
}

// noArgs refuses arguments, naming the first.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q: %s", cmd.CommandPath(), args[0], cmd.UseLine())
	}
	return nil
}

// permissionList is --permission's values as a list: the flag repeats, and
// each value may hold several IDs separated by commas, as keys list prints
// them.
func permissionList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func keysCreateCommand(f *keysFlags) *cobra.Command {
	var team, name, tokenQuota string
	var perms []string
	var pol policyFlags
	cmd := &cobra.Command{
		Use:   "create --team T --name N --permission P[,P…]",
		Short: "Create an API key; its secret is printed once",
		Long: `Create an API key in team T; its secret is printed once.

--permission takes permission IDs (see keygate keys permissions), repeated or
separated by commas: --permission a,b is --permission a --permission b.

--token-quota gives the key an issuance quota of its own, replacing the
server's token_quota_per_key: 1000/hour, 100000/day, or either with :log
(count and log once per window, never refuse).

Policy: --expires-at (RFC 3339) or --expires-in (90d, 720h) sets when the
key stops getting tokens; --token-ttl its tokens' lifetime; --audience
(repeatable) the audiences its tokens may name; --allowed-cidr (repeatable)
the source addresses it may get tokens from; --metadata a JSON object kept
with it.

--quiet prints two lines for scripts: the client ID, then the secret.`,
		Args: noArgs,
		RunE: f.teamCommand(&team, func(cmd *cobra.Command, c *client.Client, _ []string) error {
			nk := client.NewKey{Name: name, Permissions: permissionList(perms)}
			if cmd.Flags().Changed("token-quota") {
				q, err := parseTokenQuota(tokenQuota)
				if err != nil {
					return err
				}
				nk.TokenQuota = q
			}
			p, err := pol.createPolicy(cmd.Flags(), keysNow())
			if err != nil {
				return err
			}
			nk.Policy = p
			k, err := c.CreateKeyWith(cmd.Context(), team, nk)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case f.json:
				return writeJSON(out, k)
			case f.quiet:
				_, err := fmt.Fprintf(out, "%s\n%s\n", k.ClientID, k.ClientSecret)
				return err
			}
			writeKeyTable(out, []client.Key{k.Key})
			fmt.Fprintf(out, "\nclient_secret: %s\n\nStore the secret now: it cannot be shown again.\n", k.ClientSecret)
			return nil
		}),
	}
	cmd.Flags().StringVar(&team, "team", "", "team ID")
	cmd.Flags().StringVar(&name, "name", "", "key name, 1–64 characters")
	cmd.Flags().StringArrayVar(&perms, "permission", nil, "permission IDs from the catalog, repeatable or comma-separated, e.g. accounting_api,visualization_sdk")
	cmd.Flags().StringVar(&tokenQuota, "token-quota", "", "the key's own issuance quota: N/hour or N/day, :log to only log, e.g. 1000/hour")
	pol.bind(cmd.Flags(), false)
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print only the client ID and, on the next line, the secret")
	return cmd
}

func keysListCommand(f *keysFlags) *cobra.Command {
	var team string
	cmd := &cobra.Command{
		Use:   "list --team T",
		Short: "List a team's API keys",
		Long: `List a team's API keys, oldest first.

--quiet prints only their client IDs, one a line.`,
		Args: noArgs,
		RunE: f.teamCommand(&team, func(cmd *cobra.Command, c *client.Client, _ []string) error {
			l, err := c.ListKeys(cmd.Context(), team)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case f.json:
				return writeJSON(out, l)
			case f.quiet:
				for _, k := range l.Keys {
					fmt.Fprintln(out, k.ClientID)
				}
				return nil
			}
			writeKeyTable(out, l.Keys)
			fmt.Fprintf(out, "\n%d of %d keys used\n", len(l.Keys), l.MaxKeys)
			return nil
		}),
	}
	cmd.Flags().StringVar(&team, "team", "", "team ID")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print only the client IDs, one a line")
	return cmd
}

// findKey looks a key up for get, delete and rotate. Without --team its
// client ID finds it whatever its team; with --team it must be that team's:
// a key of another team is refused with the team it belongs to, before
// anything is changed.
func findKey(cmd *cobra.Command, c *client.Client, team, id string) (*client.Key, error) {
	ctx := cmd.Context()
	if team == "" {
		return c.Key(ctx, id)
	}
	k, err := c.GetKey(ctx, team, id)
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		if other, oerr := c.Key(ctx, id); oerr == nil {
			return nil, fmt.Errorf("key %s belongs to team %s, not --team %s; nothing was changed (omit --team, or pass --team %s)", id, other.TeamID, team, other.TeamID)
		}
	}
	return k, err
}

const clientIDWhat = "the key's client ID, as keygate keys list shows it"

func keysGetCommand(f *keysFlags) *cobra.Command {
	var team string
	cmd := &cobra.Command{
		Use:   "get [--team T] CLIENT_ID",
		Short: "Show one API key",
		Long: `Show one API key. Its client ID finds it whatever its team; --team, if
given, must be the key's team.`,
		Args: oneArg("CLIENT_ID", clientIDWhat),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			k, err := findKey(cmd, c, team, args[0])
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), k)
			}
			writeKeyTable(cmd.OutOrStdout(), []client.Key{*k})
			writeRotation(cmd.OutOrStdout(), *k)
			writePolicy(cmd.OutOrStdout(), *k, keysNow())
			return nil
		}),
	}
	cmd.Flags().StringVar(&team, "team", "", "team ID (optional: the key's team, checked)")
	return cmd
}

func keysUpdateCommand(f *keysFlags) *cobra.Command {
	var team, name, tokenQuota string
	var perms []string
	var grantOperator bool
	var pol policyFlags
	cmd := &cobra.Command{
		Use:   "update [--team T] [--name N] [--permission P[,P…]] [--token-quota Q] [policy flags] CLIENT_ID",
		Short: "Rename an API key, replace its permissions or set its token quota",
		Long: `Rename an API key (--name) or replace its whole permission list
(--permission, repeated or separated by commas), or both in one change. A new
permission list applies from the key's next token; tokens already issued keep
their scope until they expire. The secret does not change.

--token-quota sets the key's own issuance quota (1000/hour, 100000/day, :log
to only log); --token-quota off removes it, so the server's
token_quota_per_key applies again. It applies from the key's next token.

Policy: --expires-at or --expires-in (not into the past; --no-expiry: never,
though an expired key cannot be un-expired), --token-ttl (--no-token-ttl),
--audience (--no-audiences), --allowed-cidr (--no-allowed-cidrs), --metadata
(--no-metadata). A repeated flag gives the whole new list.

Adding an operator-only permission (such as token_introspection) needs
--grant-operator-permissions. --team, if given, must be the key's team.`,
		Args: oneArg("CLIENT_ID", clientIDWhat),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			var u client.KeyUpdate
			if cmd.Flags().Changed("name") {
				u.Name = &name
			}
			if cmd.Flags().Changed("permission") {
				if u.Permissions = permissionList(perms); len(u.Permissions) == 0 {
					return errors.New("--permission is empty; give the key's whole new list of permission IDs (see keygate keys permissions)")
				}
			}
			if cmd.Flags().Changed("token-quota") {
				q, err := parseTokenQuota(tokenQuota)
				if err != nil {
					return err
				}
				u.TokenQuota, u.ClearTokenQuota = q, q == nil
			}
			policy, err := pol.updatePolicy(cmd.Flags(), keysNow(), &u)
			if err != nil {
				return err
			}
			if u.Name == nil && u.Permissions == nil && u.TokenQuota == nil && !u.ClearTokenQuota && !policy {
				return fmt.Errorf("%s needs --name, --permission, --token-quota or a policy flag: nothing to change", cmd.CommandPath())
			}
			if grantOperator && u.Permissions == nil {
				return errors.New("--grant-operator-permissions applies to the permissions given with --permission; there are none")
			}
			u.GrantOperatorPermissions = grantOperator
			k, err := findKey(cmd, c, team, args[0])
			if err != nil {
				return err
			}
			got, err := c.UpdateKey(cmd.Context(), k.TeamID, k.ClientID, u)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case f.json:
				return writeJSON(out, got)
			case f.quiet:
				_, err := fmt.Fprintln(out, got.ClientID)
				return err
			}
			writeKeyTable(out, []client.Key{*got})
			return nil
		}),
	}
	cmd.Flags().StringVar(&team, "team", "", "team ID (optional: the key's team, checked)")
	cmd.Flags().StringVar(&name, "name", "", "the key's new name, 1–64 characters")
	cmd.Flags().StringArrayVar(&perms, "permission", nil, "the whole new list of permission IDs, repeatable or comma-separated")
	cmd.Flags().BoolVar(&grantOperator, "grant-operator-permissions", false, "consent to operator-only permissions that --permission adds")
	cmd.Flags().StringVar(&tokenQuota, "token-quota", "", "the key's own issuance quota: N/hour or N/day, :log to only log; off removes it")
	pol.bind(cmd.Flags(), true)
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print only the client ID")
	return cmd
}

func keysRotateCommand(f *keysFlags) *cobra.Command {
	var team string
	var grace time.Duration
	graceFlag := config.NewDurationValue(24*time.Hour, &grace)
	cmd := &cobra.Command{
		Use:   "rotate [--team T] [--grace-period 24h] CLIENT_ID",
		Short: "Give an API key a new secret, printed once; the old one works for a grace period",
		Long: `Give an API key a new secret, printed once.

The old secret keeps working for --grace-period (0s to 7d, default 24h; Go
durations such as 36h or 90m, or days such as 7d or 1d12h) so running
integrations can switch over; --grace-period 0s ends it at once. A key has at
most two working secrets: rotating again during a grace period ends the
oldest secret at once. --team, if given, must be the key's team.`,
		Args: oneArg("CLIENT_ID", clientIDWhat),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			gp, err := gracePeriodArg(cmd, grace, graceFlag)
			if err != nil {
				return err
			}
			k, err := findKey(cmd, c, team, args[0])
			if err != nil {
				return err
			}
			// client.RotateKey sends the Go form (7d as 168h0m0s), which every
			// keygate version reads; the text as written is echoed below.
			r, err := c.RotateKey(cmd.Context(), k.TeamID, k.ClientID, gp)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, r)
			}
			writeKeyTable(out, []client.Key{r.Key})
			fmt.Fprintf(out, "\nclient_secret: %s\n\nStore the secret now: it cannot be shown again.\n", r.ClientSecret)
			if r.PreviousSecretExpiresAt != nil {
				given := "24h, the default"
				if gp != nil {
					given = graceFlag.String() // as the user wrote it
				}
				fmt.Fprintf(out, "The old secret keeps working until %s (grace period %s); switch your integration to the new one before then.\n", formatTime(*r.PreviousSecretExpiresAt), given)
			} else {
				fmt.Fprintln(out, "The old secret no longer works.")
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&team, "team", "", "team ID (optional: the key's team, checked)")
	cmd.Flags().Var(graceFlag, "grace-period", "how long the old secret keeps working, 0s to 7d (e.g. 36h, 7d)")
	return cmd
}

// gracePeriodArg is --grace-period as a rotation sends it: nil when the
// flag was not given (the server's default applies), else the value,
// refused here when out of apikey's range.
func gracePeriodArg(cmd *cobra.Command, grace time.Duration, flag fmt.Stringer) (*time.Duration, error) {
	if !cmd.Flags().Changed("grace-period") {
		return nil, nil
	}
	if grace < 0 || grace > apikey.MaxGracePeriod {
		return nil, fmt.Errorf("--grace-period %s is out of range: want 0s to %s (%dh)", flag, formatDays(apikey.MaxGracePeriod), apikey.MaxGracePeriod/time.Hour)
	}
	return &grace, nil
}

// formatDays writes d in days when it is whole days (168h is "7d").
func formatDays(d time.Duration) string {
	if d > 0 && d%config.Day == 0 {
		return fmt.Sprintf("%dd", d/config.Day)
	}
	return d.String()
}

// writeRotation adds a key's rotation state below its table, if it has any.
// parseTokenQuota reads --token-quota (quota.Parse's syntax); "off" is nil.
func parseTokenQuota(s string) (*client.TokenQuota, error) {
	p, err := quota.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--token-quota: %v; want %s", err, quota.Syntax)
	}
	if p.IsZero() {
		return nil, nil
	}
	return &client.TokenQuota{Limit: p.Limit, Per: string(p.Per), Mode: string(p.Mode)}, nil
}

func writeRotation(w io.Writer, k client.Key) {
	if q := k.TokenQuota; q != nil {
		fmt.Fprintf(w, "\ntoken quota: %d per %s (%s)\n", q.Limit, q.Per, q.Mode)
	}
	if k.SecretRotatedAt != nil {
		fmt.Fprintf(w, "\nsecret rotated: %s\n", formatTime(*k.SecretRotatedAt))
	}
	if k.PreviousSecretExpiresAt != nil {
		fmt.Fprintf(w, "previous secret works until: %s\n", formatTime(*k.PreviousSecretExpiresAt))
	}
	if k.SecretSuspendedAt != nil {
		fmt.Fprintf(w, "secret suspended: %s (reported leaked; keygate keys rotate gives a working one)\n", formatTime(*k.SecretSuspendedAt))
	}
}

func formatTime(t time.Time) string { return t.Local().Format(time.DateTime + " MST") }

func keysDeleteCommand(f *keysFlags) *cobra.Command {
	var team string
	cmd := &cobra.Command{
		Use:   "delete [--team T] CLIENT_ID",
		Short: "Delete an API key; it gets no token from then on",
		Long: `Delete an API key; it gets no token from then on. Its client ID finds it
whatever its team; --team, if given, must be the key's team.`,
		Args: oneArg("CLIENT_ID", clientIDWhat),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			k, err := findKey(cmd, c, team, args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteKey(cmd.Context(), k.TeamID, k.ClientID); err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"deleted": k.ClientID})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", k.ClientID)
			return nil
		}),
	}
	cmd.Flags().StringVar(&team, "team", "", "team ID (optional: the key's team, checked)")
	return cmd
}

func keysTeamsCommand(f *keysFlags) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "teams [--prefix P]",
		Short: "List the teams that hold API keys, with their key counts",
		Long: `List the teams that hold API keys, sorted by team ID, with how many keys
each holds of the per-team maximum.

Teams are implicit: a team exists while it holds keys, so a team whose last
key was deleted is not listed. --prefix lists only the teams whose ID starts
with it. --quiet prints only the team IDs, one a line.`,
		Args: noArgs,
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			l, err := c.Teams(cmd.Context(), prefix)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case f.json:
				return writeJSON(out, l)
			case f.quiet:
				for _, t := range l.Teams {
					fmt.Fprintln(out, t.TeamID)
				}
				return nil
			}
			if len(l.Teams) == 0 && prefix != "" {
				fmt.Fprintf(out, "No team whose ID starts with %q holds API keys.\n", prefix)
				return nil
			}
			if len(l.Teams) == 0 {
				fmt.Fprintln(out, "No team holds API keys yet; create one with: keygate keys create --team T --name N --permission P")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TEAM\tKEYS")
			for _, t := range l.Teams {
				fmt.Fprintf(tw, "%s\t%d of %d\n", t.TeamID, t.KeyCount, l.MaxKeys)
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "list only teams whose ID starts with this")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print only the team IDs, one a line")
	return cmd
}

func keysPermissionsCommand(f *keysFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "permissions",
		Short: "List the permissions a team's API key may be given",
		Long: `List the permissions from the server's catalog that a team's API key may be
given, in catalog order: the IDs to pass to "keys create --permission", with
their names, descriptions and the OAuth scopes each grants. Operator-only
permissions are not listed.`,
		Args: noArgs,
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			l, err := c.Permissions(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, l)
			}
			if len(l.Permissions) == 0 {
				fmt.Fprintln(out, "The server's catalog offers no permissions to teams.")
				return nil
			}
			writePermissionTable(out, l.Permissions)
			fmt.Fprintln(out, "\nGrant them with: keygate keys create --team T --name N --permission ID [--permission ID…]")
			return nil
		}),
	}
}

// permissionTableWidth is the width writePermissionTable keeps to, unless an
// ID or a single word is too long for it.
const permissionTableWidth = 100

// writePermissionTable prints permissions as ID, NAME and SCOPES columns
// within permissionTableWidth: the description goes under the name, and
// long names, descriptions and scope lists wrap inside their columns. A
// blank line separates the permissions.
func writePermissionTable(w io.Writer, perms []client.Permission) {
	const gap = 2
	idW, scopeW, nameW := runeLen("ID"), runeLen("SCOPES"), runeLen("NAME")
	for _, p := range perms {
		idW = max(idW, runeLen(p.ID))
		nameW = max(nameW, runeLen(p.Name))
		for _, s := range p.Scopes {
			scopeW = max(scopeW, runeLen(s))
		}
	}
	// The name column gets what the ID and the longest scope leave (at least
	// 30 columns); the scope column gets the rest.
	nameW = max(min(nameW, permissionTableWidth-idW-scopeW-2*gap), 30)
	scopeW = max(scopeW, permissionTableWidth-idW-nameW-2*gap)

	line := func(id, name, scopes string) {
		s := padRight(id, idW+gap) + padRight(name, nameW+gap) + scopes
		fmt.Fprintln(w, strings.TrimRight(s, " "))
	}
	line("ID", "NAME", "SCOPES")
	for i, p := range perms {
		if i > 0 {
			fmt.Fprintln(w)
		}
		text := wrapWords(strings.Fields(p.Name), nameW)
		text = append(text, wrapWords(strings.Fields(p.Description), nameW)...)
		scopes := wrapWords(p.Scopes, scopeW)
		for j := 0; j < max(len(text), len(scopes)); j++ {
			var id, name, scope string
			if j == 0 {
				id = p.ID
			}
			if j < len(text) {
				name = text[j]
			}
			if j < len(scopes) {
				scope = scopes[j]
			}
			line(id, name, scope)
		}
	}
}

// wrapWords joins words with spaces into lines of at most width runes; a
// word longer than width gets a line of its own.
func wrapWords(words []string, width int) []string {
	var lines []string
	cur := ""
	for _, w := range words {
		switch {
		case cur == "":
			cur = w
		case runeLen(cur)+1+runeLen(w) <= width:
			cur += " " + w
		default:
			lines = append(lines, cur)
			cur = w
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

func runeLen(s string) int { return utf8.RuneCountInString(s) }

func padRight(s string, width int) string {
	if n := runeLen(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s + " "
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeKeyTable(w io.Writer, keys []client.Key) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCLIENT ID\tSTATUS\tEXPIRES\tCREATED\tLAST USED\tROTATED\tRESTRICTIONS\tPERMISSIONS")
	now := keysNow()
	for _, k := range keys {
		last := "never"
		if k.LastUsedAt != nil {
			last = k.LastUsedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.ClientID, keyStatus(k), keyExpires(k, now),
			k.CreatedAt.Local().Format(time.DateTime), last, keyRotated(k), keyRestrictions(k), strings.Join(k.Permissions, ","))
	}
	tw.Flush()
}
