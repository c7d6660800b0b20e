// Command guardv2 is version 2 of a test plugin for hot reload tests: it
// denies the configured path with 403 and says which version answered.
package main

import "github.com/wasmgate/wasmgate/sdk"

func main() {}

func init() { sdk.Handle(&guard{}) }

type guard struct {
	cfg struct {
		Deny string `json:"deny"`
	}
}

func (g *guard) Configure() error { return sdk.Config(&g.cfg) }

func (g *guard) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	if req.Path() == g.cfg.Deny {
		return sdk.RespondJSON(resp, 403, map[string]string{"error": "denied", "version": "v2"})
	}
	req.Header().Set("X-Guard", "v2")
	return sdk.Continue
}
