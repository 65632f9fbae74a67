package server_test

// The authorization matrix (docs/authorization.md): every /v1 route the
// router mounts has a row, and every cell of every mounted row holds — a
// real request per cell, on a fresh keygate, with the exact refusal (status,
// problem type and detail, WWW-Authenticate) and an unchanged store, or the
// route's success status.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

// Columns of the matrix, in the document's order.
var matrixCallers = []string{"full admin", "read admin", "manager", "other manager", "team key",
	"console session", "exchanged", "no token", "expired", "revoked"}

type matrixRow struct {
	method, path string // gin template: /v1/teams/:team_id/keys
	cells        map[string]string
}

// readMatrix parses the matrix table of docs/authorization.md.
func readMatrix(t *testing.T) map[string]matrixRow {
	t.Helper()
	f, err := os.Open("../docs/authorization.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	param := regexp.MustCompile(`\{([a-z_]+)\}`)
	rows := map[string]matrixRow{}
	var header []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			header = nil
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case header == nil:
			header = cells
			continue
		case strings.HasPrefix(cells[0], "---") || header[0] != "route":
			continue
		}
		if !slices.Equal(header[1:], matrixCallers) {
			t.Fatalf("matrix columns %q, want %q", header[1:], matrixCallers)
		}
		if len(cells) != len(header) {
			t.Fatalf("row %q has %d cells, want %d", line, len(cells), len(header))
		}
		method, path, ok := strings.Cut(strings.Trim(cells[0], "`"), " ")
		if !ok {
			t.Fatalf("row %q: route is not `METHOD /path`", line)
		}
		r := matrixRow{method: method, path: param.ReplaceAllString(path, ":$1"), cells: map[string]string{}}
		for i, who := range matrixCallers {
			r.cells[who] = cells[i+1]
		}
		key := r.method + " " + r.path
		if _, dup := rows[key]; dup {
			t.Fatalf("route %s twice in the matrix", key)
		}
		rows[key] = r
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 20 {
		t.Fatalf("only %d matrix rows parsed", len(rows))
	}
	return rows
}

// TestAuthorizationMatrixCoversRoutes fails on a /v1 route the router
// mounts without a row in docs/authorization.md, on a row whose route is
// neither mounted nor in the server's route table, and on a rule without a
// row.
func TestAuthorizationMatrixCoversRoutes(t *testing.T) {
	rows := readMatrix(t)
	e := newTestEnv(t, server.Options{})
	mounted := map[string]bool{}
	for _, r := range server.Routes(e.Server) {
		if !strings.HasPrefix(r.Path, "/v1/") {
			continue
		}
		m := r.Method
		if m == http.MethodHead {
			m = http.MethodGet
		}
		key := m + " " + r.Path
		mounted[key] = true
		if _, ok := rows[key]; !ok {
			t.Errorf("%s is mounted but has no row in docs/authorization.md", key)
		}
	}
	rules := server.RouteRules()
	for _, key := range rules {
		if _, ok := rows[key]; !ok {
			t.Errorf("%s has a rule in server/authz.go but no row in docs/authorization.md", key)
		}
	}
	for key, r := range rows {
		public := r.cells["no token"] == "public"
		switch {
		case public && slices.Contains(rules, key):
			t.Errorf("%s is public in the matrix but has a rule (behind the bearer check)", key)
		case !public && !slices.Contains(rules, key):
			t.Errorf("%s is in the matrix but has no rule in server/authz.go", key)
		case public && !mounted[key]:
			t.Errorf("%s is public in the matrix but not mounted", key)
		}
		if _, ok := matrixSamples[key]; !ok && !public {
			t.Errorf("%s has no sample request in matrixSamples", key)
		}
	}
}

// matrixSample is how a row's request is made on the fixture: path
// parameters (defaults: team acme, the fixture's target key, its session),
// a valid body, and its success status.
type matrixSample struct {
	params      map[string]string
	body        string
	contentType string // default application/json when there is a body
	status      int
	notFound    string // the other manager's 404 detail, when not the route table's
	bolt        bool   // needs the embedded store (else memory, which keeps sessions)
}

// matrixSamples: one per route. "{read}" stands for the read-only admin
// key's client ID.
var matrixSamples = map[string]matrixSample{
	"GET /v1/me":                                             {status: 200},
	"GET /v1/teams":                                          {status: 200},
	"GET /v1/permissions":                                    {status: 200},
	"GET /v1/keys/:client_id":                                {status: 200, notFound: "team beta has no key"},
	"GET /v1/events":                                         {status: 200},
	"GET /v1/teams/:team_id/events":                          {status: 200},
	"GET /v1/teams/:team_id/usage":                           {status: 200},
	"POST /v1/teams/:team_id/keys":                           {body: `{"name":"new key","permissions":["accounting_api"]}`, status: 201},
	"GET /v1/teams/:team_id/keys":                            {status: 200},
	"GET /v1/teams/:team_id/keys/:client_id":                 {status: 200},
	"PATCH /v1/teams/:team_id/keys/:client_id":               {body: `{"name":"renamed"}`, contentType: "application/merge-patch+json", status: 200},
	"DELETE /v1/teams/:team_id/keys/:client_id":              {status: 204},
	"POST /v1/teams/:team_id/keys/:client_id/rotate":         {status: 200},
	"DELETE /v1/teams/:team_id":                              {status: 200},
	"POST /v1/teams/:team_id/console-sessions":               {body: `{"user":"alice@example.com","ttl":"15m"}`, status: 201},
	"GET /v1/teams/:team_id/console-sessions":                {status: 200},
	"DELETE /v1/teams/:team_id/console-sessions/:session_id": {status: 204},
	"GET /v1/admin-keys":                                     {status: 200},
	"GET /v1/admin-keys/:client_id":                          {params: map[string]string{"client_id": "{read}"}, status: 200},
	"POST /v1/admin-keys":                                    {body: `{"name":"ops","role":"read"}`, status: 201},
	"DELETE /v1/admin-keys/:client_id":                       {params: map[string]string{"client_id": "{read}"}, status: 204},
	"POST /v1/admin-keys/:client_id/rotate":                  {params: map[string]string{"client_id": "{read}"}, status: 200},
	"GET /v1/store/backup":                                   {status: 200, bolt: true},
	"GET /v1/signing-keys":                                   {status: 200},
	"POST /v1/signing-keys/rotate":                           {body: `{}`, status: 200},
}

// matrixFixture is a fresh keygate with every kind of caller.
type matrixFixture struct {
	e       *testEnv
	clk     *servertest.Clock
	admin   string
	target  servertest.Key // an ordinary key of acme, the path's key
	readID  string         // the read-only admin key
	session string         // a console session of acme
	sessOK  bool           // the store keeps sessions
	tokens  map[string]string
}

func newMatrixFixture(t *testing.T, backend servertest.Backend) *matrixFixture {
	t.Helper()
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	f := &matrixFixture{e: startEnv(t, servertest.Config{Clock: clk, Backend: backend}), clk: clk, tokens: map[string]string{}}
	e, ctx := f.e, context.Background()
	f.admin = e.AdminToken(t)
	f.target = e.CreateKeyWith(t, f.admin, "acme", "target", permAccounting)
	// A read-only admin key, written as the admin-keys API would, and its
	// token as /oauth/token signs it.
	idx, err := e.Store.NextStatusIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rk := store.Key{ClientID: "kga_readonly", Name: "read", Role: store.RoleRead, CreatedAt: clk.Now(),
		SecretHash: make([]byte, 32), StatusIndex: idx}
	if err := e.Store.CreateKey(ctx, rk, 0); err != nil {
		t.Fatal(err)
	}
	f.readID = rk.ClientID
	if f.tokens["read admin"], err = server.SignKeyToken(e.Server, rk, "keys:read"); err != nil {
		t.Fatal(err)
	}
	f.tokens["full admin"] = f.admin
	mgr := e.CreateManager(t, f.admin, "acme", "manager")
	f.tokens["manager"] = e.Token(t, mgr.ClientID, mgr.ClientSecret, "").AccessToken
	other := e.CreateManager(t, f.admin, "beta", "beta manager")
	f.tokens["other manager"] = e.Token(t, other.ClientID, other.ClientSecret, "").AccessToken
	plain := e.CreateKeyWith(t, f.admin, "acme", "plain", permVisualization)
	f.tokens["team key"] = e.Token(t, plain.ClientID, plain.ClientSecret, "").AccessToken
	f.tokens["no token"] = ""
	f.tokens["expired"] = e.AdminToken(t) // expires when the test moves the clock
	revoked := e.AdminToken(t)
	form := url.Values{"token": {revoked}}
	req := e.NewRequest(t, http.MethodPost, "/oauth/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", servertest.BasicAuth(e.AdminID, e.AdminSecret))
	if r := e.Do(t, req); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	f.tokens["revoked"] = revoked
	if ss, ok := store.Feature[store.Sessions](e.Store); ok {
		f.sessOK = true
		for _, kind := range []string{store.SessionConsole, store.SessionExchange} {
			sess := store.ManagementSession{ID: newSessionID(t), TeamID: "acme", User: "alice@example.com", Kind: kind,
				MintedBy: e.AdminID, CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(15 * time.Minute)}
			if err := ss.CreateSession(ctx, sess, nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			tok, err := server.SignSessionToken(e.Server, sess)
			if err != nil {
				t.Fatal(err)
			}
			who := "console session"
			if kind == store.SessionExchange {
				who = "exchanged"
			}
			f.tokens[who] = tok
		}
		// The path's session: a third one, so deleting it ends neither
		// caller's.
		sess := store.ManagementSession{ID: newSessionID(t), TeamID: "acme", User: "bob@example.com", Kind: store.SessionConsole,
			MintedBy: e.AdminID, CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(15 * time.Minute)}
		if err := ss.CreateSession(ctx, sess, nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		f.session = sess.ID
	}
	e.FlushLastUsed(t)
	return f
}

func newSessionID(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "ses_" + base64.RawURLEncoding.EncodeToString(b)
}

// snapshot is the store as far as a request could change it: keys,
// signing keys, audit events (servertest) and the sessions of both teams.
func (f *matrixFixture) snapshot(t *testing.T) string {
	t.Helper()
	s := f.e.Snapshot(t)
	if ss, ok := store.Feature[store.Sessions](f.e.Store); ok {
		for _, team := range []string{"acme", "beta"} {
			l, err := ss.ListSessions(context.Background(), team, f.clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(l)
			s += "\n" + string(b)
		}
	}
	return s
}

func (f *matrixFixture) path(template string, params map[string]string) string {
	def := map[string]string{"team_id": "acme", "client_id": f.target.ClientID, "session_id": f.session}
	parts := strings.Split(template, "/")
	for i, p := range parts {
		name, ok := strings.CutPrefix(p, ":")
		if !ok {
			continue
		}
		v := def[name]
		if o, ok := params[name]; ok {
			v = o
		}
		if v == "{read}" {
			v = f.readID
		}
		parts[i] = url.PathEscape(v)
	}
	return strings.Join(parts, "/")
}

// refusal is what a refused cell must answer, by column and status.
func wantRefusal(who string, status int) (typ, detail, challenge string) {
	switch {
	case status == 401 && who == "no token":
		return "urn:keygate:problem:unauthorized", "send an admin access token", `Bearer realm="keygate"`
	case status == 401 && who == "team key":
		return "urn:keygate:problem:unauthorized", "wrong audience", `Bearer realm="keygate", error="invalid_token"`
	case status == 401 && who == "expired":
		return "urn:keygate:problem:unauthorized", "expired", `Bearer realm="keygate", error="invalid_token"`
	case status == 401 && who == "revoked":
		return "urn:keygate:problem:unauthorized", "revoked", `Bearer realm="keygate", error="invalid_token"`
	case status == 403 && who == "read admin":
		return "urn:keygate:problem:forbidden", "read-only admin key cannot change anything", `Bearer realm="keygate", error="insufficient_scope", scope="keys:admin"`
	case status == 403:
		return "urn:keygate:problem:forbidden", "this route is for operators", `Bearer realm="keygate", error="insufficient_scope", scope="keys:admin"`
	case status == 404 && who == "other manager":
		return "urn:keygate:problem:not-found", "it manages team beta only", ""
	}
	return "", "", ""
}

func TestAuthorizationMatrix(t *testing.T) {
	rows := readMatrix(t)
	probe := newTestEnv(t, server.Options{})
	mounted := map[string]bool{}
	for _, r := range server.Routes(probe.Server) {
		mounted[r.Method+" "+r.Path] = true
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		row := rows[key]
		if row.cells["no token"] == "public" {
			continue
		}
		t.Run(key, func(t *testing.T) {
			if !mounted[key] {
				t.Skipf("%s is not mounted on this branch yet (its helper mounts it)", key)
			}
			t.Parallel()
			sample := matrixSamples[key]
			for _, who := range matrixCallers {
				t.Run(who, func(t *testing.T) {
					checkMatrixCell(t, row, sample, who)
				})
			}
		})
	}
}

func checkMatrixCell(t *testing.T, row matrixRow, sample matrixSample, who string) {
	cell := row.cells[who]
	backend := servertest.Memory()
	if sample.bolt {
		backend = servertest.Bolt()
	}
	f := newMatrixFixture(t, backend)
	if (who == "console session" || who == "exchanged") && !f.sessOK {
		t.Skip("this store keeps no management sessions yet (store.Sessions)")
	}
	if strings.Contains(row.path, ":session_id") && !f.sessOK {
		t.Skip("this store keeps no management sessions yet (store.Sessions)")
	}
	if who == "expired" {
		f.clk.Advance(time.Hour) // past the token's 15 minutes
	}
	path := f.path(row.path, sample.params)
	before := f.snapshot(t)
	var body io.Reader
	if sample.body != "" {
		body = strings.NewReader(sample.body)
	}
	req := f.e.NewRequest(t, row.method, path, body)
	if sample.body != "" {
		ct := sample.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if tok := f.tokens[who]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	r := f.e.Do(t, req)
	status, err := strconv.Atoi(cell)
	if err != nil {
		t.Fatalf("cell %q is not a status", cell)
	}
	if status < 300 {
		if status != sample.status {
			t.Fatalf("the matrix says %d, the sample's success status is %d", status, sample.status)
		}
		if r.Status != status {
			t.Fatalf("%s %s as %s: %s, want %d", row.method, path, who, r, status)
		}
		return
	}
	typ, detail, challenge := wantRefusal(who, status)
	if status == 404 && sample.notFound != "" {
		detail = sample.notFound
	}
	if typ == "" {
		t.Fatalf("no expected refusal for %s answering %d: extend wantRefusal", who, status)
	}
	p := checkProblem(t, r, status)
	if p.Type != typ || !strings.Contains(p.Detail, detail) {
		t.Errorf("%s %s as %s: %s %q, want %s with %q", row.method, path, who, p.Type, p.Detail, typ, detail)
	}
	if status == 404 && strings.Contains(p.Detail, "acme") {
		t.Errorf("the 404 names the other team: %q", p.Detail)
	}
	if got := r.Header.Get("WWW-Authenticate"); got != challenge {
		t.Errorf("WWW-Authenticate %q, want %q", got, challenge)
	}
	if after := f.snapshot(t); after != before {
		t.Errorf("a refused request changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
