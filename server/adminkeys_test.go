package server_test

// Admin keys through the API (/v1/admin-keys): the good path of every
// route, and each refusal with its status, problem body and an unchanged
// store.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

type adminKeyJSON struct {
	ClientID                string     `json:"client_id"`
	Name                    string     `json:"name"`
	Role                    string     `json:"role"`
	CreatedAt               time.Time  `json:"created_at"`
	LastUsedAt              *time.Time `json:"last_used_at"`
	SecretRotatedAt         *time.Time `json:"secret_rotated_at"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	ManagedByEnvironment    bool       `json:"managed_by_environment"`
	ClientSecret            string     `json:"client_secret"`
}

func decodeAdminKey(t *testing.T, r response, status int) adminKeyJSON {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	var k adminKeyJSON
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatalf("admin key body: %v: %s", err, r.Body)
	}
	return k
}

func listAdminKeys(t *testing.T, e *servertest.Env, tok string) map[string]adminKeyJSON {
	t.Helper()
	r := e.API(t, tok, http.MethodGet, "/v1/admin-keys", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list admin keys: %s", r)
	}
	var l struct {
		AdminKeys []adminKeyJSON `json:"admin_keys"`
	}
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]adminKeyJSON{}
	for _, k := range l.AdminKeys {
		out[k.ClientID] = k
	}
	return out
}

// statusBit reports whether idx is revoked in the store's status list.
func statusBit(t *testing.T, st store.Store, idx int64) bool {
	t.Helper()
	sl, err := st.StatusList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sl.Entry(idx) == store.StatusInvalid
}

// schemaStore records RaiseSchema calls (and fails them with err) over a
// store that may lack them: the raise's order and failure are this
// package's to prove; the backends' raising is storetest's.
type schemaStore struct {
	store.Store
	mu     sync.Mutex
	raised []int
	keysAt []int // how many admin keys existed at each raise
	err    error
}

func (s *schemaStore) Unwrap() store.Store { return s.Store }

func (s *schemaStore) RaiseSchema(ctx context.Context, v int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys, err := s.Store.ListKeys(ctx, "")
	if err != nil {
		return err
	}
	s.keysAt = append(s.keysAt, len(keys))
	if s.err != nil {
		return s.err
	}
	s.raised = append(s.raised, v)
	return nil
}

func TestAdminKeysLifecycle(t *testing.T) {
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	e := servertest.StartWith(t, servertest.Config{Clock: clk, Backend: servertest.Memory()})
	tok := e.AdminToken(t)

	all := listAdminKeys(t, e, tok)
	if env, ok := all[e.AdminID]; len(all) != 1 || !ok || !env.ManagedByEnvironment || env.Role != "admin" {
		t.Fatalf("admin keys before any create: %+v, want only %s, role admin, managed by the environment", all, e.AdminID)
	}

	r := e.API(t, tok, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "  Billing backend ", "role": "admin"})
	created := decodeAdminKey(t, r, http.StatusCreated)
	if created.ClientSecret == "" || created.Name != "Billing backend" || created.Role != "admin" || created.ManagedByEnvironment {
		t.Fatalf("created %+v", created)
	}
	if loc := r.Header.Get("Location"); loc != "/v1/admin-keys/"+created.ClientID {
		t.Errorf("Location %q", loc)
	}
	stored := e.StoredKey(t, created.ClientID)
	if !stored.IsFullAdmin() || stored.StatusIndex == 0 {
		t.Fatalf("stored %+v: want a full admin key with a status index", stored)
	}
	// The new key opens the API.
	newTok := e.Token(t, created.ClientID, created.ClientSecret, "").AccessToken
	all = listAdminKeys(t, e, newTok)
	if len(all) != 2 || all[created.ClientID].ClientSecret != "" {
		t.Fatalf("list after create: %+v (no secret may be listed)", all)
	}
	g := decodeAdminKey(t, e.API(t, tok, http.MethodGet, "/v1/admin-keys/"+created.ClientID, nil), http.StatusOK)
	if g.ClientSecret != "" || g.Name != "Billing backend" || g.SecretRotatedAt != nil {
		t.Fatalf("get %+v", g)
	}

	// Rotation, grace 0: the old secret stops at once, the new one works.
	rot := decodeAdminKey(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys/"+created.ClientID+"/rotate", map[string]any{"grace_period": "0s"}), http.StatusOK)
	if rot.ClientSecret == "" || rot.ClientSecret == created.ClientSecret || rot.SecretRotatedAt == nil {
		t.Fatalf("rotated %+v", rot)
	}
	if r := e.TokenRequest(t, created.ClientID, created.ClientSecret, url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusUnauthorized {
		t.Fatalf("token for the replaced secret after grace 0: %s, want 401", r)
	}
	if r := e.API(t, newTok, http.MethodGet, "/v1/admin-keys", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("token of the replaced secret after grace 0: %s, want 401", r)
	}
	rotTok := e.Token(t, created.ClientID, rot.ClientSecret, "").AccessToken
	// Rotation with a grace period keeps the old secret until it ends.
	rot2 := decodeAdminKey(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys/"+created.ClientID+"/rotate", nil), http.StatusOK)
	if rot2.PreviousSecretExpiresAt == nil || !rot2.PreviousSecretExpiresAt.Equal(clk.Now().Add(apikey.DefaultGracePeriod)) {
		t.Fatalf("default grace: previous secret expires %v", rot2.PreviousSecretExpiresAt)
	}
	e.Token(t, created.ClientID, rot.ClientSecret, "") // still inside its grace period

	// Deletion: status bits set, the key's tokens refused, recorded.
	before := e.StoredKey(t, created.ClientID)
	if r := e.API(t, tok, http.MethodDelete, "/v1/admin-keys/"+created.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	for _, idx := range []int64{before.StatusIndex, before.PreviousStatusIndex} {
		if !statusBit(t, e.Store, idx) {
			t.Errorf("status bit %d of the deleted admin key not set", idx)
		}
	}
	checkProblemDetail(t, e.API(t, rotTok, http.MethodGet, "/v1/admin-keys", nil), http.StatusUnauthorized, "no longer exists")
	checkProblemDetail(t, e.API(t, tok, http.MethodGet, "/v1/admin-keys/"+created.ClientID, nil), http.StatusNotFound, "no admin key")
	if _, err := e.Store.MoveAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, err := e.Store.AllAuditEvents(context.Background(), store.AuditQuery{Limit: store.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string // newest first
	for _, ev := range page.Events {
		if ev.ClientID == created.ClientID {
			if ev.TeamID != "" || ev.Actor.ID != e.AdminID {
				t.Errorf("event %s: team %q actor %q, want team \"\" actor %s", ev.Action, ev.TeamID, ev.Actor.ID, e.AdminID)
			}
			actions = append(actions, string(ev.Action))
		}
	}
	if got := strings.Join(actions, ","); got != "key.deleted,key.rotated,key.rotated,key.created" {
		t.Errorf("audit events of the key: %s", got)
	}
}

// TestAdminKeyRefusalsChangeNothing: every refused request answers its
// problem and leaves the store as it was.
func TestAdminKeyRefusalsChangeNothing(t *testing.T) {
	e := servertest.StartWith(t, servertest.Config{Backend: servertest.Memory()})
	tok := e.AdminToken(t)
	other := decodeAdminKey(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "Other", "role": "admin"}), http.StatusCreated)
	team := e.CreateKey(t, "acme", "Team key", permAccounting)
	e.FlushLastUsed(t)
	before := e.Snapshot(t)
	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		typ, detail        string
	}{
		{"bad JSON", "POST", "/v1/admin-keys", `{"name": "x",`, 400, "urn:keygate:problem:invalid-request", ""},
		{"unknown field", "POST", "/v1/admin-keys", `{"name": "x", "role": "admin", "team_id": "acme"}`, 400, "urn:keygate:problem:invalid-request", `unknown field "team_id"`},
		{"no name", "POST", "/v1/admin-keys", `{"role": "admin"}`, 400, "urn:keygate:problem:invalid-request", `"name" is required`},
		{"blank name", "POST", "/v1/admin-keys", `{"name": "  ", "role": "admin"}`, 400, "urn:keygate:problem:invalid-request", "name"},
		{"no role", "POST", "/v1/admin-keys", `{"name": "x"}`, 400, "urn:keygate:problem:invalid-request", `"role" is required`},
		{"bad role", "POST", "/v1/admin-keys", `{"name": "x", "role": "owner"}`, 400, "urn:keygate:problem:invalid-request", `"role" must be "admin"`},
		{"role of another type", "POST", "/v1/admin-keys", `{"name": "x", "role": 1}`, 400, "urn:keygate:problem:invalid-request", "role"},
		{"rotate the environment's key", "POST", "/v1/admin-keys/" + e.AdminID + "/rotate", nil, 409, "urn:keygate:problem:admin-key-conflict", "managed by the environment"},
		{"delete the environment's key", "DELETE", "/v1/admin-keys/" + e.AdminID, nil, 409, "urn:keygate:problem:admin-key-conflict", "KEYGATE_ADMIN_CLIENT_ID"},
		{"get a team key", "GET", "/v1/admin-keys/" + team.ClientID, nil, 404, "urn:keygate:problem:not-found", "no admin key"},
		{"delete a team key", "DELETE", "/v1/admin-keys/" + team.ClientID, nil, 404, "urn:keygate:problem:not-found", "no admin key"},
		{"rotate a team key", "POST", "/v1/admin-keys/" + team.ClientID + "/rotate", nil, 404, "urn:keygate:problem:not-found", "no admin key"},
		{"delete an unknown key", "DELETE", "/v1/admin-keys/nokey", nil, 404, "urn:keygate:problem:not-found", "no admin key"},
		{"rotate with a bad grace", "POST", "/v1/admin-keys/" + other.ClientID + "/rotate", `{"grace_period": "9d"}`, 400, "urn:keygate:problem:invalid-request", "out of range"},
		{"no token", "POST", "/v1/admin-keys", `{"name": "x", "role": "admin"}`, 401, "urn:keygate:problem:unauthorized", "Bearer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tk := tok
			if c.status == 401 {
				tk = ""
			}
			r := e.API(t, tk, c.method, c.path, c.body)
			p := checkProblem(t, r, c.status)
			if p.Type != c.typ || !strings.Contains(p.Detail, c.detail) {
				t.Errorf("problem %s %q, want %s containing %q", p.Type, p.Detail, c.typ, c.detail)
			}
			e.AssertUnchanged(t, before)
		})
	}
	t.Run("wrong media type", func(t *testing.T) {
		req := e.NewRequest(t, http.MethodPost, "/v1/admin-keys", strings.NewReader(`{"name":"x","role":"admin"}`))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Authorization", "Bearer "+tok)
		checkProblemDetail(t, e.Do(t, req), http.StatusUnsupportedMediaType, "application/json")
		e.AssertUnchanged(t, before)
	})
	// The environment's key still gets tokens: the refusals touched nothing.
	e.AdminToken(t)
}

// TestAdminKeyReadRoleRaisesSchema: the schema is raised before the first
// read-only key is stored, and a failed raise stores nothing.
func TestAdminKeyReadRoleRaisesSchema(t *testing.T) {
	ss := &schemaStore{Store: storetest.NewMemStore()}
	e := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(ss)})
	tok := e.AdminToken(t)

	// A full admin key raises nothing.
	decodeAdminKey(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "Full", "role": "admin"}), http.StatusCreated)
	if len(ss.keysAt) != 0 {
		t.Fatalf("a full admin key raised the schema: %v", ss.raised)
	}

	ss.err = errors.New("disk full")
	e.FlushLastUsed(t)
	before := e.Snapshot(t)
	checkProblem(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "Reader", "role": "read"}), http.StatusInternalServerError)
	e.AssertUnchanged(t, before)

	ss.err = nil
	k := decodeAdminKey(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "Reader", "role": "read"}), http.StatusCreated)
	if k.Role != "read" || e.StoredKey(t, k.ClientID).Role != store.RoleRead {
		t.Fatalf("read key %+v stored as role %q", k, e.StoredKey(t, k.ClientID).Role)
	}
	if len(ss.raised) != 1 || ss.raised[0] != apikey.ReadRoleSchema {
		t.Fatalf("raised %v, want [%d]", ss.raised, apikey.ReadRoleSchema)
	}
	// Two admin keys existed at the successful raise: the read key was not
	// stored yet.
	if got := ss.keysAt[len(ss.keysAt)-1]; got != 2 {
		t.Fatalf("%d admin keys at the raise, want 2 (raised before the read key was stored)", got)
	}
}

// TestAdminKeyReadOnlyToken: a read-only admin key's token lists and gets
// but every change answers 403 with the store unchanged (the rule is the
// authz route table's; this proves it holds for these routes).
func TestAdminKeyReadOnlyToken(t *testing.T) {
	ss := &schemaStore{Store: storetest.NewMemStore()}
	e := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(ss)})
	tok := e.AdminToken(t)
	rk := decodeAdminKey(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "Reader", "role": "read"}), http.StatusCreated)
	full := decodeAdminKey(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "Full", "role": "admin"}), http.StatusCreated)
	e.CreateKey(t, "acme", "Team key", permAccounting)
	rt := e.Token(t, rk.ClientID, rk.ClientSecret, "")
	if rt.Scope != "keys:read" {
		// The role's scope and the route table are the authz helper's work.
		t.Skipf("SKIPPED: a read-only admin key's token has scope %q, not keys:read: the authz route table is not on this branch yet", rt.Scope)
	}
	rtok := rt.AccessToken
	if got := listAdminKeys(t, e, rtok); len(got) != 3 {
		t.Fatalf("read-only list: %d keys, want 3", len(got))
	}
	decodeAdminKey(t, e.API(t, rtok, http.MethodGet, "/v1/admin-keys/"+full.ClientID, nil), http.StatusOK)
	e.FlushLastUsed(t)
	before := e.Snapshot(t)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/admin-keys", `{"name": "x", "role": "admin"}`},
		{"POST", "/v1/admin-keys/" + full.ClientID + "/rotate", ""},
		{"POST", "/v1/admin-keys/" + rk.ClientID + "/rotate", ""},
		{"DELETE", "/v1/admin-keys/" + full.ClientID, ""},
		{"DELETE", "/v1/admin-keys/" + rk.ClientID, ""},
		{"DELETE", "/v1/teams/acme", ""},
	} {
		var body any
		if c.body != "" {
			body = c.body
		}
		r := e.API(t, rtok, c.method, c.path, body)
		if r.Status != http.StatusForbidden {
			t.Fatalf("%s %s by a read-only key: %s, want 403", c.method, c.path, r)
		}
		if p := checkProblem(t, r, http.StatusForbidden); p.Type != "urn:keygate:problem:forbidden" {
			t.Errorf("%s %s by a read-only key: %s", c.method, c.path, r)
		}
		e.AssertUnchanged(t, before)
	}
}

// needLastAdminStore skips loudly on a backend not yet brought to the
// issue 16 store contract (ErrLastAdmin came with SchemaRaiser).
func needLastAdminStore(t *testing.T, st store.Store) {
	t.Helper()
	if _, ok := store.Feature[store.SchemaRaiser](st); !ok {
		t.Skip("SKIPPED: this backend does not implement the issue 16 store contract (SchemaRaiser, ErrLastAdmin) yet")
	}
}

// TestLastFullAdminCannotBeDeleted: the last full admin key answers 409
// saying why.
func TestLastFullAdminCannotBeDeleted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e := servertest.StartWith(t, servertest.Config{Backend: b, GeneratedAdmin: true})
		needLastAdminStore(t, e.Store)
		tok := e.AdminToken(t)
		e.FlushLastUsed(t)
		before := e.Snapshot(t)
		r := e.API(t, tok, http.MethodDelete, "/v1/admin-keys/"+e.AdminID, nil)
		p := checkProblem(t, r, http.StatusConflict)
		if p.Type != "urn:keygate:problem:admin-key-conflict" || !strings.Contains(p.Detail, "last full admin key") {
			t.Fatalf("problem %+v", p)
		}
		e.AssertUnchanged(t, before)
		if statusBit(t, e.Store, e.StoredKey(t, e.AdminID).StatusIndex) {
			t.Fatal("the refused delete set the last admin's status bit")
		}
		// Its token still opens the API.
		listAdminKeys(t, e, tok)
	})
}

// TestLastTwoFullAdminsConcurrentDeletes: two deletes racing over HTTP for
// the last two full admin keys: exactly one succeeds, one full admin stays.
func TestLastTwoFullAdminsConcurrentDeletes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e := servertest.StartWith(t, servertest.Config{Backend: b, GeneratedAdmin: true, Options: server.Options{}})
		needLastAdminStore(t, e.Store)
		for round := range 10 {
			tok := e.AdminToken(t)
			first := e.AdminID
			second := decodeAdminKey(t, e.API(t, tok, http.MethodPost, "/v1/admin-keys", map[string]any{"name": "Second", "role": "admin"}), http.StatusCreated)
			tok2 := e.Token(t, second.ClientID, second.ClientSecret, "").AccessToken
			var wg sync.WaitGroup
			var rs [2]response
			start := make(chan struct{})
			// Each key's token deletes the other key.
			for i, c := range []struct{ tok, id string }{{tok, second.ClientID}, {tok2, first}} {
				wg.Go(func() {
					<-start
					rs[i] = e.API(t, c.tok, http.MethodDelete, "/v1/admin-keys/"+c.id, nil)
				})
			}
			close(start)
			wg.Wait()
			ok := 0
			for _, r := range rs {
				switch r.Status {
				case http.StatusNoContent:
					ok++
				case http.StatusConflict, http.StatusUnauthorized:
					// 409: the store refused the last full admin; 401: the
					// caller's own key was deleted before its request got in.
				default:
					t.Fatalf("round %d: %s", round, r)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d deletes succeeded (%s | %s), want exactly 1", round, ok, rs[0], rs[1])
			}
			keys, err := e.Store.ListKeys(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || !keys[0].IsFullAdmin() {
				t.Fatalf("round %d: admin keys left %+v, want one full admin", round, keys)
			}
			// Carry on with the survivor.
			if keys[0].ClientID == second.ClientID {
				e.AdminID, e.AdminSecret = second.ClientID, second.ClientSecret
			}
		}
	})
}
