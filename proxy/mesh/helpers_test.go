package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const testTD = "wasmgate.test"

// testCA makes a CA for td.
func testCA(t *testing.T, td string) *CA {
	t.Helper()
	ca, err := NewCA(td, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issueTo writes an identity for service (namespace default) into dir.
func issueTo(t *testing.T, ca *CA, dir, service string) {
	t.Helper()
	id, err := ServiceID(ca.TrustDomain, "default", service)
	if err != nil {
		t.Fatal(err)
	}
	writeID(t, ca, dir, id)
}

func writeID(t *testing.T, ca *CA, dir string, id ID) {
	t.Helper()
	c, k, err := ca.sign(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteIdentity(dir, c, k, ca.BundlePEM()); err != nil {
		t.Fatal(err)
	}
}

// startSource loads and watches the identity in dir.
func startSource(t *testing.T, dir string) *Source {
	t.Helper()
	s, err := NewSource(SourceOptions{
		CertFile:     filepath.Join(dir, CertFile),
		KeyFile:      filepath.Join(dir, KeyFile),
		BundleFile:   filepath.Join(dir, BundleFile),
		Debounce:     20 * time.Millisecond,
		PollInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// serveTLS serves h over TLS with conf on a loopback port and returns its address.
// The handler answers with the peer's SPIFFE ID.
func serveTLS(t *testing.T, conf *tls.Config, h http.Handler) string {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, PeerID(r.TLS))
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: conf, ReadHeaderTimeout: 5 * time.Second, ErrorLog: discardLog()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// mtlsClient is a client with conf that speaks h2 when the server offers it.
func mtlsClient(t *testing.T, conf *tls.Config, keepAlive bool) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: conf.Clone(), ForceAttemptHTTP2: true, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(c *http.Client, addr string) (string, error) {
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status)
	}
	return string(b), nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return writeFileAtomic(to, b, 0o600)
}
