// Package wasmbuild builds Go packages to WebAssembly plugins for tests.
//
// Tests across the repository load real .wasm files built from source. Go
// guests take seconds to build and wazero takes seconds to compile them under
// -race, so this package builds each package once per source hash into a
// cache shared by all test binaries, and hands out one shared wazero
// compilation cache directory.
package wasmbuild

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
)

// memo remembers builds done by this process: package dir -> wasm path.
var memo sync.Map

// buildMu serialises builds inside one process; different processes are
// kept apart by building to a temporary file and renaming it into place.
var buildMu sync.Mutex

// Build builds the Go package at pkgDir (relative to the module root, e.g.
// "proxy/wasm/testdata/guests/header") with GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared and returns the path of the .wasm file. The result is
// cached by a hash of the package's sources and of every package of this
// module it imports, so repeated runs and parallel test binaries reuse it.
func Build(t testing.TB, pkgDir string) string {
	t.Helper()
	if p, ok := memo.Load(pkgDir); ok {
		return p.(string)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := memo.Load(pkgDir); ok {
		return p.(string)
	}
	p, err := build(pkgDir)
	if err != nil {
		t.Fatalf("wasmbuild: %v", err)
	}
	memo.Store(pkgDir, p)
	return p
}

// CacheDir returns the wazero compilation cache directory shared by the whole
// test suite. wazero keys its entries by its own version and by module hash,
// so one directory is safe across wazero upgrades.
func CacheDir() string {
	return filepath.Join(baseDir(), "wazero")
}

func baseDir() string {
	if d := os.Getenv("WASMGATE_TEST_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "wasmgate", "test")
	}
	return filepath.Join(os.TempDir(), "wasmgate-test")
}

// ModuleRoot returns the directory holding go.mod for the current test.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("wasmbuild: getwd: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("wasmbuild: go.mod not found above the working directory")
		}
		dir = parent
	}
}

type listedPkg struct {
	Dir        string
	ImportPath string
	GoFiles    []string
	Standard   bool
	Module     *struct{ Main bool }
}

func build(pkgDir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	src := filepath.Join(root, filepath.FromSlash(pkgDir))
	sum, err := sourceHash(root, src)
	if err != nil {
		return "", err
	}
	outDir := filepath.Join(baseDir(), "wasm")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("wasmbuild: mkdir %s: %w", outDir, err)
	}
	out := filepath.Join(outDir, filepath.Base(src)+"-"+sum[:16]+".wasm")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	tmp, err := os.CreateTemp(outDir, ".build-*.wasm")
	if err != nil {
		return "", fmt.Errorf("wasmbuild: temp file: %w", err)
	}
	tmpName := tmp.Name()
	_ = tmp.Close()
	defer os.Remove(tmpName)
	cmd := exec.Command(goBin(), "build", "-buildmode=c-shared", "-o", tmpName, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkgDir, err, stderr.String())
	}
	if err := os.Rename(tmpName, out); err != nil {
		return "", fmt.Errorf("wasmbuild: rename: %w", err)
	}
	return out, nil
}

// sourceHash hashes the Go toolchain version and the sources of every package
// of this module that the package at src depends on (as built for wasip1).
func sourceHash(root, src string) (string, error) {
	cmd := exec.Command(goBin(), "list", "-deps", "-json=Dir,ImportPath,GoFiles,Standard,Module", ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s: %w\n%s", src, err, stderr.String())
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", runtime.Version())
	dec := json.NewDecoder(bytes.NewReader(out))
	var files []string
	for {
		var p listedPkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("wasmbuild: decode go list: %w", err)
		}
		if p.Standard || p.Module == nil || !p.Module.Main {
			continue
		}
		for _, f := range p.GoFiles {
			files = append(files, filepath.Join(p.Dir, f))
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		files = append(files, filepath.Join(root, f))
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("wasmbuild: read %s: %w", f, err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// goBin is the go command; `go test` puts its own toolchain first on PATH.
func goBin() string { return "go" }
