package admin

import (
	"fmt"
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// Redacted replaces secret values in Redact's output.
const Redacted = "[redacted]"

// secretWords are the last words of field names that hold secrets
// ("api_keys", "hmac_secret", "access_token", "password").
var secretWords = map[string]bool{
	"key": true, "keys": true, "apikey": true, "apikeys": true,
	"secret": true, "secrets": true, "password": true, "passwords": true, "passwd": true,
	"token": true, "tokens": true, "credential": true, "credentials": true,
}

// secretParts redact a field whose name contains them anywhere
// ("client_secret_b64", "private_key_pem").
var secretParts = []string{"secret", "password", "passwd", "private", "credential"}

// IsSecretField reports whether a config field name looks like it holds a
// secret: its last word (split on '_', '-' and '.') is key(s), secret(s),
// password(s), token(s), credential(s) or apikey(s), or it contains
// "secret", "password", "passwd", "private" or "credential". Names like
// key_file or key_header are not secrets.
func IsSecretField(name string) bool {
	n := strings.ToLower(name)
	for _, p := range secretParts {
		if strings.Contains(n, p) {
			return true
		}
	}
	last := n
	if i := strings.LastIndexAny(n, "_-."); i >= 0 {
		last = n[i+1:]
	}
	return secretWords[last] || secretWords[strings.ReplaceAll(n, "_", "")]
}

// Redact returns cfg as a JSON-ready tree with the YAML field names, every
// secret-looking field (see IsSecretField; this covers store.redis.password
// and plugin config fields such as keys, api_keys, secret, token) replaced by
// "[redacted]", and passwords inside URLs masked. Empty values stay empty so
// an operator can see that a secret is unset. Should the config not
// encode, the answer is {"error": reason} and no config at all.
func Redact(cfg *config.Config) any {
	if cfg == nil {
		return nil
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return map[string]any{"error": "admin: encode config: " + err.Error()}
	}
	var tree any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		return map[string]any{"error": "admin: decode config: " + err.Error()}
	}
	return redactValue(tree)
}

func redactValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			t[k] = redactField(k, val)
		}
		return t
	case map[any]any:
		// YAML allows non-string keys; JSON does not.
		out := make(map[string]any, len(t))
		for k, val := range t {
			ks := fmt.Sprint(k)
			out[ks] = redactField(ks, val)
		}
		return out
	case []any:
		for i := range t {
			t[i] = redactValue(t[i])
		}
		return t
	case string:
		return redactURL(t)
	}
	return v
}

func redactField(name string, v any) any {
	if IsSecretField(name) && !empty(v) {
		return Redacted
	}
	return redactValue(v)
}

func empty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	case map[any]any:
		return len(t) == 0
	}
	return false
}

// redactURL masks the password of a URL with user info ("redis://u:p@h").
func redactURL(s string) string {
	if !strings.Contains(s, "://") || !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), "redacted")
	return u.String()
}
