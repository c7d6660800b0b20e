// Command deny-path is a wasmgate plugin that answers 403 with a JSON error
// for requests whose path starts with one of the configured prefixes.
package main

import (
	"errors"
	"strings"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&denyPath{}) }

type config struct {
	// Prefixes are the denied path prefixes, e.g. "/admin".
	Prefixes []string `json:"prefixes"`
	// Status is the answer's status code. Default 403.
	Status int `json:"status"`
	// Message is the JSON error message. Default "forbidden".
	Message string `json:"message"`
}

type denyPath struct{ cfg config }

// Configure checks the config and fills defaults.
func (p *denyPath) Configure() error {
	p.cfg = config{Status: 403, Message: "forbidden"}
	if err := sdk.Config(&p.cfg); err != nil {
		return err
	}
	if len(p.cfg.Prefixes) == 0 {
		return errors.New("deny-path: prefixes must not be empty")
	}
	for _, pre := range p.cfg.Prefixes {
		if !strings.HasPrefix(pre, "/") {
			return errors.New("deny-path: prefix " + pre + " must start with /")
		}
	}
	if p.cfg.Status < 400 || p.cfg.Status > 599 {
		return errors.New("deny-path: status must be 4xx or 5xx")
	}
	return nil
}

// OnRequest denies matching paths. A prefix matches whole segments:
// "/admin" denies /admin and /admin/x but not /administrator.
func (p *denyPath) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	path := req.Path()
	for _, pre := range p.cfg.Prefixes {
		rest, ok := strings.CutPrefix(path, pre)
		if ok && (rest == "" || rest[0] == '/' || strings.HasSuffix(pre, "/")) {
			sdk.Logf(sdk.LevelInfo, "deny-path: denied %s %s", req.Method(), path)
			return sdk.RespondJSON(resp, p.cfg.Status, map[string]string{
				"error": p.cfg.Message,
				"path":  path,
			})
		}
	}
	return sdk.Continue
}
