//go:build wasip1

// Command header is the header-only guest: it adds "X-Wasm: 1" to every
// request, keeps no state (the host may release it after each call) and has
// no response phase (the host skips handle_response).
package main

import "github.com/wasmgate/wasmgate/proxy/wasm/testdata/guest/hw"

func init() {
	hw.DeclareStateless()
	hw.DeclareRequestOnly()
}

//go:wasmexport handle_request
func handleRequest() uint64 {
	hw.SetHeader(0, "X-Wasm", "1")
	return 1
}

//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {}

func main() {}
