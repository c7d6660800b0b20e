package mesh

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

func benchFixture(b *testing.B) (server, client *Source) {
	b.Helper()
	ca, err := NewCA(testTD, 0)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for _, s := range []string{"payments", "orders"} {
		id, _ := ServiceID(testTD, "default", s)
		c, k, err := ca.IssueID(id, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteIdentity(filepath.Join(dir, s), c, k, ca.BundlePEM()); err != nil {
			b.Fatal(err)
		}
	}
	load := func(s string) *Source {
		src, err := NewSource(SourceOptions{
			CertFile: filepath.Join(dir, s, CertFile), KeyFile: filepath.Join(dir, s, KeyFile), BundleFile: filepath.Join(dir, s, BundleFile),
		})
		if err != nil {
			b.Fatal(err)
		}
		return src
	}
	return load("payments"), load("orders")
}

// BenchmarkHandshake is one full mTLS handshake (ECDSA P-256, TLS 1.3) with
// SPIFFE verification on both sides: the cost a pooled connection avoids.
func BenchmarkHandshake(b *testing.B) {
	srv, cli := benchFixture(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	sconf := srv.ServerTLS(ModeStrict)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, sconf)
				_ = tc.Handshake()
				_ = tc.Close()
			}()
		}
	}()
	cconf := cli.ClientTLS(svcID("payments"))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := tls.Dial("tcp", ln.Addr().String(), cconf)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
}

// BenchmarkPooledRequest compares a request over a pooled mTLS h2
// connection with one over pooled plaintext HTTP/1.1.
func BenchmarkPooledRequest(b *testing.B) {
	srv, cli := benchFixture(b)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	run := func(b *testing.B, url string, tr *http.Transport) {
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	b.Run("mtls-h2", func(b *testing.B) {
		ts := httptest.NewUnstartedServer(h)
		ts.TLS = srv.ServerTLS(ModeStrict)
		ts.EnableHTTP2 = true
		ts.StartTLS()
		defer ts.Close()
		run(b, ts.URL, &http.Transport{TLSClientConfig: cli.ClientTLS(svcID("payments")), ForceAttemptHTTP2: true})
		b.ReportMetric(float64(srv.Stats().ServerHandshakes), "handshakes")
	})
	b.Run("plain-h1", func(b *testing.B) {
		ts := httptest.NewServer(h)
		defer ts.Close()
		run(b, ts.URL, &http.Transport{MaxIdleConnsPerHost: 64})
	})
}
