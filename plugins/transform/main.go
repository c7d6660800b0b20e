// Command transform is the wasmgate plugin that rewrites requests and
// responses: headers (set/add/remove/rename), the path (regex with
// captures), query parameters, JSON bodies by dot path, and status codes.
// Values may use templates such as ${consumer}, ${jwt.sub}, ${request_id},
// ${property.client_ip} and ${header.User-Agent}. Bodies that are not JSON
// or exceed max_body_bytes pass unchanged with a log line. See
// docs/plugins-reference.md.
package main

import (
	"strconv"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&plugin{}) }

var skippedTotal = sdk.NewCounter("transform_body_skipped_total", "Bodies left unchanged because they were not JSON, too large or not editable.")

type plugin struct{ p *program }

// Configure compiles the config; a bad config is refused with its reasons.
func (pl *plugin) Configure() error {
	p, err := parseConfig(sdk.ConfigBytes())
	if err != nil {
		return err
	}
	pl.p = p
	if p.needsResponseBody() {
		sdk.EnableFeatures(sdk.FeatureBufferResponse)
	}
	return nil
}

func newLookup(req sdk.Request) *lookup {
	h := req.Header()
	return &lookup{
		value:    sdk.Value,
		property: sdk.Property,
		header: func(name string) (string, bool) {
			v := h.Values(name)
			if len(v) == 0 {
				return "", false
			}
			return v[0], true
		},
	}
}

// OnRequest edits the request.
func (pl *plugin) OnRequest(req sdk.Request, _ sdk.Response) sdk.Action {
	p := pl.p
	l := newLookup(req)
	if p.needsRequestBody() {
		// Read the body before headers change (Content-Type may be renamed).
		if body, ok := readJSONBody(req.Header(), p.maxBody, "request", req.Body); ok {
			out, changed, err := editBody(p.reqBody, body, l)
			switch {
			case err != nil:
				skip("request", err.Error())
			case changed:
				req.SetBody(out)
			}
		}
	}
	applyHeaders(p.reqHeaders, req.Header(), l)
	if uri, changed := p.rewriteURI(req.URI(), l); changed {
		req.SetURI(uri)
	}
	return sdk.Continue
}

// OnResponse edits the response.
func (pl *plugin) OnResponse(req sdk.Request, resp sdk.Response) {
	p := pl.p
	if !p.hasResponseWork() {
		return
	}
	if to, ok := p.mapStatus(resp.Status()); ok {
		resp.SetStatus(to)
	}
	l := newLookup(req)
	if p.needsResponseBody() && !resp.IsError() {
		if body, ok := readJSONBody(resp.Header(), p.maxBody, "response", resp.Body); ok {
			out, changed, err := editBody(p.respBody, body, l)
			switch {
			case err != nil:
				skip("response", err.Error())
			case changed:
				resp.SetBody(out)
			}
		}
	}
	applyHeaders(p.respHeaders, resp.Header(), l)
}

// readJSONBody reads a body that claims to be JSON and is within max. It
// logs and returns false for anything else.
func readJSONBody(h sdk.Header, max int, which string, read func() ([]byte, error)) ([]byte, bool) {
	ct := h.Get("Content-Type")
	if !isJSON(ct) {
		if ct != "" {
			skip(which, "content type "+strconv.Quote(ct)+" is not JSON")
		}
		return nil, false
	}
	if cl, err := strconv.Atoi(h.Get("Content-Length")); err == nil && cl > max {
		skip(which, "body of "+strconv.Itoa(cl)+" bytes is over max_body_bytes")
		return nil, false
	}
	body, err := read()
	if err != nil {
		skip(which, err.Error())
		return nil, false
	}
	if len(body) > max {
		skip(which, "body of "+strconv.Itoa(len(body))+" bytes is over max_body_bytes")
		return nil, false
	}
	if len(body) == 0 {
		return nil, false
	}
	return body, true
}

func skip(which, why string) {
	skippedTotal.Inc()
	sdk.Log(sdk.LevelInfo, "transform: "+which+" body passed unchanged: "+why)
}
