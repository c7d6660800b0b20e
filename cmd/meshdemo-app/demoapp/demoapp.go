// Package demoapp is the service logic of cmd/meshdemo-app, importable so
// end-to-end tests run the same apps in-process.
package demoapp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wasmgate/wasmgate/proxy/mesh"
)

// Options select the service an app plays.
type Options struct {
	// Service is orders, payments or notifications.
	Service string
	// Outbound is the sidecar's outbound address (host:port); required for
	// orders and notifications.
	Outbound string
	// IdentityHeader carries the verified caller identity. Default
	// X-Forwarded-Client-Cert.
	IdentityHeader string
	// Client makes the outbound calls. Default a client with a 10s timeout.
	Client *http.Client
}

// New returns the app's handler.
func New(o Options) (http.Handler, error) {
	switch o.Service {
	case "orders", "notifications":
		if o.Outbound == "" {
			return nil, fmt.Errorf("demoapp: outbound is required for %s", o.Service)
		}
	case "payments":
	default:
		return nil, fmt.Errorf("demoapp: service must be orders, payments or notifications, got %q", o.Service)
	}
	if o.IdentityHeader == "" {
		o.IdentityHeader = mesh.XFCCHeader
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	a := &app{service: o.Service, outbound: o.Outbound, idHeader: o.IdentityHeader, client: o.Client}
	return a.routes(), nil
}

// Hop is what one service reports about the request it received.
type Hop struct {
	// Service is the service that received the request.
	Service string `json:"service"`
	// VerifiedCaller is the caller's SPIFFE ID as the service's sidecar
	// verified it ("" when the call carried no verified identity).
	VerifiedCaller string `json:"verified_caller"`
	// TraceID is the W3C trace id of the request the service received.
	TraceID string `json:"trace_id"`
}

// Answer is every service's JSON response.
type Answer struct {
	// Service is the service that answers.
	Service string `json:"service"`
	// Hops lists this hop, then the hops of the downstream call.
	Hops []Hop `json:"hops"`
	// Result is the service's own outcome.
	Result string `json:"result"`
	// DownstreamStatus and Downstream are the next hop's status and body.
	DownstreamStatus int             `json:"downstream_status,omitempty"`
	Downstream       json.RawMessage `json:"downstream,omitempty"`
}

type app struct {
	service  string
	outbound string
	idHeader string
	client   *http.Client
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	switch a.service {
	case "orders":
		mux.HandleFunc("GET /checkout", a.callPayments)
	case "notifications":
		mux.HandleFunc("GET /charge", a.callPayments)
	case "payments":
		mux.HandleFunc("POST /charge", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, Answer{Service: a.service, Hops: []Hop{a.hop(r)}, Result: "charged"})
		})
	}
	return mux
}

// hop describes the request this service received.
func (a *app) hop(r *http.Request) Hop {
	return Hop{
		Service:        a.service,
		VerifiedCaller: mesh.PeerIDFromHeader(r.Header.Get(a.idHeader)),
		TraceID:        traceID(r.Header.Get("traceparent")),
	}
}

// callPayments calls payments through the sidecar's outbound and reports
// both hops; the answer's status is payments' status.
func (a *app) callPayments(w http.ResponseWriter, r *http.Request) {
	me := a.hop(r)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://"+a.outbound+"/charge", strings.NewReader(`{"amount":42}`))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, Answer{Service: a.service, Hops: []Hop{me}, Result: err.Error()})
		return
	}
	req.Host = "payments"
	req.Header.Set("Content-Type", "application/json")
	// Propagate the trace context, as an instrumented app does.
	if tp := r.Header.Get("traceparent"); tp != "" {
		req.Header.Set("traceparent", tp)
	}
	if ts := r.Header.Get("tracestate"); ts != "" {
		req.Header.Set("tracestate", ts)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, Answer{Service: a.service, Hops: []Hop{me}, Result: "payments unreachable: " + err.Error()})
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadGateway, Answer{Service: a.service, Hops: []Hop{me}, Result: "reading payments: " + err.Error()})
		return
	}
	ans := Answer{Service: a.service, Hops: []Hop{me}, DownstreamStatus: resp.StatusCode}
	var down Answer
	if json.Unmarshal(body, &down) == nil && len(down.Hops) > 0 {
		ans.Hops = append(ans.Hops, down.Hops...)
	}
	if json.Valid(body) {
		ans.Downstream = body
	} else {
		ans.Downstream, _ = json.Marshal(string(body))
	}
	switch {
	case resp.StatusCode == http.StatusOK && a.service == "orders":
		ans.Result = "order placed"
	case resp.StatusCode == http.StatusOK:
		ans.Result = "payments answered"
	default:
		ans.Result = fmt.Sprintf("payments refused: %d", resp.StatusCode)
	}
	writeJSON(w, resp.StatusCode, ans)
}

// traceID returns the trace id of a traceparent header (version-traceid-spanid-flags).
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
