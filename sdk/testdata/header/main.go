// Command header is the SDK twin of proxy/wasm's raw header guest: it sets
// X-Wasm: 1 on every request, so benchmarks can compare the SDK's cost with
// hand-written ABI calls.
package main

import "github.com/wasmgate/wasmgate/sdk"

func main() {}

func init() {
	sdk.HandleFunc(func(req sdk.Request, _ sdk.Response) sdk.Action {
		req.Header().Set("X-Wasm", "1")
		return sdk.Continue
	})
}
