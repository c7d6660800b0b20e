package wasm

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// foreignGuest hand-assembles a minimal non-Go http-wasm guest: no WASI, no
// wasmgate imports, a _start function (as TinyGo guests have) that sets a
// global, and a handle_request that traps unless _start ran, then sets
// "X-Wasm: wat" on the request.
func foreignGuest() []byte {
	sec := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	str := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	types := sec(1, cat([]byte{4},
		[]byte{0x60, 0, 1, 0x7e},                         // 0: () -> i64
		[]byte{0x60, 2, 0x7f, 0x7f, 0},                   // 1: (i32, i32) -> ()
		[]byte{0x60, 0, 0},                               // 2: () -> ()
		[]byte{0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0}, // 3: set_header_value
	)...)
	imports := sec(2, cat([]byte{1}, str("http_handler"), str("set_header_value"), []byte{0x00, 3})...)
	funcs := sec(3, 3, 0, 1, 2)
	mem := sec(5, 1, 0x00, 1)
	globals := sec(6, 1, 0x7f, 0x01, 0x41, 0x00, 0x0b)
	exports := sec(7, cat([]byte{4},
		str("memory"), []byte{0x02, 0},
		str("handle_request"), []byte{0x00, 1},
		str("handle_response"), []byte{0x00, 2},
		str("_start"), []byte{0x00, 3},
	)...)
	handleRequest := []byte{0x00,
		0x23, 0x00, 0x45, 0x04, 0x40, 0x00, 0x0b, // if !started { unreachable }
		0x41, 0x00, 0x41, 0x00, 0x41, 0x06, 0x41, 0x08, 0x41, 0x03, 0x10, 0x00, // set_header_value(0, 0, 6, 8, 3)
		0x42, 0x01, 0x0b} // return 1
	handleResponse := []byte{0x00, 0x0b}
	start := []byte{0x00, 0x41, 0x01, 0x24, 0x00, 0x0b}
	code := sec(10, cat([]byte{3},
		[]byte{byte(len(handleRequest))}, handleRequest,
		[]byte{byte(len(handleResponse))}, handleResponse,
		[]byte{byte(len(start))}, start,
	)...)
	payload := []byte("X-Wasm\x00\x00wat")
	data := sec(11, cat([]byte{1, 0x00, 0x41, 0x00, 0x0b}, []byte{byte(len(payload))}, payload)...)
	return cat([]byte("\x00asm\x01\x00\x00\x00"), types, imports, funcs, mem, globals, exports, code, data)
}

func TestForeignGuest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "foreign.wasm")
	if err := os.WriteFile(path, foreignGuest(), 0o644); err != nil {
		t.Fatal(err)
	}
	h, _ := testHost(t, HostOptions{CallTimeout: slow, PoolSize: 1})
	f, err := h.Factory().Build(context.Background(), filter.Spec{Kind: "wasm", Path: path}, filter.Deps{})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	defer f.(filter.Closer).Close(context.Background())
	p := f.(*plugin)
	if p.comp.abi != "http-wasm" || p.comp.start != "_start" || p.stateless {
		t.Fatalf("abi %q start %q stateless %v; want a pinned http-wasm guest started by _start", p.comp.abi, p.comp.start, p.stateless)
	}
	if p.pool.size != 1 {
		t.Fatalf("pool size %d", p.pool.size)
	}
	for n := 0; n < 3; n++ {
		x := newExchange("GET", "/")
		if !serve(&filter.Chain{Entries: []filter.Entry{{Name: "foreign", Filter: p}}}, x) {
			t.Fatalf("request %d: %+v", n, x.Decisions)
		}
		if got := x.Request.Header.Get("X-Wasm"); got != "wat" {
			t.Fatalf("X-Wasm = %q", got)
		}
	}
	if got := p.stats.calls.Load(); got != 6 {
		t.Fatalf("calls = %d, want 6 (both phases)", got)
	}
}
