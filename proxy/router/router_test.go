package router

import (
	"net/http/httptest"
	"testing"

	"github.com/wasmgate/wasmgate/proxy/config"
)

func boolp(b bool) *bool { return &b }

func table(t *testing.T) *Table {
	t.Helper()
	routes := []config.Route{
		{Name: "exact", Match: config.Match{Path: config.PathMatch{Exact: "/health"}}, Cluster: "health"},
		{Name: "wild", Match: config.Match{Hosts: []string{"*.example.com"}, Path: config.PathMatch{Prefix: "/api"}}, Cluster: "wild"},
		{Name: "host", Match: config.Match{Hosts: []string{"api.test"}}, Cluster: "host"},
		{Name: "post", Match: config.Match{Methods: []string{"POST"}, Path: config.PathMatch{Prefix: "/orders/"}}, Cluster: "post"},
		{Name: "regex", Match: config.Match{Path: config.PathMatch{Regex: `^/items/[0-9]+$`}}, Cluster: "regex"},
		{Name: "hdr-exact", Match: config.Match{Headers: []config.HeaderMatch{{Name: "x-canary", Exact: "yes"}}}, Cluster: "canary"},
		{Name: "hdr-re", Match: config.Match{Headers: []config.HeaderMatch{{Name: "x-user", Regex: `^admin-`}}}, Cluster: "admin"},
		{Name: "hdr-present", Match: config.Match{Headers: []config.HeaderMatch{{Name: "x-debug", Present: boolp(true)}}}, Cluster: "debug"},
		{Name: "internal", Listeners: []string{"inbound"}, Match: config.Match{Path: config.PathMatch{Prefix: "/"}}, Cluster: "app"},
		{Name: "versions", Match: config.Match{Path: config.PathMatch{Prefix: "/api"}}, Cluster: "v1",
			Versions: []config.Version{{Name: "v2", PathPrefix: "/api/v2", Cluster: "v2"}, {Name: "v3", Cluster: "v3"}}},
	}
	tb, err := Compile(routes)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestMatch(t *testing.T) {
	tb := table(t)
	tests := []struct {
		name, listener, method, url string
		headers                     map[string]string
		want                        string // route name, "" = no match
	}{
		{"exact", "public", "GET", "http://x/health", nil, "exact"},
		{"exact not prefix", "public", "GET", "http://x/health/x", nil, ""},
		{"wildcard host", "public", "GET", "http://a.example.com/api/x", nil, "wild"},
		{"wildcard host with port and case", "public", "GET", "http://A.Example.com:8443/api", nil, "wild"},
		{"wildcard needs subdomain", "public", "GET", "http://example.com/api", nil, "versions"},
		{"prefix segment boundary", "public", "GET", "http://a.example.com/apix", nil, ""},
		{"exact host", "public", "GET", "http://api.test/anything", nil, "host"},
		{"method", "public", "POST", "http://x/orders/1", nil, "post"},
		{"method mismatch", "public", "GET", "http://x/orders/1", nil, ""},
		{"regex", "public", "GET", "http://x/items/42", nil, "regex"},
		{"regex mismatch", "public", "GET", "http://x/items/4a", nil, ""},
		{"header exact", "public", "GET", "http://x/z", map[string]string{"X-Canary": "yes"}, "hdr-exact"},
		{"header exact mismatch", "public", "GET", "http://x/z", map[string]string{"X-Canary": "no"}, ""},
		{"header regex", "public", "GET", "http://x/z", map[string]string{"X-User": "admin-1"}, "hdr-re"},
		{"header present", "public", "GET", "http://x/z", map[string]string{"X-Debug": ""}, "hdr-present"},
		{"listener scoped", "inbound", "GET", "http://x/z", nil, "internal"},
		{"first match wins", "inbound", "GET", "http://x/health", nil, "exact"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.url, nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			got := tb.Match(tc.listener, r)
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tc.want {
				t.Fatalf("Match = %q, want %q", name, tc.want)
			}
		})
	}
}

func TestVersionsAndWeights(t *testing.T) {
	tb := table(t)
	rt := tb.Routes()[9]
	cases := []struct {
		url, header, want string
	}{
		{"http://x/api/v2/a", "", "v2"},
		{"http://x/api/a", "v3", "v3"},
		{"http://x/api/a", "", "v1"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.url, nil)
		if c.header != "" {
			r.Header.Set("Accept-Version", c.header)
		}
		if got := rt.Cluster(r, nil); got != c.want {
			t.Errorf("%s %q: cluster %q, want %q", c.url, c.header, got, c.want)
		}
	}

	wt, err := Compile([]config.Route{{WeightedClusters: []config.WeightedCluster{{Cluster: "stable", Weight: 90}, {Cluster: "canary", Weight: 10}}}})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	r := httptest.NewRequest("GET", "/", nil)
	for i := 0; i < 100; i++ {
		i := i
		counts[wt.Routes()[0].Cluster(r, func(n int) int { return i % n })]++
	}
	if counts["stable"] != 90 || counts["canary"] != 10 {
		t.Fatalf("split = %v, want 90/10", counts)
	}
}

func TestRewritePath(t *testing.T) {
	rts, err := Compile([]config.Route{
		{Cluster: "a", StripPrefix: "/public"},
		{Cluster: "a", RewritePath: &config.Rewrite{Regex: `^/users/([0-9]+)/profile$`, Replacement: "/profiles/$1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		i        int
		in, want string
	}{
		{0, "/public/a/b", "/a/b"},
		{0, "/public", "/"},
		{0, "/other", "/other"},
		{1, "/users/7/profile", "/profiles/7"},
		{1, "/users/x/profile", "/users/x/profile"},
	}
	for _, c := range cases {
		if got := rts.Routes()[c.i].RewritePath(c.in); got != c.want {
			t.Errorf("route %d RewritePath(%q) = %q, want %q", c.i, c.in, got, c.want)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	tb, _ := Compile([]config.Route{
		{Match: config.Match{Path: config.PathMatch{Prefix: "/v1/"}}, Cluster: "v1"},
		{Match: config.Match{Path: config.PathMatch{Prefix: "/v2/"}}, Cluster: "v2"},
		{Match: config.Match{Path: config.PathMatch{Prefix: "/public/"}}, Cluster: "v1"},
	})
	r := httptest.NewRequest("GET", "http://localhost/public/x", nil)
	b.ReportAllocs()
	for b.Loop() {
		if tb.Match("public", r) == nil {
			b.Fatal("no match")
		}
	}
}
