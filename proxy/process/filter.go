package process

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/abi/pluginpb"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

// Filter is one process plugin on a chain.
type Filter struct {
	p *proc
}

var (
	_ filter.ResponseFilter = (*Filter)(nil)
	_ filter.Closer         = (*Filter)(nil)
)

// propertyNames are the request properties sent with every call.
var propertyNames = []string{
	abi.PropertyClientAddr, abi.PropertyClientIP, abi.PropertyPeerID, abi.PropertyPeerSubject,
	abi.PropertySNI, abi.PropertyRoute, abi.PropertyMode, abi.PropertyRequestID,
	abi.PropertyTraceID, abi.PropertyListener, abi.PropertyProtocol, abi.PropertyTLS,
}

// HandleRequest runs the plugin's request phase.
func (f *Filter) HandleRequest(ctx context.Context, x *filter.Exchange) (bool, error) {
	p := f.p
	r, err := f.running()
	if err != nil {
		return false, err
	}
	if r.features&uint32(abi.FeatureBufferRequest) != 0 {
		if _, err := x.RequestBody(); err != nil {
			return false, fmt.Errorf("process: plugin %q: buffer request body: %w", p.name, err)
		}
	}
	res, err := f.call(ctx, r, x, false)
	if err != nil {
		return false, err
	}
	if err := f.applyRequest(x, res); err != nil {
		return false, err
	}
	return res.Next, nil
}

// HandleResponse runs the plugin's response phase when it has one.
func (f *Filter) HandleResponse(ctx context.Context, x *filter.Exchange) error {
	p := f.p
	r, err := f.running()
	if err != nil {
		return err
	}
	if !r.wantsResponse {
		return nil
	}
	if x.Response == nil {
		x.Response = &filter.Response{StatusCode: http.StatusBadGateway, Header: make(http.Header)}
	}
	if r.features&uint32(abi.FeatureBufferResponse) != 0 && !x.IsError {
		if _, err := x.Response.BufferBody(bodyCap(x.BodyCap)); err != nil {
			return fmt.Errorf("process: plugin %q: buffer response body: %w", p.name, err)
		}
	}
	res, err := f.call(ctx, r, x, true)
	if err != nil {
		return err
	}
	f.applyResponse(x, res)
	return nil
}

// running returns the serving process, or ErrUnavailable (counted as a
// call and a failure) while it is down.
func (f *Filter) running() (*running, error) {
	p := f.p
	r := p.current()
	if r == nil {
		p.calls.Add(1)
		p.failures.Add(1)
		return nil, fmt.Errorf("process: plugin %q: %w", p.name, ErrUnavailable)
	}
	return r, nil
}

// call sends one phase to the plugin process r.
func (f *Filter) call(ctx context.Context, r *running, x *filter.Exchange, response bool) (*pluginpb.Result, error) {
	p := f.p
	p.calls.Add(1)
	id := p.svc.begin(x, response)
	defer p.svc.end(id)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	msg := exchangeMsg(x, id, r.features)
	res, err := r.streams.call(ctx, &pluginpb.Call{Exchange: msg, Response: response})
	if err != nil {
		p.failures.Add(1)
		if c := status.Code(err); c == codes.Unavailable || c == codes.Canceled {
			p.poke()
		}
		err = fmt.Errorf("process: plugin %q: %w", p.name, err)
		p.noteErr(err)
		return nil, err
	}
	if res.Violation != "" {
		p.failures.Add(1)
		err := fmt.Errorf("process: plugin %q: %s", p.name, res.Violation)
		p.noteErr(err)
		return nil, err
	}
	for _, m := range res.Metrics {
		p.svc.record(m.Id, m.Value)
	}
	return res, nil
}

func exchangeMsg(x *filter.Exchange, id uint64, features uint32) *pluginpb.Exchange {
	r := x.Request
	uri := "/"
	if r.URL != nil {
		if uri = r.URL.RequestURI(); uri == "" {
			uri = "/"
		}
	}
	proto := x.Props.Protocol
	if proto == "" {
		proto = r.Proto
	}
	src := x.Props.ClientAddr
	if src == "" {
		src = r.RemoteAddr
	}
	props := make(map[string]string, len(propertyNames))
	for _, n := range propertyNames {
		if v, ok := x.Props.Get(n); ok {
			props[n] = v
		}
	}
	m := &pluginpb.Exchange{
		CallId: id, Method: r.Method, Uri: uri, Protocol: proto, SourceAddr: src, Host: r.Host,
		RequestHeaders: toWire(r.Header), Properties: props, Values: x.Values,
		IsError: x.IsError, Features: features,
	}
	if x.Response != nil {
		m.Status = int32(x.Response.StatusCode)
		m.ResponseHeaders = toWire(x.Response.Header)
	}
	return m
}

func toWire(h http.Header) []*pluginpb.Header {
	if len(h) == 0 {
		return nil
	}
	out := make([]*pluginpb.Header, 0, len(h))
	for k, vs := range h {
		out = append(out, &pluginpb.Header{Name: k, Values: vs})
	}
	return out
}

// replaceHeader makes dst hold exactly src, keeping the map.
func replaceHeader(dst http.Header, src []*pluginpb.Header) {
	clear(dst)
	for _, e := range src {
		dst[e.Name] = e.Values
	}
}

func (f *Filter) applyRequest(x *filter.Exchange, res *pluginpb.Result) error {
	r := x.Request
	if res.UriSet {
		nu, err := url.ParseRequestURI(res.Uri)
		if err != nil || !strings.HasPrefix(res.Uri, "/") {
			return fmt.Errorf("process: plugin %q: invalid URI %q", f.p.name, res.Uri)
		}
		r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.URL.ForceQuery = nu.Path, nu.RawPath, nu.RawQuery, nu.ForceQuery
		r.RequestURI = res.Uri
	}
	if res.MethodSet {
		r.Method = res.Method
	}
	if res.HostSet {
		r.Host = res.Host
	}
	if res.RequestHeadersSet {
		replaceHeader(r.Header, res.RequestHeaders)
	}
	if res.RequestBodySet {
		x.SetRequestBody(res.RequestBody)
	}
	f.applyResponse(x, res)
	return nil
}

func (f *Filter) applyResponse(x *filter.Exchange, res *pluginpb.Result) {
	if res.Status != 0 {
		x.Response.StatusCode = int(res.Status)
	}
	if res.ResponseHeadersSet {
		if x.Response.Header == nil {
			x.Response.Header = make(http.Header)
		}
		replaceHeader(x.Response.Header, res.ResponseHeaders)
	}
	if res.ResponseBodySet {
		x.Response.SetBody(res.ResponseBody)
	}
	for k, v := range res.Values {
		x.SetValue(k, v)
	}
}

// Close stops the plugin process; the filter's snapshot is retired.
func (f *Filter) Close(context.Context) error {
	f.p.stop()
	f.p.h.forget(f.p)
	return nil
}

// PID returns the pid of the running process, 0 when it is down.
func (f *Filter) PID() int {
	if r := f.p.current(); r != nil {
		return r.pid
	}
	return 0
}
