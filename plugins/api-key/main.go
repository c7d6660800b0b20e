// Command api-key is the wasmgate plugin that authenticates requests with
// API keys. Keys live in the config only as SHA-256 hashes (`wasmgate
// hash-key` prints them); a presented key is hashed and compared with every
// configured hash in constant time. The consumer (and tier) of the key are
// forwarded as headers and kept as per-request values "consumer" and
// "tier" for rate-limit, authz and transform. See docs/plugins-reference.md.
package main

import (
	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&plugin{}) }

var deniedTotal = sdk.NewCounter("api_key_denied_total", "Requests refused by api-key (missing or unknown key).")

type plugin struct{ k *keyring }

// Configure compiles the config; a bad config is refused with its reasons.
func (p *plugin) Configure() error {
	k, err := parseConfig(sdk.ConfigBytes())
	if err != nil {
		return err
	}
	p.k = k
	return nil
}

// OnRequest checks the key and tags the request with its consumer.
func (p *plugin) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	k := p.k
	h := req.Header()
	// The consumer headers are ours alone: drop what the client sent.
	if k.consumerHeader != "" {
		h.Del(k.consumerHeader)
	}
	if k.tierHeader != "" {
		h.Del(k.tierHeader)
	}
	key, from := k.extract(h.Get, req.RawQuery)
	if key == "" {
		if k.optional {
			return sdk.Continue
		}
		return deny(resp, "missing API key")
	}
	e, ok := k.lookup(key)
	if !ok {
		return deny(resp, "invalid API key")
	}
	sdk.SetValue("consumer", e.consumer)
	if e.tier != "" {
		sdk.SetValue("tier", e.tier)
	}
	if k.consumerHeader != "" {
		h.Set(k.consumerHeader, e.consumer)
	}
	if k.tierHeader != "" && e.tier != "" {
		h.Set(k.tierHeader, e.tier)
	}
	if k.stripKey {
		switch from {
		case "header":
			h.Del(k.header)
		case "query":
			req.SetURI(sdk.RemoveQueryParam(req.URI(), k.query))
		}
	}
	return sdk.Continue
}

func deny(resp sdk.Response, reason string) sdk.Action {
	deniedTotal.Inc()
	resp.Header().Set("WWW-Authenticate", `APIKey realm="wasmgate"`)
	return sdk.RespondJSON(resp, 401, map[string]any{"status": 401, "error": "unauthorized", "reason": reason})
}
