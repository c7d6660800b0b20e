package mesh

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// File names written by InitCA and Issue.
const (
	// CACertFile is the root certificate in a CA directory; it is also the trust bundle.
	CACertFile = "ca.crt"
	// CAKeyFile is the root key in a CA directory (mode 0600).
	CAKeyFile = "ca.key"
	// CertFile is a service's certificate in an issued directory.
	CertFile = "cert.pem"
	// KeyFile is a service's private key in an issued directory (mode 0600).
	KeyFile = "key.pem"
	// BundleFile is the trust bundle copied next to a service's certificate.
	BundleFile = "bundle.pem"
)

// Defaults for certificate lifetimes.
const (
	// DefaultCATTL is the lifetime of a root made by InitCA.
	DefaultCATTL = 10 * 365 * 24 * time.Hour
	// DefaultServiceTTL is the lifetime of a service certificate.
	DefaultServiceTTL = 24 * time.Hour
	// clockSkew back-dates NotBefore so peers with a slightly late clock accept a fresh cert.
	clockSkew = 5 * time.Minute
)

// ErrCAExists is returned by InitCA when the directory already holds a CA.
var ErrCAExists = errors.New("mesh: CA already exists")

// CA is a root certificate authority for one trust domain.
type CA struct {
	// TrustDomain is the SPIFFE trust domain the CA issues for.
	TrustDomain string
	// Cert is the self-signed root.
	Cert *x509.Certificate
	// Key is the root's private key.
	Key *ecdsa.PrivateKey
}

// NewCA creates a self-signed ECDSA P-256 root for trustDomain, valid for ttl
// (DefaultCATTL when 0). It lives only in memory until Save.
func NewCA(trustDomain string, ttl time.Duration) (*CA, error) {
	if err := ValidateTrustDomain(trustDomain); err != nil {
		return nil, fmt.Errorf("mesh: new CA: %w", err)
	}
	if ttl <= 0 {
		ttl = DefaultCATTL
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mesh: new CA: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"wasmgate"}, CommonName: "wasmgate mesh root " + trustDomain},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{ID{TrustDomain: trustDomain}.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("mesh: new CA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mesh: new CA: parse certificate: %w", err)
	}
	return &CA{TrustDomain: trustDomain, Cert: cert, Key: key}, nil
}

// Save writes ca.crt and ca.key into dir (created 0700 when missing).
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("mesh: save CA: %w", err)
	}
	keyPEM, err := encodeKey(ca.Key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, CACertFile), ca.BundlePEM(), 0o644)
}

// BundlePEM returns the trust bundle (the root certificate) as PEM.
func (ca *CA) BundlePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// LoadCA reads ca.crt and ca.key from dir. The trust domain is taken from
// the root's spiffe:// URI SAN.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("mesh: load CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("mesh: load CA: %w", err)
	}
	certs, err := parseCerts(certPEM)
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("mesh: load CA: %s must hold exactly one certificate (err: %v)", CACertFile, err)
	}
	key, err := parseECKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("mesh: load CA: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("mesh: load CA: %s is not a CA certificate", CACertFile)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("mesh: load CA: %s does not match %s", CAKeyFile, CACertFile)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].Scheme != "spiffe" {
		return nil, fmt.Errorf("mesh: load CA: root has no spiffe:// trust domain URI")
	}
	return &CA{TrustDomain: cert.URIs[0].Host, Cert: cert, Key: key}, nil
}

// IssueID signs a certificate and key for id (which must be in the CA's
// trust domain), valid for ttl (DefaultServiceTTL when 0, capped at the
// root's expiry). The certificate serves both as server and client
// certificate; its only SAN is the SPIFFE URI.
func (ca *CA) IssueID(id ID, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	if id.TrustDomain != ca.TrustDomain {
		return nil, nil, fmt.Errorf("mesh: issue %s: trust domain differs from the CA's %q", id, ca.TrustDomain)
	}
	return ca.sign(id, ttl)
}

// sign issues a leaf without the trust-domain check (tests use it to make
// certificates a correct verifier must refuse).
func (ca *CA) sign(id ID, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	if ttl <= 0 {
		ttl = DefaultServiceTTL
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh: issue %s: generate key: %w", id, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"wasmgate"}, CommonName: id.Service()},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh: issue %s: %w", id, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// InitCA is `wasmgate ca init`: it creates a root CA for trustDomain in dir
// (ca.crt, ca.key). It refuses to overwrite an existing CA (ErrCAExists).
func InitCA(dir, trustDomain string) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return nil, fmt.Errorf("%w in %s", ErrCAExists, dir)
	}
	ca, err := NewCA(trustDomain, 0)
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	return ca, nil
}

// IssueOptions are the inputs of `wasmgate ca issue`.
type IssueOptions struct {
	// CADir holds ca.crt and ca.key (from InitCA).
	CADir string
	// OutDir receives cert.pem, key.pem and bundle.pem (created 0700).
	OutDir string
	// Service is the service account name.
	Service string
	// Namespace of the service. Default "default".
	Namespace string
	// TTL is the certificate lifetime. Default 24h.
	TTL time.Duration
}

// Issue is `wasmgate ca issue`: it signs a certificate whose URI SAN is
// spiffe://TD/ns/NS/sa/SERVICE and writes cert.pem, key.pem and bundle.pem
// into opts.OutDir. Files are replaced atomically (key first, then
// certificate), so a running sidecar picks up the rotation safely. It
// returns the issued ID and the certificate's expiry.
func Issue(opts IssueOptions) (ID, time.Time, error) {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.OutDir == "" {
		return ID{}, time.Time{}, errors.New("mesh: issue: out dir is required")
	}
	ca, err := LoadCA(opts.CADir)
	if err != nil {
		return ID{}, time.Time{}, err
	}
	id, err := ServiceID(ca.TrustDomain, opts.Namespace, opts.Service)
	if err != nil {
		return ID{}, time.Time{}, fmt.Errorf("mesh: issue: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueID(id, opts.TTL)
	if err != nil {
		return ID{}, time.Time{}, err
	}
	if err := WriteIdentity(opts.OutDir, certPEM, keyPEM, ca.BundlePEM()); err != nil {
		return ID{}, time.Time{}, err
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return ID{}, time.Time{}, err
	}
	return id, certs[0].NotAfter, nil
}

// WriteIdentity writes bundle.pem, key.pem and cert.pem into dir, each
// atomically (temp file + rename), in an order that lets a Source watching
// dir load a consistent pair: a Source that sees a new key with the old
// certificate refuses the mismatch and keeps serving until cert.pem lands.
func WriteIdentity(dir string, certPEM, keyPEM, bundlePEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("mesh: write identity: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, BundleFile), bundlePEM, 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, CertFile), certPEM, 0o644)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("mesh: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(perm)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("mesh: write %s: %w", path, werr)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("mesh: serial number: %w", err)
	}
	return n, nil
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("mesh: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseECKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block in key file")
	}
	var (
		k   any
		err error
	)
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ECDSA", k)
	}
	return ek, nil
}

// parseCerts decodes every CERTIFICATE block of a PEM file.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	return out, nil
}
