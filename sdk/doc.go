// Package sdk is the Go SDK for wasmgate plugins.
//
// A plugin is a main package built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//
// It registers its handler from init (main is never called in a c-shared
// Wasm module):
//
//	func main() {}
//
//	func init() { sdk.Handle(&plugin{}) }
//
//	type plugin struct{ cfg struct{ Header string `json:"header"` } }
//
//	// Configure is optional; it runs once per instance at load.
//	func (p *plugin) Configure() error { return sdk.Config(&p.cfg) }
//
//	func (p *plugin) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
//		req.Header().Set(p.cfg.Header, "yes")
//		return sdk.Continue
//	}
//
// The guest side speaks the http-wasm handler ABI (host module
// "http_handler") plus wasmgate's extension module ("wasmgate") for request
// properties, per-request values, shared counters and key/values, metrics
// and signature verification. The SDK keeps no per-request state in guest
// memory (it declares itself stateless), so the host may serve the request
// and the response phase with different instances: carry data between the
// phases with Value and SetValue, never with Go variables.
//
// Built for any other GOOS the package still compiles, so a plugin's logic
// runs under plain "go test" through package sdk/sdktest.
package sdk
