package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/plugins/keyhash"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(good, []byte(`
listeners: [{name: a, address: "127.0.0.1:0"}]
clusters: [{name: c, endpoints: ["127.0.0.1:9"]}]
routes: [{cluster: c, filters: [{name: h, kind: headers, config: {request_set: {x: y}}}]}]
`), 0o644)
	_ = os.WriteFile(bad, []byte(`
listeners: [{name: a, address: "nowhere"}]
clusters: [{name: c, endpoints: ["127.0.0.1:9"]}]
routes:
  - cluster: c
  - cluster: pay
`), 0o644)
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"good", []string{"validate", "-c", good}, 0, []string{"ok"}},
		{"bad lists every problem", []string{"validate", "-c", bad}, 1, []string{"bad.yaml:2: listeners[0].address", `bad.yaml:6: routes[1].cluster: unknown cluster "pay"`}},
		{"missing file", []string{"validate", "-c", filepath.Join(dir, "nope.yaml")}, 1, []string{"no such file"}},
		{"no -c", []string{"validate"}, 2, []string{"-c FILE is required"}},
		{"bad mode flag", []string{"validate", "-c", good, "--mode", "mesh"}, 2, []string{"--mode must be edge or sidecar"}},
		{"unknown verb", []string{"frobnicate"}, 2, []string{"unknown command"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			for _, c := range tc.contains {
				if !strings.Contains(out+errs, c) {
					t.Errorf("output lacks %q:\n%s%s", c, out, errs)
				}
			}
		})
	}
}

func TestHashKeyAndVersion(t *testing.T) {
	code, out, _ := runCLI(t, "hash-key", "secret")
	if code != 0 || strings.TrimSpace(out) != keyhash.Hash("secret") {
		t.Fatalf("hash-key: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "wasmgate ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestCA(t *testing.T) {
	dir := t.TempDir()
	ca, svc := filepath.Join(dir, "ca"), filepath.Join(dir, "orders")
	if code, out, errs := runCLI(t, "ca", "init", "--trust-domain", "test.local", "--out", ca); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errs)
	}
	code, out, errs := runCLI(t, "ca", "issue", "--service", "orders", "--ca", ca, "--out", svc, "--ttl", "1h")
	if code != 0 || !strings.Contains(out, "spiffe://test.local/ns/default/sa/orders") {
		t.Fatalf("ca issue: %d %s %s", code, out, errs)
	}
	for _, f := range []string{"cert.pem", "key.pem", "bundle.pem"} {
		if _, err := os.Stat(filepath.Join(svc, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	if code, _, _ := runCLI(t, "ca", "init", "--trust-domain", "test.local", "--out", ca); code != 1 {
		t.Fatalf("ca init over an existing CA: exit %d, want 1", code)
	}
}

func TestDemoJWT(t *testing.T) {
	tok, err := demoJWT(time.Now(), time.Hour)
	if err != nil || strings.Count(tok, ".") != 2 {
		t.Fatalf("demoJWT = %q, %v", tok, err)
	}
}
