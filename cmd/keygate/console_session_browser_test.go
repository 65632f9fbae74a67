package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// apiJSON sends a management request with tok and decodes the answer into
// out (when not nil); it returns the status.
func apiJSON(t *testing.T, base, tok, method, path string, body, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctxFor(t), method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// TestConsoleBrowserSession: an operator mints a console link; Chromium
// opens it and shows the team and the user without any sign-in; generate,
// rotate and delete work; the same link opened again shows the clear page;
// a team's key-management key signs in and sees no team picker.
func TestConsoleBrowserSession(t *testing.T) {
	srv, adminID, adminSecret := consoleServe(t)
	base := srv.base
	adminTok, err := exchange(ctxFor(t), base, adminID, adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok := adminTok.AccessToken
	var existing struct {
		ClientID string `json:"client_id"`
	}
	if s := apiJSON(t, base, tok, http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": "Existing", "permissions": []string{"visualization_sdk"}}, &existing); s != http.StatusCreated {
		t.Fatalf("create a key: HTTP %d", s)
	}
	var minted struct {
		URL string `json:"url"`
	}
	switch s := apiJSON(t, base, tok, http.MethodPost, "/v1/teams/acme/console-sessions", map[string]string{"user": "alice@example.com", "ttl": "15m"}, &minted); s {
	case http.StatusCreated:
	default:
		t.Fatalf("mint a console link: HTTP %d", s)
	}

	p := newBrowser(t, 1280, 900)
	p.run(t, "open the link", chromedp.Navigate(minted.URL), chromedp.WaitVisible(chromedp.CSS(rowSel(existing.ClientID))))
	// The console names the open team in the address (#team=acme); the
	// code must be gone from it.
	code := minted.URL[strings.Index(minted.URL, "#session=")+len("#session="):]
	if h := evalJS[string](t, p, `location.href`); strings.Contains(h, code) || strings.Contains(h, "session=") {
		t.Errorf("the code is still in the address bar: %q", h)
	}
	if got := p.text(t, "#session-who"); got != "alice@example.com — team acme" {
		t.Errorf("header %q, want %q", got, "alice@example.com — team acme")
	}
	if got := p.text(t, "#key-usage"); !strings.Contains(got, "1 of 5") {
		t.Errorf("key usage %q, want 1 of 5", got)
	}
	for _, sel := range []string{"#switch-team", "#team-view", "#signin-view"} {
		if hidden := evalJS[bool](t, p, `document.querySelector("`+sel+`").hidden`); !hidden {
			t.Errorf("%s is shown to a console link's user", sel)
		}
	}

	id, secret := generate(t, p, "From the link", "accounting_api")
	if id == "" || secret == "" {
		t.Fatal("no key generated")
	}
	closeSecret(t, p)
	p.run(t, "rotate",
		chromedp.WaitVisible(chromedp.CSS(rowSel(id))),
		chromedp.Click(chromedp.CSS(rowSel(id)+" button.rotate")),
		chromedp.WaitVisible(chromedp.CSS("#rotate-dialog[open]")),
		chromedp.Click(chromedp.CSS("#rotate-confirm")),
		chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	if got := p.text(t, "#secret-client-secret"); got == "" || got == secret {
		t.Errorf("rotated secret %q", got)
	}
	closeSecret(t, p)
	// A console link's user suspends and resumes the team's key (issue 17):
	// the action is not hidden in team mode.
	p.run(t, "suspend from the link",
		chromedp.Click(chromedp.CSS(rowSel(id)+" button.suspend")),
		chromedp.WaitVisible(chromedp.CSS("#suspend-dialog[open]")),
		chromedp.Click(chromedp.CSS("#suspend-confirm")),
		chromedp.WaitVisible(chromedp.CSS(rowSel(id)+" .status-suspended")),
		chromedp.Click(chromedp.CSS(rowSel(id)+" button.resume")),
		chromedp.WaitVisible(chromedp.CSS("#suspend-dialog[open]")),
		chromedp.Click(chromedp.CSS("#suspend-confirm")),
		chromedp.WaitVisible(chromedp.CSS(rowSel(id)+" .status-active")))
	var after struct {
		Status string `json:"status"`
	}
	if s := apiJSON(t, base, tok, http.MethodGet, "/v1/teams/acme/keys/"+id, nil, &after); s != http.StatusOK || after.Status != "active" {
		t.Errorf("after suspend and resume from the link: HTTP %d, status %q", s, after.Status)
	}
	p.run(t, "delete",
		chromedp.Click(chromedp.CSS(rowSel(id)+" button.delete")),
		chromedp.WaitVisible(chromedp.CSS("#delete-dialog[open]")),
		chromedp.Click(chromedp.CSS("#delete-confirm")),
		chromedp.WaitNotPresent(chromedp.CSS(rowSel(id))))
	p.clean(t, base)

	// The same link again, in a fresh page: used, so the clear page.
	p2 := newBrowser(t, 1280, 900)
	p2.run(t, "reopen the link", chromedp.Navigate(minted.URL), chromedp.WaitVisible(chromedp.CSS("#link-view")))
	p2.run(t, "the clear page", chromedp.WaitVisible(chromedp.CSS("#link-message")))
	if got := p2.text(t, "#link-title"); got != "This console link cannot be used" {
		t.Errorf("title %q", got)
	}
	if got := p2.text(t, "#link-message"); !strings.Contains(got, "already used or has expired") || !strings.Contains(got, "Ask for a new link") {
		t.Errorf("message %q", got)
	}
	if h := evalJS[string](t, p2, `location.hash`); h != "" {
		t.Errorf("the used code is still in the address bar: %q", h)
	}

	// A team's key-management key: the same team mode after sign-in.
	var manager struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if s := apiJSON(t, base, tok, http.MethodPost, "/v1/teams/globex/keys", map[string]any{
		"name": "Globex admin", "permissions": []string{"key_management"}, "grant_operator_permissions": true,
	}, &manager); s != http.StatusCreated {
		t.Fatalf("create a key-management key: HTTP %d", s)
	}
	p3 := newBrowser(t, 1280, 900)
	p3.run(t, "open", chromedp.Navigate(base+"/console/"))
	signIn(t, p3, manager.ClientID, manager.ClientSecret)
	p3.run(t, "the team at once", chromedp.WaitVisible(chromedp.CSS(rowSel(manager.ClientID))))
	if got := p3.text(t, "#session-who"); !strings.HasSuffix(got, "— team globex") {
		t.Errorf("manager header %q", got)
	}
	if got := p3.text(t, "#key-usage"); !strings.Contains(got, "1 of 5") {
		t.Errorf("manager key usage %q", got)
	}
	for _, sel := range []string{"#switch-team", "#team-view"} {
		if hidden := evalJS[bool](t, p3, `document.querySelector("`+sel+`").hidden`); !hidden {
			t.Errorf("%s is shown to a team manager", sel)
		}
	}
	p3.clean(t, base)
}
