//go:build !wasip1

package sdk

import "github.com/wasmgate/wasmgate/sdk/internal/hostabi"

// hst returns the host installed by sdk/sdktest. Outside a Wasm guest the
// SDK only works under sdktest.
func hst() hostabi.Host {
	h, _ := hostabi.Current()
	if h == nil {
		panic("sdk: no host: build with GOOS=wasip1 or run the plugin through sdk/sdktest")
	}
	return h
}
