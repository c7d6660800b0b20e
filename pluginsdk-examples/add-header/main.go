// Command add-header is a wasmgate plugin that sets a request header (and
// optionally a response header) from its config.
package main

import (
	"errors"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&addHeader{}) }

// config is the plugin's config.
type config struct {
	// Request headers to set on the way upstream.
	Request map[string]string `json:"request"`
	// Response headers to set on the way back.
	Response map[string]string `json:"response"`
}

type addHeader struct{ cfg config }

// Configure checks the config once at load.
func (p *addHeader) Configure() error {
	p.cfg = config{}
	if err := sdk.Config(&p.cfg); err != nil {
		return err
	}
	if len(p.cfg.Request)+len(p.cfg.Response) == 0 {
		return errors.New("add-header: set at least one header in request or response")
	}
	if len(p.cfg.Response) == 0 {
		sdk.DeclareRequestOnly() // no response headers: skip the response call
	}
	return nil
}

// OnRequest sets the request headers.
func (p *addHeader) OnRequest(req sdk.Request, _ sdk.Response) sdk.Action {
	for k, v := range p.cfg.Request {
		req.Header().Set(k, v)
	}
	return sdk.Continue
}

// OnResponse sets the response headers.
func (p *addHeader) OnResponse(_ sdk.Request, resp sdk.Response) {
	for k, v := range p.cfg.Response {
		resp.Header().Set(k, v)
	}
}
