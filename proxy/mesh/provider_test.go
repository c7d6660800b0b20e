package mesh

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

func TestProvider(t *testing.T) {
	f := newFixture(t, "orders")
	base := filepath.Dir(f.dirs["orders"])
	p := NewProvider(nil, base)
	defer func() {
		if err := p.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()

	if c, err := p.UpstreamTLS(config.Cluster{Name: "plain"}); c != nil || err != nil {
		t.Fatalf("non-mesh cluster: %v, %v; want nil, nil", c, err)
	}
	mcl := config.Cluster{Name: "pay", TLS: &config.UpstreamTLS{
		CertFile: "orders/cert.pem", KeyFile: "orders/key.pem", CAFile: "orders/bundle.pem", SPIFFEID: svcID("payments"),
	}}
	c, err := p.UpstreamTLS(mcl)
	if err != nil || c == nil || c.VerifyConnection == nil || c.GetClientCertificate == nil {
		t.Fatalf("mesh cluster: %v, %v", c, err)
	}
	bad := mcl
	bad.TLS = &config.UpstreamTLS{SPIFFEID: "spiffe://x/y", CertFile: "orders/cert.pem"}
	if _, err := p.UpstreamTLS(bad); err == nil {
		t.Fatal("mesh cluster without key and ca accepted")
	}
	serverOnly := mcl
	serverOnly.TLS = &config.UpstreamTLS{SPIFFEID: svcID("payments"), CAFile: "orders/bundle.pem"}
	if c, err := p.UpstreamTLS(serverOnly); c != nil || err != nil {
		t.Fatalf("spiffe_id without client certificate: %v, %v; want nil, nil (upstream's own tls)", c, err)
	}

	l := config.Listener{Name: "in", TLS: &config.ListenerTLS{
		Certs: []config.Cert{{CertFile: "orders/cert.pem", KeyFile: "orders/key.pem"}}, ClientCAFile: "orders/bundle.pem",
		ClientAuth: "require", TrustDomain: testTD,
	}}
	h, ok, err := p.ListenerHooks(l)
	if err != nil || !ok || h.GetCertificate == nil || h.ClientCAs() == nil || h.VerifyConnection == nil {
		t.Fatalf("ListenerHooks: %+v %v %v", h, ok, err)
	}
	if _, ok, err := p.ListenerHooks(config.Listener{Name: "public"}); ok || err != nil {
		t.Fatalf("non-mesh listener: ok %v err %v", ok, err)
	}
	l.TLS.TrustDomain = "other.test"
	if _, _, err := p.ListenerHooks(l); err == nil {
		t.Fatal("listener trust domain differing from the certificate accepted")
	}
	// The cluster and the listener share one Source (one watcher, one counter set).
	if n := len(p.sources); n != 1 {
		t.Fatalf("%d sources for one identity", n)
	}
	if st := p.Stats(); st.Reloads != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestIdentityFilter(t *testing.T) {
	tests := []struct {
		header, peer, forged, want string
	}{
		{"x-peer", "spiffe://td/ns/default/sa/orders", "spiffe://td/ns/default/sa/admin", "spiffe://td/ns/default/sa/orders"},
		{"x-peer", "", "spiffe://td/ns/default/sa/admin", ""},
		{"x-forwarded-client-cert", "spiffe://td/ns/default/sa/orders", "URI=spiffe://td/x", "By=spiffe://td/ns/default/sa/payments;URI=spiffe://td/ns/default/sa/orders"},
	}
	for _, tt := range tests {
		t.Run(tt.header+"/"+tt.peer, func(t *testing.T) {
			spec := filter.Spec{Name: "id", Kind: IdentityFilterKind,
				Config: []byte(`{"header":"` + tt.header + `","self":"spiffe://td/ns/default/sa/payments"}`)}
			reg := filter.NewRegistry()
			RegisterFilters(reg)
			f, err := reg.Build(context.Background(), spec, filter.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Add(tt.header, tt.forged)
			r.Header.Add(tt.header, tt.forged)
			x := filter.NewExchange(r, filter.Properties{PeerID: tt.peer})
			next, err := f.HandleRequest(context.Background(), x)
			if err != nil || !next {
				t.Fatalf("HandleRequest = %v, %v", next, err)
			}
			got := r.Header.Values(tt.header)
			if tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || got[0] != tt.want) {
				t.Fatalf("header %v, want %q", got, tt.want)
			}
			if tt.want != "" && PeerIDFromHeader(got[0]) != tt.peer {
				t.Fatalf("PeerIDFromHeader(%q) != %q", got[0], tt.peer)
			}
		})
	}
	if _, err := IdentityFactory().Build(context.Background(), filter.Spec{}, filter.Deps{}); err == nil {
		t.Fatal("identity filter without header accepted")
	}
}
