package main

// Browser test of the console's key policy state (issue 17): suspend and
// resume with the consequence spelt out, expiry with the near-expiry mark,
// an expired key, and the rotation state, against a real keygate whose
// clock the test moves.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// keyState is a key's State cell as the page shows it.
type keyState struct {
	Status     string `json:"status"`
	Expiry     string `json:"expiry"`
	SoonMark   bool   `json:"soonMark"`
	Rotation   string `json:"rotation"`
	Previous   string `json:"previous"`
	Action     string `json:"action"`
	Restricted string `json:"restricted"`
}

func readState(t *testing.T, p *browserPage, id string) keyState {
	t.Helper()
	return evalJS[keyState](t, p, `(() => {
		const r = document.querySelector(`+"`"+rowSel(id)+"`"+`);
		const txt = (sel) => { const n = r.querySelector(sel); return n ? n.textContent : ""; };
		return {status: txt(".state .status"), expiry: txt(".state .expiry"), soonMark: !!r.querySelector(".state .expiring-soon"),
			rotation: txt(".state .rotation"), previous: txt(".state .previous-secret"),
			action: r.querySelector("button.suspend") ? "Suspend" : (r.querySelector("button.resume") ? "Resume" : ""),
			restricted: txt(".state .restrictions")};
	})()`)
}

func TestConsolePolicyState(t *testing.T) {
	// The page counts days from the browser's clock and the server decides
	// status and the near-expiry mark from its own: start them together.
	start := time.Now().UTC().Truncate(time.Second)
	clock := servertest.NewClock(start)
	e := servertest.StartWith(t, servertest.Config{Options: server.Options{AdminClientID: "console-admin"}, Clock: clock})
	tok := e.AdminToken(t)
	create := func(name string, extra map[string]any) servertest.Key {
		t.Helper()
		body := map[string]any{"name": name, "permissions": []string{"accounting_api"}}
		for k, v := range extra {
			body[k] = v
		}
		r := e.API(t, tok, http.MethodPost, "/v1/teams/acme/keys", body)
		var k servertest.Key
		if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &k) != nil {
			t.Fatalf("create %s: %s", name, r)
		}
		return k
	}
	plain := create("plain", nil)
	soon := create("soon", map[string]any{"expires_at": start.Add(3*24*time.Hour + 12*time.Hour).Format(time.RFC3339),
		"token_ttl": 120, "allowed_cidrs": []string{"10.0.0.0/8"}, "metadata": map[string]string{"tenant": "acme"}})
	later := create("later", map[string]any{"expires_at": start.Add(40 * 24 * time.Hour).Format(time.RFC3339)})
	doomed := create("doomed", map[string]any{"expires_at": start.Add(2 * time.Hour).Format(time.RFC3339)})
	rotated := create("rotated", nil)
	// Past doomed's expiry on the server's clock, then a rotation whose old
	// secret stays live for a day.
	clock.Advance(3 * time.Hour)
	if r := e.API(t, e.AdminToken(t), http.MethodPost, "/v1/teams/acme/keys/"+rotated.ClientID+"/rotate", map[string]string{"grace_period": "24h"}); r.Status != http.StatusOK {
		t.Fatalf("rotate: %s", r)
	}

	p := newBrowser(t, 1400, 1000)
	p.run(t, "open the console", chromedp.Navigate(e.URL+"/console/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	signIn(t, p, e.AdminID, e.AdminSecret)
	p.run(t, "open acme", chromedp.WaitVisible(chromedp.CSS("#team-view")),
		chromedp.SetValue(chromedp.CSS("#team-id"), "acme"), chromedp.Click(chromedp.CSS("#team-submit")),
		chromedp.WaitVisible(chromedp.CSS(rowSel(plain.ClientID)+" .state .status")))

	if got := readState(t, p, plain.ClientID); got != (keyState{Status: "Active", Expiry: "never expires", Action: "Suspend"}) {
		t.Errorf("plain key: %+v", got)
	}
	got := readState(t, p, soon.ClientID)
	if got.Status != "Active" || !strings.HasPrefix(got.Expiry, "expires in 3 days") || !got.SoonMark ||
		!strings.Contains(got.Restricted, "source addresses: 10.0.0.0/8") || !strings.Contains(got.Restricted, "token lifetime: 120 s") ||
		!strings.Contains(got.Restricted, `metadata: {"tenant":"acme"}`) {
		t.Errorf("key expiring in 3 days: %+v", got)
	}
	if got := readState(t, p, later.ClientID); got.Expiry != "expires in 40 days" && got.Expiry != "expires in 39 days" || got.SoonMark {
		t.Errorf("key expiring in 40 days (no mark): %+v", got)
	}
	if got := readState(t, p, doomed.ClientID); got.Status != "Expired" || got.Expiry != "expired" || got.SoonMark {
		t.Errorf("expired key: %+v", got)
	}
	got = readState(t, p, rotated.ClientID)
	if !strings.HasPrefix(got.Rotation, "rotated ") || !strings.HasPrefix(got.Previous, "; previous secret live until ") {
		t.Errorf("rotated key: %+v", got)
	}
	p.screenshot(t, screenshotDir(t), "policy-state")

	// Suspend: the confirmation says what it costs; the row shows it.
	p.run(t, "ask to suspend", chromedp.Click(chromedp.CSS(rowSel(plain.ClientID)+" button.suspend")),
		chromedp.WaitVisible(chromedp.CSS("#suspend-dialog[open]")))
	if got := p.text(t, "#suspend-text"); !strings.Contains(got, "It gets no new tokens; its outstanding tokens are refused by resource servers that check the status list within 1 minute. Resuming makes its unexpired tokens valid again.") ||
		!strings.Contains(got, plain.ClientID) {
		t.Errorf("suspend confirmation: %q", got)
	}
	p.run(t, "suspend", chromedp.Click(chromedp.CSS("#suspend-confirm")),
		chromedp.WaitNotPresent(chromedp.CSS("#suspend-dialog[open]")),
		chromedp.WaitVisible(chromedp.CSS(rowSel(plain.ClientID)+" .status-suspended")))
	if got := readState(t, p, plain.ClientID); got.Status != "Suspended" || got.Action != "Resume" {
		t.Errorf("after suspend: %+v", got)
	}
	if k := e.StoredKey(t, plain.ClientID); k.DisabledAt.IsZero() {
		t.Fatal("the console showed the key suspended, but the store has it active")
	}

	// Resume.
	p.run(t, "ask to resume", chromedp.Click(chromedp.CSS(rowSel(plain.ClientID)+" button.resume")),
		chromedp.WaitVisible(chromedp.CSS("#suspend-dialog[open]")))
	if got := p.text(t, "#suspend-text"); !strings.Contains(got, "It gets tokens again, and its tokens that have not expired are valid again.") {
		t.Errorf("resume confirmation: %q", got)
	}
	p.run(t, "resume", chromedp.Click(chromedp.CSS("#suspend-confirm")),
		chromedp.WaitNotPresent(chromedp.CSS("#suspend-dialog[open]")),
		chromedp.WaitVisible(chromedp.CSS(rowSel(plain.ClientID)+" .status-active")))
	if got := readState(t, p, plain.ClientID); got.Status != "Active" || got.Action != "Suspend" {
		t.Errorf("after resume: %+v", got)
	}
	if k := e.StoredKey(t, plain.ClientID); !k.DisabledAt.IsZero() {
		t.Fatal("the console showed the key resumed, but the store has it suspended")
	}
	// And it gets a token again.
	e.Token(t, plain.ClientID, plain.ClientSecret, "")

	// A policy set from the generate dialog: an address the server refuses
	// is named and creates nothing; an expiry and source addresses that
	// hold are stored.
	// (The team is at its limit: one key goes first.)
	if r := e.API(t, e.AdminToken(t), http.MethodDelete, "/v1/teams/acme/keys/"+doomed.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	p.run(t, "open acme again", chromedp.Click(chromedp.CSS("#switch-team")),
		chromedp.WaitVisible(chromedp.CSS("#team-id")),
		chromedp.SetValue(chromedp.CSS("#team-id"), "acme"), chromedp.Click(chromedp.CSS("#team-submit")),
		chromedp.WaitNotPresent(chromedp.CSS(rowSel(doomed.ClientID))),
		chromedp.WaitEnabled(chromedp.CSS("#generate")))
	before := len(e.ListKeys(t, e.AdminToken(t), "acme").Keys)
	p.run(t, "generate with a bad address", chromedp.Click(chromedp.CSS("#generate")),
		chromedp.WaitVisible(chromedp.CSS("#generate-dialog[open] #key-name")),
		chromedp.SendKeys(chromedp.CSS("#key-name"), "restricted"),
		chromedp.Click(chromedp.CSS(`#key-perms-list input[value="accounting_api"]`)),
		chromedp.SetValue(chromedp.CSS("#key-expiry"), "30"),
		chromedp.SendKeys(chromedp.CSS("#key-cidrs"), "203.0.113.0/24, 300.1.1.1"),
		chromedp.Click(chromedp.CSS("#generate-submit")),
		chromedp.WaitVisible(chromedp.CSS("#generate-error")))
	if got := p.text(t, "#generate-error"); !strings.Contains(got, "allowed_cidrs[1]") {
		t.Errorf("generate with 300.1.1.1: error %q does not name the address", got)
	}
	if n := len(e.ListKeys(t, e.AdminToken(t), "acme").Keys); n != before {
		t.Fatalf("a refused generate created a key (%d keys, were %d)", n, before)
	}
	p.forgive(t, "status of 400")
	asked := time.Now()
	p.run(t, "generate with an expiry and addresses",
		chromedp.SetValue(chromedp.CSS("#key-cidrs"), "203.0.113.0/24, 2001:db8::/32"),
		chromedp.Click(chromedp.CSS("#generate-submit")),
		chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	id := p.text(t, "#secret-client-id")
	k := e.StoredKey(t, id)
	if d := k.ExpiresAt.Sub(asked.Add(30 * 24 * time.Hour)); d < -time.Minute || d > time.Minute {
		t.Errorf("a key generated to expire in 30 days expires %v (%v off)", k.ExpiresAt, d)
	}
	if fmt.Sprint(k.AllowedCIDRs) != "[203.0.113.0/24 2001:db8::/32]" {
		t.Errorf("allowed source addresses %v", k.AllowedCIDRs)
	}
	p.clean(t, e.URL)
}
