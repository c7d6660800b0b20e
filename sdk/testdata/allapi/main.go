// Command allapi is a test guest that calls every SDK function, so its
// module imports every host function of both ABI modules. It doubles as a
// conformance guest for the host: it reports what it saw in request
// headers (X-Seen-*) and response headers (X-Resp-*).
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o allapi.wasm ./sdk/testdata/allapi
package main

import (
	"strconv"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&allAPI{}) }

var (
	calls    = sdk.NewCounter("allapi_calls_total", "Requests seen.")
	lastBody = sdk.NewGauge("allapi_last_body_bytes", "Size of the last request body.")
	sizes    = sdk.NewHistogram("allapi_body_bytes", "Request body sizes.")
)

type allAPI struct {
	cfg struct {
		Deny   string `json:"deny"`
		Reject bool   `json:"reject"`
	}
}

func (p *allAPI) Configure() error {
	if err := sdk.Config(&p.cfg); err != nil {
		return err
	}
	if p.cfg.Reject {
		return errReject{}
	}
	sdk.EnableFeatures(sdk.FeatureBufferResponse)
	_ = sdk.ConfigBytes()
	return nil
}

type errReject struct{}

func (errReject) Error() string { return "allapi: config says reject" }

func (p *allAPI) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	calls.Inc()
	h := req.Header()
	if p.cfg.Deny != "" && req.Path() == p.cfg.Deny {
		return sdk.RespondError(resp, 403, "denied by allapi")
	}
	body, err := req.Body()
	if err != nil {
		return sdk.Respond(resp, 500, map[string]string{"Content-Type": "text/plain"}, []byte(err.Error()))
	}
	lastBody.Set(float64(len(body)))
	sizes.Observe(float64(len(body)))
	h.Set("X-Seen-Method", req.Method())
	h.Set("X-Seen-URI", req.URI())
	h.Set("X-Seen-Query", req.Query().Encode())
	h.Set("X-Seen-Protocol", req.Protocol())
	h.Set("X-Seen-Source", req.SourceAddr())
	h.Set("X-Seen-Names", strconv.Itoa(len(h.Names())))
	h.Set("X-Seen-Body-Len", strconv.Itoa(len(body)))
	h.Add("X-Seen-Values", strconv.Itoa(len(h.Values("X-Multi"))))
	h.Del("X-Remove-Me")
	if id, ok := sdk.Property(sdk.PropPeerID); ok {
		h.Set("X-Seen-Peer", id)
	}
	ip, _ := sdk.Property(sdk.PropClientIP)
	n, ttl, err := sdk.CounterIncr("allapi:"+ip, 1, time.Minute)
	if err != nil {
		sdk.Logf(sdk.LevelError, "counter: %v", err)
	}
	h.Set("X-Seen-Count", strconv.FormatInt(n, 10))
	h.Set("X-Seen-TTL-Positive", strconv.FormatBool(ttl > 0))
	if err := sdk.KVSet("allapi:last", []byte(req.URI()), time.Minute); err != nil {
		sdk.Log(sdk.LevelError, "kv_set: "+err.Error())
	}
	last, found, _ := sdk.KVGet("allapi:last")
	h.Set("X-Seen-KV", strconv.FormatBool(found && string(last) == req.URI()))
	_ = sdk.KVDelete("allapi:gone")
	sigErr := sdk.VerifySignature("HS256", []byte("secret"), []byte("data"), []byte("sig"))
	h.Set("X-Seen-Sig-Invalid", strconv.FormatBool(sigErr == sdk.ErrInvalidSignature))
	if sdk.LogEnabled(sdk.LevelDebug) {
		sdk.Log(sdk.LevelDebug, "allapi: request "+req.URI())
	}
	req.Trailer().Get("X-Trailer")
	sdk.SetValue("uri", req.URI())
	if req.Method() == "PATCH" {
		req.SetMethod("POST")
	}
	if len(body) > 0 {
		req.SetBody(append(body, "+allapi"...))
	}
	if p := req.Path(); p == "/rewrite" {
		req.SetPath("/rewritten")
		req.SetURI(req.URI())
	}
	return sdk.Continue
}

func (p *allAPI) OnResponse(req sdk.Request, resp sdk.Response) {
	uri, _ := sdk.Value("uri")
	resp.Header().Set("X-Resp-URI", uri)
	resp.Header().Set("X-Resp-Error", strconv.FormatBool(resp.IsError()))
	resp.Header().Set("X-Resp-Status", strconv.Itoa(resp.Status()))
	_ = resp.Trailer().Names()
	if body, err := resp.Body(); err == nil {
		resp.SetBody(append(body, "+resp"...))
	}
	if resp.Status() == 200 {
		resp.SetStatus(203)
	}
}
