package main

import (
	"strings"
	"testing"
)

func newRequest(method, path, peer string, headers, values map[string]string) *request {
	cp, _ := canonicalPath(path)
	return &request{
		method: method, path: cp, peerID: peer,
		header: func(n string) (string, bool) { v, ok := headers[n]; return v, ok },
		value:  func(k string) (string, bool) { v, ok := values[k]; return v, ok },
	}
}

const policyJSON = `{"rules":[
	{"name":"health","action":"allow","path_prefixes":["/healthz"]},
	{"name":"no-admin-delete","action":"deny","methods":["delete"],"paths":["/admin/**"]},
	{"name":"admins","action":"allow","roles":["admin"],"paths":["/admin/**"]},
	{"name":"orders-writer","action":"allow","methods":["POST"],"scopes":["orders:write","orders:read"],"paths":["/v1/orders","/v1/orders/*"]},
	{"name":"readers","action":"allow","methods":["GET","HEAD"],"authenticated":true,"path_prefixes":["/v1/"]},
	{"name":"mesh-web","action":"allow","peer_ids":["spiffe://mesh.local/ns/shop/sa/web"],"path_prefixes":["/internal/"]},
	{"name":"gold-bulk","action":"allow","values":{"tier":["gold"]},"consumers":["acme-*"],"path_prefixes":["/bulk/"],"headers":{"content-type":"application/*"}},
	{"name":"alice","action":"allow","subjects":["alice"],"path_prefixes":["/me/"]}
]}`

func TestEvaluate(t *testing.T) {
	p, err := parseConfig([]byte(policyJSON))
	if err != nil {
		t.Fatal(err)
	}
	admin := map[string]string{"jwt.sub": "root", "jwt.roles": "dev admin"}
	writer := map[string]string{"jwt.sub": "w", "jwt.scope": "orders:read orders:write"}
	reader := map[string]string{"jwt.sub": "r", "jwt.scope": "orders:read"}
	gold := map[string]string{"consumer": "acme-eu", "tier": "gold"}
	tests := []struct {
		name    string
		method  string
		path    string
		peer    string
		headers map[string]string
		values  map[string]string
		allow   bool
		rule    string
	}{
		{"health anonymous", "GET", "/healthz", "", nil, nil, true, "health"},
		{"admin get", "GET", "/admin/users", "", nil, admin, true, "admins"},
		{"admin delete denied first", "DELETE", "/admin/users", "", nil, admin, false, "no-admin-delete"},
		{"admin via dot-dot", "DELETE", "/v1/../admin/users", "", nil, admin, false, "no-admin-delete"},
		{"encoded traversal", "GET", "/v1/%2e%2e/admin/x", "", nil, reader, false, ""},
		{"non-admin admin path", "GET", "/admin/users", "", nil, reader, false, ""},
		{"writer post", "POST", "/v1/orders/7", "", nil, writer, true, "orders-writer"},
		{"reader post missing scope", "POST", "/v1/orders", "", nil, reader, false, ""},
		{"reader get", "GET", "/v1/orders/7", "", nil, reader, true, "readers"},
		{"anonymous get", "GET", "/v1/orders/7", "", nil, nil, false, ""},
		{"consumer counts as authenticated", "GET", "/v1/x", "", nil, gold, true, "readers"},
		{"mesh peer", "POST", "/internal/sync", "spiffe://mesh.local/ns/shop/sa/web", nil, nil, true, "mesh-web"},
		{"other peer", "POST", "/internal/sync", "spiffe://mesh.local/ns/shop/sa/db", nil, nil, false, ""},
		{"gold bulk", "PUT", "/bulk/load", "", map[string]string{"Content-Type": "application/json"}, gold, true, "gold-bulk"},
		{"gold bulk no content type", "PUT", "/bulk/load", "", nil, gold, false, ""},
		{"silver bulk", "PUT", "/bulk/load", "", map[string]string{"Content-Type": "application/json"}, map[string]string{"consumer": "acme-eu", "tier": "silver"}, false, ""},
		{"alice", "GET", "/me/profile", "", nil, map[string]string{"jwt.sub": "alice"}, true, "alice"},
		{"alicea", "GET", "/me/profile", "", nil, map[string]string{"jwt.sub": "alicea"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.evaluate(newRequest(tt.method, tt.path, tt.peer, tt.headers, tt.values))
			if d.allow != tt.allow || d.rule != tt.rule {
				t.Fatalf("evaluate = %+v, want allow=%v rule=%q", d, tt.allow, tt.rule)
			}
		})
	}
}

func TestEvaluateDefaultAllow(t *testing.T) {
	p, err := parseConfig([]byte(`{"default":"allow","rules":[{"action":"deny","paths":["/secret/**"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d := p.evaluate(newRequest("GET", "/open", "", nil, nil)); !d.allow {
		t.Fatalf("default allow denied: %+v", d)
	}
	if d := p.evaluate(newRequest("GET", "/secret/x", "", nil, nil)); d.allow || d.rule != "rule-0" {
		t.Fatalf("deny rule: %+v", d)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{"rules":[{"action":"permit"}]}`, `rules[0].action: "permit" is not allow or deny`},
		{`{"rules":[{"action":"allow","paths":["v1/*"]}]}`, `rules[0].paths[0]: "v1/*" must start with /`},
		{`{"rules":[{"action":"allow","path_prefixes":["v1"]}]}`, `rules[0].path_prefixes[0]`},
		{`{"rules":[{"name":"a","action":"allow"},{"name":"a","action":"deny"}]}`, `rules[1].name: "a" already used by rules[0]`},
		{`{"default":"maybe"}`, `default: "maybe"`},
		{`{"deny_status":200}`, "deny_status: 200"},
		{`{"rulez":[]}`, `unknown field "rulez"`},
	}
	for _, tt := range tests {
		_, err := parseConfig([]byte(tt.cfg))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "authz: config: ") {
			t.Errorf("parseConfig(%s) err = %v, want %q", tt.cfg, err, tt.want)
		}
	}
	p, err := parseConfig(nil)
	if err != nil || !p.defaultDeny || p.status != 403 {
		t.Fatalf("empty config: %+v %v", p, err)
	}
}
