// Command json-body is a wasmgate plugin that rewrites fields of a JSON
// request body: it sets configured top-level fields and removes others.
package main

import (
	"encoding/json"
	"errors"
	"mime"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&jsonBody{}) }

type config struct {
	// Set maps top-level field names to the JSON values they get.
	Set map[string]json.RawMessage `json:"set"`
	// Remove lists top-level fields to delete (e.g. client-supplied
	// "is_admin").
	Remove []string `json:"remove"`
}

type jsonBody struct{ cfg config }

// Configure checks the config.
func (p *jsonBody) Configure() error {
	p.cfg = config{}
	if err := sdk.Config(&p.cfg); err != nil {
		return err
	}
	if len(p.cfg.Set)+len(p.cfg.Remove) == 0 {
		return errors.New("json-body: nothing to do: set or remove fields")
	}
	return nil
}

// OnRequest rewrites JSON object bodies and rejects malformed JSON with 400.
// Other content types pass untouched.
func (p *jsonBody) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	mt, _, _ := mime.ParseMediaType(req.Header().Get("Content-Type"))
	if mt != "application/json" {
		return sdk.Continue
	}
	body, err := req.Body()
	if err != nil {
		sdk.Log(sdk.LevelError, "json-body: "+err.Error())
		return sdk.RespondError(resp, 500, "body unavailable")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return sdk.RespondError(resp, 400, "request body must be a JSON object")
	}
	for _, k := range p.cfg.Remove {
		delete(obj, k)
	}
	for k, v := range p.cfg.Set {
		obj[k] = v
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return sdk.RespondError(resp, 500, "encoding body")
	}
	req.SetBody(out)
	return sdk.Continue
}
