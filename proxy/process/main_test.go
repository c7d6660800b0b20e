package process

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// bins are the plugin executables built once for the package's tests.
var bins = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmgate-process-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := buildAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildAll builds the process plugins the tests use: the probe and, from
// the very sources of their Wasm builds, add-header and rate-limit.
func buildAll(dir string) error {
	root, err := wasmbuild.ModuleRoot()
	if err != nil {
		return err
	}
	for name, pkg := range map[string]string{
		"probe":      "./proxy/process/testdata/probe",
		"add-header": "./pluginsdk-examples/add-header",
		"rate-limit": "./plugins/rate-limit",
		"wasmgate":   "./cmd/wasmgate",
	} {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-tags", "wasmgate_process", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
		}
		bins[name] = out
	}
	return nil
}
