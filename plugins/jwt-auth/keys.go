package main

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Key families; an algorithm only ever verifies with a key of its family.
const (
	ktyOct = "oct"
	ktyRSA = "RSA"
	ktyEC  = "EC"
	ktyOKP = "OKP"
)

// minRSABits refuses toy RSA keys.
const minRSABits = 2048

// key is one verification key from config.
type key struct {
	kid string
	// alg, when set, is the only algorithm this key verifies.
	alg    string
	kty    string
	curve  string // EC: P-256, P-384; OKP: Ed25519
	pub    crypto.PublicKey
	secret []byte
	// der is the PKIX DER of pub, handed to the host verifier.
	der []byte
}

// jwk is the subset of RFC 7517 we read.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
	D   string `json:"d"`
}

// parseJWKS reads a JWK Set ({"keys":[...]}) or a single JWK object.
func parseJWKS(data []byte) ([]*key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	raws := set.Keys
	if set.Keys == nil {
		raws = []json.RawMessage{data}
	}
	var keys []*key
	var errs []error
	for i, raw := range raws {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			errs = append(errs, fmt.Errorf("jwks.keys[%d]: %w", i, err))
			continue
		}
		if j.Use != "" && j.Use != "sig" {
			continue // encryption keys are not for us
		}
		k, err := j.toKey()
		if err != nil {
			errs = append(errs, fmt.Errorf("jwks.keys[%d] (kid %q): %w", i, j.Kid, err))
			continue
		}
		keys = append(keys, k)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no signature keys")
	}
	return keys, nil
}

func b64Int(s, field string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("field %q is not base64url", field)
	}
	return new(big.Int).SetBytes(b), nil
}

func (j *jwk) toKey() (*key, error) {
	k := &key{kid: j.Kid, alg: j.Alg, kty: j.Kty}
	if j.Alg != "" {
		if _, ok := algorithms[j.Alg]; !ok {
			return nil, fmt.Errorf("unsupported alg %q", j.Alg)
		}
	}
	switch j.Kty {
	case ktyOct:
		s, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(j.K, "="))
		if err != nil || len(s) == 0 {
			return nil, errors.New(`oct key needs a base64url "k"`)
		}
		k.secret = s
	case ktyRSA:
		n, err := b64Int(j.N, "n")
		if err != nil {
			return nil, err
		}
		e, err := b64Int(j.E, "e")
		if err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, errors.New("RSA exponent out of range")
		}
		k.pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case ktyEC:
		var curve elliptic.Curve
		var ec ecdh.Curve
		switch j.Crv {
		case "P-256":
			curve, ec = elliptic.P256(), ecdh.P256()
		case "P-384":
			curve, ec = elliptic.P384(), ecdh.P384()
		default:
			return nil, fmt.Errorf("unsupported EC curve %q", j.Crv)
		}
		x, err := b64Int(j.X, "x")
		if err != nil {
			return nil, err
		}
		y, err := b64Int(j.Y, "y")
		if err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x.Bytes()) > size || len(y.Bytes()) > size {
			return nil, errors.New("EC point coordinates too large")
		}
		// Check the point is on the curve through crypto/ecdh, which
		// rejects invalid points.
		raw := make([]byte, 1+2*size)
		raw[0] = 4
		x.FillBytes(raw[1 : 1+size])
		y.FillBytes(raw[1+size:])
		if _, err := ec.NewPublicKey(raw); err != nil {
			return nil, fmt.Errorf("invalid EC point: %w", err)
		}
		k.curve = j.Crv
		k.pub = &ecdsa.PublicKey{Curve: curve, X: x, Y: y}
	case ktyOKP:
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", j.Crv)
		}
		x, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(j.X, "="))
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("Ed25519 key needs a 32-byte base64url \"x\"")
		}
		k.curve = j.Crv
		k.pub = ed25519.PublicKey(x)
	default:
		return nil, fmt.Errorf("unsupported kty %q", j.Kty)
	}
	return k, k.finish()
}

// parsePEMKeys reads every public key block of a PEM bundle.
func parsePEMKeys(data []byte) ([]*key, error) {
	var keys []*key
	for n := 0; ; n++ {
		block, rest := pem.Decode(data)
		if block == nil {
			break
		}
		k, err := parsePEMKey(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		keys = append(keys, k)
		data = rest
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block found")
	}
	return keys, nil
}

// parsePEMKey reads a public key (PKIX "PUBLIC KEY", PKCS#1 "RSA PUBLIC KEY"
// or an X.509 "CERTIFICATE") from PEM.
func parsePEMKey(data []byte) (*key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key (private keys do not belong in proxy config)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse PEM %s: %w", block.Type, err)
	}
	k := &key{pub: pub}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		k.kty = ktyRSA
	case *ecdsa.PublicKey:
		k.kty = ktyEC
		k.curve = p.Curve.Params().Name
		if k.curve != "P-256" && k.curve != "P-384" {
			return nil, fmt.Errorf("unsupported EC curve %q", k.curve)
		}
	case ed25519.PublicKey:
		k.kty, k.curve = ktyOKP, "Ed25519"
	default:
		return nil, fmt.Errorf("unsupported public key type %T", pub)
	}
	return k, k.finish()
}

// finish checks the key against its alg and computes the DER form.
func (k *key) finish() error {
	if r, ok := k.pub.(*rsa.PublicKey); ok && r.N.BitLen() < minRSABits {
		return fmt.Errorf("RSA key of %d bits is too small (minimum %d)", r.N.BitLen(), minRSABits)
	}
	if k.alg != "" && !algorithms[k.alg].fits(k) {
		return fmt.Errorf("key type %s %s cannot verify alg %s", k.kty, k.curve, k.alg)
	}
	if k.pub != nil {
		der, err := x509.MarshalPKIXPublicKey(k.pub)
		if err != nil {
			return fmt.Errorf("encode public key: %w", err)
		}
		k.der = der
	}
	return nil
}
