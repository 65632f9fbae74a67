package main

// Browser tests of the web console: Debian's headless Chromium, driven with
// chromedp, against a real `keygate serve`. They prove what a unit test of
// the page could not: that the secret the lightbox shows is the real one
// (a Go OAuth2 client exchanges it for a token), that names render as text
// under the real CSP, and that the page makes no request to another origin.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/scopes"
)

const xssName = `<img src=x onerror=alert(1)>`

// chromiumPath finds Debian's Chromium. Without it the browser tests skip,
// loudly, except under CI, where a missing browser is a broken CI set-up.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("KEYGATE_TEST_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("BROWSER TESTS NOT RUN: no Chromium at %s (%v). Install Debian's chromium package "+
			"(apt-get install chromium) or set KEYGATE_TEST_CHROMIUM.", p, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " Under CI=true this is a failure: .ci/run installs it.")
		}
		t.Skip(msg)
	}
	return p
}

// page is one headless Chromium tab plus what it observed: JavaScript
// dialogs (alert/confirm/prompt), uncaught exceptions, console errors (CSP
// violations land there) and the URL of every request.
type browserPage struct {
	ctx context.Context

	mu         sync.Mutex
	dialogs    []string
	exceptions []string
	errors     []string
	requests   []string
	// tokenCalls are the page's requests to the token endpoint, in order.
	tokenCalls []network.RequestID
}

func newBrowser(t *testing.T, width, height int64) *browserPage {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(width), int(height)),
	}
	// Every browser test is bounded: a hung Chromium fails the test, never
	// the whole run.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)

	p := &browserPage{ctx: ctx}
	// The first Do starts Chromium; listeners attach to the running tab.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch e := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			p.dialogs = append(p.dialogs, string(e.Type)+": "+e.Message)
			// Dismiss it from outside the event loop, or the page stays blocked.
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		case *runtime.EventExceptionThrown:
			p.exceptions = append(p.exceptions, e.ExceptionDetails.Text+" "+exceptionDescription(e))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				p.errors = append(p.errors, "console.error: "+strings.Join(parts, " "))
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				p.errors = append(p.errors, string(e.Entry.Source)+": "+e.Entry.Text+" "+e.Entry.URL)
			}
		case *network.EventRequestWillBeSent:
			p.requests = append(p.requests, e.Request.URL)
			if strings.HasSuffix(e.Request.URL, "/oauth/token") {
				p.tokenCalls = append(p.tokenCalls, e.RequestID)
			}
		}
	})
	if err != nil {
		t.Fatalf("listen to Chromium: %v", err)
	}
	enable := func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, tg, runtime.Enable, cdp.Empty{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride,
			emulation.SetDeviceMetricsOverrideParams{Width: width, Height: height, DeviceScaleFactor: 1})
		return err
	}
	if err := chromedp.Do(ctx, chromedp.Func(enable)); err != nil {
		t.Fatalf("set up Chromium: %v", err)
	}
	return p
}

func exceptionDescription(e *runtime.EventExceptionThrown) string {
	if e.ExceptionDetails.Exception != nil {
		return e.ExceptionDetails.Exception.Description
	}
	return ""
}

func (p *browserPage) run(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		html, _ := chromedp.Run(p.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: %v\nmain now:\n%s\n%s", what, err, html, p.observed())
	}
}

func (p *browserPage) text(t *testing.T, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v\n%s", sel, err, p.observed())
	}
	return strings.TrimSpace(s)
}

// evalJS runs JavaScript in the page and decodes its value.
func evalJS[T any](t *testing.T, p *browserPage, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v\n%s", js, err, p.observed())
	}
	return v
}

func (p *browserPage) observed() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("dialogs: %q\nexceptions: %q\nerrors: %q", p.dialogs, p.exceptions, p.errors)
}

// faults lists what the page did wrong: JavaScript dialogs, uncaught
// exceptions, logged errors (a CSP violation is one) and requests off base.
func (p *browserPage) faults(base string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, d := range p.dialogs {
		out = append(out, "dialog "+d)
	}
	for _, e := range p.exceptions {
		out = append(out, "exception "+e)
	}
	for _, e := range p.errors {
		// The refused sign-in and the revoked token are 401s the tests
		// cause on purpose; Chromium logs each as a network error.
		if strings.HasPrefix(e, "network: ") && strings.Contains(e, "status of 401") {
			continue
		}
		out = append(out, "error "+e)
	}
	for _, u := range p.requests {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "blob:"+base+"/") {
			out = append(out, "request to another origin "+u)
		}
	}
	return out
}

// forgive drops the first logged browser error containing what: one the
// test caused on purpose (a request the server refuses). It fails the test
// when there is none, so the refusal is known to have happened.
func (p *browserPage) forgive(t *testing.T, what string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, e := range p.errors {
		if strings.Contains(e, what) {
			p.errors = append(p.errors[:i:i], p.errors[i+1:]...)
			return
		}
	}
	t.Errorf("no browser error %q to forgive (errors: %q)", what, p.errors)
}

// clean fails the test for every fault the page committed.
func (p *browserPage) clean(t *testing.T, base string) {
	t.Helper()
	for _, f := range p.faults(base) {
		t.Errorf("the console misbehaved: %s", f)
	}
}

// screenshotDir is where screenshots go: $KEYGATE_TEST_SCREENSHOTS, or a
// new temporary directory that outlives the test so the pictures can be
// looked at afterwards (its path is logged).
func screenshotDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("KEYGATE_TEST_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", "keygate-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func (p *browserPage) screenshot(t *testing.T, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG; less would be JPEG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// pageToken reads the access token the page got at its last sign-in, off
// the network (the page itself keeps it where no script can reach it).
func (p *browserPage) pageToken(t *testing.T) string {
	t.Helper()
	p.mu.Lock()
	calls := slices.Clone(p.tokenCalls)
	p.mu.Unlock()
	if len(calls) == 0 {
		t.Fatal("the page never called the token endpoint")
	}
	res, err := chromedp.Call(p.ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: calls[len(calls)-1]})
	if err != nil {
		t.Fatalf("read the sign-in answer: %v", err)
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(res.Body, &body); err != nil || body.AccessToken == "" {
		t.Fatalf("sign-in answer %q: %v", res.Body, err)
	}
	return body.AccessToken
}

// consoleServe starts a real serve on loopback with a known admin key.
//
// The browser tests do not run in parallel: each drives a Chromium, which
// keeps a core busy, and two at a time made the package's tests slower on
// a two-core machine (22 s instead of 17 s), besides risking timeouts.
func consoleServe(t *testing.T) (r *running, adminID, adminSecret string) {
	t.Helper()
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{envAdminClientID: "console-admin", envAdminClientSecret: secret}
	cfg, err := loadConfigWith(t, vars, "--data-dir", t.TempDir(), "--listen", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	// The issuer (hence the token URL the console offers for download) is
	// this server, as an operator would configure it.
	cfg.Issuer = "http://" + cfg.Listen
	return startServeWith(t, cfg, vars), "console-admin", secret
}

func signIn(t *testing.T, p *browserPage, id, secret string) {
	t.Helper()
	p.run(t, "sign in",
		chromedp.WaitVisible(chromedp.CSS("#signin-form")),
		chromedp.SetValue(chromedp.CSS("#signin-id"), id),
		chromedp.SetValue(chromedp.CSS("#signin-secret"), secret),
		chromedp.Click(chromedp.CSS("#signin-submit")),
	)
}

// generate fills in and submits the generate dialog, then returns the
// client ID and secret the lightbox shows.
func generate(t *testing.T, p *browserPage, name string, permission string) (id, secret string) {
	t.Helper()
	p.run(t, "generate "+name,
		chromedp.Click(chromedp.CSS("#generate")),
		chromedp.WaitVisible(chromedp.CSS("#generate-dialog[open] #key-name")),
		chromedp.SendKeys(chromedp.CSS("#key-name"), name),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#key-perms-list input[value=%q]`, permission))),
		chromedp.Click(chromedp.CSS("#generate-submit")),
		chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")),
	)
	return p.text(t, "#secret-client-id"), p.text(t, "#secret-client-secret")
}

// closeSecret dismisses the lightbox the way an operator must: Done, then
// confirm.
func closeSecret(t *testing.T, p *browserPage) {
	t.Helper()
	p.run(t, "close the lightbox",
		chromedp.Click(chromedp.CSS("#secret-done")),
		chromedp.WaitVisible(chromedp.CSS("#close-confirm-dialog[open]")),
		chromedp.Click(chromedp.CSS("#close-confirm-yes")),
		chromedp.WaitNotPresent(chromedp.CSS("#secret-dialog[open]")),
	)
}

// refreshList re-opens the team (the navigation link) so the list is read
// from the server again.
func refreshList(t *testing.T, p *browserPage) {
	t.Helper()
	p.run(t, "refresh the list",
		chromedp.Click(chromedp.CSS("#nav-api-keys")),
		chromedp.WaitVisible(chromedp.CSS("#keys-view")),
		chromedp.Sleep(150*time.Millisecond),
	)
}

func rowSel(id string) string { return fmt.Sprintf(`tr[data-client-id=%q]`, id) }

func revokeToken(t *testing.T, base, id, secret, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/oauth/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func exchange(ctx context.Context, base, id, secret string) (*oauth2.Token, error) {
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: base + "/oauth/token"}
	return cc.Token(ctx)
}

func TestConsoleBrowser(t *testing.T) {
	srv, adminID, adminSecret := consoleServe(t)
	base := srv.base
	shots := screenshotDir(t)
	p := newBrowser(t, 1280, 900)
	admin := client.New(client.Config{URL: base, ClientID: adminID, ClientSecret: adminSecret})
	// The whole test's API calls share this bound: the browser's 3 minutes,
	// not ctxFor's 15 s, which a loaded CI machine outlasts (22 s seen).
	ctx, cancelCtx := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancelCtx)
	catalog := scopes.Default()
	accounting, _ := catalog.Lookup("accounting_api")

	// The frame is there before sign-in.
	p.run(t, "open the console", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	if got := p.text(t, ".brand"); got != "keygate" {
		t.Errorf("product name %q", got)
	}
	if got := p.text(t, ".nav-heading"); !strings.EqualFold(got, "Developers") {
		t.Errorf("navigation heading %q", got)
	}
	if got := p.text(t, "#nav-api-keys"); got != "API Keys" {
		t.Errorf("navigation entry %q", got)
	}

	// A wrong secret: an inline error, still signed out, no browser prompt.
	signIn(t, p, adminID, adminSecret[:len(adminSecret)-2]+"xx")
	p.run(t, "wrong secret", chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	if got := p.text(t, "#signin-error"); !strings.Contains(got, "wrong") {
		t.Errorf("wrong-secret message %q", got)
	}
	var teamHidden bool
	teamHidden = evalJS[bool](t, p, `document.getElementById("team-view").hidden`)
	if !teamHidden {
		t.Error("the team picker is shown after a refused sign-in")
	}

	// The token lives in memory only.
	signIn(t, p, adminID, adminSecret)
	p.run(t, "team picker", chromedp.WaitVisible(chromedp.CSS("#team-view")), chromedp.WaitVisible(chromedp.CSS("#team-empty")))
	var stored string
	stored = evalJS[string](t, p, `JSON.stringify([localStorage.length, sessionStorage.length, document.cookie])`)
	if stored != `[0,0,""]` {
		t.Errorf("the console stored something in the browser (localStorage, sessionStorage, cookie): %s", stored)
	}
	var secretField string
	secretField = evalJS[string](t, p, `document.getElementById("signin-secret").value`)
	if secretField != "" {
		t.Error("the admin secret stays in the sign-in form after sign-in")
	}

	// An invalid team ID is refused inline; a new team opens empty.
	p.run(t, "bad team", chromedp.SendKeys(chromedp.CSS("#team-id"), "no spaces!"),
		chromedp.Click(chromedp.CSS("#team-submit")), chromedp.WaitVisible(chromedp.CSS("#team-error")))
	p.run(t, "open acme", chromedp.SetValue(chromedp.CSS("#team-id"), "acme"), chromedp.Click(chromedp.CSS("#team-submit")),
		chromedp.WaitVisible(chromedp.CSS("#keys-empty")))
	if got := p.text(t, "#key-usage"); got != "0 of 5 keys used" {
		t.Errorf("usage %q, want 0 of 5 keys used", got)
	}

	// The generate dialog checks the name inline and creates nothing then.
	p.run(t, "empty name", chromedp.Click(chromedp.CSS("#generate")),
		chromedp.WaitVisible(chromedp.CSS("#generate-dialog[open]")),
		chromedp.Click(chromedp.CSS(`#key-perms-list input[value="accounting_api"]`)),
		chromedp.Click(chromedp.CSS("#generate-submit")),
		chromedp.WaitVisible(chromedp.CSS("#key-name-error")))
	p.run(t, "too long a name", chromedp.SendKeys(chromedp.CSS("#key-name"), strings.Repeat("n", 65)),
		chromedp.Click(chromedp.CSS("#generate-submit")))
	if got := p.text(t, "#key-name-error"); !strings.Contains(got, "65 characters") {
		t.Errorf("long-name message %q", got)
	}
	if keys, err := admin.ListKeys(ctx, "acme"); err != nil || len(keys.Keys) != 0 {
		t.Fatalf("a refused generate created keys: %+v, %v", keys, err)
	}
	// Each permission is offered with its display name and description;
	// the operator-only one is not offered at all.
	var offered []string
	offered = evalJS[[]string](t, p, `[...document.querySelectorAll("#key-perms-list .choice")].map(c => c.textContent)`)
	if want := len(catalog.Offered()); len(offered) != want {
		t.Errorf("the dialog offers %d permissions, want %d: %q", len(offered), want, offered)
	}
	for i, perm := range catalog.Offered() {
		if i < len(offered) && offered[i] != perm.Name+perm.Description {
			t.Errorf("choice %d reads %q, want name and description of %s", i, offered[i], perm.ID)
		}
	}
	// Every field has a label (the permission checkboxes sit inside theirs).
	if unlabelled := evalJS[[]string](t, p, `[...document.querySelectorAll("input, select")].filter(f => f.labels.length === 0).map(f => f.id || f.name)`); len(unlabelled) > 0 {
		t.Errorf("fields without a label: %q", unlabelled)
	}
	p.run(t, "cancel with Esc", chromedp.KeyEvent("\x1b"), chromedp.WaitNotPresent(chromedp.CSS("#generate-dialog[open]")))

	// Generate for real; the lightbox shows the secret once.
	id, secret := generate(t, p, "Production sync", "accounting_api")
	if !strings.HasPrefix(id, "kgc_") || !strings.HasPrefix(secret, "kgs_") {
		t.Fatalf("lightbox shows client ID %q and secret %q", id, secret)
	}
	if got := p.text(t, "#secret-warning"); !strings.Contains(got, "cannot be retrieved") {
		t.Errorf("lightbox warning %q", got)
	}
	p.screenshot(t, shots, "lightbox")

	// The list behind the lightbox already shows the key, never used.
	p.run(t, "new row", chromedp.WaitReady(chromedp.CSS(rowSel(id))))
	if got := p.text(t, rowSel(id)+" .last-used .when"); got != "never" {
		t.Errorf("last used of a fresh key %q, want never", got)
	}
	if got := p.text(t, rowSel(id)+" .permissions"); got != accounting.Name {
		t.Errorf("permissions shown %q, want the display name %q", got, accounting.Name)
	}
	if got := p.text(t, rowSel(id)+" .name"); got != "Production sync" {
		t.Errorf("name shown %q", got)
	}

	// Download writes the JSON an integrator needs.
	dl := t.TempDir()
	if _, err := chromedp.CallBrowser(p.ctx, browser.SetDownloadBehavior,
		browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl}); err != nil {
		t.Fatal(err)
	}
	p.run(t, "download", chromedp.Click(chromedp.CSS("#download-key")))
	var file struct {
		ClientID     string   `json:"client_id"`
		ClientSecret string   `json:"client_secret"`
		TokenURL     string   `json:"token_url"`
		Scopes       []string `json:"scopes"`
	}
	path := filepath.Join(dl, "keygate-"+id+".json")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if raw, err := os.ReadFile(path); err == nil && json.Unmarshal(raw, &file) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no download at %s", path)
		}
	}
	wantScopes, _ := catalog.Resolve([]string{"accounting_api"})
	if file.ClientID != id || file.ClientSecret != secret || file.TokenURL != base+"/oauth/token" || !slices.Equal(file.Scopes, wantScopes) {
		t.Errorf("downloaded %+v, want client %s, its secret, token URL %s/oauth/token, scopes %v", file, id, base, wantScopes)
	}

	// Copy puts the secret on the clipboard (permission granted as a user
	// would grant it).
	for _, perm := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: perm}, Setting: browser.PermissionSettingGranted, Origin: base,
		}); err != nil {
			t.Fatalf("grant %s: %v", perm, err)
		}
	}
	p.run(t, "copy the secret", chromedp.Click(chromedp.CSS("#copy-client-secret")))
	for deadline := time.Now().Add(5 * time.Second); p.text(t, "#copy-status") != "Client secret copied."; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("copy status %q", p.text(t, "#copy-status"))
		}
	}
	ctxClip, cancelClip := context.WithTimeout(p.ctx, 10*time.Second)
	clip, err := chromedp.Run(ctxClip, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	cancelClip()
	if err != nil || clip != secret {
		t.Errorf("clipboard holds %q (%v), want the secret", clip, err)
	}

	// The secret on screen is the real one: a standard OAuth2 client gets a
	// token with it.
	tok, err := exchange(ctx, base, id, secret)
	if err != nil {
		t.Fatalf("the secret the lightbox showed does not get a token: %v", err)
	}
	if _, claims := verifyWithJWKS(t, base, tok.AccessToken); claims.ClientID != id || claims.TeamID != "acme" {
		t.Errorf("token claims %+v", claims)
	}

	// Esc asks before closing; going back keeps the secret on screen.
	p.run(t, "Esc on the lightbox", chromedp.KeyEvent("\x1b"), chromedp.WaitVisible(chromedp.CSS("#close-confirm-dialog[open]")),
		chromedp.Click(chromedp.CSS("#close-confirm-back")), chromedp.WaitNotPresent(chromedp.CSS("#close-confirm-dialog[open]")))
	if got := p.text(t, "#secret-client-secret"); got != secret {
		t.Fatalf("after Go back the lightbox shows %q", got)
	}
	closeSecret(t, p)
	var leftover string
	leftover = evalJS[string](t, p, `document.getElementById("secret-client-secret").textContent`)
	if leftover != "" {
		t.Error("the secret stays in the page after the lightbox closed")
	}

	// Last used: a time once the token exchange has been recorded (≤ 1 s).
	var lastUsed string
	for deadline := time.Now().Add(10 * time.Second); ; {
		refreshList(t, p)
		lastUsed = evalJS[string](t, p, fmt.Sprintf(`document.querySelector('%s .last-used time')?.getAttribute("datetime") ?? ""`, rowSel(id)))
		if lastUsed != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last used still %q 10 s after the key got a token", p.text(t, rowSel(id)+" .last-used .when"))
		}
	}
	if at, err := time.Parse(time.RFC3339, lastUsed); err != nil || time.Since(at) > time.Minute {
		t.Errorf("last used %q is not a recent time (%v)", lastUsed, err)
	}

	// A hostile name renders as text, and nothing runs.
	xssID, _ := generate(t, p, xssName, "visualization_sdk")
	closeSecret(t, p)
	refreshList(t, p)
	if got := p.text(t, rowSel(xssID)+" .name"); got != xssName {
		t.Errorf("hostile name rendered as %q, want the literal text", got)
	}
	var imgs int
	imgs = evalJS[int](t, p, `document.querySelectorAll('img[src="x"], [onerror]').length`)
	if imgs != 0 {
		t.Errorf("the hostile name became %d element(s)", imgs)
	}

	// Up to the limit: Generate is disabled, with the reason.
	for i := range 3 {
		if _, err := admin.CreateKey(ctx, "acme", fmt.Sprintf("Batch %d", i), []string{"visualization_sdk"}); err != nil {
			t.Fatal(err)
		}
	}
	refreshList(t, p)
	if got := p.text(t, "#key-usage"); got != "5 of 5 keys used" {
		t.Errorf("usage %q at the limit", got)
	}
	var disabled bool
	disabled = evalJS[bool](t, p, `document.getElementById("generate").disabled`)
	if !disabled {
		t.Error("Generate API Key is enabled at the limit")
	}
	if got := p.text(t, "#limit-reason"); !strings.Contains(got, "maximum") {
		t.Errorf("limit reason %q", got)
	}
	p.screenshot(t, shots, "list-at-limit")

	// Delete names the key, says it stops at once, and the key stops.
	p.run(t, "ask to delete", chromedp.Click(chromedp.CSS(rowSel(id)+" button.delete")),
		chromedp.WaitVisible(chromedp.CSS("#delete-dialog[open]")))
	if got := p.text(t, "#delete-text"); !strings.Contains(got, "Production sync") || !strings.Contains(got, "stops working at once") {
		t.Errorf("delete confirmation %q", got)
	}
	p.run(t, "delete", chromedp.Click(chromedp.CSS("#delete-confirm")), chromedp.WaitNotPresent(chromedp.CSS(rowSel(id))))
	if got := p.text(t, "#key-usage"); got != "4 of 5 keys used" {
		t.Errorf("usage %q after the delete", got)
	}
	disabled = evalJS[bool](t, p, `document.getElementById("generate").disabled`)
	if disabled {
		t.Error("Generate API Key stays disabled below the limit")
	}
	var re *oauth2.RetrieveError
	if _, err := exchange(ctx, base, id, secret); !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Errorf("a key deleted in the console still gets a token (err %v)", err)
	}

	// Rotate with the console's longest grace period, "7 days", which it
	// sends as "7d" (the API takes days): the old secret works a week.
	p.run(t, "rotate for a week", chromedp.Click(chromedp.CSS(rowSel(xssID)+" button.rotate")),
		chromedp.WaitVisible(chromedp.CSS("#rotate-dialog[open]")),
		chromedp.SetValue(chromedp.CSS("#rotate-grace"), "7d"),
		chromedp.Click(chromedp.CSS("#rotate-confirm")),
		chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	if got := p.text(t, "#secret-grace"); got == "" {
		t.Error("a rotation with a grace period shows no note of the old secret's end")
	}
	closeSecret(t, p)
	if k, err := admin.GetKey(ctx, "acme", xssID); err != nil || k.PreviousSecretExpiresAt == nil ||
		k.PreviousSecretExpiresAt.Sub(*k.SecretRotatedAt) != 7*24*time.Hour {
		t.Errorf("after the console's 7-day rotation: %+v, %v", k, err)
	}

	// Rotate: the same lightbox, with a new secret that works; grace 0
	// ends the old one at once.
	p.run(t, "rotate", chromedp.Click(chromedp.CSS(rowSel(xssID)+" button.rotate")),
		chromedp.WaitVisible(chromedp.CSS("#rotate-dialog[open]")),
		chromedp.SetValue(chromedp.CSS("#rotate-grace"), "0s"),
		chromedp.Click(chromedp.CSS("#rotate-confirm")),
		chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	if got := p.text(t, "#secret-title"); got != "Secret rotated" {
		t.Errorf("rotate lightbox title %q", got)
	}
	newSecret := p.text(t, "#secret-client-secret")
	if _, err := exchange(ctx, base, xssID, newSecret); err != nil {
		t.Errorf("the rotated secret shown does not get a token: %v", err)
	}
	closeSecret(t, p)

	// The rotated secret is reported leaked (POST /v1/leaked-secrets, no
	// token): the list says so once it is read again, below.
	leak, err := http.Post(base+"/v1/leaked-secrets", "application/json", strings.NewReader(`{"secrets":["`+newSecret+`"]}`))
	if err != nil || leak.StatusCode != http.StatusOK {
		t.Fatalf("report the secret leaked: %v %v", leak, err)
	}
	leak.Body.Close()

	// The team picker lists teams with their key counts.
	p.run(t, "switch team", chromedp.Click(chromedp.CSS("#switch-team")),
		chromedp.WaitVisible(chromedp.CSS(`#team-list button[data-team="acme"]`)))
	if got := p.text(t, `#team-list button[data-team="acme"]`); !strings.Contains(got, "4 of 5") {
		t.Errorf("team entry %q", got)
	}

	// On expiry the console asks again, then returns to the team.
	p.run(t, "open acme again", chromedp.Click(chromedp.CSS(`#team-list button[data-team="acme"]`)),
		chromedp.WaitVisible(chromedp.CSS("#keys-view")),
		chromedp.WaitVisible(chromedp.CSS(rowSel(xssID)+" .suspended")))
	if got := p.text(t, rowSel(xssID)+" .suspended"); got != "Secret suspended: reported leaked. Rotate to get a working secret." {
		t.Errorf("suspended key's row says %q", got)
	}
	evalJS[chromedp.Void](t, p, `(() => { const real = Date.now; Date.now = () => real() + 16 * 60 * 1000; })()`)
	p.run(t, "expired", chromedp.Click(chromedp.CSS("#nav-api-keys")), chromedp.WaitVisible(chromedp.CSS("#signin-notice")))
	if got := p.text(t, "#signin-notice"); !strings.Contains(got, "expired") {
		t.Errorf("expiry notice %q", got)
	}
	signIn(t, p, adminID, adminSecret)
	p.run(t, "back to the team", chromedp.WaitVisible(chromedp.CSS(rowSel(xssID))))

	// A token the server no longer accepts (revoked here, as an operator
	// ending a session would) brings the sign-in back on the next call.
	if r := revokeToken(t, base, adminID, adminSecret, p.pageToken(t)); r != http.StatusOK {
		t.Fatalf("revoke the console's token: HTTP %d", r)
	}
	p.run(t, "refused token", chromedp.Click(chromedp.CSS("#nav-api-keys")), chromedp.WaitVisible(chromedp.CSS("#signin-notice")))
	if got := p.text(t, "#signin-notice"); !strings.Contains(got, "Sign in again") {
		t.Errorf("notice after a refused token %q", got)
	}
	signIn(t, p, adminID, adminSecret)
	p.run(t, "back again", chromedp.WaitVisible(chromedp.CSS(rowSel(xssID))))

	// Sign out: back to the form, and no key data left in the page.
	p.run(t, "sign out", chromedp.Click(chromedp.CSS("#sign-out")), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	if rows := evalJS[int](t, p, `document.querySelectorAll("#keys-body tr, #team-list li").length`); rows != 0 {
		t.Errorf("%d rows of key or team data left in the page after sign-out", rows)
	}
	if got := p.text(t, "#signin-notice"); !strings.Contains(got, "signed out") {
		t.Errorf("sign-out notice %q", got)
	}

	p.clean(t, base)
}

// TestConsoleBrowserPhone checks the page at 375 px: the navigation and the
// list stay visible without sideways scrolling.
func TestConsoleBrowserPhone(t *testing.T) {
	srv, adminID, adminSecret := consoleServe(t)
	base := srv.base
	admin := client.New(client.Config{URL: base, ClientID: adminID, ClientSecret: adminSecret})
	teamKey, err := admin.CreateKey(ctxFor(t), "acme", "A fairly long key name for a phone screen", []string{"accounting_api", "visualization_sdk"})
	if err != nil {
		t.Fatal(err)
	}
	p := newBrowser(t, 375, 812)
	p.run(t, "open", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#nav-api-keys")))
	// A team's key is not an admin key: refused inline, still signed out.
	signIn(t, p, teamKey.ClientID, teamKey.ClientSecret)
	p.run(t, "team key refused", chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	if got := p.text(t, "#signin-error"); !strings.Contains(got, "not an admin key") {
		t.Errorf("sign-in with a team key: %q", got)
	}
	signIn(t, p, adminID, adminSecret)
	p.run(t, "pick acme", chromedp.WaitVisible(chromedp.CSS(`#team-list button[data-team="acme"]`)),
		chromedp.Click(chromedp.CSS(`#team-list button[data-team="acme"]`)),
		chromedp.WaitVisible(chromedp.CSS("#keys-body tr")))
	var overflow int
	overflow = evalJS[int](t, p, `document.documentElement.scrollWidth - document.documentElement.clientWidth`)
	if overflow > 0 {
		t.Errorf("the page scrolls sideways by %d px at 375 px", overflow)
	}
	shots := screenshotDir(t)
	p.screenshot(t, shots, "list-375px")
	p.run(t, "generate dialog", chromedp.Click(chromedp.CSS("#generate")), chromedp.WaitVisible(chromedp.CSS("#generate-dialog[open]")))
	var dialogWidth float64
	dialogWidth = evalJS[float64](t, p, `document.getElementById("generate-dialog").getBoundingClientRect().right`)
	if dialogWidth > 375 {
		t.Errorf("the generate dialog reaches %.0f px on a 375 px screen", dialogWidth)
	}
	// Keyboard: Tab from the last control wraps to the first inside the
	// dialog; Esc closes it.
	var active string
	p.run(t, "tab wraps", chromedp.Focus(chromedp.CSS("#generate-submit")), chromedp.KeyEvent("\t"))
	active = evalJS[string](t, p, `document.activeElement.id`)
	if active != "key-name" {
		t.Errorf("Tab from the last button went to #%s, want #key-name (focus trap)", active)
	}
	p.screenshot(t, shots, "generate-375px")
	p.run(t, "Esc", chromedp.KeyEvent("\x1b"), chromedp.WaitNotPresent(chromedp.CSS("#generate-dialog[open]")))
	p.clean(t, base)
}

// TestConsoleNameRulesMatchAPI holds the console's inline name check to the
// API's: for each name, the page's verdict (validate.js, run in Chromium)
// must be the API's (201 or 400).
func TestConsoleNameRulesMatchAPI(t *testing.T) {
	srv, adminID, adminSecret := consoleServe(t)
	base := srv.base
	admin := client.New(client.Config{URL: base, ClientID: adminID, ClientSecret: adminSecret})
	p := newBrowser(t, 1024, 768)
	p.run(t, "open", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	names := []string{
		"Production sync", "  padded  ", "", "   ", "\u00a0nbsp-trimmed\u00a0", "a\u00a0b", "tab\tinside",
		"bell\u0007", "zero\u200bwidth", "joiner\u200d", "🔑 key", "e\u0301 combining", "日本語の鍵",
		strings.Repeat("é", 64), strings.Repeat("é", 65), strings.Repeat("n", 64), strings.Repeat("n", 65),
		"<img src=x onerror=alert(1)>", "line\nbreak", "private\ue000use", "rtl\u202eoverride",
	}
	for i, name := range names {
		arg, _ := json.Marshal(name)
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		pageSays, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`import("/console/validate.js").then(m => m.nameError(`+string(arg)+`))`, chromedp.EvalAwaitPromise))
		cancel()
		if err != nil {
			t.Fatalf("validate.js on %q: %v", name, err)
		}
		team := fmt.Sprintf("parity-%d", i)
		created, err := admin.CreateKey(ctxFor(t), team, name, []string{"visualization_sdk"})
		apiAccepts := err == nil
		if apiAccepts {
			if err := admin.DeleteKey(ctxFor(t), team, created.ClientID); err != nil {
				t.Fatal(err)
			}
		} else if !strings.Contains(err.Error(), "400") && !strings.Contains(strings.ToLower(err.Error()), "name") {
			t.Fatalf("create %q failed for another reason: %v", name, err)
		}
		if pageAccepts := pageSays == ""; pageAccepts != apiAccepts {
			t.Errorf("name %q: page accepts=%v (%q), API accepts=%v (%v)", name, pageAccepts, pageSays, apiAccepts, err)
		}
	}
	p.clean(t, base)
}

// TestBrowserObserverSeesFaults checks the checker: the observer the console
// tests rely on for "no dialog fired", "no exception", "no error" and "no
// third-party request" does see each of those when they happen, so its
// silence in the tests above means something.
func TestBrowserObserverSeesFaults(t *testing.T) {
	srv, _, _ := consoleServe(t)
	p := newBrowser(t, 800, 600)
	p.run(t, "open", chromedp.Navigate(srv.base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	evalJS[chromedp.Void](t, p, `alert("probe")`)
	evalJS[chromedp.Void](t, p, `setTimeout(() => { throw new Error("probe exception") }, 0)`)
	evalJS[chromedp.Void](t, p, `console.error("probe error")`)
	// Blocked by the console's CSP (connect-src 'self'): logged as a
	// violation, and the attempt is seen as a request to another origin.
	evalJS[chromedp.Void](t, p, `fetch("http://127.0.0.2:9/probe").catch(() => {})`)
	want := []string{"dialog alert: probe", "exception", "probe error", "Content Security Policy"}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		all := strings.Join(p.faults(srv.base), "\n")
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return strings.Contains(all, w) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the observer missed %q; it saw:\n%s", missing, all)
		}
	}
}

// TestConsoleTeamPicker: the team picker shows a page of teams, loads the
// next on request, and filters by what is typed (on the server, by prefix).
func TestConsoleTeamPicker(t *testing.T) {
	srv, adminID, adminSecret := consoleServe(t)
	base := srv.base
	admin := client.New(client.Config{URL: base, ClientID: adminID, ClientSecret: adminSecret})
	const teams = 55 // more than one page of 50
	for i := 1; i <= teams; i++ {
		if _, err := admin.CreateKey(ctxFor(t), fmt.Sprintf("t-%03d", i), "k", []string{"visualization_sdk"}); err != nil {
			t.Fatal(err)
		}
	}
	p := newBrowser(t, 1024, 768)
	p.run(t, "open", chromedp.Navigate(base+"/console/"))
	signIn(t, p, adminID, adminSecret)
	listed := func() []string {
		return evalJS[[]string](t, p, `[...document.querySelectorAll("#team-list button")].map(b => b.dataset.team)`)
	}
	waitListed := func(what string, want int) []string {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if got := listed(); len(got) == want {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d teams listed, want %d", what, len(listed()), want)
			}
		}
	}
	p.run(t, "first page", chromedp.WaitVisible(chromedp.CSS("#team-more")))
	got := waitListed("first page", 50)
	if got[0] != "t-001" || got[49] != "t-050" {
		t.Errorf("first page %s…%s, want t-001…t-050", got[0], got[49])
	}
	p.run(t, "next page", chromedp.Click(chromedp.CSS("#team-more")))
	got = waitListed("after Show more", teams)
	if got[teams-1] != "t-055" {
		t.Errorf("last team %s, want t-055", got[teams-1])
	}
	p.run(t, "no more pages", chromedp.WaitNotVisible(chromedp.CSS("#team-more")))

	p.run(t, "filter", chromedp.SendKeys(chromedp.CSS("#team-id"), "t-05"))
	got = waitListed("filtered by t-05", 6)
	if !slices.Equal(got, []string{"t-050", "t-051", "t-052", "t-053", "t-054", "t-055"}) {
		t.Errorf("filtered by t-05: %v", got)
	}
	p.screenshot(t, screenshotDir(t), "team-picker")
	p.run(t, "filter to nothing", chromedp.SendKeys(chromedp.CSS("#team-id"), "9"), chromedp.WaitVisible(chromedp.CSS("#team-empty")))
	if got := p.text(t, "#team-empty"); !strings.Contains(got, "t-059") {
		t.Errorf("empty-filter message %q", got)
	}
	// Enter opens the typed team, new or not.
	p.run(t, "open the typed team", chromedp.SendKeys(chromedp.CSS("#team-id"), "\r"), chromedp.WaitVisible(chromedp.CSS("#keys-empty")))
	if got := p.text(t, "#keys-team"); got != "t-059" {
		t.Errorf("opened team %q, want t-059", got)
	}
	p.clean(t, base)
}
