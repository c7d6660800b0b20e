// Command peer-identity is a wasmgate plugin for sidecars: it passes the
// caller's SPIFFE ID (from the mTLS peer certificate) to the service in a
// request header, and can require one.
package main

import (
	"errors"
	"strings"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&peerIdentity{}) }

type config struct {
	// Header carries the peer's SPIFFE ID. Default "X-Peer-Identity".
	Header string `json:"header"`
	// Require answers 401 when the request has no peer identity.
	Require bool `json:"require"`
	// TrustDomain, when set, only accepts IDs of spiffe://<TrustDomain>/.
	TrustDomain string `json:"trust_domain"`
}

type peerIdentity struct{ cfg config }

// Configure checks the config.
func (p *peerIdentity) Configure() error {
	p.cfg = config{Header: "X-Peer-Identity"}
	if err := sdk.Config(&p.cfg); err != nil {
		return err
	}
	if p.cfg.Header == "" {
		return errors.New("peer-identity: header must not be empty")
	}
	if strings.ContainsAny(p.cfg.TrustDomain, "/:") {
		return errors.New("peer-identity: trust_domain is a bare name like example.org")
	}
	return nil
}

// OnRequest replaces whatever the client sent in the header (never trust a
// client-supplied identity) with the verified peer ID.
func (p *peerIdentity) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	req.Header().Del(p.cfg.Header)
	// peer_id is empty when the connection has no verified mTLS peer.
	id, _ := sdk.Property(sdk.PropPeerID)
	if id == "" {
		if p.cfg.Require {
			return sdk.RespondError(resp, 401, "peer identity required")
		}
		return sdk.Continue
	}
	if p.cfg.TrustDomain != "" && !strings.HasPrefix(id, "spiffe://"+p.cfg.TrustDomain+"/") {
		return sdk.RespondError(resp, 403, "peer identity from a foreign trust domain")
	}
	req.Header().Set(p.cfg.Header, id)
	return sdk.Continue
}
