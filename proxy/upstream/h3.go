package upstream

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// newH3Transport returns an HTTP/3 transport for the cluster. Each endpoint
// gets its own QUIC connection, dialed within the connect timeout and
// presenting the endpoint's DNS name unless tlsCfg fixes a server name.
func (c *Cluster) newH3Transport(tlsCfg *tls.Config) (http.RoundTripper, func()) {
	fixed := tlsCfg.ServerName != ""
	tr := &http3.Transport{
		TLSClientConfig: tlsCfg,
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: c.cfg.ConnectTimeout,
			MaxIdleTimeout:       idleConnTimeout,
			KeepAlivePeriod:      15 * time.Second,
		},
		DisableCompression: true,
		Dial: func(ctx context.Context, addr string, conf *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			if !fixed {
				conf.ServerName = c.sniFor(addr) // conf is the transport's own clone
			}
			dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
			defer cancel()
			conn, err := quic.DialAddr(dctx, addr, conf, qc)
			if err != nil {
				return nil, &dialError{err}
			}
			return conn, nil
		},
	}
	return tr, func() { _ = tr.Close() }
}
