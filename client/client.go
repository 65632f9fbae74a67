// Package client is a Go client for keygate's management API. It gets its
// admin access token with the standard OAuth 2.0 client credentials flow
// (golang.org/x/oauth2/clientcredentials), so tokens are fetched, cached and
// renewed the way any OAuth client would.
//
//	c := client.New(client.Config{
//		URL:          "http://127.0.0.1:8080",
//		ClientID:     os.Getenv("KEYGATE_ADMIN_CLIENT_ID"),
//		ClientSecret: os.Getenv("KEYGATE_ADMIN_CLIENT_SECRET"),
//	})
//	created, err := c.CreateKey(ctx, "acme", "Production sync", []string{"accounting_api"})
//
// Failed calls return *Error with the server's RFC 9457 problem details.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Config says where keygate is and which admin key to use.
type Config struct {
	// URL is keygate's base URL, e.g. http://127.0.0.1:8080.
	URL          string
	ClientID     string
	ClientSecret string
	// HTTPClient is the transport for both the token and the API calls; nil
	// means a client with a 30-second timeout.
	HTTPClient *http.Client
}

// Client calls the management API. Safe for concurrent use.
type Client struct {
	base string
	http *http.Client
}

// New returns a Client for cfg.
func New(cfg Config) *Client {
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	base := strings.TrimRight(cfg.URL, "/")
	cc := clientcredentials.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		TokenURL:     base + "/oauth/token",
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	authed := cc.Client(ctx)
	authed.Timeout = hc.Timeout
	return &Client{base: base, http: authed}
}

// Key is an API key as the management API shows it.
type Key struct {
	ClientID    string     `json:"client_id"`
	TeamID      string     `json:"team_id"`
	Name        string     `json:"name"`
	Permissions []string   `json:"permissions"`
	Scopes      []string   `json:"scopes"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	// SecretRotatedAt is when the secret was last rotated; nil if never.
	SecretRotatedAt *time.Time `json:"secret_rotated_at"`
	// PreviousSecretExpiresAt is when the secret replaced by the last
	// rotation stops working; nil when no previous secret works any more.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	// SecretSuspendedAt is when the current secret was reported leaked
	// (POST /v1/leaked-secrets); nil while it is not suspended. A
	// suspended key gets no token until it is rotated.
	SecretSuspendedAt *time.Time `json:"secret_suspended_at"`
	// TokenQuota is the key's own issuance quota; nil when it has none (the
	// server's token_quota_per_key, if any, applies).
	TokenQuota *TokenQuota `json:"token_quota"`

	// ExpiresAt is when the key stops getting tokens; nil if never.
	ExpiresAt *time.Time `json:"expires_at"`
	// ExpiringSoon: ExpiresAt is within the server's key_expiry_warning
	// and not yet past.
	ExpiringSoon bool `json:"expiring_soon"`
	// Status is "active", "suspended" or "expired" (expired wins over
	// suspended: expiry is final, suspension is not).
	Status string `json:"status"`
	// Disabled is true while the key is suspended (since DisabledAt).
	Disabled   bool       `json:"disabled"`
	DisabledAt *time.Time `json:"disabled_at"`
	// TokenTTL is the key's token lifetime in whole seconds; nil means the
	// server's token_ttl.
	TokenTTL *int64 `json:"token_ttl"`
	// Audiences are the audiences the key's tokens may name; nil: the
	// server's.
	Audiences []string `json:"audiences"`
	// AllowedCIDRs are the source addresses the key may get tokens from;
	// nil: anywhere.
	AllowedCIDRs []string `json:"allowed_cidrs"`
	// Metadata is the key's JSON object of metadata; nil when it has none.
	Metadata json.RawMessage `json:"metadata"`
}

// TokenQuota is an issuance quota: at most Limit tokens per Per ("hour"
// or "day"); Mode "enforce" (the default when empty: tokens over the limit
// are refused with 429) or "log" (issued, and logged once per window).
type TokenQuota struct {
	Limit int64  `json:"limit"`
	Per   string `json:"per"`
	Mode  string `json:"mode,omitempty"`
}

// NewKey is what CreateKeyWith creates.
type NewKey struct {
	Name        string
	Permissions []string
	// TokenQuota, when not nil, is the key's own issuance quota.
	TokenQuota *TokenQuota
	Policy
}

// Policy is a key's policy as CreateKeyWith sends it: a zero field is not
// sent (the key has none of it).
type Policy struct {
	// ExpiresAt, when not zero, is when the key stops getting tokens (in
	// the future, within the server's max_key_lifetime).
	ExpiresAt time.Time
	// Disabled creates the key suspended.
	Disabled bool
	// TokenTTL, when not zero, is the key's token lifetime (whole seconds,
	// within the server's bounds).
	TokenTTL time.Duration
	// Audiences, AllowedCIDRs: when not empty, the key's audiences (from
	// the server's audiences_allowed) and source addresses (at most 32).
	Audiences    []string
	AllowedCIDRs []string
	// Metadata, when not nil, is a JSON object (at most 1 KiB, 16 members).
	Metadata json.RawMessage
}

func (p Policy) put(req map[string]any) {
	if !p.ExpiresAt.IsZero() {
		req["expires_at"] = p.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if p.Disabled {
		req["disabled"] = true
	}
	if p.TokenTTL != 0 {
		req["token_ttl"] = ttlSeconds(p.TokenTTL)
	}
	if len(p.Audiences) > 0 {
		req["audiences"] = p.Audiences
	}
	if len(p.AllowedCIDRs) > 0 {
		req["allowed_cidrs"] = p.AllowedCIDRs
	}
	if p.Metadata != nil {
		req["metadata"] = p.Metadata
	}
}

// ttlSeconds sends a lifetime as whole seconds when it is one, else as a
// duration string, so the server refuses a fraction by name rather than
// the client rounding it silently.
func ttlSeconds(d time.Duration) any {
	if d%time.Second == 0 {
		return int64(d / time.Second)
	}
	return d.String()
}

// CreatedKey is a new (or rotated) key with its secret, which is never shown
// again.
type CreatedKey struct {
	Key
	ClientSecret string `json:"client_secret"`
}

// KeyList is a team's keys, oldest first.
type KeyList struct {
	Keys    []Key `json:"keys"`
	MaxKeys int   `json:"max_keys"`
}

// Team is a team that holds keys. Teams are implicit: a team exists while it
// has keys.
type Team struct {
	TeamID   string `json:"team_id"`
	KeyCount int    `json:"key_count"`
}

// TeamList is the teams that hold keys, sorted by team ID.
type TeamList struct {
	Teams   []Team `json:"teams"`
	MaxKeys int    `json:"max_keys"`
}

// Permission is a catalog entry a team key may hold: a named bundle of
// OAuth scopes.
type Permission struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Scopes      []string `json:"scopes"`
}

// PermissionList is the permissions a team key may hold, in catalog order.
// Operator-only permissions are never listed.
type PermissionList struct {
	Permissions []Permission `json:"permissions"`
	// MaxNameLength is the longest key name the server accepts, in
	// characters.
	MaxNameLength int `json:"max_name_length"`
}

// Error is a failed call: the server's problem details, or a transport
// failure described in Detail.
type Error struct {
	Status int    `json:"status"`
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return e.Detail
	}
	return fmt.Sprintf("keygate answered %d %s", e.Status, e.Title)
}

// CreateKey creates a key in team with the given permission IDs.
func (c *Client) CreateKey(ctx context.Context, team, name string, permissions []string) (*CreatedKey, error) {
	return c.CreateKeyWith(ctx, team, NewKey{Name: name, Permissions: permissions})
}

// CreateKeyWith creates the key nk describes in team.
func (c *Client) CreateKeyWith(ctx context.Context, team string, nk NewKey) (*CreatedKey, error) {
	req := map[string]any{"name": nk.Name, "permissions": nk.Permissions}
	if nk.TokenQuota != nil {
		req["token_quota"] = nk.TokenQuota
	}
	nk.Policy.put(req)
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out CreatedKey
	return &out, c.do(ctx, http.MethodPost, teamPath(team), body, http.StatusCreated, &out)
}

// ListKeys lists a team's keys.
func (c *Client) ListKeys(ctx context.Context, team string) (*KeyList, error) {
	var out KeyList
	return &out, c.do(ctx, http.MethodGet, teamPath(team), nil, http.StatusOK, &out)
}

// GetKey returns one key of team.
func (c *Client) GetKey(ctx context.Context, team, clientID string) (*Key, error) {
	var out Key
	return &out, c.do(ctx, http.MethodGet, teamPath(team)+"/"+url.PathEscape(clientID), nil, http.StatusOK, &out)
}

// Key returns a team key by its client ID alone, whatever its team (GET
// /v1/keys/{client_id}); its TeamID says which team holds it. An admin key,
// like an unknown ID, is a 404 *Error.
func (c *Client) Key(ctx context.Context, clientID string) (*Key, error) {
	var out Key
	return &out, c.do(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(clientID), nil, http.StatusOK, &out)
}

// DeleteKey deletes one key of team; it gets no token from then on.
func (c *Client) DeleteKey(ctx context.Context, team, clientID string) error {
	return c.do(ctx, http.MethodDelete, teamPath(team)+"/"+url.PathEscape(clientID), nil, http.StatusNoContent, nil)
}

// KeyUpdate is a change to a key for UpdateKey: what is set changes, the
// rest stays as it is.
type KeyUpdate struct {
	// Name, when not nil, is the key's new name.
	Name *string
	// Permissions, when not nil, replaces the key's whole permission list.
	// It applies from the key's next token.
	Permissions []string
	// GrantOperatorPermissions consents to operator-only permissions that
	// Permissions adds (the server refuses them otherwise).
	GrantOperatorPermissions bool
	// TokenQuota, when not nil, is the key's new issuance quota;
	// ClearTokenQuota removes the key's own quota (the server's default
	// applies again). Setting both is an error.
	TokenQuota      *TokenQuota
	ClearTokenQuota bool

	// Policy fields. For each, a set value changes it and the Clear… flag
	// removes it; setting both is an error.
	ExpiresAt *time.Time // ClearExpiresAt: the key never expires (an expired key cannot be un-expired: 409)
	// Disabled, when not nil, suspends (true) or resumes (false) the key.
	Disabled          *bool
	TokenTTL          *time.Duration
	Audiences         []string
	AllowedCIDRs      []string
	Metadata          json.RawMessage
	ClearExpiresAt    bool
	ClearTokenTTL     bool
	ClearAudiences    bool
	ClearAllowedCIDRs bool
	ClearMetadata     bool
}

// policyPatch adds u's policy fields to a merge patch.
func (u KeyUpdate) policyPatch(patch map[string]any) error {
	fields := []struct {
		name  string
		set   bool
		clear bool
		value func() any
	}{
		{"expires_at", u.ExpiresAt != nil, u.ClearExpiresAt, func() any { return u.ExpiresAt.UTC().Format(time.RFC3339) }},
		{"token_ttl", u.TokenTTL != nil, u.ClearTokenTTL, func() any { return ttlSeconds(*u.TokenTTL) }},
		{"audiences", u.Audiences != nil, u.ClearAudiences, func() any { return u.Audiences }},
		{"allowed_cidrs", u.AllowedCIDRs != nil, u.ClearAllowedCIDRs, func() any { return u.AllowedCIDRs }},
		{"metadata", u.Metadata != nil, u.ClearMetadata, func() any { return u.Metadata }},
	}
	for _, f := range fields {
		switch {
		case f.set && f.clear:
			return fmt.Errorf("KeyUpdate: %s is both set and cleared", f.name)
		case f.set:
			patch[f.name] = f.value()
		case f.clear:
			patch[f.name] = nil
		}
	}
	if u.Disabled != nil {
		patch["disabled"] = *u.Disabled
	}
	return nil
}

// UpdateKey changes a key of team (PATCH, an RFC 7396 merge patch) and
// returns it as stored. A zero KeyUpdate changes nothing.
func (c *Client) UpdateKey(ctx context.Context, team, clientID string, u KeyUpdate) (*Key, error) {
	patch := map[string]any{}
	if u.Name != nil {
		patch["name"] = *u.Name
	}
	if u.Permissions != nil {
		patch["permissions"] = u.Permissions
	}
	if u.GrantOperatorPermissions {
		patch["grant_operator_permissions"] = true
	}
	switch {
	case u.TokenQuota != nil && u.ClearTokenQuota:
		return nil, errors.New("KeyUpdate: TokenQuota and ClearTokenQuota are both set")
	case u.TokenQuota != nil:
		patch["token_quota"] = u.TokenQuota
	case u.ClearTokenQuota:
		patch["token_quota"] = nil // a merge patch's null: remove
	}
	if err := u.policyPatch(patch); err != nil {
		return nil, err
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	var out Key
	return &out, c.send(ctx, http.MethodPatch, teamPath(team)+"/"+url.PathEscape(clientID), "application/merge-patch+json", body, http.StatusOK, &out)
}

// SuspendKey suspends a key of team (PATCH {"disabled": true}): it gets no
// new token, and its outstanding tokens read SUSPENDED in the status list,
// so resource servers that check it refuse them once their copy of the
// list refreshes. ResumeKey undoes it.
func (c *Client) SuspendKey(ctx context.Context, team, clientID string) (*Key, error) {
	t := true
	return c.UpdateKey(ctx, team, clientID, KeyUpdate{Disabled: &t})
}

// ResumeKey resumes a suspended key of team (PATCH {"disabled": false}):
// it gets tokens again, and its unexpired tokens issued before the
// suspension are valid again.
func (c *Client) ResumeKey(ctx context.Context, team, clientID string) (*Key, error) {
	f := false
	return c.UpdateKey(ctx, team, clientID, KeyUpdate{Disabled: &f})
}

// RotateKey gives a key of team a new secret, returned once in
// CreatedKey.ClientSecret. The old secret keeps working for gracePeriod (0 to
// 7 days; 0 ends it at once); nil means the server's default of 24h. Rotating
// again during a grace period ends the older secret at once.
func (c *Client) RotateKey(ctx context.Context, team, clientID string, gracePeriod *time.Duration) (*CreatedKey, error) {
	var body []byte
	if gracePeriod != nil {
		var err error
		if body, err = json.Marshal(map[string]string{"grace_period": gracePeriod.String()}); err != nil {
			return nil, err
		}
	}
	var out CreatedKey
	return &out, c.do(ctx, http.MethodPost, teamPath(team)+"/"+url.PathEscape(clientID)+"/rotate", body, http.StatusOK, &out)
}

// Teams lists the teams that hold keys and whose ID starts with prefix (""
// for all), with their key counts, sorted by team ID. The server answers a
// page at a time; Teams follows the pages to the end.
func (c *Client) Teams(ctx context.Context, prefix string) (*TeamList, error) {
	out := TeamList{Teams: []Team{}}
	after := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if prefix != "" {
			q.Set("prefix", prefix)
		}
		if after != "" {
			q.Set("after", after)
		}
		var page struct {
			TeamList
			Next *string `json:"next"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/teams?"+q.Encode(), nil, http.StatusOK, &page); err != nil {
			return nil, err
		}
		out.Teams = append(out.Teams, page.Teams...)
		out.MaxKeys = page.MaxKeys
		if page.Next == nil {
			return &out, nil
		}
		if *page.Next <= after {
			return nil, fmt.Errorf("keygate's next page of teams (after %q) does not move past %q", *page.Next, after)
		}
		after = *page.Next
	}
}

// Permissions lists the permissions a team key may be given, in catalog
// order.
func (c *Client) Permissions(ctx context.Context) (*PermissionList, error) {
	var out PermissionList
	return &out, c.do(ctx, http.MethodGet, "/v1/permissions", nil, http.StatusOK, &out)
}

// UsageOptions selects a usage report. Zero values take the server's
// defaults: by day, the last 30 days (today included); by hour, the last 24
// hours; up to the end of the current hour or day.
type UsageOptions struct {
	// Granularity is "hour" or "day" ("" for day).
	Granularity string
	// From and To are RFC 3339 times or dates (YYYY-MM-DD, UTC); a date in
	// To means the end of that day. The server aligns them to whole
	// buckets and refuses a From more than 48 hours back by hour or 35
	// days back by day.
	From, To string
}

// UsageCounts are tokens issued and failed authentications (a known client
// ID with a wrong or expired secret).
type UsageCounts struct {
	Tokens                int64 `json:"tokens"`
	FailedAuthentications int64 `json:"failed_authentications"`
}

// UsageBucket is the counts of one hour or UTC day.
type UsageBucket struct {
	Start time.Time `json:"start"`
	UsageCounts
}

// KeyUsage is one key's usage over the range.
type KeyUsage struct {
	ClientID string `json:"client_id"`
	// Name is nil for a deleted key, whose usage stays until it ages out.
	Name    *string `json:"name"`
	Deleted bool    `json:"deleted"`
	UsageCounts
	// Buckets are the buckets with activity, oldest first.
	Buckets []UsageBucket `json:"buckets"`
}

// Usage is a team's usage per key over [From, To).
type Usage struct {
	TeamID      string    `json:"team_id"`
	Granularity string    `json:"granularity"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	// Total and Buckets are the whole team's, deleted keys included.
	Total   UsageCounts   `json:"total"`
	Buckets []UsageBucket `json:"buckets"`
	// Keys are every current key, oldest first, then deleted keys with
	// usage in the range.
	Keys []KeyUsage `json:"keys"`
}

// Usage reports a team's usage per key: tokens issued and failed
// authentications by hour or by UTC day.
func (c *Client) Usage(ctx context.Context, team string, opts UsageOptions) (*Usage, error) {
	q := url.Values{}
	for name, v := range map[string]string{"granularity": opts.Granularity, "from": opts.From, "to": opts.To} {
		if v != "" {
			q.Set(name, v)
		}
	}
	path := "/v1/teams/" + url.PathEscape(team) + "/usage"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out Usage
	return &out, c.do(ctx, http.MethodGet, path, nil, http.StatusOK, &out)
}

// Event is an audit event as the management API shows it (docs/audit.md).
type Event struct {
	ID            string     `json:"id"`
	Cursor        string     `json:"cursor"`
	Time          time.Time  `json:"time"`
	Action        string     `json:"action"`
	Outcome       string     `json:"outcome"`
	Actor         EventActor `json:"actor"`
	TeamID        string     `json:"team_id"`
	ClientID      string     `json:"client_id"`
	RequestID     string     `json:"request_id"`
	SourceAddress string     `json:"source_address"`
	UserAgent     string     `json:"user_agent"`
	Fields        []string   `json:"fields"`
	Reason        string     `json:"reason,omitempty"`
	Count         int        `json:"count"`
	StatusIndex   int64      `json:"status_index,omitempty"`
}

// EventActor is who acted: type admin_key, team_key, system or anonymous.
type EventActor struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	OnBehalfOf string `json:"on_behalf_of,omitempty"`
	Via        string `json:"via,omitempty"`
}

// EventQuery selects audit events. The zero value is the newest page of
// every action.
type EventQuery struct {
	// Team, with AllTeams false, reads that team's trail; with AllTeams,
	// Team (when HasTeam) filters the operator-wide stream.
	Team     string
	AllTeams bool
	HasTeam  bool
	// Actions keeps only these actions (key.created, …); empty keeps all.
	Actions []string
	// Since (inclusive) and Until (exclusive); zero is unbounded.
	Since, Until time.Time
	// After continues with older events: a page's Next.
	After string
	// NewerThan keeps only events after this cursor (polling).
	NewerThan string
	// Limit is the page size, 1–1000; 0 is the server's default (100).
	Limit int
}

// EventPage is one page of events, newest first. Next, when not empty, is
// the After of the following (older) page; a page may be short, even
// empty, while Next is set.
type EventPage struct {
	Events []Event `json:"events"`
	Next   *string `json:"next"`
}

// Events reads one page of audit events: a team's trail
// (GET /v1/teams/{team}/events) or, with q.AllTeams, the operator-wide
// stream (GET /v1/events).
func (c *Client) Events(ctx context.Context, q EventQuery) (*EventPage, error) {
	v := url.Values{}
	if len(q.Actions) > 0 {
		v.Set("action", strings.Join(q.Actions, ","))
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.NewerThan != "" {
		v.Set("newer_than", q.NewerThan)
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	path := "/v1/teams/" + url.PathEscape(q.Team) + "/events"
	if q.AllTeams {
		path = "/v1/events"
		if q.HasTeam {
			v.Set("team_id", q.Team)
		}
	}
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	out := EventPage{Events: []Event{}}
	return &out, c.do(ctx, http.MethodGet, path, nil, http.StatusOK, &out)
}

// NewEvents returns every event newer than the cursor after (all of them,
// up to a page of limit, when after is ""), oldest first, and the cursor
// to poll with next: how `keygate events --follow` polls. It follows the
// pages down to after, so a burst larger than one page is not cut.
func (c *Client) NewEvents(ctx context.Context, q EventQuery, after string) ([]Event, string, error) {
	q.NewerThan, q.After = after, ""
	var out []Event
	newest := after
	for {
		page, err := c.Events(ctx, q)
		if err != nil {
			return nil, after, err
		}
		for _, ev := range page.Events {
			if newest == after {
				newest = ev.Cursor
			}
			out = append(out, ev)
		}
		if page.Next == nil || after == "" {
			break
		}
		q.After = *page.Next
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, newest, nil
}

// Backup writes a consistent copy of keygate's embedded store, as of one
// moment, to w (GET /v1/store/backup) and returns its size. Restoring is
// putting the copy in a data directory as keygate.db and starting keygate
// with the same master key. The copy holds every key's secret hashes and
// the sealed pepper and signing keys: keep it as carefully as the data
// directory.
//
// A store without an online backup (Redis) is a *Error with status 404.
// Config's timeout does not bound the transfer (a large store takes longer
// than any fixed timeout): ctx does. A transfer cut short is an error, and
// whatever reached w is then not a usable copy.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	const path = "/v1/store/backup"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/octet-stream, application/problem+json")
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return 0, transportError(http.MethodGet, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return 0, fmt.Errorf("GET %s: read answer: %w", path, err)
		}
		return 0, problemOf(resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		return 0, fmt.Errorf("GET %s: unexpected answer of type %q, not a store file", path, ct)
	}
	if resp.ContentLength < 0 {
		// Without a length a cut transfer cannot be told from a whole one.
		return 0, fmt.Errorf("GET %s: the answer has no Content-Length", path)
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && n != resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, fmt.Errorf("GET %s: the backup was cut short after %d of %d bytes: %w", path, n, resp.ContentLength, err)
	}
	return n, nil
}

func teamPath(team string) string { return "/v1/teams/" + url.PathEscape(team) + "/keys" }

func (c *Client) do(ctx context.Context, method, path string, body []byte, want int, out any) error {
	return c.send(ctx, method, path, "application/json", body, want, out)
}

// send is do with the body's content type.
func (c *Client) send(ctx context.Context, method, path, contentType string, body []byte, want int, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return transportError(method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return problemOf(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
	}
	return nil
}

// transportError is a failed round trip: *Error when the admin token could
// not be had.
func transportError(method, path string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return &Error{Status: re.Response.StatusCode, Title: re.ErrorCode,
			Detail: "could not get an admin token: " + re.ErrorCode + ": " + re.ErrorDescription}
	}
	return fmt.Errorf("%s %s: %w", method, path, err)
}

// problemOf is the *Error of an answer with an unexpected status: its
// problem details, or the status alone.
func problemOf(status int, data []byte) *Error {
	e := &Error{Status: status}
	if json.Unmarshal(data, e) != nil || e.Detail == "" {
		e.Title = http.StatusText(status)
	}
	e.Status = status
	return e
}

// SigningKey is one of keygate's token signing keys: public facts only.
type SigningKey struct {
	KID   string `json:"kid"`
	Alg   string `json:"alg"`
	State string `json:"state"` // "next", "current" or "retired"
	// CreatedAt is when the key was generated, SignsFrom when it starts
	// (started) signing.
	CreatedAt time.Time `json:"created_at"`
	SignsFrom time.Time `json:"signs_from"`
	// RetiresAt is when it stops (stopped) signing, nil when not planned.
	RetiresAt *time.Time `json:"retires_at"`
	// PublishedUntil is when a retired key leaves the JWKS.
	PublishedUntil *time.Time `json:"published_until"`
}

// SigningKeyList is the answer of GET /v1/signing-keys and of a rotation.
type SigningKeyList struct {
	Keys []SigningKey `json:"keys"`
	// RotationSeconds is the rotation schedule (0: manual only),
	// PrepublishSeconds how long a next key is published before it signs.
	RotationSeconds   int64 `json:"rotation_seconds"`
	PrepublishSeconds int64 `json:"prepublish_seconds"`
}

// SigningKeys lists keygate's signing keys: next, current, then retired.
func (c *Client) SigningKeys(ctx context.Context) (*SigningKeyList, error) {
	var out SigningKeyList
	return &out, c.do(ctx, http.MethodGet, "/v1/signing-keys", nil, http.StatusOK, &out)
}

// SigningKeyRotation is what RotateSigningKeys does; the zero value is a
// safe rotation (a next key, published for the prepublish period before it
// signs).
type SigningKeyRotation struct {
	// Now makes the next key (a new one if none waits) sign at once.
	Now bool `json:"now,omitempty"`
	// Revoke removes the key with this kid at once: every token it signed
	// fails.
	Revoke string `json:"revoke,omitempty"`
}

// RotateSigningKeys rotates (or revokes) signing keys and returns the keys
// as they then stand.
func (c *Client) RotateSigningKeys(ctx context.Context, r SigningKeyRotation) (*SigningKeyList, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var out SigningKeyList
	return &out, c.do(ctx, http.MethodPost, "/v1/signing-keys/rotate", body, http.StatusOK, &out)
}
