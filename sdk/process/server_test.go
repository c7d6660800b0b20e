//go:build !wasip1

package process

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/wasmgate/wasmgate/abi/pluginpb"
	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

var hits = sdk.NewCounter("test_hits_total", "test")

// handler acts on the request path so each case exercises one hook.
type handler struct{}

func (handler) Configure() error {
	var c struct{ OK bool }
	if err := sdk.Config(&c); err != nil {
		return err
	}
	if !c.OK {
		return errTest
	}
	return nil
}

type testErr string

func (e testErr) Error() string { return string(e) }

const errTest = testErr("config says no")

func (handler) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	hits.Inc()
	switch req.Path() {
	case "/headers":
		req.Header().Set("x-new", "1")
		req.Header().Add("X-Multi", "b")
		req.Header().Del("x-gone")
		req.Header().Set("Host", "other.example")
		sdk.SetValue("k", "v:"+req.Header().Get("x-in"))
		v, _ := sdk.Property(sdk.PropRoute)
		req.Header().Set("X-Route", v)
	case "/rewrite":
		req.SetMethod("PUT")
		req.SetPath("/new")
	case "/bad-method":
		req.SetMethod("BAD METHOD")
	case "/answer":
		resp.SetStatus(418)
		resp.SetBody([]byte("a"))
		resp.SetBody([]byte("b"))
		return sdk.Stop
	case "/body":
		b, err := req.Body()
		if err != nil {
			return sdk.RespondError(resp, 500, err.Error())
		}
		return sdk.Respond(resp, 200, nil, append(b, '!'))
	case "/panic":
		panic("boom")
	}
	return sdk.Continue
}

func (handler) OnResponse(req sdk.Request, resp sdk.Response) {
	if req.Path() == "/late-method" {
		req.SetMethod("POST")
		return
	}
	v, _ := sdk.Value("k")
	resp.Header().Set("X-Seen", v)
}

func init() { sdk.Handle(handler{}) }

// fakeHost is the proxy's Host service in-process.
type fakeHost struct {
	body    []byte
	defined []string
	records []float64
}

func (f *fakeHost) ReadBody(_ context.Context, in *pluginpb.BodyRequest, _ ...grpc.CallOption) (*pluginpb.BodyResponse, error) {
	return &pluginpb.BodyResponse{Body: f.body}, nil
}
func (f *fakeHost) CounterIncr(context.Context, *pluginpb.CounterRequest, ...grpc.CallOption) (*pluginpb.CounterResponse, error) {
	return &pluginpb.CounterResponse{Value: 1}, nil
}
func (f *fakeHost) KVGet(context.Context, *pluginpb.KVRequest, ...grpc.CallOption) (*pluginpb.KVResponse, error) {
	return &pluginpb.KVResponse{}, nil
}
func (f *fakeHost) KVSet(context.Context, *pluginpb.KVRequest, ...grpc.CallOption) (*pluginpb.StatusResponse, error) {
	return &pluginpb.StatusResponse{}, nil
}
func (f *fakeHost) KVDelete(context.Context, *pluginpb.KVRequest, ...grpc.CallOption) (*pluginpb.StatusResponse, error) {
	return &pluginpb.StatusResponse{}, nil
}
func (f *fakeHost) Log(context.Context, *pluginpb.LogRequest, ...grpc.CallOption) (*pluginpb.Empty, error) {
	return &pluginpb.Empty{}, nil
}
func (f *fakeHost) MetricDefine(_ context.Context, in *pluginpb.MetricDefineRequest, _ ...grpc.CallOption) (*pluginpb.MetricDefineResponse, error) {
	f.defined = append(f.defined, in.Name)
	return &pluginpb.MetricDefineResponse{Id: int32(len(f.defined) - 1)}, nil
}
func (f *fakeHost) MetricRecord(_ context.Context, in *pluginpb.MetricRecordRequest, _ ...grpc.CallOption) (*pluginpb.Empty, error) {
	f.records = append(f.records, in.Value)
	return &pluginpb.Empty{}, nil
}

func newTestServer(t *testing.T, cfg string) (*server, *fakeHost, *pluginpb.ConfigureResponse) {
	t.Helper()
	fh := &fakeHost{body: []byte("payload")}
	s := newServer(hostabi.Registered(), nil)
	s.host = fh
	res, err := s.Configure(context.Background(), &pluginpb.ConfigureRequest{Config: []byte(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	return s, fh, res
}

func TestConfigure(t *testing.T) {
	_, _, res := newTestServer(t, `{"OK":true}`)
	if res.Error != "" || !res.WantsResponse {
		t.Errorf("accepted config: %+v", res)
	}
	s, _, res := newTestServer(t, `{"OK":false}`)
	if res.Error != "config says no" {
		t.Errorf("refusal: %q", res.Error)
	}
	if _, err := s.HandleRequest(context.Background(), &pluginpb.Exchange{Method: "GET", Uri: "/"}); err == nil {
		t.Error("unconfigured plugin handled a request")
	}
	_, _, res = newTestServer(t, `{"Unknown":1}`)
	if !strings.Contains(res.Error, "unknown field") {
		t.Errorf("unknown field: %q", res.Error)
	}
}

func header(hs []*pluginpb.Header, name string) []string {
	for _, h := range hs {
		if h.Name == name {
			return h.Values
		}
	}
	return nil
}

func TestPhases(t *testing.T) {
	s, fh, _ := newTestServer(t, `{"OK":true}`)
	ctx := context.Background()
	req := func(uri string) *pluginpb.Exchange {
		return &pluginpb.Exchange{
			Method: "GET", Uri: uri, Host: "example.com", Status: 200,
			RequestHeaders: []*pluginpb.Header{{Name: "X-In", Values: []string{"in"}}, {Name: "X-Gone", Values: []string{"x"}}, {Name: "X-Multi", Values: []string{"a"}}},
			Properties:     map[string]string{"route": "r1"},
		}
	}
	tests := []struct {
		name      string
		uri       string
		response  bool
		violation string
		check     func(t *testing.T, r *pluginpb.Result)
	}{
		{"headers, host, values, properties", "/headers", false, "", func(t *testing.T, r *pluginpb.Result) {
			if !r.Next || !r.RequestHeadersSet || !r.HostSet || r.Host != "other.example" {
				t.Fatalf("result %+v", r)
			}
			if v := header(r.RequestHeaders, "X-New"); len(v) != 1 || v[0] != "1" {
				t.Errorf("X-New %v", v)
			}
			if v := header(r.RequestHeaders, "X-Multi"); len(v) != 2 {
				t.Errorf("X-Multi %v", v)
			}
			if header(r.RequestHeaders, "X-Gone") != nil {
				t.Error("X-Gone kept")
			}
			if v := header(r.RequestHeaders, "X-Route"); len(v) != 1 || v[0] != "r1" {
				t.Errorf("X-Route %v", v)
			}
			if r.Values["k"] != "v:in" {
				t.Errorf("values %v", r.Values)
			}
			if len(r.Metrics) != 1 || r.Metrics[0].Value != 1 {
				t.Errorf("metric records %v", r.Metrics)
			}
		}},
		{"rewrite keeps nothing else", "/rewrite?q=1", false, "", func(t *testing.T, r *pluginpb.Result) {
			if !r.MethodSet || r.Method != "PUT" || !r.UriSet || r.Uri != "/new?q=1" || r.RequestHeadersSet {
				t.Errorf("result %+v", r)
			}
		}},
		{"local answer, writes append", "/answer", false, "", func(t *testing.T, r *pluginpb.Result) {
			if r.Next || r.Status != 418 || string(r.ResponseBody) != "ab" || !r.ResponseBodySet {
				t.Errorf("result %+v", r)
			}
		}},
		{"body from the host", "/body", false, "", func(t *testing.T, r *pluginpb.Result) {
			if string(r.ResponseBody) != "payload!" {
				t.Errorf("body %q", r.ResponseBody)
			}
		}},
		{"invalid method", "/bad-method", false, "invalid method", nil},
		{"panic becomes a violation", "/panic", false, "panic: boom", nil},
		{"request change in the response phase", "/late-method", true, "set_method outside handle_request", nil},
		{"response phase sees values", "/x", true, "", func(t *testing.T, r *pluginpb.Result) {
			if v := header(r.ResponseHeaders, "X-Seen"); len(v) != 1 || v[0] != "from-request" {
				t.Errorf("X-Seen %v", v)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := req(tc.uri)
			var r *pluginpb.Result
			var err error
			if tc.response {
				x.Values = map[string]string{"k": "from-request"}
				r, err = s.HandleResponse(ctx, x)
			} else {
				r, err = s.HandleRequest(ctx, x)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.Violation, tc.violation) || (tc.violation == "") != (r.Violation == "") {
				t.Fatalf("violation %q, want %q", r.Violation, tc.violation)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	// The counter was defined once and its records rode on the results.
	if len(fh.defined) != 1 || fh.defined[0] != "test_hits_total" {
		t.Errorf("metric definitions %v", fh.defined)
	}
}
