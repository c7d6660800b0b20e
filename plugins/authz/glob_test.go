package main

import "testing"

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		sep        byte
		want       bool
	}{
		{"/v1/users", "/v1/users", '/', true},
		{"/v1/users", "/v1/users/", '/', false},
		{"/v1/*", "/v1/users", '/', true},
		{"/v1/*", "/v1/users/1", '/', false},
		{"/v1/**", "/v1/users/1", '/', true},
		{"/v1/**", "/v1/", '/', true},
		{"/v1/users/*/orders", "/v1/users/42/orders", '/', true},
		{"/v1/users/*/orders", "/v1/users/4/2/orders", '/', false},
		{"**/x/*", "a/x/b/x/c", '/', true},
		{"**/x/*", "a/x/b/x/c/d", '/', false},
		{"/a/*.json", "/a/b.json", '/', true},
		{"/a/*.json", "/a/b/c.json", '/', false},
		{"spiffe://mesh.local/ns/shop/sa/*", "spiffe://mesh.local/ns/shop/sa/web", '/', true},
		{"spiffe://mesh.local/ns/shop/sa/*", "spiffe://mesh.local/ns/shop/sa/web/x", '/', false},
		{"spiffe://mesh.local/**", "spiffe://mesh.local/ns/x/sa/y", '/', true},
		{"team-*", "team-a", 0, true},
		{"curl/*", "curl/8.1/x", 0, true},
		{"*", "", 0, true},
		{"a*b*c", "axxbyyc", 0, true},
		{"a*b*c", "axxbyy", 0, false},
		{"", "", 0, true},
		{"", "a", 0, false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s, tt.sep); got != tt.want {
			t.Errorf("globMatch(%q, %q, %q) = %v, want %v", tt.pattern, tt.s, tt.sep, got, tt.want)
		}
	}
}

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b/", "/a/b/", true},
		{"//admin", "/admin", true},
		{"/public/../admin", "/admin", true},
		{"/public/%2e%2e/admin", "/admin", true},
		{"/public%2F..%2Fadmin?x=1", "/admin", true},
		{"/a/./b?q", "/a/b", true},
		{"", "/", true},
		{"/a%zz", "", false},
		{"/a%2", "", false},
	}
	for _, tt := range tests {
		got, ok := canonicalPath(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("canonicalPath(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
