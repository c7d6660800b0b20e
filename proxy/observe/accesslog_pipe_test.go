package observe

import (
	"io"
	"os"
	"testing"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// TestAccessLogToPipeClosesCleanly: stdout is often a pipe into a log
// collector; closing the access log must not fail because a pipe cannot be
// synced.
func TestAccessLogToPipeClosesCleanly(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() { _, _ = io.Copy(io.Discard, r) }()
	a, err := NewAccessLog(config.AccessLog{}, w)
	if err != nil {
		t.Fatal(err)
	}
	a.Log(&AccessEntry{Method: "GET", Path: "/", Status: 200})
	if err := a.Close(); err != nil {
		t.Fatalf("Close on a pipe: %v", err)
	}
	_ = w.Close()
}
