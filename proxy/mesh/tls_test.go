package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// meshFixture is one CA and identities for services in their own dirs.
type meshFixture struct {
	ca   *CA
	dirs map[string]string
}

func newFixture(t *testing.T, services ...string) *meshFixture {
	t.Helper()
	f := &meshFixture{ca: testCA(t, testTD), dirs: map[string]string{}}
	root := t.TempDir()
	for _, s := range services {
		f.dirs[s] = filepath.Join(root, s)
		issueTo(t, f.ca, f.dirs[s], s)
	}
	return f
}

func svcID(s string) string { return "spiffe://" + testTD + "/ns/default/sa/" + s }

func TestMTLSModes(t *testing.T) {
	f := newFixture(t, "payments", "orders")
	pay := startSource(t, f.dirs["payments"])
	orders := startSource(t, f.dirs["orders"])
	strict := serveTLS(t, pay.ServerTLS(ModeStrict), nil)
	permissive := serveTLS(t, pay.ServerTLS(ModePermissive), nil)

	// A TLS client without certificate that trusts the bundle.
	noCert := orders.ClientTLS(svcID("payments"))
	noCert.GetClientCertificate = nil

	// A client whose certificate comes from another CA and trust domain.
	foreignCA := testCA(t, "evil.test")
	foreignDir := filepath.Join(t.TempDir(), "foreign")
	issueTo(t, foreignCA, foreignDir, "orders")
	foreign := startSource(t, foreignDir)
	foreignConf := foreign.ClientTLS("")
	foreignConf.VerifyConnection = nil // the attacker trusts anything

	// A client signed by the right CA but naming another trust domain.
	otherTDDir := filepath.Join(t.TempDir(), "othertd")
	writeID(t, f.ca, otherTDDir, ID{TrustDomain: "evil.test", Path: "/ns/default/sa/orders"})
	otherTD := startSource(t, otherTDDir)
	otherTDConf := otherTD.ClientTLS("")
	otherTDConf.VerifyConnection = nil

	tests := []struct {
		name    string
		addr    string
		conf    *tls.Config
		want    string
		wantErr bool
	}{
		{"strict/mtls", strict, orders.ClientTLS(svcID("payments")), svcID("orders"), false},
		{"strict/no cert", strict, noCert, "", true},
		{"strict/other CA", strict, foreignConf, "", true},
		{"strict/other trust domain same CA", strict, otherTDConf, "", true},
		{"permissive/mtls", permissive, orders.ClientTLS(svcID("payments")), svcID("orders"), false},
		{"permissive/no cert", permissive, noCert, "", false},
		{"permissive/other CA", permissive, foreignConf, "", true},
		{"permissive/other trust domain same CA", permissive, otherTDConf, "", true},
	}
	// The refusals above are the trust-domain check, not an accident.
	otherLeaf := otherTD.cur.Load().leaf
	if err := pay.VerifyClient(tls.ConnectionState{PeerCertificates: []*x509.Certificate{otherLeaf}}); !errors.Is(err, ErrPeerID) {
		t.Fatalf("VerifyClient(other trust domain) = %v, want ErrPeerID", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := get(mtlsClient(t, tt.conf, false), tt.addr)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("request succeeded with peer %q; want refusal", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("server saw peer %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOutboundRefusesWrongIdentity(t *testing.T) {
	f := newFixture(t, "payments", "notifications", "orders")
	notif := startSource(t, f.dirs["notifications"])
	orders := startSource(t, f.dirs["orders"])
	// notifications answers where orders expects payments.
	addr := serveTLS(t, notif.ServerTLS(ModeStrict), nil)

	_, err := get(mtlsClient(t, orders.ClientTLS(svcID("payments")), false), addr)
	if err == nil || !strings.Contains(err.Error(), "peer identity refused") {
		t.Fatalf("wrong server identity: err %v, want peer identity refused", err)
	}
	if _, err := get(mtlsClient(t, orders.ClientTLS(svcID("notifications")), false), addr); err != nil {
		t.Fatalf("right server identity: %v", err)
	}
	// Any identity of the trust domain when none is expected.
	if _, err := get(mtlsClient(t, orders.ClientTLS(""), false), addr); err != nil {
		t.Fatalf("no expected identity: %v", err)
	}
	// A server from another CA is refused even with the expected ID.
	evil := testCA(t, testTD)
	evilDir := filepath.Join(t.TempDir(), "evil")
	issueTo(t, evil, evilDir, "payments")
	evilAddr := serveTLS(t, startSource(t, evilDir).ServerTLS(ModePermissive), nil)
	if _, err := get(mtlsClient(t, orders.ClientTLS(svcID("payments")), false), evilAddr); err == nil {
		t.Fatal("server signed by an untrusted CA was accepted")
	}
}

// TestRotationUnderLoad rotates both sides' certificates every second while
// clients send requests on new and reused connections: no request may fail,
// and new handshakes must see the new certificates.
func TestRotationUnderLoad(t *testing.T) {
	f := newFixture(t, "payments", "orders")
	pay := startSource(t, f.dirs["payments"])
	orders := startSource(t, f.dirs["orders"])
	addr := serveTLS(t, pay.ServerTLS(ModeStrict), nil)

	var serials sync.Map
	conf := orders.ClientTLS(svcID("payments"))
	verify := conf.VerifyConnection
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		serials.Store(cs.PeerCertificates[0].SerialNumber.String(), true)
		return verify(cs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		c := mtlsClient(t, conf, i%2 == 0) // half reuse connections, half handshake per request
		wg.Go(func() {
			for ctx.Err() == nil {
				got, err := get(c, addr)
				if err == nil && got != svcID("orders") {
					err = fmt.Errorf("peer %q", got)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	rotations := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for rotations < 3 {
		<-tick.C
		issueTo(t, f.ca, f.dirs["payments"], "payments")
		issueTo(t, f.ca, f.dirs["orders"], "orders")
		rotations++
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during rotation; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	if ok.Load() < 50 {
		t.Fatalf("only %d requests in 3.5s; load too light to prove anything", ok.Load())
	}
	n := 0
	serials.Range(func(any, any) bool { n++; return true })
	if n < 3 {
		t.Fatalf("clients saw %d server certificates over %d rotations; rotation not picked up", n, rotations)
	}
	if st := pay.Stats(); st.Reloads < 4 {
		t.Fatalf("payments reloaded %d times (1 initial + 3 rotations expected): %+v", st.Reloads, st)
	}
	t.Logf("%d requests, %d server certificates seen, payments %+v", ok.Load(), n, pay.Stats())
}

// TestHandshakesFollowConnections checks that pooled connections do not pay
// a handshake per request.
func TestHandshakesFollowConnections(t *testing.T) {
	f := newFixture(t, "payments", "orders")
	pay := startSource(t, f.dirs["payments"])
	orders := startSource(t, f.dirs["orders"])
	addr := serveTLS(t, pay.ServerTLS(ModeStrict), nil)
	c := mtlsClient(t, orders.ClientTLS(svcID("payments")), true)
	var wg sync.WaitGroup
	var errs atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for j := 0; j < 50; j++ {
				if _, err := get(c, addr); err != nil {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("%d requests failed", errs.Load())
	}
	srv, cli := pay.Stats().ServerHandshakes, orders.Stats().ClientHandshakes
	if srv == 0 || srv > 4 || cli != srv {
		t.Fatalf("200 requests made %d server / %d client handshakes; want 1..4 (h2 pooled)", srv, cli)
	}
}

func TestSourceKeepsIdentityOnBadFiles(t *testing.T) {
	f := newFixture(t, "payments")
	dir := f.dirs["payments"]
	s := startSource(t, dir)
	before := s.Stats().Reloads
	serial := s.cur.Load().leaf.SerialNumber
	// A key that does not match the certificate (a rotation caught half-way).
	other := filepath.Join(t.TempDir(), "other")
	issueTo(t, f.ca, other, "payments")
	if err := copyFile(filepath.Join(other, KeyFile), filepath.Join(dir, KeyFile)); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted a key that does not match the certificate")
	}
	if s.cur.Load().leaf.SerialNumber.Cmp(serial) != 0 {
		t.Fatal("identity changed after a failed reload")
	}
	// Completing the rotation is picked up by the watcher.
	if err := copyFile(filepath.Join(other, CertFile), filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.cur.Load().leaf.SerialNumber.Cmp(serial) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("rotation not picked up; stats %+v", s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Stats().Reloads <= before {
		t.Fatal("reload not counted")
	}
	if _, err := NewSource(SourceOptions{CertFile: filepath.Join(dir, "missing.pem"), KeyFile: filepath.Join(dir, KeyFile), BundleFile: filepath.Join(dir, BundleFile)}); err == nil {
		t.Fatal("NewSource accepted a missing certificate")
	}
	// A bundle that does not verify the certificate is refused at load.
	other2 := testCA(t, testTD)
	if err := writeFileAtomic(filepath.Join(dir, BundleFile), other2.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "not verified by bundle") {
		t.Fatalf("Reload with a foreign bundle: %v", err)
	}
}
