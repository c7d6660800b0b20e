// Package warmcache fills the test suite's shared Wasm caches before the
// race-detector run: it builds every guest in the repo (plugins, SDK
// examples, test guests) and compiles each into the shared wazero cache.
// Under -race wazero's compiler is about ten times slower, so `make test`
// runs these tests once without -race first; run with -race they find
// everything cached and are quick.
//
// wazero files its cache under its own version, read from build info that
// test binaries lack; the Makefile pins it with -ldflags so this warm-up,
// the race run and the wasmgate binaries the tests build share one cache.
package warmcache

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy/wasm"
)

// guestDirs are the patterns of directories that hold Wasm guests.
var guestDirs = []string{
	"plugins/*",
	"pluginsdk-examples/*",
	"proxy/wasm/testdata/guests/*",
	"proxy/wasm/testdata/guest/*",
	"sdk/testdata/*",
}

// Run builds every guest and compiles it into wasmbuild.CacheDir().
func Run(t testing.TB) {
	root, err := wasmbuild.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, pat := range guestDirs {
		matches, _ := filepath.Glob(filepath.Join(root, pat))
		for _, m := range matches {
			if _, err := os.Stat(filepath.Join(m, "main.go")); err != nil {
				continue
			}
			rel, _ := filepath.Rel(root, m)
			dirs = append(dirs, rel)
		}
	}
	if len(dirs) < 10 {
		t.Fatalf("found %d guest packages, want at least 10: %v", len(dirs), dirs)
	}
	ctx := context.Background()
	host, err := wasm.NewHost(ctx, wasm.HostOptions{CacheDir: wasmbuild.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)
	for _, d := range dirs {
		path := wasmbuild.Build(t, d)
		if err := host.Precompile(ctx, path); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	t.Logf("%d guests built and compiled into %s", len(dirs), wasmbuild.CacheDir())
}
