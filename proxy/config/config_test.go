package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings that must all appear
	}{
		{"syntax", "mode: edge\nlisteners: [\n", []string{"edge.yaml:"}},
		{"unknown field", "mode: edge\nlistenerz: []\n", []string{"edge.yaml:2:", "listenerz"}},
		{"bad type", "mode: edge\nlisteners:\n  - name: a\n    address: 127.0.0.1:1\n    http2: maybe\n", []string{"edge.yaml:5:"}},
		{"unknown cluster", `
listeners: [{name: a, address: "127.0.0.1:1"}]
routes:
  - cluster: echo
  - cluster: pay
clusters: [{name: echo, endpoints: ["127.0.0.1:2"]}]
`, []string{`edge.yaml:5: routes[1].cluster: unknown cluster "pay"`}},
		{"all problems at once", `
mode: cloud
listeners: [{name: a, address: "nope"}]
routes: [{cluster: x, match: {path: {regex: "("}}}]
`, []string{"mode: must be edge or sidecar", "listeners[0].address", "routes[0].cluster", "routes[0].match.path.regex"}},
		{"empty", "", []string{"empty"}},
		{"bad paths", `
listeners: [{name: a, address: "127.0.0.1:1"}]
paths: {action: fix, escaped_slashes: drop}
`, []string{`paths.action: must be normalize or reject, got "fix"`, `paths.escaped_slashes: must be decode, keep or reject, got "drop"`}},
		{"bad filter", `
listeners: [{name: a, address: "127.0.0.1:1"}]
clusters: [{name: c, endpoints: ["127.0.0.1:2"]}]
routes: [{cluster: c, filters: [{plugin: x.wasm, failure_policy: maybe, sha256: abc}]}]
`, []string{"routes[0].filters[0].failure_policy", "routes[0].filters[0].sha256"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("edge.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("x.yaml", []byte(`
listeners: [{name: a, address: "127.0.0.1:1"}]
clusters: [{name: c, endpoints: ["127.0.0.1:2"]}]
routes: [{cluster: c, filters: [{plugin: plugins/jwt-auth.wasm}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeEdge || c.Admin.Address != "127.0.0.1:9901" || c.Listeners[0].Role != "public" {
		t.Fatalf("defaults not applied: mode=%q admin=%q role=%q", c.Mode, c.Admin.Address, c.Listeners[0].Role)
	}
	f := c.Routes[0].Filters[0]
	if f.Kind != "wasm" || f.Name != "jwt-auth" || f.FailurePolicy != "fail_closed" {
		t.Fatalf("filter defaults: %+v", f)
	}
	if c.Clusters[0].Balancer != "round_robin" || c.Clusters[0].Endpoints[0].Weight != 1 {
		t.Fatalf("cluster defaults: %+v", c.Clusters[0])
	}
	if c.Wasm.CallTimeout != 20*time.Millisecond {
		t.Fatalf("wasm call timeout = %v, want 20ms", c.Wasm.CallTimeout)
	}
	rc, err := Parse("x.yaml", []byte(`
listeners: [{name: a, address: "127.0.0.1:1"}]
store: {kind: redis, redis: {address: "127.0.0.1:6379", timeout: 50ms}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if rc.Wasm.CallTimeout != 220*time.Millisecond {
		t.Fatalf("wasm call timeout with redis = %v, want 220ms", rc.Wasm.CallTimeout)
	}
	sc, err := ParseMode("x.yaml", []byte(`listeners: [{name: in, address: "127.0.0.1:1"}]`), ModeSidecar)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Listeners[0].Role != "inbound" {
		t.Fatalf("sidecar listener role = %q", sc.Listeners[0].Role)
	}
}

// TestExampleConfigs checks that every config shipped in configs/ validates.
func TestExampleConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	more, _ := filepath.Glob("../../configs/*/*.yaml")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			mode := ""
			if strings.Contains(f, "sidecar") {
				mode = ModeSidecar
			}
			if _, err := ParseMode(f, src, mode); err != nil {
				t.Fatalf("%v", err)
			}
		})
	}
}
