package main

import (
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/plugins/keyhash"

	"github.com/wasmgate/wasmgate/sdk"
)

func mustKeyring(t *testing.T, cfg string) *keyring {
	t.Helper()
	k, err := parseConfig([]byte(cfg))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	return k
}

func cfgWith(hashes ...string) string {
	return `{"keys":[{"hash":"` + hashes[0] + `","consumer":"alice","tier":"gold"},{"hash":"sha256:` + strings.ToUpper(hashes[1]) + `","consumer":"bob"}],"query":"api_key"}`
}

func TestLookup(t *testing.T) {
	k := mustKeyring(t, cfgWith(keyhash.Hash("alice-key"), keyhash.Hash("bob-key")))
	tests := []struct {
		key, consumer, tier string
		ok                  bool
	}{
		{"alice-key", "alice", "gold", true},
		{"bob-key", "bob", "", true},
		{"carol-key", "", "", false},
		{"", "", "", false},
		{keyhash.Hash("alice-key"), "", "", false}, // the hash itself is not a key
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			e, ok := k.lookup(tt.key)
			if ok != tt.ok {
				t.Fatalf("lookup ok = %v, want %v", ok, tt.ok)
			}
			if ok && (e.consumer != tt.consumer || e.tier != tt.tier) {
				t.Fatalf("lookup = %+v", e)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	k := mustKeyring(t, cfgWith(keyhash.Hash("a"), keyhash.Hash("b")))
	tests := []struct {
		name     string
		headers  map[string]string
		query    string
		key, src string
	}{
		{"header", map[string]string{"X-Api-Key": " k1 "}, "", "k1", "header"},
		{"header wins", map[string]string{"X-Api-Key": "k1"}, "api_key=k2", "k1", "header"},
		{"query", nil, "x=1&api_key=k2", "k2", "query"},
		{"none", nil, "x=1", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, src := k.extract(func(n string) string { return tt.headers[n] }, func() string { return tt.query })
			if key != tt.key || src != tt.src {
				t.Fatalf("extract = %q %q", key, src)
			}
		})
	}
	if got := sdk.RemoveQueryParam("/a?api_key=x&b=1", "api_key"); got != "/a?b=1" {
		t.Fatalf("removeQueryParam = %q", got)
	}
}

func TestConfig(t *testing.T) {
	h := keyhash.Hash("k")
	tests := []struct {
		name string
		cfg  string
		want string
	}{
		{"no keys", `{}`, "at least one key"},
		{"empty", ``, "at least one key"},
		{"plain key", `{"keys":[{"hash":"my-secret-key","consumer":"a"}]}`, "keys[0].hash: keyhash: not a sha256 hex hash"},
		{"no consumer", `{"keys":[{"hash":"` + h + `"}]}`, "keys[0]: consumer is required"},
		{"duplicate", `{"keys":[{"hash":"` + h + `","consumer":"a"},{"hash":"` + h + `","consumer":"b"}]}`, "keys[1].hash: same key as keys[0]"},
		{"bad header", `{"keys":[{"hash":"` + h + `","consumer":"a"}],"header":"x key"}`, `header: invalid header name "x key"`},
		{"no source", `{"keys":[{"hash":"` + h + `","consumer":"a"}],"header":"-"}`, "needs query"},
		{"unknown field", `{"keys":[],"keyz":1}`, `unknown field "keyz"`},
		{"newline consumer", `{"keys":[{"hash":"` + h + `","consumer":"a\nb"}]}`, "printable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.cfg))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "api-key: config: ") {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	k := mustKeyring(t, `{"keys":[{"hash":"`+h+`","consumer":"a"}]}`)
	if k.header != "X-Api-Key" || k.consumerHeader != "x-consumer" || !k.stripKey || k.query != "" || k.optional {
		t.Fatalf("defaults: %+v", k)
	}
}
