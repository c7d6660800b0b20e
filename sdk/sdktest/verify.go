package sdktest

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
	"hash"
	"math/big"

	"github.com/wasmgate/wasmgate/abi"
)

// verifySignature is the fake host's wasmgate.verify_signature: JWS
// algorithms, public keys as PKIX or PKCS#1 DER, PEM or JWK JSON, HMAC
// secrets as raw bytes (or an "oct" JWK).
func verifySignature(alg string, key, data, sig []byte) uint32 {
	var h crypto.Hash
	switch alg {
	case "RS256", "PS256", "ES256", "HS256":
		h = crypto.SHA256
	case "RS384", "PS384", "ES384", "HS384":
		h = crypto.SHA384
	case "RS512", "PS512", "ES512", "HS512":
		h = crypto.SHA512
	case "EdDSA":
	default:
		return abi.StatusError
	}
	if alg[0] == 'H' {
		secret := key
		if k, err := parseJWK(key); err == nil {
			b, ok := k.([]byte)
			if !ok {
				return abi.StatusError
			}
			secret = b
		}
		mac := hmac.New(hashFunc(h), secret)
		mac.Write(data)
		if hmac.Equal(mac.Sum(nil), sig) {
			return abi.StatusOK
		}
		return abi.StatusInvalid
	}
	pub, err := parsePublicKey(key)
	if err != nil {
		return abi.StatusError
	}
	var digest []byte
	if h != 0 {
		d := h.New()
		d.Write(data)
		digest = d.Sum(nil)
	}
	ok := false
	switch alg[0] {
	case 'R', 'P':
		k, isRSA := pub.(*rsa.PublicKey)
		if !isRSA {
			return abi.StatusError
		}
		if alg[0] == 'R' {
			ok = rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
		} else {
			ok = rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
	case 'E':
		if alg == "EdDSA" {
			k, isEd := pub.(ed25519.PublicKey)
			if !isEd {
				return abi.StatusError
			}
			ok = ed25519.Verify(k, data, sig)
			break
		}
		k, isEC := pub.(*ecdsa.PublicKey)
		if !isEC {
			return abi.StatusError
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return abi.StatusInvalid
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		ok = ecdsa.Verify(k, digest, r, s)
	}
	if ok {
		return abi.StatusOK
	}
	return abi.StatusInvalid
}

func hashFunc(h crypto.Hash) func() hash.Hash {
	switch h {
	case crypto.SHA384:
		return sha512.New384
	case crypto.SHA512:
		return sha512.New
	}
	return sha256.New
}

func parsePublicKey(key []byte) (any, error) {
	if len(key) > 0 && key[0] == '{' {
		return parseJWK(key)
	}
	if b, _ := pem.Decode(key); b != nil {
		key = b.Bytes
	}
	if k, err := x509.ParsePKIXPublicKey(key); err == nil {
		return k, nil
	}
	return x509.ParsePKCS1PublicKey(key)
}

// parseJWK parses an RSA, EC, OKP (Ed25519) or oct JWK.
func parseJWK(key []byte) (any, error) {
	var j struct {
		Kty, Crv, N, E, X, Y, K string
	}
	if err := json.Unmarshal(key, &j); err != nil {
		return nil, err
	}
	b := func(s string) []byte {
		v, _ := base64.RawURLEncoding.DecodeString(s)
		return v
	}
	switch j.Kty {
	case "RSA":
		n, e := new(big.Int).SetBytes(b(j.N)), new(big.Int).SetBytes(b(j.E))
		if n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 {
			return nil, errors.New("bad RSA JWK")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
		c, ok := curves[j.Crv]
		if !ok {
			return nil, errors.New("bad EC curve")
		}
		k := &ecdsa.PublicKey{Curve: c, X: new(big.Int).SetBytes(b(j.X)), Y: new(big.Int).SetBytes(b(j.Y))}
		if !c.IsOnCurve(k.X, k.Y) {
			return nil, errors.New("EC point not on curve")
		}
		return k, nil
	case "OKP":
		x := b(j.X)
		if j.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad OKP JWK")
		}
		return ed25519.PublicKey(x), nil
	case "oct":
		return b(j.K), nil
	}
	return nil, errors.New("unknown kty")
}
