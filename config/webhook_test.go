package config

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// whsec returns a secret as the Standard Webhooks specification writes it,
// of n key bytes.
func whsec(n int) (string, []byte) {
	key := bytes.Repeat([]byte{0xA5}, n)
	for i := range key {
		key[i] ^= byte(i)
	}
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(key), key
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWebhooksLoad(t *testing.T) {
	s1, k1 := whsec(32)
	s2, k2 := whsec(24)
	file := secretFile(t, s1+"\n")
	cfg := writeFile(t, fmt.Sprintf(`
webhooks:
  - url: https://hooks.example.com/keygate?tenant=a
    secret_file: %s
    events: [key.created, "token.*"]
  - url: http://127.0.0.1:9000/hook
    secret_env: HOOK_SECRET
  - url: http://[::1]:9000/hook
    secret_env: HOOK_SECRET
  - url: http://localhost/hook
    secret_env: HOOK_SECRET
`, file))
	c := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": cfg, "HOOK_SECRET": s2})
	if len(c.Webhooks) != 4 {
		t.Fatalf("got %d webhooks, want 4", len(c.Webhooks))
	}
	h := c.Webhooks[0]
	if h.URL != "https://hooks.example.com/keygate?tenant=a" || !bytes.Equal(h.Secret, k1) || !slices.Equal(h.Events, []string{"key.created", "token.*"}) {
		t.Errorf("webhooks[0] = %q, secret %d bytes (want the file's key: %v), events %q", h.URL, len(h.Secret), bytes.Equal(h.Secret, k1), h.Events)
	}
	for i, h := range c.Webhooks[1:] {
		if !bytes.Equal(h.Secret, k2) || h.Events != nil {
			t.Errorf("webhooks[%d]: secret from HOOK_SECRET %v, events %q (want nil: all)", i+1, bytes.Equal(h.Secret, k2), h.Events)
		}
	}
	if c.WebhookGiveUp != DefaultWebhookGiveUp || DefaultWebhookGiveUp != 72*time.Hour {
		t.Errorf("webhook_give_up = %v, want the default 3 days", c.WebhookGiveUp)
	}

	// Printing the config, or marshalling it (a "print effective config"),
	// never shows a secret, in either spelling.
	printed := fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Webhooks[0].Secret)
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{s1, s2, strings.TrimPrefix(s1, WebhookSecretPrefix), string(k1)} {
		if strings.Contains(printed, leak) || strings.Contains(string(out), leak) {
			t.Errorf("a webhook secret shows in the printed or marshalled config")
		}
	}
	if !strings.Contains(printed, "[redacted]") {
		t.Errorf("printed config does not show [redacted] for the secret: %s", printed)
	}
	// The marshalled config loads back to the same endpoints (the secrets
	// read again from where they are kept).
	back := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": writeFile(t, string(out)), "HOOK_SECRET": s2})
	for i := range c.Webhooks {
		a, b := c.Webhooks[i], back.Webhooks[i]
		if a.URL != b.URL || !bytes.Equal(a.Secret, b.Secret) || !slices.Equal(a.Events, b.Events) {
			t.Errorf("webhooks[%d] after a YAML round trip: %q %q, want %q %q", i, b.URL, b.Events, a.URL, a.Events)
		}
	}
}

func TestWebhookGiveUpSetting(t *testing.T) {
	c := mustLoad(t, flags(t, "--webhook-give-up", "1d12h"), nil)
	if c.WebhookGiveUp != 36*time.Hour {
		t.Errorf("--webhook-give-up 1d12h = %v", c.WebhookGiveUp)
	}
	c = mustLoad(t, nil, map[string]string{"KEYGATE_WEBHOOK_GIVE_UP": "7d"})
	if c.WebhookGiveUp != 7*Day {
		t.Errorf("KEYGATE_WEBHOOK_GIVE_UP=7d = %v", c.WebhookGiveUp)
	}
	for _, v := range []string{"5m", "31d"} {
		_, err := Load(nil, env(map[string]string{"KEYGATE_WEBHOOK_GIVE_UP": v}))
		if err == nil || !strings.Contains(err.Error(), "invalid webhook_give_up") || !strings.Contains(err.Error(), "KEYGATE_WEBHOOK_GIVE_UP") {
			t.Errorf("webhook_give_up %s: error %v, want one naming the setting and where it came from", v, err)
		}
	}
}

func TestWebhooksRefused(t *testing.T) {
	good, _ := whsec(32)
	short, _ := whsec(16)
	long, _ := whsec(65)
	goodFile := secretFile(t, good)
	tests := []struct {
		name   string
		yaml   string
		env    map[string]string
		want   []string // substrings of the error
		secret string   // must not appear in the error
	}{
		{"http to a non-loopback host", "  - url: http://hooks.example.com/k\n    secret_file: " + goodFile + "\n", nil,
			[]string{"invalid webhooks[0].url", `"http://hooks.example.com/k"`, "must use https", "loopback", "line 2"}, ""},
		{"http to a private address", "  - url: http://10.0.0.7/k\n    secret_file: " + goodFile + "\n", nil,
			[]string{"invalid webhooks[0].url", "must use https"}, ""},
		{"http to a name that only starts like loopback", "  - url: http://127.0.0.1.example.com/k\n    secret_file: " + goodFile + "\n", nil,
			[]string{"invalid webhooks[0].url", "must use https"}, ""},
		{"other scheme", "  - url: ftp://hooks.example.com/k\n    secret_file: " + goodFile + "\n", nil,
			[]string{"invalid webhooks[0].url", "must be an https URL"}, ""},
		{"relative URL", "  - url: /hook\n    secret_file: " + goodFile + "\n", nil,
			[]string{"invalid webhooks[0].url", "not an absolute URL"}, ""},
		{"credentials in the URL", "  - url: https://user:pw@hooks.example.com/k\n    secret_file: " + goodFile + "\n", nil,
			[]string{"invalid webhooks[0].url", "must not carry credentials"}, "pw@"},
		{"no secret", "  - url: https://hooks.example.com/k\n", nil,
			[]string{"invalid webhooks[0]", "secret_file or secret_env"}, ""},
		{"both secrets", "  - url: https://hooks.example.com/k\n    secret_file: " + goodFile + "\n    secret_env: HOOK\n", map[string]string{"HOOK": good},
			[]string{"invalid webhooks[0]", "not both"}, ""},
		{"the secret in the file", "  - url: https://hooks.example.com/k\n    secret: " + good + "\n", nil,
			[]string{"webhooks[0]", `unknown field "secret"`, "never goes in the file"}, good},
		{"secret_env unset", "  - url: https://hooks.example.com/k\n    secret_env: HOOK\n", nil,
			[]string{"invalid webhooks[0].secret_env", "HOOK is not set"}, ""},
		{"secret without whsec_", "  - url: https://hooks.example.com/k\n    secret_env: HOOK\n", map[string]string{"HOOK": strings.TrimPrefix(good, "whsec_")},
			[]string{"invalid webhooks[0].secret_env", "HOOK must hold whsec_", "24 to 64"}, strings.TrimPrefix(good, "whsec_")},
		{"secret not base64", "  - url: https://hooks.example.com/k\n    secret_env: HOOK\n", map[string]string{"HOOK": "whsec_not*base64*at*all*but*long*enough*x"},
			[]string{"invalid webhooks[0].secret_env", "base64"}, "not*base64"},
		{"secret too short", "  - url: https://hooks.example.com/k\n    secret_file: " + secretFile(t, short) + "\n", nil,
			[]string{"invalid webhooks[0].secret_file", "must hold whsec_", "24 to 64"}, short},
		{"secret too long", "  - url: https://hooks.example.com/k\n    secret_env: HOOK\n", map[string]string{"HOOK": long},
			[]string{"invalid webhooks[0].secret_env", "24 to 64"}, long},
		{"secret file missing", "  - url: https://hooks.example.com/k\n    secret_file: /nonexistent/keygate-hook\n", nil,
			[]string{"invalid webhooks[0].secret_file", "cannot read the secret", "/nonexistent/keygate-hook"}, ""},
		{"same URL twice", "  - url: https://hooks.example.com/k\n    secret_file: " + goodFile + "\n  - url: https://hooks.example.com/k\n    secret_file: " + goodFile + "\n", nil,
			[]string{"invalid webhooks[1].url", "webhooks[0] has the same URL"}, ""},
		{"empty events", "  - url: https://hooks.example.com/k\n    secret_file: " + goodFile + "\n    events: []\n", nil,
			[]string{"invalid webhooks[0].events", "leave events out"}, ""},
		{"events not a list", "  - url: https://hooks.example.com/k\n    secret_file: " + goodFile + "\n    events: key.created\n", nil,
			[]string{"webhooks[0].events", "want a list of event types"}, ""},
		{"malformed event", "  - url: https://hooks.example.com/k\n    secret_file: " + goodFile + "\n    events: [Key Created]\n", nil,
			[]string{"invalid webhooks[0].events", `"Key Created" is not an event type`}, ""},
		{"not a list", " https://hooks.example.com/k\n", nil,
			[]string{"invalid webhooks", "want a list of endpoints"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{"KEYGATE_CONFIG": writeFile(t, "webhooks:\n"+tc.yaml)}
			for k, v := range tc.env {
				e[k] = v
			}
			_, err := Load(nil, env(e))
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error %q shows the secret", err)
			}
		})
	}
}
