package process

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// children lists the live (non-zombie) child processes of pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid {
			out = append(out, c)
		}
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestGatewayProcessPlugins runs the real wasmgate binary with add-header
// and rate-limit built as process plugins from their Wasm sources: requests
// get the header and the 429, a reload replaces the plugin processes, and
// SIGTERM leaves no plugin process behind.
func TestGatewayProcessPlugins(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Saw-Added", r.Header.Get("X-Added"))
		io.WriteString(w, "upstream\n")
	}))
	defer up.Close()
	dir := t.TempDir()
	port := freePort(t)
	cfgPath := filepath.Join(dir, "wasmgate.yaml")
	writeCfg := func(value string, limit int) {
		cfg := fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:%d"}]
admin: {address: "off"}
clusters: [{name: up, endpoints: ["%s"]}]
routes:
  - name: r
    cluster: up
    filters:
      - {name: addh, kind: process, plugin: %s, config: {request: {X-Added: %s}, response: {X-Resp: r}}}
      - {name: rl, kind: process, plugin: %s, config: {limits: [{name: l%d, requests: %d, window: 1m, key: [client_ip]}]}}
`, port, up.Listener.Addr(), bins["add-header"], value, bins["rate-limit"], limit, limit)
		if err := os.WriteFile(cfgPath+".tmp", []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("one", 3)
	// validate starts the plugins, shows them their config and stops them.
	if out, err := exec.Command(bins["wasmgate"], "validate", "-c", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:%d"}]
clusters: [{name: up, endpoints: ["%s"]}]
routes: [{cluster: up, filters: [{name: addh, kind: process, plugin: %s, config: {}}]}]
`, port, up.Listener.Addr(), bins["add-header"])), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bins["wasmgate"], "validate", "-c", filepath.Join(dir, "bad.yaml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "set at least one header") {
		t.Fatalf("validate of a refused config: %v\n%s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "wasmgate.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	logs := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
	cmd := exec.Command(bins["wasmgate"], "run", "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 5 * time.Second}
	get := func() (*http.Response, error) {
		resp, err := client.Get(base + "/x")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	waitFor(t, 20*time.Second, "wasmgate to listen", func() bool {
		_, err := get()
		return err == nil
	})
	first := children(cmd.Process.Pid)
	if len(first) != 2 {
		t.Fatalf("plugin processes %v, want 2\n%s", first, logs())
	}
	// 1 request spent on the readiness probe: two more pass, then 429.
	for i := 2; i <= 4; i++ {
		resp, err := get()
		if err != nil {
			t.Fatal(err)
		}
		want := 200
		if i == 4 {
			want = 429
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, want)
		}
		if want == 200 && (resp.Header.Get("X-Saw-Added") != "one" || resp.Header.Get("X-Resp") != "r" || resp.Header.Get("RateLimit-Limit") == "") {
			t.Errorf("request %d headers %v", i, resp.Header)
		}
		if want == 429 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After: %v", resp.Header)
		}
	}

	// Reload: new processes serve the new config, the old ones stop.
	writeCfg("two", 100)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "reload to new plugin processes", func() bool {
		now := children(cmd.Process.Pid)
		if len(now) != 2 {
			return false
		}
		for _, p := range now {
			for _, o := range first {
				if p == o {
					return false
				}
			}
		}
		return true
	})
	resp, err := get()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Saw-Added") != "two" {
		t.Errorf("after reload X-Saw-Added = %q", resp.Header.Get("X-Saw-Added"))
	}
	for _, p := range first {
		if alive(p) {
			t.Errorf("old plugin pid %d alive after reload", p)
		}
	}

	// SIGTERM: wasmgate drains, stops its plugins and exits 0.
	plugins := children(cmd.Process.Pid)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("wasmgate exit: %v\n%s", err, logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wasmgate did not exit after SIGTERM")
	}
	for _, p := range plugins {
		if alive(p) {
			t.Errorf("plugin pid %d alive after wasmgate exited", p)
		}
	}
}

// TestGatewayKilledTakesPluginsAlong: when wasmgate is killed without a
// chance to stop its plugins, they go too (parent-death signal, and the
// plugin's own parent watch).
func TestGatewayKilledTakesPluginsAlong(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "wasmgate.yaml")
	cfg := fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:%d"}]
admin: {address: "off"}
clusters: [{name: up, endpoints: ["127.0.0.1:9"]}]
routes: [{cluster: up, filters: [{name: addh, kind: process, plugin: %s, config: {request: {X-A: b}}}]}]
`, freePort(t), bins["add-header"])
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins["wasmgate"], "run", "-c", cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	var plugins []int
	waitFor(t, 20*time.Second, "the plugin process", func() bool {
		plugins = children(cmd.Process.Pid)
		return len(plugins) == 1
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	waitFor(t, 5*time.Second, "the orphaned plugin to exit", func() bool { return !alive(plugins[0]) })
}
