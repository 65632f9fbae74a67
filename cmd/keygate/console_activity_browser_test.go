package main

// Browser tests of the console's Activity view: a team's audit trail as
// the page shows it, after real key changes made through the management
// API with known user agents and source addresses (behind a trusted proxy,
// X-Forwarded-For sets the source). They run on the in-memory store, where
// the tests can also lay down the tens of thousands of old events it takes
// to make the server answer short and empty pages (it examines at most
// store.MaxAuditScan events a request).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

// xssUserAgent is a user agent that would run script if the page ever
// rendered it as markup.
const xssUserAgent = `<img src=x onerror=alert(2)>`

// activityEnv is a keygate on the in-memory store whose clock the test
// moves, behind which 127.0.0.0/8 is a trusted proxy, counting the page's
// reads of the team trail.
type activityEnv struct {
	*servertest.Env
	tok    string
	reads  atomic.Int64 // GET …/events requests
	clock  *servertest.Clock
	filler int // events laid down so far, for unique IDs
}

func startActivity(t *testing.T, at time.Time) *activityEnv {
	t.Helper()
	a := &activityEnv{clock: servertest.NewClock(at)}
	count := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/events") {
				a.reads.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	}
	a.Env = servertest.StartWith(t, servertest.Config{
		Options: server.Options{AdminClientID: "console-admin",
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		Backend: servertest.Memory(), Clock: a.clock, Wrap: count,
	})
	a.tok = a.AdminToken(t)
	return a
}

// send makes one management (or, with basic set, OAuth) request a second
// after the previous one, from address from with user agent ua, and
// returns the answer and its request ID.
func (a *activityEnv) send(t *testing.T, method, path, contentType string, body any, ua, from string, basic ...string) (servertest.Response, string) {
	t.Helper()
	a.clock.Advance(time.Second)
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := a.NewRequest(t, method, path, rd)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if len(basic) == 2 {
		req.Header.Set("Authorization", servertest.BasicAuth(basic[0], basic[1]))
	} else {
		req.Header.Set("Authorization", "Bearer "+a.tok)
	}
	req.Header.Set("User-Agent", ua)
	req.Header.Set("X-Forwarded-For", from)
	r := a.Do(t, req)
	if r.Status >= 300 {
		t.Fatalf("%s %s: %s", method, path, r)
	}
	rid := r.Header.Get("X-Request-Id")
	if rid == "" {
		t.Fatalf("%s %s: no X-Request-Id", method, path)
	}
	return r, rid
}

func (a *activityEnv) create(t *testing.T, team, name, ua, from string) (servertest.Key, string) {
	t.Helper()
	r, rid := a.send(t, http.MethodPost, "/v1/teams/"+team+"/keys", "application/json",
		map[string]any{"name": name, "permissions": []string{"accounting_api"}}, ua, from)
	var k servertest.Key
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatal(err)
	}
	return k, rid
}

// layDown appends n events of action to team's trail straight into the
// store, at time at: history older than what the test does through the API.
func (a *activityEnv) layDown(t *testing.T, team string, action store.AuditAction, clientID string, at time.Time, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := make([]string, n)
	for i := range n {
		a.filler++
		ids[i] = fmt.Sprintf("01JDX4W6G2R3T2Y9D1M%07d", a.filler)
		err := a.Store.AppendAudit(ctx, store.AuditEvent{
			ID: ids[i], Time: at, Action: action, TeamID: team, ClientID: clientID,
			Actor:   store.AuditActor{Type: store.ActorAdminKey, ID: "console-admin"},
			Outcome: store.OutcomeSuccess, SourceAddr: "192.0.2.99", UserAgent: "history", Count: 1,
		})
		if err != nil {
			t.Fatalf("lay down event %d: %v", i, err)
		}
	}
	return ids
}

// activityRow is one row of the Activity table as the page shows it; the
// cells' parts (name and ID, address and user agent…) joined with " | ".
type activityRow struct {
	ID       string `json:"id"`
	Action   string `json:"action"`
	Time     string `json:"time"`
	UTC      string `json:"utc"`
	Datetime string `json:"datetime"`
	Words    string `json:"words"`
	Actor    string `json:"actor"`
	Target   string `json:"target"`
	Source   string `json:"source"`
	Outcome  string `json:"outcome"`
}

func activityRows(t *testing.T, p *browserPage) []activityRow {
	t.Helper()
	return evalJS[[]activityRow](t, p, `[...document.querySelectorAll("#activity-body tr")].map((r) => {
		const parts = (sel) => [...r.querySelector(sel).childNodes].map((n) => n.textContent).join(" | ");
		const time = r.querySelector("td.time time");
		return {id: r.dataset.eventId, action: r.dataset.action,
			time: r.querySelector("td.time").textContent, utc: time ? time.title : "", datetime: time ? time.getAttribute("datetime") : "",
			words: r.querySelector("td.action").textContent, actor: parts("td.actor"), target: parts("td.target"),
			source: parts("td.source"), outcome: r.querySelector("td.outcome").textContent};
	})`)
}

// waitRows waits until the table has n rows and the page is not loading.
func waitRows(t *testing.T, p *browserPage, what string, n int) []activityRow {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		busy := evalJS[string](t, p, `document.getElementById("activity-table").getAttribute("aria-busy") ?? ""`)
		rows := activityRows(t, p)
		if busy != "true" && len(rows) == n {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d rows (busy %q), want %d\n%s", what, len(rows), busy, n, p.observed())
		}
	}
}

func setPageSize(t *testing.T, p *browserPage, n int) {
	t.Helper()
	evalJS[chromedp.Void](t, p, fmt.Sprintf(`document.getElementById("activity-view").dataset.pageSize = "%d"`, n))
}

// chooseAction picks an entry of the action filter with the keyboard, as
// an operator without a mouse would: focus the select, then arrow keys.
func chooseAction(t *testing.T, p *browserPage, value string) {
	t.Helper()
	options := evalJS[[]string](t, p, `[...document.getElementById("activity-action").options].map((o) => o.value)`)
	want, at := -1, -1
	cur := evalJS[string](t, p, `document.getElementById("activity-action").value`)
	for i, o := range options {
		if o == value {
			want = i
		}
		if o == cur {
			at = i
		}
	}
	if want < 0 {
		t.Fatalf("the action filter has no %q: %q", value, options)
	}
	p.run(t, "focus the filter", chromedp.Focus(chromedp.CSS("#activity-action")))
	for ; at < want; at++ {
		p.run(t, "arrow down", chromedp.KeyEvent(kb.ArrowDown))
	}
	for ; at > want; at-- {
		p.run(t, "arrow up", chromedp.KeyEvent(kb.ArrowUp))
	}
	if got := evalJS[string](t, p, `document.getElementById("activity-action").value`); got != value {
		t.Fatalf("the filter shows %q after the arrow keys, want %q", got, value)
	}
}

// TestConsoleActivity: the Activity view shows the changes made through the
// API newest first, in words, with who, which key, from where; filters by
// action; loads older events and keeps asking, within a bound, while the
// server answers short pages; and shows a hostile user agent and key name as
// text.
func TestConsoleActivity(t *testing.T) {
	start := time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC)
	a := startActivity(t, start)

	// History: one old key creation, then 65 000 older revocations, so a
	// filter for creations must walk 6½ server scans to reach it. And a
	// quiet team with only revocations.
	ancient := a.layDown(t, "acme", store.AuditKeyCreated, "kgc_ancientKey0000000000000000000", start.Add(-2*time.Hour), 1)[0]
	fillers := a.layDown(t, "acme", store.AuditTokenRevoked, "kgc_oldKey000000000000000000000000", start.Add(-time.Hour), 65000)
	a.layDown(t, "quiet", store.AuditTokenRevoked, "kgc_oldKey000000000000000000000000", start.Add(-time.Hour), 61000)

	// What the test does, a second apart, from known addresses and agents.
	sync, ridSync := a.create(t, "acme", "Production sync", "ops-script/1.0", "203.0.113.7")
	hostile, ridHostile := a.create(t, "acme", xssName, xssUserAgent, "198.51.100.23")
	path := "/v1/teams/acme/keys/" + sync.ClientID
	_, ridRename := a.send(t, http.MethodPatch, path, "application/merge-patch+json", map[string]any{"name": "Production sync v2"}, "ops-script/1.0", "203.0.113.7")
	_, ridPerms := a.send(t, http.MethodPatch, path, "application/merge-patch+json",
		map[string]any{"permissions": []string{"accounting_api", "visualization_sdk"}}, "ops-script/1.0", "203.0.113.7")
	r, ridRotate := a.send(t, http.MethodPost, path+"/rotate", "application/json", map[string]any{"grace_period": "0s"}, "ops-script/1.0", "203.0.113.7")
	var rotated servertest.Key
	if err := json.Unmarshal(r.Body, &rotated); err != nil || rotated.ClientSecret == "" {
		t.Fatalf("rotate answer %s: %v", r.Body, err)
	}
	temp, ridTemp := a.create(t, "acme", "Temp", "ops-script/1.0", "203.0.113.8")
	_, ridDelete := a.send(t, http.MethodDelete, "/v1/teams/acme/keys/"+temp.ClientID, "", nil, "ops-script/1.0", "203.0.113.8")
	access := a.Token(t, sync.ClientID, rotated.ClientSecret, "").AccessToken
	_, ridRevoke := a.send(t, http.MethodPost, "/oauth/revoke", "application/x-www-form-urlencoded",
		url.Values{"token": {access}}.Encode(), "revoker/2", "192.0.2.10", sync.ClientID, rotated.ClientSecret)

	p := newBrowser(t, 1280, 900)
	// Local time is Berlin's: 10:30 UTC shows as 11:30.
	p.run(t, "time zone", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Europe/Berlin"})
		return err
	}))
	p.run(t, "open the console", chromedp.Navigate(a.URL+"/console/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	if got := p.text(t, "#nav-activity"); got != "Activity" {
		t.Errorf("navigation entry %q, want Activity", got)
	}
	signIn(t, p, a.AdminID, a.AdminSecret)
	p.run(t, "open acme", chromedp.WaitVisible(chromedp.CSS("#team-view")),
		chromedp.SetValue(chromedp.CSS("#team-id"), "acme"), chromedp.Click(chromedp.CSS("#team-submit")),
		chromedp.WaitVisible(chromedp.CSS(rowSel(sync.ClientID))))

	// Eight events on the first page: exactly what the test did.
	setPageSize(t, p, 8)
	before := a.reads.Load()
	p.run(t, "open Activity", chromedp.Click(chromedp.CSS("#nav-activity")), chromedp.WaitVisible(chromedp.CSS("#activity-view")))
	rows := waitRows(t, p, "first page", 8)
	if n := a.reads.Load() - before; n != 1 {
		t.Errorf("a full first page took %d reads of the trail, want 1", n)
	}
	admin := "Admin key | console-admin"
	type want struct{ action, words, actor, target, source string }
	wants := []want{
		{"token.revoked", "Token revoked", "Team key | " + sync.ClientID, "Production sync v2 | " + sync.ClientID, "192.0.2.10 | revoker/2 | Request " + ridRevoke},
		{"key.deleted", "Key deleted", admin, temp.ClientID + " | no longer exists", "203.0.113.8 | ops-script/1.0 | Request " + ridDelete},
		{"key.created", "Key created", admin, temp.ClientID + " | no longer exists", "203.0.113.8 | ops-script/1.0 | Request " + ridTemp},
		{"key.rotated", "Secret rotated", admin, "Production sync v2 | " + sync.ClientID, "203.0.113.7 | ops-script/1.0 | Request " + ridRotate},
		{"key.updated", "Permissions changed", admin, "Production sync v2 | " + sync.ClientID, "203.0.113.7 | ops-script/1.0 | Request " + ridPerms},
		{"key.updated", "Key renamed", admin, "Production sync v2 | " + sync.ClientID, "203.0.113.7 | ops-script/1.0 | Request " + ridRename},
		{"key.created", "Key created", admin, xssName + " | " + hostile.ClientID, "198.51.100.23 | " + xssUserAgent + " | Request " + ridHostile},
		{"key.created", "Key created", admin, "Production sync v2 | " + sync.ClientID, "203.0.113.7 | ops-script/1.0 | Request " + ridSync},
	}
	for i, w := range wants {
		got := rows[i]
		if got.Action != w.action || got.Words != w.words || got.Actor != w.actor || got.Target != w.target || got.Source != w.source || got.Outcome != "Success" {
			t.Errorf("row %d:\n got  %+v\n want %+v, outcome Success", i, got, w)
		}
		// The i-th newest event happened 8-i seconds after start
		// (the token request in between moved no clock).
		at := start.Add(time.Duration(8-i) * time.Second)
		if wantUTC := at.Format("2006-01-02 15:04:05") + " UTC"; got.UTC != wantUTC {
			t.Errorf("row %d: tooltip %q, want %q", i, got.UTC, wantUTC)
		}
		if local := at.In(berlin(t)).Format("3:04:05"); !strings.Contains(got.Time, local) {
			t.Errorf("row %d: time %q does not show Berlin's local %s", i, got.Time, local)
		}
	}
	// The hostile name and user agent are text; nothing ran (p.clean
	// fails on any dialog).
	if n := evalJS[int](t, p, `document.querySelectorAll('img[src="x"], [onerror]').length`); n != 0 {
		t.Errorf("the hostile name or user agent became %d element(s)", n)
	}
	// The navigation, title, address and focus follow the view.
	state := evalJS[[]string](t, p, `[document.getElementById("page-title").textContent, document.title, location.hash,
		document.getElementById("nav-activity").getAttribute("aria-current") ?? "", document.getElementById("nav-api-keys").getAttribute("aria-current") ?? "",
		document.activeElement.id, String(document.getElementById("activity-more").hidden)]`)
	if wantState := []string{"Activity", "Activity · keygate", "#team=acme&view=activity", "page", "", "main", "false"}; fmt.Sprint(state) != fmt.Sprint(wantState) {
		t.Errorf("after opening Activity: title, document title, hash, aria-current (activity, keys), focus, more hidden = %q, want %q", state, wantState)
	}
	if got := p.text(t, "#activity-title"); got != "Team acme" {
		t.Errorf("activity heading %q", got)
	}
	p.screenshot(t, screenshotDir(t), "activity")

	// Load older, two at a time: the next events in order (laid-down
	// history, newest first).
	setPageSize(t, p, 2)
	p.run(t, "load older", chromedp.Click(chromedp.CSS("#activity-more")))
	rows = waitRows(t, p, "after Load older", 10)
	if rows[8].ID != fillers[len(fillers)-1] || rows[9].ID != fillers[len(fillers)-2] || rows[8].Words != "Token revoked" {
		t.Errorf("older rows %+v, %+v; want the newest laid-down revocations %s, %s", rows[8], rows[9], fillers[len(fillers)-1], fillers[len(fillers)-2])
	}

	// Filter by action (keyboard): only creations, newest first.
	before = a.reads.Load()
	chooseAction(t, p, "key.created")
	rows = waitRows(t, p, "creations", 2)
	if rows[0].Target != temp.ClientID+" | no longer exists" || rows[1].ID == "" || !strings.HasPrefix(rows[1].Target, xssName) {
		t.Errorf("filtered first page %+v", rows)
	}
	if n := a.reads.Load() - before; n != 1 {
		t.Errorf("the filtered first page took %d reads, want 1", n)
	}
	// The next creation is one scan away, the one after that 65 000
	// events further: one click reads 1 + 5 pages and stops with the
	// button still there.
	before = a.reads.Load()
	p.run(t, "load older creations", chromedp.Click(chromedp.CSS("#activity-more")))
	rows = waitRows(t, p, "older creations", 3)
	if n := a.reads.Load() - before; n != 6 {
		t.Errorf("one Load older read the trail %d times, want 6 (1 + 5 more while pages came back short)", n)
	}
	if rows[2].Target != "Production sync v2 | "+sync.ClientID {
		t.Errorf("third creation %+v, want Production sync's", rows[2])
	}
	if hidden := evalJS[bool](t, p, `document.getElementById("activity-more").hidden`); hidden {
		t.Fatal("Load older is gone while the server still had older events")
	}
	if got := evalJS[string](t, p, `document.activeElement.id`); got != "activity-more" {
		t.Errorf("focus moved to #%s while loading older events, want it to stay on Load older", got)
	}
	// Once more: the oldest creation, then no more button; focus stays in
	// the list.
	before = a.reads.Load()
	p.run(t, "load the oldest", chromedp.Click(chromedp.CSS("#activity-more")), chromedp.WaitNotVisible(chromedp.CSS("#activity-more")))
	rows = waitRows(t, p, "all creations", 4)
	if rows[3].ID != ancient || rows[3].Target != "kgc_ancientKey0000000000000000000 | no longer exists" {
		t.Errorf("oldest creation %+v, want the laid-down %s", rows[3], ancient)
	}
	if n := a.reads.Load() - before; n != 1 {
		t.Errorf("the last Load older read %d times, want 1", n)
	}
	if in := evalJS[bool](t, p, `document.getElementById("activity-body").contains(document.activeElement)`); !in {
		t.Errorf("focus went to #%s when Load older disappeared, want a row of the list", evalJS[string](t, p, `document.activeElement.id || document.activeElement.tagName`))
	}
	for i, r := range rows {
		if r.Action != "key.created" {
			t.Errorf("filtered row %d is a %s", i, r.Action)
		}
	}

	// A team whose recent trail holds no creation at all: six reads find
	// nothing, the page says so and offers to look further; the seventh
	// reaches the end.
	p.run(t, "switch team", chromedp.Click(chromedp.CSS("#activity-switch-team")), chromedp.WaitVisible(chromedp.CSS("#team-view")),
		chromedp.SetValue(chromedp.CSS("#team-id"), "quiet"), chromedp.Click(chromedp.CSS("#team-submit")),
		chromedp.WaitVisible(chromedp.CSS("#activity-view")))
	rows = waitRows(t, p, "quiet team", 2)
	if rows[0].Words != "Token revoked" || rows[0].Outcome != "Success" {
		t.Errorf("quiet team row %+v", rows[0])
	}
	if got := evalJS[string](t, p, `document.getElementById("activity-action").value`); got != "" {
		t.Errorf("another team opens with the filter %q, want all actions", got)
	}
	before = a.reads.Load()
	chooseAction(t, p, "key.created")
	p.run(t, "nothing yet", chromedp.WaitVisible(chromedp.CSS("#activity-empty")), chromedp.WaitVisible(chromedp.CSS("#activity-more")))
	waitRows(t, p, "no creations", 0)
	if n := a.reads.Load() - before; n != 6 {
		t.Errorf("an empty filtered load read %d times, want 6", n)
	}
	if got := p.text(t, "#activity-empty"); !strings.Contains(got, "examined so far") || !strings.Contains(got, "Key created") {
		t.Errorf("empty text while older events remain: %q", got)
	}
	if hidden := evalJS[bool](t, p, `document.getElementById("activity-table").hidden`); !hidden {
		t.Error("an empty table is shown")
	}
	p.run(t, "look further", chromedp.Click(chromedp.CSS("#activity-more")), chromedp.WaitNotVisible(chromedp.CSS("#activity-more")))
	if got := p.text(t, "#activity-empty"); !strings.Contains(got, "No “Key created” events in the retention period") || !strings.Contains(got, "90 days") {
		t.Errorf("empty text at the end of the trail: %q", got)
	}

	// A new team has no activity at all.
	p.run(t, "switch to a new team", chromedp.Click(chromedp.CSS("#activity-switch-team")), chromedp.WaitVisible(chromedp.CSS("#team-view")),
		chromedp.SetValue(chromedp.CSS("#team-id"), "brand-new"), chromedp.Click(chromedp.CSS("#team-submit")),
		chromedp.WaitVisible(chromedp.CSS("#activity-empty")))
	if got := p.text(t, "#activity-empty"); !strings.HasPrefix(got, "No activity in the retention period") {
		t.Errorf("empty team text %q", got)
	}
	p.screenshot(t, screenshotDir(t), "activity-empty")

	// Back to API Keys: the keys view of the same team, the address too.
	p.run(t, "API Keys", chromedp.Click(chromedp.CSS("#nav-api-keys")), chromedp.WaitVisible(chromedp.CSS("#keys-view")))
	if got := evalJS[[]string](t, p, `[document.getElementById("page-title").textContent, location.hash, document.getElementById("keys-team").textContent]`); fmt.Sprint(got) != fmt.Sprint([]string{"API Keys", "#team=brand-new", "brand-new"}) {
		t.Errorf("after API Keys: title, hash, team = %q", got)
	}

	// Sign out leaves no event in the page.
	p.run(t, "sign out", chromedp.Click(chromedp.CSS("#sign-out")), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	if n := evalJS[int](t, p, `document.querySelectorAll("#activity-body tr").length`); n != 0 {
		t.Errorf("%d activity rows left in the page after sign-out", n)
	}
	p.clean(t, a.URL)
}

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone data for Europe/Berlin: %v", err)
	}
	return loc
}

// TestConsoleActivityPhone: at 375 px the Activity view is cards without
// sideways scrolling, reached and filtered with the keyboard alone, and a
// reload on its address comes back to it after sign-in.
func TestConsoleActivityPhone(t *testing.T) {
	a := startActivity(t, time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC))
	long := strings.Repeat("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 ", 4)[:199] + "Z" // the longest kept
	k, _ := a.create(t, "acme", "A fairly long key name for a phone screen", long, "2001:db8:85a3::8a2e:370:7334")
	a.send(t, http.MethodPatch, "/v1/teams/acme/keys/"+k.ClientID, "application/merge-patch+json",
		map[string]any{"name": "Renamed on a phone", "permissions": []string{"visualization_sdk"}}, xssUserAgent, "203.0.113.7")

	p := newBrowser(t, 375, 812)
	p.run(t, "open", chromedp.Navigate(a.URL+"/console/"))
	signIn(t, p, a.AdminID, a.AdminSecret)
	p.run(t, "pick acme", chromedp.WaitVisible(chromedp.CSS(`#team-list button[data-team="acme"]`)),
		chromedp.Click(chromedp.CSS(`#team-list button[data-team="acme"]`)), chromedp.WaitVisible(chromedp.CSS("#keys-body tr")))

	// Keyboard: Enter on the navigation entry opens the view and puts
	// focus on the page; Tab reaches Switch team, then the filter.
	p.run(t, "Enter on Activity", chromedp.Focus(chromedp.CSS("#nav-activity")), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS("#activity-view")))
	rows := waitRows(t, p, "phone", 2)
	if rows[0].Words != "Key renamed, permissions changed" || !strings.HasPrefix(rows[0].Source, "203.0.113.7 | "+xssUserAgent+" | Request ") {
		t.Errorf("newest row %+v", rows[0])
	}
	if !strings.HasPrefix(rows[1].Source, "2001:db8:85a3::8a2e:370:7334 | "+long+" | Request ") {
		t.Errorf("IPv6 source %q", rows[1].Source)
	}
	var order []string
	for range 2 {
		p.run(t, "Tab", chromedp.KeyEvent("\t"))
		order = append(order, evalJS[string](t, p, `document.activeElement.id`))
	}
	if fmt.Sprint(order) != fmt.Sprint([]string{"activity-switch-team", "activity-action"}) {
		t.Errorf("Tab from the page went to %q, want Switch team then the filter", order)
	}
	chooseAction(t, p, "key.updated")
	rows = waitRows(t, p, "updates only", 1)
	if rows[0].Action != "key.updated" {
		t.Errorf("filtered row %+v", rows[0])
	}
	chooseAction(t, p, "")
	waitRows(t, p, "all again", 2)

	overflow := evalJS[int](t, p, `document.documentElement.scrollWidth - document.documentElement.clientWidth`)
	if overflow > 0 {
		t.Errorf("the Activity view scrolls sideways by %d px at 375 px", overflow)
	}
	// Every cell fits the screen (cards, not a wide table).
	if right := evalJS[float64](t, p, `Math.max(...[...document.querySelectorAll("#activity-body td")].map((c) => c.getBoundingClientRect().right))`); right > 375 {
		t.Errorf("a cell reaches %.0f px on a 375 px screen", right)
	}
	if n := evalJS[int](t, p, `document.querySelectorAll('img[src="x"], [onerror]').length`); n != 0 {
		t.Errorf("the hostile user agent became %d element(s)", n)
	}
	p.screenshot(t, screenshotDir(t), "activity-375px")

	// A reload on the Activity address: sign in again, back to Activity.
	p.run(t, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	signIn(t, p, a.AdminID, a.AdminSecret)
	p.run(t, "back to Activity", chromedp.WaitVisible(chromedp.CSS("#activity-view")))
	waitRows(t, p, "after the reload", 2)
	if got := p.text(t, "#page-title"); got != "Activity" {
		t.Errorf("title after the reload %q", got)
	}
	p.clean(t, a.URL)
}
