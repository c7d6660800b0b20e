package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

func TestConfigRefused(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow})
	_, err := tryBuild(t, h, guestAll, withConfig(map[string]bool{"reject": true}), withName("all"))
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, `all: config rejected: {"reject":true}`) {
		t.Fatalf("err = %v, want *ConfigError with the guest's message", err)
	}
	path := wasmbuild.Build(t, guestAll)
	if got := h.WatchPaths(); len(got) != 1 || got[0] != path {
		t.Fatalf("WatchPaths = %v, want the failed file so a fix reloads", got)
	}
	// A good config for the same file clears the failure.
	p := buildGuest(t, h, guestAll, withConfig(map[string]bool{"ok": true}), withName("all"))
	st := h.Plugins()
	if len(st) != 1 || st[0].State != "serving" || st[0].File != path || st[0].PoolSize != p.pool.size {
		t.Fatalf("Plugins = %+v", st)
	}
	if !strings.Contains(st[0].LastError, "config rejected") {
		t.Errorf("last error of the name should keep the refused config, got %q", st[0].LastError)
	}
}

func TestBuildErrors(t *testing.T) {
	h, _ := testHost(t, HostOptions{})
	path := wasmbuild.Build(t, guestHeader)
	junk := filepath.Join(t.TempDir(), "junk.wasm")
	if err := os.WriteFile(junk, []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec filter.Spec
		want string
	}{
		{"missing file", filter.Spec{Path: "/nonexistent/x.wasm"}, "read plugin"},
		{"sha mismatch", filter.Spec{Path: path, SHA256: strings.Repeat("ab", 32)}, "config pins abab"},
		{"not wasm", filter.Spec{Path: junk}, "compile"},
		{"unknown setting", filter.Spec{Path: path, Settings: map[string]string{"pool_sise": "2"}}, "settings.pool_sise: unknown wasm setting"},
		{"bad pool size", filter.Spec{Path: path, Settings: map[string]string{"pool_size": "0"}}, "settings.pool_size"},
		{"bad timeout", filter.Spec{Path: path, Settings: map[string]string{"call_timeout": "soon"}}, "settings.call_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Kind = "wasm"
			_, err := h.Factory().Build(context.Background(), tc.spec, filter.Deps{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	b, _ := os.ReadFile(path)
	sum := sha256.Sum256(b)
	f, err := h.Factory().Build(context.Background(), filter.Spec{Kind: "wasm", Path: path, SHA256: strings.ToUpper(hex.EncodeToString(sum[:])),
		Settings: map[string]string{"pool_size": "3", "call_timeout": "1s", "pool_wait": "5ms", "memory_limit_mib": "32"}}, filter.Deps{})
	if err != nil {
		t.Fatalf("pinned build: %v", err)
	}
	defer f.(*plugin).Close(context.Background())
	p := f.(*plugin)
	if p.pool.size != 3 || p.timeout != time.Second || p.pool.wait != 5*time.Millisecond || p.rt.pages != 32*16 {
		t.Fatalf("settings not applied: size %d timeout %v wait %v pages %d", p.pool.size, p.timeout, p.pool.wait, p.rt.pages)
	}
}

// TestReloadReusesModule builds the same file twice, as a reload does
// (new snapshot first, then the old one closes): the compiled module is
// shared and survives until its last user closes.
func TestReloadReusesModule(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	old := buildGuest(t, h, guestHeader, withName("hdr"))
	start := time.Now()
	next := buildGuest(t, h, guestHeader, withName("hdr"))
	t.Logf("rebuild of an unchanged module took %v", time.Since(start))
	if old.comp != next.comp || old.comp.refs != 2 {
		t.Fatalf("compiled module not shared: %p %p refs %d", old.comp, next.comp, old.comp.refs)
	}
	if err := old.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.modules) != 1 || next.comp.refs != 1 {
		t.Fatalf("modules %d refs %d after closing the old plugin", len(h.modules), next.comp.refs)
	}
	x := newExchange("GET", "/")
	if ok, err := next.HandleRequest(context.Background(), x); !ok || err != nil {
		t.Fatalf("new plugin: %v %v", ok, err)
	}
	if _, err := old.HandleRequest(context.Background(), newExchange("GET", "/")); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed plugin: err %v, want ErrClosed", err)
	}
	if err := next.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.modules) != 0 || len(h.Plugins()) != 0 || len(h.WatchPaths()) != 0 {
		t.Fatalf("after closing all: modules %d plugins %v", len(h.modules), h.Plugins())
	}
	// Counters are per name and survive the reload.
	if got := h.statsFor("hdr").calls.Load(); got != 1 {
		t.Fatalf("calls for hdr = %d, want 1", got)
	}
}

func TestPinnedPoolExhaustion(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1, PoolWait: 20 * time.Millisecond})
	p := buildGuest(t, h, guestAll, withStore(newMemStore()))
	ctx := context.Background()
	x1 := newExchange("GET", "/one")
	if ok, err := p.HandleRequest(ctx, x1); !ok || err != nil {
		t.Fatalf("first: %v %v", ok, err)
	}
	// The only instance is pinned to x1 until its response phase.
	_, err := p.HandleRequest(ctx, newExchange("GET", "/two"))
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("second request err = %v, want ErrPoolExhausted", err)
	}
	if err := p.HandleResponse(ctx, x1); err != nil {
		t.Fatal(err)
	}
	if got := x1.Response.Header.Get("X-Req-Uri"); got != "/one" {
		t.Fatalf("X-Req-URI = %q", got)
	}
	x3 := newExchange("GET", "/three")
	runAll(t, p, x3, nil)
	if st := h.Plugins()[0]; st.Exhausted != 1 || st.InUse != 0 {
		t.Fatalf("status = %+v", st)
	}

	// A waiting request gets the instance as soon as it is released.
	x4 := newExchange("GET", "/four")
	if ok, err := p.HandleRequest(ctx, x4); !ok || err != nil {
		t.Fatal(ok, err)
	}
	p.pool.wait = 5 * time.Second
	ctx5, end5 := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := p.HandleRequest(ctx5, newExchange("GET", "/five"))
		done <- err
	}()
	for p.pool.waiting.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := p.HandleResponse(ctx, x4); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	end5() // /five ends without a response phase: its instance comes back
	waitFull(t, p)
}

func TestPinnedReleasedWhenRequestEnds(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1, PoolWait: time.Millisecond})
	p := buildGuest(t, h, guestAll, withStore(newMemStore()))
	ctx, cancel := context.WithCancel(context.Background())
	x := newExchange("GET", "/abandoned")
	if ok, err := p.HandleRequest(ctx, x); !ok || err != nil {
		t.Fatal(ok, err)
	}
	cancel() // the request ended without a response phase
	waitFull(t, p)
	if err := p.HandleResponse(context.Background(), x); err == nil {
		t.Fatal("late response phase on a released instance must fail")
	}
	runAll(t, p, newExchange("GET", "/next"), nil)
}

// TestConcurrentRequests runs stateless and pinned guests from many
// goroutines (run with -race).
func TestConcurrentRequests(t *testing.T) {
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 2, PoolWait: 10 * time.Second})
	hdr := buildGuest(t, h, guestHeader)
	all := buildGuest(t, h, guestAll, withStore(newMemStore()))
	c := &filter.Chain{Entries: []filter.Entry{
		{Name: "header", Kind: "wasm", Filter: hdr},
		{Name: "all", Kind: "wasm", Filter: all},
	}}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 40; n++ {
				uri := "/g" + string(rune('a'+g)) + "/" + string(rune('a'+n%26))
				x := newExchange("GET", uri)
				if !serve(c, x) {
					errs <- "stopped: " + x.Response.Header.Get("Content-Type")
					return
				}
				if x.Response.Header.Get("X-Req-Uri") != uri || x.Request.Header.Get("X-Wasm") != "1" {
					errs <- "mixed up request " + uri + ": " + x.Response.Header.Get("X-Req-Uri")
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestHostClose(t *testing.T) {
	h, err := NewHost(context.Background(), HostOptions{CacheDir: wasmbuild.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	spec := filter.Spec{Kind: "wasm", Path: wasmbuild.Build(t, guestHeader)}
	f, err := h.Factory().Build(context.Background(), spec, filter.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.HandleRequest(context.Background(), newExchange("GET", "/")); err == nil {
		t.Fatal("request after Host.Close succeeded")
	}
	if _, err := h.Factory().Build(context.Background(), spec, filter.Deps{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("build after close: %v", err)
	}
	if err := f.(filter.Closer).Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestHostOptionsValidate(t *testing.T) {
	for _, o := range []HostOptions{{MemoryLimitMiB: 5000}, {CallTimeout: -1}, {PoolSize: -2}} {
		if _, err := NewHost(context.Background(), o); err == nil {
			t.Errorf("NewHost(%+v) accepted invalid options", o)
		}
	}
}
