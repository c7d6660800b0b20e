package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"math/big"
	"sort"
)

// alg describes one JWS algorithm: the key family it needs and its hash.
type alg struct {
	kty   string
	curve string // EC / OKP curve the key must use
	hash  crypto.Hash
	kind  string // hmac, pkcs1, pss, ecdsa, eddsa
}

// algorithms are the JWS algorithms this plugin verifies. Anything else,
// "none" included, is refused.
var algorithms = map[string]alg{
	"HS256": {kty: ktyOct, hash: crypto.SHA256, kind: "hmac"},
	"HS384": {kty: ktyOct, hash: crypto.SHA384, kind: "hmac"},
	"HS512": {kty: ktyOct, hash: crypto.SHA512, kind: "hmac"},
	"RS256": {kty: ktyRSA, hash: crypto.SHA256, kind: "pkcs1"},
	"RS384": {kty: ktyRSA, hash: crypto.SHA384, kind: "pkcs1"},
	"RS512": {kty: ktyRSA, hash: crypto.SHA512, kind: "pkcs1"},
	"PS256": {kty: ktyRSA, hash: crypto.SHA256, kind: "pss"},
	"PS384": {kty: ktyRSA, hash: crypto.SHA384, kind: "pss"},
	"PS512": {kty: ktyRSA, hash: crypto.SHA512, kind: "pss"},
	"ES256": {kty: ktyEC, curve: "P-256", hash: crypto.SHA256, kind: "ecdsa"},
	"ES384": {kty: ktyEC, curve: "P-384", hash: crypto.SHA384, kind: "ecdsa"},
	"EdDSA": {kty: ktyOKP, curve: "Ed25519", kind: "eddsa"},
}

// algNames lists the supported algorithms, sorted, for error messages.
func algNames() []string {
	names := make([]string, 0, len(algorithms))
	for n := range algorithms {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// fits reports whether k may verify signatures of this algorithm. This is
// the algorithm-confusion guard: an RSA public key is never used as an HMAC
// secret, an HS token never meets an asymmetric key, and curves must match.
func (a alg) fits(k *key) bool {
	if a.kty == "" || a.kty != k.kty {
		return false
	}
	return a.curve == "" || a.curve == k.curve
}

var errBadSignature = errors.New("signature does not verify")

func newHash(h crypto.Hash) hash.Hash {
	switch h {
	case crypto.SHA384:
		return sha512.New384()
	case crypto.SHA512:
		return sha512.New()
	}
	return sha256.New()
}

func digest(h crypto.Hash, data []byte) []byte {
	w := newHash(h)
	w.Write(data)
	return w.Sum(nil)
}

// verifyNative checks sig over data with k using Go's crypto, in the guest.
func verifyNative(name string, k *key, data, sig []byte) error {
	a, ok := algorithms[name]
	if !ok || !a.fits(k) {
		return errBadSignature
	}
	switch a.kind {
	case "hmac":
		m := hmac.New(func() hash.Hash { return newHash(a.hash) }, k.secret)
		m.Write(data)
		if !hmac.Equal(m.Sum(nil), sig) {
			return errBadSignature
		}
		return nil
	case "pkcs1":
		return rsaErr(rsa.VerifyPKCS1v15(k.pub.(*rsa.PublicKey), a.hash, digest(a.hash, data), sig))
	case "pss":
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: a.hash}
		return rsaErr(rsa.VerifyPSS(k.pub.(*rsa.PublicKey), a.hash, digest(a.hash, data), sig, opts))
	case "ecdsa":
		pub := k.pub.(*ecdsa.PublicKey)
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return errBadSignature
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest(a.hash, data), r, s) {
			return errBadSignature
		}
		return nil
	case "eddsa":
		if !ed25519.Verify(k.pub.(ed25519.PublicKey), data, sig) {
			return errBadSignature
		}
		return nil
	}
	return errBadSignature
}

func rsaErr(err error) error {
	if err != nil {
		return errBadSignature
	}
	return nil
}
