package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// maxTokenLen bounds the size of a token we are willing to parse.
const maxTokenLen = 16 << 10

// tokenError is a verification failure. desc goes to the client in the
// WWW-Authenticate error_description, so it never carries secrets.
type tokenError struct {
	desc string
	err  error
}

func (e *tokenError) Error() string {
	if e.err != nil {
		return e.desc + ": " + e.err.Error()
	}
	return e.desc
}

func (e *tokenError) Unwrap() error { return e.err }

func invalid(desc string) *tokenError { return &tokenError{desc: desc} }

func invalidf(desc string, err error) *tokenError { return &tokenError{desc: desc, err: err} }

// errNoToken means the request carried no token at all.
var errNoToken = errors.New("jwt: no token")

// jwsHeader is the protected header of a compact JWS.
type jwsHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit"`
	// Jku, X5u and Jwk are refused: keys come from config only.
	Jku string          `json:"jku"`
	X5u string          `json:"x5u"`
	Jwk json.RawMessage `json:"jwk"`
}

// parsedToken is a compact JWS split into its parts; nothing is verified.
type parsedToken struct {
	header       jwsHeader
	claimsJSON   []byte
	signingInput []byte
	signature    []byte
}

// parseToken splits and decodes a compact JWS (header.payload.signature).
func parseToken(tok string) (*parsedToken, error) {
	if len(tok) > maxTokenLen {
		return nil, invalid("token too large")
	}
	first := strings.IndexByte(tok, '.')
	last := strings.LastIndexByte(tok, '.')
	if first < 0 || first == last || strings.Count(tok, ".") != 2 {
		return nil, invalid("malformed token")
	}
	hdrB, err := base64.RawURLEncoding.DecodeString(tok[:first])
	if err != nil {
		return nil, invalidf("malformed token header", err)
	}
	p := &parsedToken{signingInput: []byte(tok[:last])}
	dec := json.NewDecoder(bytes.NewReader(hdrB))
	if err := dec.Decode(&p.header); err != nil {
		return nil, invalidf("malformed token header", err)
	}
	switch {
	case p.header.Alg == "" || strings.EqualFold(p.header.Alg, "none"):
		return nil, invalid("unsigned tokens (alg none) are not accepted")
	case len(p.header.Crit) > 0:
		return nil, invalid(fmt.Sprintf("unsupported critical header %q", p.header.Crit[0]))
	case p.header.Jku != "" || p.header.X5u != "" || len(p.header.Jwk) > 0:
		return nil, invalid("embedded or remote keys (jwk, jku, x5u) are not accepted")
	}
	if p.claimsJSON, err = base64.RawURLEncoding.DecodeString(tok[first+1 : last]); err != nil {
		return nil, invalidf("malformed token payload", err)
	}
	if p.signature, err = base64.RawURLEncoding.DecodeString(tok[last+1:]); err != nil {
		return nil, invalidf("malformed token signature", err)
	}
	if len(p.signature) == 0 {
		return nil, invalid("missing signature")
	}
	return p, nil
}
