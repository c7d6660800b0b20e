package demoapp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestOrdersCallsPayments(t *testing.T) {
	pay, err := New(Options{Service: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	var sawHost, sawTrace string
	outbound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawHost, sawTrace = r.Host, r.Header.Get("traceparent")
		// Play the payments sidecar: it verified orders.
		r.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://td/ns/default/sa/payments;URI=spiffe://td/ns/default/sa/orders")
		pay.ServeHTTP(w, r)
	}))
	defer outbound.Close()
	orders, err := New(Options{Service: "orders", Outbound: strings.TrimPrefix(outbound.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(orders)
	defer front.Close()
	req, _ := http.NewRequest(http.MethodGet, front.URL+"/checkout", nil)
	req.Header.Set("traceparent", tp)
	req.Header.Set("X-Forwarded-Client-Cert", "URI=spiffe://td/ns/default/sa/edge")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || sawHost != "payments" || sawTrace != tp || a.Result != "order placed" {
		t.Fatalf("status %d host %q trace %q answer %+v", resp.StatusCode, sawHost, sawTrace, a)
	}
	want := []Hop{
		{Service: "orders", VerifiedCaller: "spiffe://td/ns/default/sa/edge", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{Service: "payments", VerifiedCaller: "spiffe://td/ns/default/sa/orders", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
	}
	if len(a.Hops) != 2 || a.Hops[0] != want[0] || a.Hops[1] != want[1] {
		t.Fatalf("hops %+v, want %+v", a.Hops, want)
	}
}

func TestNotificationsPassesRefusal(t *testing.T) {
	outbound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"status":403,"error":"denied"}`))
	}))
	defer outbound.Close()
	h, err := New(Options{Service: "notifications", Outbound: strings.TrimPrefix(outbound.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/charge", nil))
	var a Answer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusForbidden || a.DownstreamStatus != 403 || !strings.Contains(string(a.Downstream), "denied") {
		t.Fatalf("status %d answer %+v", rec.Code, a)
	}
	if _, err := New(Options{Service: "orders"}); err == nil {
		t.Fatal("orders without outbound accepted")
	}
}
