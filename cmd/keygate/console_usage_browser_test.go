package main

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// chartOf reads a usage chart the page shows: its accessible name, its
// tooltip and the series of tokens per day it draws.
type chartOf struct {
	Label  string `json:"label"`
	Title  string `json:"title"`
	Tokens string `json:"tokens"`
	Bars   int    `json:"bars"`
}

func readChart(t *testing.T, p *browserPage, sel string) chartOf {
	t.Helper()
	return evalJS[chartOf](t, p, `(() => {
		const s = document.querySelector(`+"`"+sel+" svg.spark`"+`);
		if (!s) return {label: "", title: "", tokens: "", bars: -1};
		return {label: s.getAttribute("aria-label"), title: s.querySelector("title").textContent,
			tokens: s.getAttribute("data-tokens"), bars: s.querySelectorAll("rect.bar").length};
	})()`)
}

// series is 30 days of zeros with the given counts at days before today
// (0 is today), as data-tokens writes it.
func series(counts map[int]int) string {
	days := make([]string, 30)
	for i := range days {
		days[i] = "0"
	}
	for back, n := range counts {
		days[29-back] = strconv.Itoa(n)
	}
	return strings.Join(days, ",")
}

// TestConsoleUsageChart: the chart with "Last used" shows the tokens a
// real run issued, per day, with the total as its accessible name; the team
// line adds every key up; a reload after more tokens and a flush shows the
// new counts.
func TestConsoleUsageChart(t *testing.T) {
	today := time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC)
	clock := servertest.NewClock(today.AddDate(0, 0, -2))
	e := servertest.StartWith(t, servertest.Config{Options: server.Options{AdminClientID: "console-admin"}, Clock: clock})
	sync := e.CreateKey(t, "acme", "sync", "accounting_api")
	dash := e.CreateKey(t, "acme", "dash", "visualization_sdk")
	other := e.CreateKey(t, "globex", "other", "accounting_api")
	// Two days ago: two tokens of sync. Today: three of sync, one of dash,
	// one refused secret of dash, and tokens of another team.
	for range 2 {
		e.Token(t, sync.ClientID, sync.ClientSecret, "")
	}
	e.FlushLastUsed(t)
	clock.Set(today)
	// FlushLastUsed returns once its first flush is done; its second runs
	// on, stamped two days ago, and would count today's tokens under that
	// day if it ran after them. This call waits for it, and its own
	// lingering flush is stamped today.
	e.FlushLastUsed(t)
	for range 3 {
		e.Token(t, sync.ClientID, sync.ClientSecret, "")
	}
	e.Token(t, dash.ClientID, dash.ClientSecret, "")
	e.Token(t, other.ClientID, other.ClientSecret, "")
	if r := e.TokenRequest(t, dash.ClientID, "kgs_wrong", url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %s", r)
	}
	e.FlushLastUsed(t)

	p := newBrowser(t, 1280, 900)
	p.run(t, "open the console", chromedp.Navigate(e.URL+"/console/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	signIn(t, p, e.AdminID, e.AdminSecret)
	p.run(t, "open acme", chromedp.WaitVisible(chromedp.CSS("#team-view")),
		chromedp.SetValue(chromedp.CSS("#team-id"), "acme"), chromedp.Click(chromedp.CSS("#team-submit")),
		chromedp.WaitVisible(chromedp.CSS(rowSel(sync.ClientID)+" svg.spark")),
		chromedp.WaitVisible(chromedp.CSS("#team-usage svg.spark")))

	got := readChart(t, p, rowSel(sync.ClientID))
	want := chartOf{Label: "5 tokens in the last 30 days", Title: "5 tokens in the last 30 days", Tokens: series(map[int]int{2: 2, 0: 3}), Bars: 2}
	if got != want {
		t.Errorf("sync's chart:\n got  %+v\n want %+v", got, want)
	}
	got = readChart(t, p, rowSel(dash.ClientID))
	want = chartOf{Label: "1 token in the last 30 days, 1 failed authentication", Title: "1 token in the last 30 days, 1 failed authentication", Tokens: series(map[int]int{0: 1}), Bars: 1}
	if got != want {
		t.Errorf("dash's chart:\n got  %+v\n want %+v", got, want)
	}
	if got := p.text(t, rowSel(sync.ClientID)+" .usage-total"); got != "5" {
		t.Errorf("sync's total beside its chart %q, want 5", got)
	}
	// The chart sits with "Last used", under the time.
	if got := evalJS[string](t, p, `document.querySelector(`+"`"+rowSel(sync.ClientID)+" svg.spark`"+`).closest("td").className`); got != "last-used" {
		t.Errorf("the chart is in cell %q, want the last-used cell", got)
	}
	team := readChart(t, p, "#team-usage")
	wantTeam := chartOf{Label: "6 tokens in the last 30 days, 1 failed authentication", Title: "6 tokens in the last 30 days, 1 failed authentication", Tokens: series(map[int]int{2: 2, 0: 4}), Bars: 2}
	if team != wantTeam {
		t.Errorf("team chart (globex's token must not count):\n got  %+v\n want %+v", team, wantTeam)
	}
	p.screenshot(t, screenshotDir(t), "usage-chart")
	if got := p.text(t, "#team-usage"); !strings.HasPrefix(got, "Team: 6 tokens in the last 30 days, 1 failed authentication") {
		t.Errorf("team line %q", got)
	}

	// More tokens, a flush, a reload: the chart shows the new counts.
	for range 4 {
		e.Token(t, dash.ClientID, dash.ClientSecret, "")
	}
	e.FlushLastUsed(t)
	p.run(t, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	signIn(t, p, e.AdminID, e.AdminSecret)
	p.run(t, "back to acme", chromedp.WaitVisible(chromedp.CSS(rowSel(dash.ClientID)+" svg.spark")))
	got = readChart(t, p, rowSel(dash.ClientID))
	if got.Label != "5 tokens in the last 30 days, 1 failed authentication" || got.Tokens != series(map[int]int{0: 5}) {
		t.Errorf("dash's chart after the reload: %+v", got)
	}
	p.clean(t, e.URL)
}
