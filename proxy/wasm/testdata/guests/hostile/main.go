//go:build wasip1

// Command hostile misbehaves on demand: the request header X-Mode selects
// how. It declares itself stateless so the host releases it between phases.
package main

import (
	"strings"
	"unsafe"

	"github.com/wasmgate/wasmgate/proxy/wasm/testdata/guest/hw"
)

// Raw variants of host functions that take plain integers as pointers.

//go:wasmimport http_handler get_uri
func getURIRaw(buf, limit uint32) uint32

//go:wasmimport http_handler set_header_value
func setHeaderRaw(kind, name, nameLen, val, valLen uint32)

//go:wasmimport http_handler log
func logRaw(level int32, msg, msgLen uint32)

//go:wasmimport wasmgate get_property
func getPropertyRaw(name, nameLen, buf, limit uint32) uint64

//go:wasmimport wasmgate counter_incr
func counterIncrRaw(key, keyLen uint32, delta, window int64, out uint32) uint32

var (
	hoard [][]byte
	big   = strings.Repeat("x", 64<<10)
)

func init() { hw.DeclareStateless() }

func mode() string {
	_, v := hw.Header(0, "X-Mode")
	return strings.TrimSuffix(v, "\x00")
}

//go:wasmexport handle_request
func handleRequest() uint64 {
	switch mode() {
	case "loop":
		for {
		}
	case "grow":
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case "trap-req":
		panic("hostile: trap in handle_request")
	case "trap-resp", "loop-resp":
		return 1<<32 | 1
	case "bigheader":
		for i := 0; i < 64; i++ { // 4 MiB: over the per-call budget
			hw.AddHeader(0, "X-Big", big)
		}
	case "badptr-write":
		getURIRaw(0xFFFFFFF0, 1000)
	case "badptr-read":
		setHeaderRaw(0, 0xFFFFFFF0, 100, 0, 1)
	case "badptr-len":
		logRaw(0, 0, 0xFFFFFFFF)
	case "badptr-prop":
		getPropertyRaw(0x7FFFFFFF, 0x7FFFFFFF, 0, 0)
	case "badptr-counter":
		k, n := hw.Ptr("k")
		counterIncrRaw(uint32(uintptr(k)), n, 1, 1000, 0xFFFFFFFC)
	case "badkind":
		hw.SetHeader(9, "X-Bad", "1")
	case "badstatus":
		hw.SetStatusCode(42)
		return 0
	case "badheader":
		hw.SetHeader(0, "X-Bad", "a\r\nInjected: 1")
	case "badnext":
		return 7
	case "respond":
		hw.SetStatusCode(403)
		hw.WriteBodyString(1, "denied")
		return 0
	}
	hw.SetHeader(0, "X-Hostile", "ok")
	return 1
}

//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {
	if reqCtx != 1 {
		return
	}
	if mode() == "loop-resp" {
		for {
		}
	}
	panic("hostile: trap in handle_response")
}

var _ = unsafe.Pointer(nil)

func main() {}
