package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"testing"

	"github.com/wasmgate/wasmgate/abi"
)

func TestVerifySignature(t *testing.T) {
	data := []byte("eyJhbGciOi.eyJzdWIiOi")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	ecKeys := map[string]*ecdsa.PrivateKey{}
	for alg, c := range map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()} {
		ecKeys[alg], _ = ecdsa.GenerateKey(c, rand.Reader)
	}
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKIXPublicKey(edPub)

	type tc struct {
		name string
		alg  string
		key  []byte
		sig  []byte
	}
	var cases []tc
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"} {
		h, _ := hashFor(alg[2:])
		d := digest(h, data)
		var sig []byte
		if alg[0] == 'R' {
			sig, _ = rsa.SignPKCS1v15(rand.Reader, rsaKey, h, d)
		} else {
			sig, _ = rsa.SignPSS(rand.Reader, rsaKey, h, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		cases = append(cases, tc{alg + "/pkix", alg, rsaDER, sig})
	}
	cases = append(cases, tc{"RS256/pkcs1", "RS256", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), cases[0].sig})
	cases = append(cases, tc{"RS256/pem", "RS256", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER}), cases[0].sig})
	cases = append(cases, tc{"RS256/jwk", "RS256", mustJSON(map[string]string{
		"kty": "RSA", "n": b64(rsaKey.N.Bytes()), "e": b64([]byte{1, 0, 1}),
	}), cases[0].sig})
	for alg, k := range ecKeys {
		h, _ := hashFor(alg[2:])
		r, s, _ := ecdsa.Sign(rand.Reader, k, digest(h, data))
		size := (k.Curve.Params().BitSize + 7) / 8
		sig := append(r.FillBytes(make([]byte, size)), s.FillBytes(make([]byte, size))...)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		cases = append(cases, tc{alg + "/pkix", alg, der, sig})
		crv := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		cases = append(cases, tc{alg + "/jwk", alg, mustJSON(map[string]string{
			"kty": "EC", "crv": crv, "x": b64(k.X.FillBytes(make([]byte, size))), "y": b64(k.Y.FillBytes(make([]byte, size))),
		}), sig})
	}
	edSig := ed25519.Sign(edPriv, data)
	cases = append(cases, tc{"EdDSA/pkix", "EdDSA", edDER, edSig})
	cases = append(cases, tc{"EdDSA/jwk", "EdDSA", mustJSON(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub)}), edSig})
	for _, alg := range []string{"HS256", "HS384", "HS512"} {
		h, _ := hashFor(alg[2:])
		m := hmac.New(h.New, []byte("secret"))
		m.Write(data)
		cases = append(cases, tc{alg, alg, []byte("secret"), m.Sum(nil)})
	}

	var keys Verifier
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := keys.Verify(c.alg, c.key, data, c.sig); got != abi.StatusOK {
				t.Fatalf("valid signature: status %d", got)
			}
			bad := append([]byte(nil), c.sig...)
			bad[len(bad)/2] ^= 0x40
			if got := keys.Verify(c.alg, c.key, data, bad); got != abi.StatusInvalid {
				t.Fatalf("tampered signature: status %d, want invalid", got)
			}
			if got := keys.Verify(c.alg, c.key, append(data, 'x'), c.sig); got != abi.StatusInvalid {
				t.Fatalf("tampered data: status %d, want invalid", got)
			}
		})
	}

	errCases := []tc{
		{"unknown alg", "none", rsaDER, cases[0].sig},
		{"RS with EC key", "RS256", cases[len(cases)-1].key, cases[0].sig},
		{"ES256 with P-384 key", "ES256", mustMarshal(&ecKeys["ES384"].PublicKey), make([]byte, 64)},
		{"garbage key", "RS256", []byte("not a key"), cases[0].sig},
		{"empty HMAC key", "HS256", nil, []byte("x")},
		{"bad jwk", "RS256", []byte(`{"kty":"RSA","n":"!!"}`), cases[0].sig},
	}
	for _, c := range errCases {
		t.Run("error/"+c.name, func(t *testing.T) {
			if got := keys.Verify(c.alg, c.key, data, c.sig); got != abi.StatusError {
				t.Fatalf("status %d, want error", got)
			}
		})
	}
	_ = crypto.SHA256
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func mustMarshal(k any) []byte {
	b, _ := x509.MarshalPKIXPublicKey(k)
	return b
}
