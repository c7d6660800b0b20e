package mesh

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInitCAAndIssue(t *testing.T) {
	dir := t.TempDir()
	caDir, outDir := filepath.Join(dir, "ca"), filepath.Join(dir, "orders")
	ca, err := InitCA(caDir, "wasmgate.local")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := InitCA(caDir, "wasmgate.local"); !errors.Is(err, ErrCAExists) {
		t.Fatalf("second InitCA: %v, want ErrCAExists", err)
	}
	if _, err := InitCA(filepath.Join(dir, "bad"), "Bad Domain"); err == nil {
		t.Fatal("InitCA accepted an invalid trust domain")
	}
	if fi, err := os.Stat(filepath.Join(caDir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, mode %v", err, fi.Mode())
	}
	if !ca.Cert.IsCA || ca.Cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("root: IsCA %v, alg %v", ca.Cert.IsCA, ca.Cert.PublicKeyAlgorithm)
	}

	id, notAfter, err := Issue(IssueOptions{CADir: caDir, OutDir: outDir, Service: "orders", TTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://wasmgate.local/ns/default/sa/orders"; id.String() != want {
		t.Fatalf("issued %s, want %s", id, want)
	}
	if d := time.Until(notAfter); d < 119*time.Minute || d > 121*time.Minute {
		t.Fatalf("ttl: expires in %v, want ~2h", d)
	}
	certPEM, err := os.ReadFile(filepath.Join(outDir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	bundlePEM, err := os.ReadFile(filepath.Join(outDir, BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(outDir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v, mode %v", err, fi.Mode())
	}
	leaf, _ := parseCerts(certPEM)
	roots, _ := parseCerts(bundlePEM)
	pool := x509.NewCertPool()
	pool.AddCert(roots[0])
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Fatalf("verify for usage %v: %v", usage, err)
		}
	}
	if len(leaf[0].URIs) != 1 || len(leaf[0].DNSNames) != 0 || leaf[0].IsCA {
		t.Fatalf("leaf SANs: URIs %v DNS %v IsCA %v", leaf[0].URIs, leaf[0].DNSNames, leaf[0].IsCA)
	}
	if got, err := IDFromCert(leaf[0]); err != nil || got != id {
		t.Fatalf("IDFromCert = %v, %v", got, err)
	}

	// Namespace and the trust domain checks.
	id, _, err = Issue(IssueOptions{CADir: caDir, OutDir: outDir, Service: "payments", Namespace: "prod"})
	if err != nil || id.String() != "spiffe://wasmgate.local/ns/prod/sa/payments" {
		t.Fatalf("issue in namespace: %v, %v", id, err)
	}
	if _, _, err := Issue(IssueOptions{CADir: caDir, OutDir: outDir, Service: "bad/name"}); err == nil {
		t.Fatal("Issue accepted an invalid service name")
	}
	other, _ := ServiceID("other.td", "default", "x")
	if _, _, err := ca.IssueID(other, 0); err == nil {
		t.Fatal("IssueID signed an ID of another trust domain")
	}
	if _, err := LoadCA(outDir); err == nil {
		t.Fatal("LoadCA accepted a directory without a CA")
	}
}
