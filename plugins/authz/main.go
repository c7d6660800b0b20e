// Command authz is the wasmgate plugin that authorizes requests with
// ordered allow/deny rules over the principal (mTLS SPIFFE ID, JWT claims
// from jwt-auth, api-key consumer), method, path and headers. The first
// matching rule decides; no match means deny unless configured otherwise.
// In dry_run mode denials are logged and counted but let through. See
// docs/plugins-reference.md.
package main

import (
	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&plugin{}) }

// Only denials are counted: a metric is a host call, too dear for every
// allowed request (the proxy's filter metrics count those).
var (
	deniedTotal = sdk.NewCounter("authz_denied_total", "Requests denied by authz.")
	dryRunTotal = sdk.NewCounter("authz_dry_run_denied_total", "Requests authz would deny but let through (dry_run).")
)

type plugin struct{ p *policy }

// Configure compiles the rules; a bad config is refused with its reasons.
func (pl *plugin) Configure() error {
	p, err := parseConfig(sdk.ConfigBytes())
	if err != nil {
		return err
	}
	pl.p = p
	return nil
}

// OnRequest evaluates the rules.
func (pl *plugin) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	p := pl.p
	h := req.Header()
	path, ok := canonicalPath(req.URI())
	var d decision
	if !ok {
		d = decision{reason: "malformed path"}
	} else {
		peer, _ := sdk.Property(sdk.PropPeerID)
		d = p.evaluate(&request{
			method: req.Method(),
			path:   path,
			peerID: peer,
			header: func(name string) (string, bool) {
				v := h.Values(name)
				if len(v) == 0 {
					return "", false
				}
				return v[0], true
			},
			value: sdk.Value,
		})
	}
	if d.allow {
		return sdk.Continue
	}
	if p.dryRun {
		dryRunTotal.Inc()
		sdk.Logf(sdk.LevelInfo, "authz dry-run: would deny %s %s: %s", req.Method(), path, d.reason)
		return sdk.Continue
	}
	deniedTotal.Inc()
	if sdk.LogEnabled(sdk.LevelDebug) {
		sdk.Logf(sdk.LevelDebug, "authz: deny %s %s: %s", req.Method(), path, d.reason)
	}
	body := map[string]any{"status": p.status, "error": "forbidden", "reason": d.reason}
	if d.rule != "" {
		body["rule"] = d.rule
	}
	return sdk.RespondJSON(resp, p.status, body)
}
