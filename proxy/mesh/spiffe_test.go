package mesh

import (
	"errors"
	"strings"
	"testing"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		in      string
		td, ns  string
		svc     string
		wantErr bool
	}{
		{in: "spiffe://wasmgate.local/ns/default/sa/orders", td: "wasmgate.local", ns: "default", svc: "orders"},
		{in: "spiffe://td/ns/prod/sa/pay_ments-v2.1", td: "td", ns: "prod", svc: "pay_ments-v2.1"},
		{in: "spiffe://td", td: "td"},
		{in: "spiffe://td/workload", td: "td"},
		{in: "http://td/ns/a/sa/b", wantErr: true},
		{in: "spiffe://TD/ns/a/sa/b", wantErr: true},
		{in: "spiffe://td:443/ns/a/sa/b", wantErr: true},
		{in: "spiffe://user@td/x", wantErr: true},
		{in: "spiffe:///ns/a", wantErr: true},
		{in: "spiffe://td/ns//sa/b", wantErr: true},
		{in: "spiffe://td/ns/../sa/b", wantErr: true},
		{in: "spiffe://td/ns/a/sa/b/", wantErr: true},
		{in: "spiffe://td/", wantErr: true},
		{in: "spiffe://td/a?b=c", wantErr: true},
		{in: "spiffe://td/a#frag", wantErr: true},
		{in: "spiffe://td/" + strings.Repeat("a", 2100), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 50)], func(t *testing.T) {
			id, err := ParseID(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrInvalidID) {
					t.Fatalf("ParseID(%q) = %v, %v; want ErrInvalidID", tt.in, id, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != tt.in || id.TrustDomain != tt.td || id.Namespace() != tt.ns || id.Service() != tt.svc {
				t.Fatalf("ParseID(%q) = %+v (ns %q, svc %q)", tt.in, id, id.Namespace(), id.Service())
			}
		})
	}
}

func TestIDFromCert(t *testing.T) {
	ca := testCA(t, testTD)
	id, _ := ServiceID(testTD, "default", "orders")
	certPEM, _, err := ca.IssueID(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	got, err := IDFromCert(certs[0])
	if err != nil || got != id {
		t.Fatalf("IDFromCert = %v, %v; want %v", got, err, id)
	}
	certs[0].URIs = append(certs[0].URIs, id.URL())
	if _, err := IDFromCert(certs[0]); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("two URIs: err %v, want ErrInvalidID", err)
	}
	certs[0].URIs = nil
	if _, err := IDFromCert(certs[0]); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("no URI: err %v, want ErrInvalidID", err)
	}
}

func TestPeerIDFromHeader(t *testing.T) {
	for in, want := range map[string]string{
		"spiffe://td/ns/default/sa/orders":                                           "spiffe://td/ns/default/sa/orders",
		"By=spiffe://td/ns/default/sa/payments;URI=spiffe://td/ns/default/sa/orders": "spiffe://td/ns/default/sa/orders",
		`By=x; URI="spiffe://td/a"`:                                                  "spiffe://td/a",
		"":                                                                           "",
		"garbage":                                                                    "",
	} {
		if got := PeerIDFromHeader(in); got != want {
			t.Errorf("PeerIDFromHeader(%q) = %q, want %q", in, got, want)
		}
	}
}
