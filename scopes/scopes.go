// Package scopes is keygate's permission catalog: the bridge between what an
// admin picks for a key ("accounting_api") and the OAuth 2.0 scope strings a
// resource server checks ("banking:read"). Keys store permission IDs, not
// scopes, so that an operator can change what a permission grants without
// rewriting every key.
//
// The package also owns the scope-string rules of RFC 6749 §3.3, because the
// token endpoint parses a client-supplied scope parameter on every request
// and must agree byte for byte with what the catalog accepts.
package scopes

import (
	"errors"
	"fmt"
	"strings"
)

// AdminScope is the scope of admin credentials for the management API. It
// is keygate's own and can never come from the catalog, so that no catalog
// edit can hand a team the power to manage keys.
const AdminScope = "keys:admin"

// ReadScope is the scope of read-only admin keys: lists, gets, events and
// usage of every team, and no change anywhere.
const ReadScope = "keys:read"

// ManageScope lets a team key manage its own team's keys (the built-in
// permission KeyManagement). Like every keys:… scope, a token carrying it
// is a management token (audience <issuer>/v1), never a resource server's.
const ManageScope = "keys:manage"

// ExchangeScope lets a client exchange its users' tokens from a trusted
// identity provider for team-bound management tokens (RFC 8693; the
// built-in permission TokenExchange).
const ExchangeScope = "tokens:exchange"

// IDs of the built-in operator-only permissions New adds to every catalog.
// They are keygate's own, so no operator entry can carry keys:… scopes,
// and an operator's entry may not use these IDs.
const (
	KeyManagement = "key_management"
	TokenExchange = "token_exchange"
)

// builtin are the entries New appends to every catalog, after the
// operator's (so the operator's order of choices is unchanged).
var builtin = []Permission{
	{
		ID:           KeyManagement,
		Name:         "Key management — this team's own keys",
		Description:  "Lets the key manage its own team's API keys through the management API and console. Granted by admins only, never offered to teams.",
		Scopes:       []string{ManageScope},
		OperatorOnly: true,
	},
	{
		ID:           TokenExchange,
		Name:         "Token exchange — users of trusted identity providers",
		Description:  "Lets a platform exchange its users' tokens (trusted_issuers) for team-bound management tokens (RFC 8693). Granted by admins only, never offered to teams.",
		Scopes:       []string{ExchangeScope},
		OperatorOnly: true,
	},
}

// IsManagementScope reports whether scope is one of keygate's keys:…
// scopes; a token carrying one is for the management API only.
func IsManagementScope(scope string) bool { return hasReservedRoot(scope, "keys") }

// Sentinel errors, for errors.Is; the wrapped messages carry the detail.
var (
	// ErrUnknownPermission: a permission ID that the catalog does not have
	// (or, for team keys, does not offer).
	ErrUnknownPermission = errors.New("unknown permission")
	// ErrMalformedScope: a scope parameter that breaks RFC 6749 §3.3. The
	// token endpoint answers it with invalid_scope.
	ErrMalformedScope = errors.New("malformed scope")
)

// Permission is one catalog entry: a named bundle of OAuth scopes an admin
// can grant to a key.
type Permission struct {
	ID          string   `yaml:"id" json:"id"`
	Name        string   `yaml:"name" json:"name"`
	Description string   `yaml:"description" json:"description"`
	Scopes      []string `yaml:"scopes" json:"scopes"`
	// OperatorOnly entries exist for keygate's own integrations (e.g. a
	// resource server allowed tokens:introspect). They are never offered to
	// teams, which is also why they alone may hold tokens:* scopes.
	OperatorOnly bool `yaml:"operator_only" json:"operator_only"`
}

func (p Permission) clone() Permission {
	p.Scopes = append([]string(nil), p.Scopes...)
	return p
}

// Catalog is an immutable, ordered set of permissions. Order matters: it is
// the order of the console's choices and of resolved scopes, so that the
// same permissions always produce the same token scope string.
//
// The zero Catalog is empty and safe to use; a *Catalog is safe for
// concurrent use because nothing mutates it after construction.
type Catalog struct {
	perms   []Permission
	index   map[string]int
	offered []string // IDs of non-operator-only entries, for error messages
	all     []string // AllScopes, precomputed
}

// Default is the reference catalog (the README's "Permission catalog"),
// used when the operator configures none.
func Default() *Catalog {
	c, err := New([]Permission{
		{
			ID:          "accounting_api",
			Name:        "Accounting Data as a Service API — full read/write",
			Description: "Read and write access to the Common, Accounting, Banking, Commerce and Analytics endpoints.",
			Scopes: []string{
				"common:read", "common:write",
				"accounting:read", "accounting:write",
				"banking:read", "banking:write",
				"commerce:read", "commerce:write",
				"analytics:read", "analytics:write",
			},
		},
		{
			ID:          "visualization_sdk",
			Name:        "Visualization SDK — read",
			Description: "Read-only access for the embeddable Visualization SDK.",
			Scopes:      []string{"visualizations:read"},
		},
		{
			ID:           "token_introspection",
			Name:         "Token introspection — every team's tokens",
			Description:  "For resource servers that call /oauth/introspect: see tokens of all teams. Granted by admins only, never offered to teams.",
			Scopes:       []string{"tokens:introspect"},
			OperatorOnly: true,
		},
	})
	if err != nil {
		panic("scopes: default catalog is invalid: " + err.Error())
	}
	return c
}

// New validates an operator-supplied catalog. Everything is checked up front
// so that a bad catalog stops keygate at start-up instead of producing keys
// or tokens that resource servers would misread. Duplicate scopes within one
// entry are harmless and collapse.
func New(perms []Permission) (*Catalog, error) {
	if len(perms) == 0 {
		return nil, errors.New("the catalog needs at least one permission")
	}
	c := &Catalog{
		perms: make([]Permission, 0, len(perms)),
		index: make(map[string]int, len(perms)),
	}
	for i, p := range perms {
		if err := checkPermission(p); err != nil {
			if p.ID == "" {
				return nil, fmt.Errorf("permission #%d: %w", i+1, err)
			}
			return nil, fmt.Errorf("permission %q: %w", p.ID, err)
		}
		if p.ID == KeyManagement || p.ID == TokenExchange {
			return nil, fmt.Errorf("permission %q: the id is keygate's own built-in permission (added to every catalog); choose another id", p.ID)
		}
		if _, dup := c.index[p.ID]; dup {
			return nil, fmt.Errorf("permission %q: id is used by more than one permission", p.ID)
		}
		p = p.clone()
		p.Scopes = dedupe(p.Scopes)
		c.index[p.ID] = len(c.perms)
		c.perms = append(c.perms, p)
		if !p.OperatorOnly {
			c.offered = append(c.offered, p.ID)
		}
	}
	if len(c.offered) == 0 {
		return nil, errors.New("every permission is operator_only: the catalog must offer at least one permission to teams")
	}
	for _, p := range builtin {
		c.index[p.ID] = len(c.perms)
		c.perms = append(c.perms, p.clone())
	}
	var all []string
	for _, p := range c.perms {
		if !p.OperatorOnly {
			all = append(all, p.Scopes...)
		}
	}
	c.all = dedupe(append(all, AdminScope))
	return c, nil
}

func checkPermission(p Permission) error {
	if !validID(p.ID) {
		if p.ID == "" {
			return errors.New("id is missing")
		}
		return fmt.Errorf("invalid id %q: want 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit", p.ID)
	}
	if strings.TrimSpace(p.Name) == "" {
		return errors.New("name is missing: it is what admins see when they pick permissions")
	}
	if len(p.Scopes) == 0 {
		return errors.New("scopes is empty: a permission must grant at least one scope")
	}
	for _, s := range p.Scopes {
		if !ValidScopeToken(s) {
			return fmt.Errorf("invalid scope %q: a scope is 1 or more printable ASCII characters other than space, '\"' and '\\' (RFC 6749 §3.3)", s)
		}
		switch {
		case hasReservedRoot(s, "keys"):
			return fmt.Errorf("scope %q is reserved for keygate: scopes \"keys\" and \"keys:…\" are keygate's own and cannot be in the catalog", s)
		case hasReservedRoot(s, "tokens") && !p.OperatorOnly:
			return fmt.Errorf("scope %q is reserved for keygate: scopes \"tokens\" and \"tokens:…\" are allowed only in operator_only permissions", s)
		}
	}
	return nil
}

// IsReserved reports whether scope belongs to keygate itself (keys, keys:…,
// tokens, tokens:…) rather than to the operator's API.
func IsReserved(scope string) bool {
	return hasReservedRoot(scope, "keys") || hasReservedRoot(scope, "tokens")
}

func hasReservedRoot(s, root string) bool {
	return strings.HasPrefix(s, root) && (len(s) == len(root) || s[len(root)] == ':')
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 || !isAlnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if b := id[i]; !isAlnum(b) && b != '.' && b != '_' && b != '-' {
			return false
		}
	}
	return true
}

func isAlnum(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

// Lookup returns the permission with that ID, operator-only ones included.
func (c *Catalog) Lookup(id string) (Permission, bool) {
	i, ok := c.index[id]
	if !ok {
		return Permission{}, false
	}
	return c.perms[i].clone(), true
}

// Permissions returns every entry in catalog order. The result is a copy;
// changing it does not change the catalog.
func (c *Catalog) Permissions() []Permission {
	out := make([]Permission, len(c.perms))
	for i, p := range c.perms {
		out[i] = p.clone()
	}
	return out
}

// Offered returns the entries a team key may hold, in catalog order: the
// choices a console or CLI should show.
func (c *Catalog) Offered() []Permission {
	out := make([]Permission, 0, len(c.offered))
	for _, p := range c.perms {
		if !p.OperatorOnly {
			out = append(out, p.clone())
		}
	}
	return out
}

// Resolve turns permission IDs into the scopes they grant. The order is
// fixed by the catalog (entry order, then scope order), not by the caller,
// so that a key's scope string does not depend on how its permissions were
// listed. Operator-only IDs resolve too: whether a key may hold them is the
// caller's decision (see ValidateIDs).
func (c *Catalog) Resolve(permissionIDs []string) ([]string, error) {
	for _, id := range permissionIDs {
		if _, ok := c.index[id]; !ok {
			return nil, c.unknown(id)
		}
	}
	out := []string{}
	for _, p := range c.perms {
		if contains(permissionIDs, p.ID) {
			for _, s := range p.Scopes {
				if !contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out, nil
}

// ValidateIDs checks the permission list of a team key as an admin sent
// it. Duplicates are refused rather than collapsed because they usually
// mean a mistyped choice, and the admin should see it. Operator-only
// permissions pass only with allowOperatorOnly, the admin's explicit flag.
func (c *Catalog) ValidateIDs(ids []string, allowOperatorOnly bool) error {
	if len(ids) == 0 {
		return fmt.Errorf("no permissions given: choose one or more of %s", c.offeredList())
	}
	for i, id := range ids {
		if contains(ids[:i], id) {
			return fmt.Errorf("permission %s is listed more than once", quoteShort(id))
		}
		j, ok := c.index[id]
		if !ok {
			return c.unknown(id)
		}
		if c.perms[j].OperatorOnly && !allowOperatorOnly {
			return fmt.Errorf("permission %q is operator-only and cannot be granted to a team key: choose from %s", id, c.offeredList())
		}
	}
	return nil
}

// AllScopes is the scopes_supported of RFC 8414 metadata: every scope a team
// key can hold, plus AdminScope. Operator-only scopes are left out because
// advertising them would invite clients to ask for what they cannot get.
func (c *Catalog) AllScopes() []string {
	if c.all == nil {
		return []string{AdminScope}
	}
	return append([]string(nil), c.all...)
}

func (c *Catalog) unknown(id string) error {
	return fmt.Errorf("%w %s: valid permissions are %s", ErrUnknownPermission, quoteShort(id), c.offeredList())
}

func (c *Catalog) offeredList() string {
	if len(c.offered) == 0 {
		return "(none: the catalog is empty)"
	}
	return strings.Join(c.offered, ", ")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// dedupe removes repeats in place, keeping first occurrences in order.
func dedupe(list []string) []string {
	out := list[:0]
	for _, s := range list {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// quoteShort quotes caller-supplied text for an error message, cut short so
// that a hostile request cannot make keygate echo megabytes back.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
