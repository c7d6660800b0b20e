package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy/mesh"
)

// TestShippedConfigsValidate runs `wasmgate validate` — config, mesh
// expansion, and a full build of every filter with the real plugins — on
// every config in configs/. The tree is copied to a temp dir beside the
// built plugins and the mesh identities the demos would create, so the
// configs' relative paths resolve exactly as they do in the repo.
func TestShippedConfigsValidate(t *testing.T) {
	plugins, err := filepath.Abs("../../build/plugins")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(plugins, "jwt-auth.wasm")); err != nil {
		t.Skip("plugins not built: run `make plugins` (make test does)")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "build"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(plugins, filepath.Join(root, "build", "plugins")); err != nil {
		t.Fatal(err)
	}
	var files []string
	err = filepath.WalkDir("../../configs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		rel, _ := filepath.Rel("../..", p)
		dst := filepath.Join(root, rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if !strings.Contains(rel, "registry") {
			files = append(files, dst)
			// Share the test suite's compiled-module cache: a cold compile
			// of five Go guests under -race takes minutes.
			data = append(data, []byte("\nwasm:\n  cache_dir: "+wasmbuild.CacheDir()+"\n")...)
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The identities scripts/mesh-demo.sh issues.
	caDir := filepath.Join(root, ".wasmgate-demo", "mesh", "ca")
	if _, err := mesh.InitCA(caDir, "wasmgate.local"); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"edge", "orders", "payments", "notifications"} {
		if _, _, err := mesh.Issue(mesh.IssueOptions{CADir: caDir, OutDir: filepath.Join(root, ".wasmgate-demo", "mesh", svc), Service: svc}); err != nil {
			t.Fatal(err)
		}
	}
	if len(files) < 2 {
		t.Fatalf("found %d configs", len(files))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(rel, func(t *testing.T) {
			code, out, errs := runCLI(t, "validate", "-c", f)
			if code != 0 || !strings.Contains(out, ": ok") {
				t.Fatalf("validate %s: exit %d\n%s%s", rel, code, out, errs)
			}
		})
	}
}
