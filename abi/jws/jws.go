// Package jws verifies JWS signatures for the wasmgate.verify_signature host
// call (abi.FuncVerifySignature). It is the one verifier: the Wasm host
// (proxy/wasm) and the SDK's fake host (sdk/sdktest) both use it, so a
// plugin tested with sdktest accepts exactly the keys and algorithms the
// proxy does. Standard library only, so sdk/sdktest stays dependency free.
package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"sync"

	"github.com/wasmgate/wasmgate/abi"
)

// Verifier checks signatures and keeps parsed public keys, so a guest
// verifying many tokens with the same key pays for parsing once. The zero
// value is ready to use and safe for concurrent use.
type Verifier struct {
	mu   sync.RWMutex
	keys map[string]crypto.PublicKey
}

const maxCachedKeys = 256

func (c *Verifier) get(der []byte) (crypto.PublicKey, error) {
	c.mu.RLock()
	k, ok := c.keys[string(der)]
	c.mu.RUnlock()
	if ok {
		return k, nil
	}
	k, err := parsePublicKey(der)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.keys == nil || len(c.keys) >= maxCachedKeys {
		c.keys = make(map[string]crypto.PublicKey)
	}
	c.keys[string(der)] = k
	c.mu.Unlock()
	return k, nil
}

// Verify checks a JWS signature and returns abi.StatusOK (valid),
// abi.StatusInvalid (does not verify) or abi.StatusError (unknown algorithm,
// unusable key); see abi.FuncVerifySignature for the key forms.
func (keys *Verifier) Verify(alg string, key, data, sig []byte) uint32 {
	if len(alg) == 2+3 && alg[:2] == "HS" {
		h, ok := hashFor(alg[2:])
		if !ok || len(key) == 0 {
			return abi.StatusError
		}
		m := hmac.New(h.New, key)
		m.Write(data)
		if hmac.Equal(m.Sum(nil), sig) {
			return abi.StatusOK
		}
		return abi.StatusInvalid
	}
	pub, err := keys.get(key)
	if err != nil {
		return abi.StatusError
	}
	switch {
	case alg == "EdDSA":
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return abi.StatusError
		}
		return status(ed25519.Verify(k, data, sig))
	case len(alg) == 5 && (alg[:2] == "RS" || alg[:2] == "PS"):
		k, ok := pub.(*rsa.PublicKey)
		h, okh := hashFor(alg[2:])
		if !ok || !okh {
			return abi.StatusError
		}
		d := digest(h, data)
		if alg[0] == 'R' {
			return status(rsa.VerifyPKCS1v15(k, h, d, sig) == nil)
		}
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		return status(rsa.VerifyPSS(k, h, d, sig, opts) == nil)
	case len(alg) == 5 && alg[:2] == "ES":
		k, ok := pub.(*ecdsa.PublicKey)
		h, okh := hashFor(alg[2:])
		if !ok || !okh || k.Curve != curveFor(alg) {
			return abi.StatusError
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return abi.StatusInvalid
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return status(ecdsa.Verify(k, digest(h, data), r, s))
	}
	return abi.StatusError
}

func status(ok bool) uint32 {
	if ok {
		return abi.StatusOK
	}
	return abi.StatusInvalid
}

func hashFor(bits string) (crypto.Hash, bool) {
	switch bits {
	case "256":
		return crypto.SHA256, true
	case "384":
		return crypto.SHA384, true
	case "512":
		return crypto.SHA512, true
	}
	return 0, false
}

func curveFor(alg string) elliptic.Curve {
	switch alg {
	case "ES256":
		return elliptic.P256()
	case "ES384":
		return elliptic.P384()
	case "ES512":
		return elliptic.P521()
	}
	return nil
}

func digest(h crypto.Hash, data []byte) []byte {
	var w hash.Hash
	switch h {
	case crypto.SHA256:
		w = sha256.New()
	case crypto.SHA384:
		w = sha512.New384()
	default:
		w = sha512.New()
	}
	w.Write(data)
	return w.Sum(nil)
}

// parsePublicKey accepts DER (PKIX or PKCS#1 RSA), PEM, or a JWK object.
func parsePublicKey(b []byte) (crypto.PublicKey, error) {
	if len(b) == 0 {
		return nil, errors.New("empty key")
	}
	switch b[0] {
	case '{':
		return parseJWK(b)
	case '-':
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, errors.New("bad PEM")
		}
		b = blk.Bytes
	}
	if k, err := x509.ParsePKIXPublicKey(b); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PublicKey(b); err == nil {
		return k, nil
	}
	if c, err := x509.ParseCertificate(b); err == nil {
		return c.PublicKey, nil
	}
	return nil, errors.New("key is not DER PKIX, PKCS#1 or a certificate")
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func parseJWK(b []byte) (crypto.PublicKey, error) {
	var k jwk
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	dec := func(s string) (*big.Int, []byte, error) {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(raw) == 0 {
			return nil, nil, errors.New("jwk: bad base64url field")
		}
		return new(big.Int).SetBytes(raw), raw, nil
	}
	switch k.Kty {
	case "RSA":
		n, _, err := dec(k.N)
		if err != nil {
			return nil, err
		}
		e, _, err := dec(k.E)
		if err != nil || !e.IsInt64() || e.Int64() > 1<<31 {
			return nil, errors.New("jwk: bad RSA exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("jwk: unsupported curve %q", k.Crv)
		}
		_, xb, err := dec(k.X)
		if err != nil {
			return nil, err
		}
		_, yb, err := dec(k.Y)
		if err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(xb) > size || len(yb) > size {
			return nil, errors.New("jwk: EC coordinate too long")
		}
		raw := make([]byte, 1+2*size)
		raw[0] = 4
		copy(raw[1+size-len(xb):1+size], xb)
		copy(raw[1+2*size-len(yb):], yb)
		return ecdsa.ParseUncompressedPublicKey(curve, raw)
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("jwk: unsupported curve %q", k.Crv)
		}
		_, xb, err := dec(k.X)
		if err != nil || len(xb) != ed25519.PublicKeySize {
			return nil, errors.New("jwk: bad Ed25519 key")
		}
		return ed25519.PublicKey(xb), nil
	}
	return nil, fmt.Errorf("jwk: unsupported kty %q", k.Kty)
}
