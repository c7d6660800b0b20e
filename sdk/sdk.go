package sdk

import (
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

// Action is what a request handler tells the host to do next.
type Action int

const (
	// Continue passes the request on to the next filter and the upstream.
	Continue Action = iota
	// Stop ends the request here; the response written to Response (for
	// example with Respond) is sent to the client.
	Stop
)

// String returns "continue" or "stop".
func (a Action) String() string {
	if a == Stop {
		return "stop"
	}
	return "continue"
}

// Handler handles the request phase. Implement ResponseHandler as well to
// see the response, and Configurer to check the config at load.
type Handler interface {
	// OnRequest may read and modify req, answer locally through resp and
	// return Stop, or return Continue.
	OnRequest(req Request, resp Response) Action
}

// ResponseHandler is a Handler that also hooks the response phase. The host
// calls OnResponse for every request whose OnRequest returned Continue,
// also when the upstream failed (resp.IsError).
type ResponseHandler interface {
	Handler
	// OnResponse may read and modify the response status, headers and (with
	// FeatureBufferResponse enabled) body.
	OnResponse(req Request, resp Response)
}

// Configurer is a Handler with a config check. Configure runs once per
// instance when the plugin is loaded, after Handle; read the config with
// Config. A non-nil error refuses the config: the proxy keeps the previous
// configuration and reports the message.
type Configurer interface {
	Configure() error
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(req Request, resp Response) Action

// OnRequest calls f.
func (f HandlerFunc) OnRequest(req Request, resp Response) Action { return f(req, resp) }

// HandleFunc registers f as the plugin's request handler; see Handle.
func HandleFunc(f func(req Request, resp Response) Action) { Handle(HandlerFunc(f)) }

// Handle registers h as the plugin's handler. Call it once, from init. If
// h implements Configurer its Configure method runs right away when a host
// is present (at load in the proxy; sdktest runs it per test).
func Handle(h Handler) {
	p := &hostabi.Plugin{
		Request: func() bool {
			return h.OnRequest(Request{}, Response{}) == Continue
		},
		Response: func(bool) {},
	}
	rh, canRespond := h.(ResponseHandler)
	if canRespond {
		p.WantsResponse = true
		p.Response = func(isError bool) {
			rh.OnResponse(Request{}, Response{isError: isError})
		}
	}
	p.Configure = func() error {
		configured = false
		p.WantsResponse = canRespond // DeclareRequestOnly may clear it again
		if c, ok := h.(Configurer); ok {
			if err := c.Configure(); err != nil {
				return err
			}
		}
		configured = true
		return nil
	}
	hostabi.Register(p)
	if host, _ := hostabi.Current(); host != nil {
		configure(host, p)
	}
}

// configured is false until the registered plugin accepted its config.
var configured bool

// configure runs the config check and reports a refusal to the host.
func configure(host hostabi.Host, p *hostabi.Plugin) {
	host.DeclareStateless()
	err := p.Configure()
	if !p.WantsResponse {
		host.DeclareRequestOnly()
	}
	if err != nil {
		host.ConfigError(err.Error())
	}
}

// DeclareRequestOnly tells the host, from Configure, that with this config
// the plugin has nothing to do in the response phase although it
// implements OnResponse: the host then skips OnResponse, one guest call
// less per request. It holds until the next Configure.
func DeclareRequestOnly() {
	if p := hostabi.Registered(); p != nil {
		p.WantsResponse = false
	}
}

// handleRequest runs the request phase for the host glue: it reports
// whether to continue to the next handler.
func handleRequest(host hostabi.Host) bool {
	p := hostabi.Registered()
	switch {
	case p == nil:
		host.Log(int32(LevelError), "sdk: no handler registered; call sdk.Handle from init")
		failResponse(host)
		return false
	case !configured:
		failResponse(host)
		return false
	}
	return p.Request()
}

// handleResponse runs the response phase for the host glue.
func handleResponse(isError bool) {
	if p := hostabi.Registered(); p != nil && configured {
		p.Response(isError)
	}
}

// failResponse answers 500 when the plugin cannot handle requests.
func failResponse(host hostabi.Host) {
	host.SetStatusCode(500)
	host.SetHeader(headerKindResponse, "Content-Type", "text/plain; charset=utf-8")
	host.WriteBody(bodyKindResponse, []byte("plugin not configured\n"))
}
