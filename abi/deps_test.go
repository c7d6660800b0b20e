package abi_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestGuestSideImportsNoProxy holds the layering of issue 15: the SDK, the
// plugins we ship and the examples import the ABI from abi/, never a package
// under proxy/ (which would drag the proxy into every guest and let the two
// sides' rules drift apart).
func TestGuestSideImportsNoProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	cases := []struct {
		name string
		env  []string
		pkgs []string
	}{
		{"wasip1", []string{"GOOS=wasip1", "GOARCH=wasm"}, []string{"./sdk/...", "./plugins/...", "./pluginsdk-examples/..."}},
		{"native sdk", nil, []string{"./sdk/...", "./abi/..."}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"list", "-deps"}, tc.pkgs...)
			cmd := exec.Command("go", args...)
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "github.com/wasmgate/wasmgate/proxy") {
					t.Errorf("guest-side package depends on %s", line)
				}
			}
		})
	}
}
