package main

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
	"hash"
	"math/big"
	"sync"
	"testing"
)

// testKeys are generated once per test run.
type testKeys struct {
	rsa   *rsa.PrivateKey
	rsa2  *rsa.PrivateKey
	ec256 *ecdsa.PrivateKey
	ec384 *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	hmac  []byte
}

var (
	keysOnce sync.Once
	tk       testKeys
)

func keysForTest(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		must := func(e error) {
			if e != nil && err == nil {
				err = e
			}
		}
		tk.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		var e error
		tk.rsa2, e = rsa.GenerateKey(rand.Reader, 2048)
		must(e)
		tk.ec256, e = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(e)
		tk.ec384, e = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(e)
		_, tk.ed, e = ed25519.GenerateKey(rand.Reader)
		must(e)
		tk.hmac = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
		if err != nil {
			panic(err)
		}
	})
	return &tk
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func bigB64(i *big.Int, size int) string {
	b := make([]byte, size)
	i.FillBytes(b)
	return b64(b)
}

// signToken builds a compact JWS with any header and claims.
func signToken(t testing.TB, alg string, priv any, header map[string]any, claims any) string {
	t.Helper()
	if header == nil {
		header = map[string]any{}
	}
	header["alg"] = alg
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	input := b64(hb) + "." + b64(cb)
	var sig []byte
	var err error
	a := algorithms[alg]
	switch k := priv.(type) {
	case []byte:
		m := hmac.New(newHashFunc(a.hash), k)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case *rsa.PrivateKey:
		d := digest(a.hash, []byte(input))
		if a.kind == "pss" {
			sig, err = rsa.SignPSS(rand.Reader, k, a.hash, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, a.hash, d)
		}
	case *ecdsa.PrivateKey:
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, k, digest(a.hash, []byte(input)))
		if err == nil {
			size := (k.Curve.Params().BitSize + 7) / 8
			sig = make([]byte, 2*size)
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
		}
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	case nil:
	default:
		t.Fatalf("signToken: unknown key %T", priv)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func newHashFunc(h crypto.Hash) func() hash.Hash { return func() hash.Hash { return newHash(h) } }

// jwkOf renders a public JWK for a private key.
func jwkOf(priv any, kid, alg string) map[string]any {
	m := map[string]any{"kid": kid}
	if alg != "" {
		m["alg"] = alg
	}
	switch k := priv.(type) {
	case []byte:
		m["kty"], m["k"] = "oct", b64(k)
	case *rsa.PrivateKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		m["kty"], m["crv"] = "EC", k.Curve.Params().Name
		m["x"], m["y"] = bigB64(k.X, size), bigB64(k.Y, size)
	case ed25519.PrivateKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(k.Public().(ed25519.PublicKey))
	}
	return m
}

func jwksJSON(keys ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return string(b)
}

func pemOf(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
