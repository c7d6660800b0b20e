package admin

import (
	"errors"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/proxy/config"
)

func TestIsSecretField(t *testing.T) {
	tests := map[string]bool{
		"password": true, "Password": true, "key": true, "keys": true, "api_keys": true, "apiKey": true,
		"api-key": true, "hmac_secret": true, "client_secret_b64": true, "access_token": true, "tokens": true,
		"private_key_pem": true, "credentials": true, "jwt.secret": true,
		"key_file": false, "cert_file": false, "key_header": false, "token_header": false, "header": false,
		"address": false, "hash": false, "monkey": false, "issuer": false,
	}
	for name, want := range tests {
		if got := IsSecretField(name); got != want {
			t.Errorf("IsSecretField(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRedactNonStringKeysAndNil(t *testing.T) {
	if v := Redact(nil); v != nil {
		t.Fatalf("Redact(nil) = %v", v)
	}
	got := redactValue(map[any]any{1: "one", "token": "x", "list": []any{map[string]any{"secret": 5}}})
	m := got.(map[string]any)
	if m["1"] != "one" || m["token"] != Redacted || m["list"].([]any)[0].(map[string]any)["secret"] != Redacted {
		t.Fatalf("redacted = %v", m)
	}
}

func TestVersion(t *testing.T) {
	a := Version([]byte("mode: edge"))
	if len(a) != 16 || a != Version([]byte("mode: edge")) {
		t.Fatalf("version not stable: %q", a)
	}
	if a == Version([]byte("mode: edge"), "plugin-sha") || Version(nil, "ab", "c") == Version(nil, "a", "bc") {
		t.Fatal("version ignores parts or their boundaries")
	}
}

func TestStaticChanges(t *testing.T) {
	parse := func(y string) *config.Config {
		t.Helper()
		c, err := config.Parse("c.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := `
listeners:
  - {name: public, address: "127.0.0.1:8080"}
  - {name: extra, address: "127.0.0.1:8081"}
routes: [{name: r, match: {path: {prefix: /}}, cluster: a}]
clusters: [{name: a, endpoints: ["127.0.0.1:1"]}, {name: b, endpoints: ["127.0.0.1:2"]}]
`
	old := parse(base)
	if got := StaticChanges(old, parse(strings.Replace(base, "cluster: a", "cluster: b", 1))); len(got) != 0 {
		t.Fatalf("dynamic change reported as static: %v", got)
	}
	cur := parse(`
admin: {address: "127.0.0.1:9902"}
listeners:
  - {name: public, address: "127.0.0.1:9090", h2c: true}
  - {name: new, address: "127.0.0.1:8082"}
routes: [{name: r, match: {path: {prefix: /}}, cluster: a}]
clusters: [{name: a, endpoints: ["127.0.0.1:1"]}]
`)
	got := strings.Join(StaticChanges(old, cur), "\n")
	for _, want := range []string{"admin.address", "listener public address", "listener public h2c", `listener "new" added`, `listener "extra" removed`} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if StaticChanges(nil, cur) != nil {
		t.Error("nil old config")
	}
}

func TestTrackerCopies(t *testing.T) {
	tr := NewTracker()
	tr.ReloadFailed(errors.Join(errors.New("a"), errors.New("b")))
	st := tr.ConfigStatus().(ConfigStatus)
	if st.LastReload == nil || len(st.LastReload.Errors) != 2 || st.LastReload.Result != "error" {
		t.Fatalf("status = %+v", st.LastReload)
	}
	st.LastReload.Result = "changed"
	if tr.ConfigStatus().(ConfigStatus).LastReload.Result != "error" {
		t.Fatal("ConfigStatus returned shared state")
	}
}

func TestTrackerRecord(t *testing.T) {
	parse := func(addr string) *config.Config {
		t.Helper()
		c, err := config.Parse("c.yaml", []byte("listeners: [{name: public, address: \""+addr+"\"}]\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tr := NewTracker()
	tr.Record(parse("127.0.0.1:1"), "v1", nil)
	st := tr.ConfigStatus().(ConfigStatus)
	if st.Version != "v1" || st.LastReload != nil || len(st.Warnings) != 0 || st.File != "c.yaml" {
		t.Fatalf("after first load: %+v", st)
	}
	tr.Record(nil, "", errors.New("bad"))
	if st := tr.ConfigStatus().(ConfigStatus); st.Version != "v1" || st.LastReload.Result != "error" || st.LastReload.Version != "v1" {
		t.Fatalf("after refused reload: %+v", st)
	}
	// Both later reloads differ from the address the listener started on.
	for _, v := range []string{"v2", "v3"} {
		tr.Record(parse("127.0.0.1:2"), v, nil)
		st := tr.ConfigStatus().(ConfigStatus)
		if st.Version != v || st.LastReload.Result != "ok" || len(st.Warnings) != 1 {
			t.Fatalf("after reload %s: %+v", v, st)
		}
	}
	if tr.Version() != "v3" {
		t.Fatal(tr.Version())
	}
}
