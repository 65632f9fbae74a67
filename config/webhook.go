package config

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Webhook settings (docs/webhooks.md).
const (
	// DefaultWebhookGiveUp is how long an endpoint may fail every attempt
	// before keygate disables it.
	DefaultWebhookGiveUp = 3 * Day
	MinWebhookGiveUp     = 10 * time.Minute
	MaxWebhookGiveUp     = 30 * Day

	// WebhookSecretPrefix starts a signing secret as the Standard Webhooks
	// specification writes it: whsec_ + base64 of the key.
	WebhookSecretPrefix = "whsec_"
	// MinWebhookSecretBytes and MaxWebhookSecretBytes bound the decoded key
	// (the specification asks for 24 to 64 bytes).
	MinWebhookSecretBytes = 24
	MaxWebhookSecretBytes = 64
)

// webhookFields are the keys of one webhooks entry.
var webhookFields = []string{"url", "secret_file", "secret_env", "events"}

// Webhook is one endpoint that receives the audit event stream. It can only
// come from the config file (a list does not fit in a flag), and its
// signing secret never sits in the file: SecretFile or SecretEnv names
// where Load reads it from.
type Webhook struct {
	// URL receives POSTs: https, or http to a loopback host.
	URL string `yaml:"url"`
	// SecretFile is a file holding the secret (whsec_…); surrounding
	// whitespace is ignored.
	SecretFile string `yaml:"secret_file,omitempty"`
	// SecretEnv is an environment variable holding the secret.
	SecretEnv string `yaml:"secret_env,omitempty"`
	// Events selects the event types delivered: exact types (key.created)
	// or a family (key.*). Nil delivers every event.
	Events []string `yaml:"events,omitempty"`

	// Secret is the decoded signing key, filled by Load from SecretFile or
	// SecretEnv (a Webhook built in code may set it directly). It prints
	// as [redacted].
	Secret WebhookSecret `yaml:"-"`

	// where is the config file line the entry came from, for errors.
	where string
}

// WebhookSecret is a webhook signing key. Its String, GoString and
// MarshalText hide it, so a logged or printed Config never shows it.
type WebhookSecret []byte

func (WebhookSecret) String() string               { return "[redacted]" }
func (WebhookSecret) GoString() string             { return "[redacted]" }
func (WebhookSecret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }
func (s WebhookSecret) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// eventPattern is an event type (key.created) or a family of them (key.*).
var eventPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$`)

// loadWebhooks reads the webhooks list of the config file: its shape only;
// validateWebhooks checks the values once every layer is in.
func (c *Config) loadWebhooks(path string, v *yaml.Node) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return fmt.Errorf("config file %s, line %d: want a list of endpoints, each with url and secret_file or secret_env (and optionally events)", path, v.Line)
	}
	hooks := []Webhook{}
	for i, e := range v.Content {
		e = deref(e)
		where := fmt.Sprintf("config file %s, line %d", path, e.Line)
		if e.Kind != yaml.MappingNode {
			return fmt.Errorf("webhooks[%d] in %s: want a mapping with %s", i, where, strings.Join(webhookFields, ", "))
		}
		h := Webhook{where: where}
		seen := map[string]bool{}
		for j := 0; j+1 < len(e.Content); j += 2 {
			k, val := e.Content[j], deref(e.Content[j+1])
			at := fmt.Sprintf("config file %s, line %d", path, k.Line)
			if !contains(webhookFields, k.Value) {
				return fmt.Errorf("webhooks[%d] in %s: unknown field %q; known fields are %s (the secret itself never goes in the file)", i, at, k.Value, strings.Join(webhookFields, ", "))
			}
			if seen[k.Value] {
				return fmt.Errorf("webhooks[%d] in %s: field %q appears twice", i, at, k.Value)
			}
			seen[k.Value] = true
			if k.Value == "events" {
				if val.Kind != yaml.SequenceNode {
					return fmt.Errorf("webhooks[%d].events in %s: want a list of event types, e.g. [key.created, key.deleted]", i, at)
				}
				h.Events = []string{}
				for _, ev := range val.Content {
					ev = deref(ev)
					if ev.Kind != yaml.ScalarNode {
						return fmt.Errorf("webhooks[%d].events in %s: want a list of event types, e.g. [key.created, key.deleted]", i, at)
					}
					h.Events = append(h.Events, ev.Value)
				}
				continue
			}
			if val.Kind != yaml.ScalarNode {
				return fmt.Errorf("webhooks[%d].%s in %s: want a single value", i, k.Value, at)
			}
			switch k.Value {
			case "url":
				h.URL = strings.TrimSpace(val.Value)
			case "secret_file":
				h.SecretFile = strings.TrimSpace(val.Value)
			case "secret_env":
				h.SecretEnv = strings.TrimSpace(val.Value)
			}
		}
		hooks = append(hooks, h)
	}
	c.Webhooks = hooks
	return nil
}

// loadWebhookSecrets reads each endpoint's secret from its file or
// environment variable. Errors name the setting and never quote the
// secret, not even a malformed one.
func (c *Config) loadWebhookSecrets(getenv func(string) string) error {
	for i := range c.Webhooks {
		h := &c.Webhooks[i]
		name := fmt.Sprintf("webhooks[%d]", i)
		switch {
		case h.SecretFile != "" && h.SecretEnv != "":
			return h.invalid(name, "set secret_file or secret_env, not both")
		case h.SecretFile != "":
			b, err := os.ReadFile(h.SecretFile)
			if err != nil {
				return h.invalid(name+".secret_file", fmt.Sprintf("cannot read the secret: %v", err))
			}
			key, ok := decodeWebhookSecret(string(b))
			if !ok {
				return h.invalid(name+".secret_file", fmt.Sprintf("the file %s must hold %s", h.SecretFile, secretFormat))
			}
			h.Secret = key
		case h.SecretEnv != "":
			raw := getenv(h.SecretEnv)
			if strings.TrimSpace(raw) == "" {
				return h.invalid(name+".secret_env", fmt.Sprintf("the environment variable %s is not set", h.SecretEnv))
			}
			key, ok := decodeWebhookSecret(raw)
			if !ok {
				return h.invalid(name+".secret_env", fmt.Sprintf("the environment variable %s must hold %s", h.SecretEnv, secretFormat))
			}
			h.Secret = key
		}
	}
	return nil
}

var secretFormat = fmt.Sprintf("%s followed by the base64 of %d to %d random bytes, e.g. the output of: echo %s$(openssl rand -base64 32)",
	WebhookSecretPrefix, MinWebhookSecretBytes, MaxWebhookSecretBytes, WebhookSecretPrefix)

func decodeWebhookSecret(raw string) (WebhookSecret, bool) {
	s, ok := strings.CutPrefix(strings.TrimSpace(raw), WebhookSecretPrefix)
	if !ok {
		return nil, false
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(key) < MinWebhookSecretBytes || len(key) > MaxWebhookSecretBytes {
		return nil, false
	}
	return key, true
}

func (h *Webhook) invalid(field, why string) error {
	if h.where != "" {
		return fmt.Errorf("invalid %s (%s): %s", field, h.where, why)
	}
	return fmt.Errorf("invalid %s: %s", field, why)
}

// validateWebhooks checks the endpoints; the secrets must be loaded.
func (c *Config) validateWebhooks() error {
	if c.WebhookGiveUp < MinWebhookGiveUp || c.WebhookGiveUp > MaxWebhookGiveUp {
		return c.invalid("webhook_give_up", fmt.Sprintf("must be between %s and %s (durations take days, e.g. 3d)", MinWebhookGiveUp, MaxWebhookGiveUp))
	}
	urls := map[string]int{}
	for i := range c.Webhooks {
		h := &c.Webhooks[i]
		name := fmt.Sprintf("webhooks[%d]", i)
		if err := checkWebhookURL(h.URL); err != nil {
			return h.invalid(name+".url", fmt.Sprintf("%s %s", strconv.Quote(redactURL(h.URL)), err))
		}
		if j, dup := urls[h.URL]; dup {
			return h.invalid(name+".url", fmt.Sprintf("webhooks[%d] has the same URL: one endpoint per URL (its delivery state is kept by URL)", j))
		}
		urls[h.URL] = i
		if len(h.Secret) == 0 {
			return h.invalid(name, "needs secret_file or secret_env: the signing secret never goes in the config file")
		}
		if len(h.Secret) < MinWebhookSecretBytes || len(h.Secret) > MaxWebhookSecretBytes {
			return h.invalid(name, fmt.Sprintf("the signing secret must be %d to %d bytes", MinWebhookSecretBytes, MaxWebhookSecretBytes))
		}
		if h.Events != nil && len(h.Events) == 0 {
			return h.invalid(name+".events", "an empty list would deliver nothing; leave events out to deliver every event")
		}
		for _, ev := range h.Events {
			if !eventPattern.MatchString(ev) {
				return h.invalid(name+".events", fmt.Sprintf("%s is not an event type: want a type such as key.created, or a family such as key.*", strconv.Quote(ev)))
			}
		}
	}
	return nil
}

// checkWebhookURL accepts an absolute https URL, or http to a loopback
// host: a plain-http receiver elsewhere would expose the events and let
// anyone on the path replay them.
func checkWebhookURL(raw string) error {
	return checkHTTPSURL(raw, "https://hooks.example.com/keygate", ": receivers authenticate keygate by the signature")
}

// checkHTTPSURL is the rule of every URL keygate sends to or fetches from:
// absolute, printable, no credentials (why names the reason, if any) and
// no fragment, https unless the host is loopback. example is a URL of the
// right shape for the message.
func checkHTTPSURL(raw, example, why string) error {
	u, err := url.Parse(raw)
	if err != nil || !printable(raw) || u.Host == "" || u.Opaque != "" {
		return errHint("is not an absolute URL, e.g. " + example)
	}
	if u.User != nil {
		return errHint("must not carry credentials" + why)
	}
	if u.Fragment != "" {
		return errHint("must not have a #fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if loopbackHost(u.Hostname()) {
			return nil
		}
		return errHint("must use https (plain http is allowed only to a loopback host: 127.0.0.0/8, ::1, localhost)")
	}
	return errHint("must be an https URL")
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}
