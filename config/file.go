package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/scopes"
)

// permissionFields are the keys of one catalog entry, as scopes.Permission
// spells them in YAML.
var permissionFields = []string{"id", "name", "description", "scopes", "operator_only"}

// loadFile applies a YAML config file on top of c.
//
// The file is walked as a node tree rather than decoded into a struct so
// that every mistake (unknown or repeated key, a value of the wrong shape)
// is reported with its line and the setting's own name, instead of
// yaml.v3's Go type names. An unknown key is an error, not a warning: a
// misspelt setting would otherwise silently keep its default.
func (c *Config) loadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: nothing to override
		}
		return fmt.Errorf("config file %s: %v", path, oneLine(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: want a single YAML document (found a second one or trailing garbage)", path)
	}

	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if isNull(root) {
		return nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s, line %d: want settings as `key: value` lines, e.g. `listen: 127.0.0.1:8080`", path, root.Line)
	}

	known := make([]string, 0, len(settings)+1)
	for _, s := range settings {
		known = append(known, s.key)
	}
	known = append(known, "permissions", "webhooks", "trusted_issuers")

	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		where := fmt.Sprintf("config file %s, line %d", path, k.Line)
		if first, dup := seen[k.Value]; dup {
			return fmt.Errorf("%s: setting %q appears twice (first on line %d)", where, k.Value, first)
		}
		seen[k.Value] = k.Line

		if k.Value == "permissions" {
			if err := c.loadPermissions(path, v); err != nil {
				return fmt.Errorf("invalid permissions: %w", err)
			}
			continue
		}
		if k.Value == "webhooks" {
			if err := c.loadWebhooks(path, v); err != nil {
				return fmt.Errorf("invalid webhooks: %w", err)
			}
			continue
		}
		if k.Value == "trusted_issuers" {
			if err := c.loadTrustedIssuers(path, v); err != nil {
				return fmt.Errorf("invalid trusted_issuers: %w", err)
			}
			continue
		}
		s, ok := lookupSetting(k.Value)
		if !ok {
			return fmt.Errorf("%s: unknown setting %q; known settings are %s", where, k.Value, strings.Join(known, ", "))
		}
		if isNull(v) {
			continue // `key:` with no value leaves the setting to other layers
		}
		if s.list != nil && v.Kind == yaml.SequenceNode {
			var l []string
			for _, e := range v.Content {
				if e = deref(e); e.Kind != yaml.ScalarNode {
					return fmt.Errorf("invalid %s in %s: want a list of single values", s.key, where)
				}
				l = append(l, e.Value)
			}
			*s.list(c) = splitList(strings.Join(l, ","))
			c.setOrigin(s, where)
			continue
		}
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("invalid %s in %s: want a single value, not a list or mapping", s.key, where)
		}
		if err := s.parse(c, v.Value); err != nil {
			return fmt.Errorf("invalid %s %q in %s: %v", s.key, v.Value, where, err)
		}
		c.setOrigin(s, where)
	}
	return nil
}

func (c *Config) loadPermissions(path string, v *yaml.Node) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return fmt.Errorf("config file %s, line %d: want a list of permissions, each with %s", path, v.Line, strings.Join(permissionFields, ", "))
	}
	for _, e := range v.Content {
		e = deref(e)
		if e.Kind != yaml.MappingNode {
			return fmt.Errorf("config file %s, line %d: want each permission as a mapping with %s", path, e.Line, strings.Join(permissionFields, ", "))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(e.Content); i += 2 {
			k := e.Content[i]
			if !contains(permissionFields, k.Value) {
				return fmt.Errorf("config file %s, line %d: unknown field %q in a permission; known fields are %s", path, k.Line, k.Value, strings.Join(permissionFields, ", "))
			}
			if seen[k.Value] {
				return fmt.Errorf("config file %s, line %d: field %q appears twice in one permission", path, k.Line, k.Value)
			}
			seen[k.Value] = true
		}
	}
	perms := []scopes.Permission{}
	if err := v.Decode(&perms); err != nil {
		return fmt.Errorf("config file %s: %v", path, oneLine(err))
	}
	c.Permissions = perms
	return nil
}

func lookupSetting(key string) (setting, bool) {
	for _, s := range settings {
		if s.key == key {
			return s, true
		}
	}
	return setting{}, false
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// oneLine flattens yaml.v3's multi-line type errors, keeping the promise
// of one-line errors.
func oneLine(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return strings.Join(te.Errors, "; ")
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
