// Command probe is a test process plugin that touches every hook: request
// properties and values, headers, URI, local answers with a body read from
// the request, the response phase, counters, key/values, metrics and logs.
// It exits on demand (path /crash) so restarts can be tested.
package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/process"
)

type probe struct{ cfg struct{ Tag string } }

var hits = sdk.NewCounter("probe_hits_total", "Requests the probe saw.")

func init() { sdk.Handle(&probe{}) }

func main() { process.Serve() }

func (p *probe) Configure() error {
	if err := sdk.Config(&p.cfg); err != nil {
		return err
	}
	if p.cfg.Tag == "" {
		return errors.New("probe: tag is required")
	}
	return nil
}

func (p *probe) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	hits.Inc()
	h := req.Header()
	h.Set("X-Probe", p.cfg.Tag)
	route, _ := sdk.Property(sdk.PropRoute)
	h.Set("X-Route", route)
	if v, ok := sdk.Value("in"); ok {
		h.Set("X-In", v)
	}
	sdk.SetValue("probe.method", req.Method())
	h.Del("X-Remove-Me")
	sdk.Log(sdk.LevelInfo, "probe saw "+req.Path())
	switch req.Path() {
	case "/crash":
		os.Exit(3)
	case "/sleep":
		time.Sleep(2 * time.Second)
	case "/echo":
		b, err := req.Body()
		if err != nil {
			return sdk.RespondError(resp, 500, err.Error())
		}
		return sdk.Respond(resp, 201, map[string]string{"X-Echo": "1"}, []byte(strings.ToUpper(string(b))))
	case "/count":
		n, _, err := sdk.CounterIncr("c", 1, time.Minute)
		if err != nil {
			return sdk.RespondError(resp, 500, err.Error())
		}
		if err := sdk.KVSet("last", []byte(strconv.FormatInt(n, 10)), 0); err != nil {
			return sdk.RespondError(resp, 500, err.Error())
		}
		v, _, _ := sdk.KVGet("last")
		return sdk.Respond(resp, 200, nil, v)
	case "/rewrite":
		req.SetMethod("POST")
		req.SetURI("/rewritten?x=1")
		req.SetBody([]byte("new body"))
	}
	return sdk.Continue
}

func (p *probe) OnResponse(_ sdk.Request, resp sdk.Response) {
	m, _ := sdk.Value("probe.method")
	resp.Header().Set("X-Probe-Method", m)
	if resp.IsError() {
		resp.Header().Set("X-Probe-Error", "1")
		return
	}
	if resp.Header().Get("X-Upper") != "" {
		b, _ := resp.Body()
		resp.SetBody([]byte(strings.ToUpper(string(b))))
	}
	resp.SetStatus(resp.Status() + 1)
}
