package listener

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// rawExchange writes req on a new TCP connection and returns the status line.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return statusLine(t, c, req)
}

// statusLine writes req on c, returns the answer's status line and closes c.
func statusLine(t *testing.T, c net.Conn, req string) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading status line: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

func TestBadInputNeverReachesHandler(t *testing.T) {
	var called atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called.Add(1)
		io.Copy(io.Discard, r.Body)
	})
	limits := testLimits() // 16 KiB of headers
	l := start(t, config.Listener{}, limits, h, Options{})
	big := strings.Repeat("a", 20<<10)
	tests := []struct {
		name, req, want string
	}{
		{"invalid host characters", "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", "HTTP/1.1 400"},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400"},
		{"host port out of range", "GET / HTTP/1.1\r\nHost: x:99999\r\n\r\n", "HTTP/1.1 400"},
		{"host port not a number", "GET / HTTP/1.1\r\nHost: x:http\r\n\r\n", "HTTP/1.1 400"},
		{"host unclosed ipv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "HTTP/1.1 400"},
		{"host bare ipv6", "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", "HTTP/1.1 400"},
		{"host port without host", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", "HTTP/1.1 400"},
		{"conflicting content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "HTTP/1.1 400"},
		{"content-length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\na", "HTTP/1.1 400"},
		{"negative content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 400"},
		{"two transfer-encodings", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 501"},
		{"transfer-encoding list", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 501"},
		{"unknown transfer-encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 501"},
		{"space in header name", "GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", "HTTP/1.1 400"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", "HTTP/1.1 400"},
		{"NUL in header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", "HTTP/1.1 400"},
		{"garbage request line", "GARBAGE\r\n\r\n", "HTTP/1.1 400"},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"unknown version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
		{"header block over limit", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", "HTTP/1.1 431"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := called.Load()
			got := rawExchange(t, l.Addr().String(), tt.req)
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("status %q, want %q", got, tt.want)
			}
			if called.Load() != before {
				t.Fatal("the handler was called")
			}
		})
	}
	// Controls: the same shapes, valid, do reach the handler.
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: x:8080\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big[:15<<10] + "\r\n\r\n",
	} {
		if got := rawExchange(t, l.Addr().String(), req); !strings.HasPrefix(got, "HTTP/1.") || !strings.Contains(got, " 200 ") {
			t.Errorf("valid request %.40q: status %q", req, got)
		}
	}
}

// TestContentLengthWithTransferEncoding: a request carrying both framings
// is answered 400 and never reaches the handler, on plaintext listeners and
// on the plaintext side of a TLS+plaintext listener (h1Guard); valid
// requests pipelined on one connection, with header-like lines in their
// bodies, still reach it.
func TestContentLengthWithTransferEncoding(t *testing.T) {
	type seen struct{ path, body string }
	got := make(chan seen, 8)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.URL.Path, string(b)}
	})
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ca := newCA(t, "ca")
	cert := ca.issue(t, "s", []string{"localhost"}, false, "").write(t, t.TempDir(), "s")
	plain := start(t, config.Listener{Name: "plain"}, testLimits(), h, Options{Metrics: m})
	sniff := start(t, config.Listener{Name: "sniff", TLS: &config.ListenerTLS{Certs: []config.Cert{cert}, AllowPlaintext: true}}, testLimits(), h, Options{Metrics: m})

	smuggles := []string{
		// With Content-Length framing the body would end inside the chunk
		// and "GET /smuggled" would be a second request.
		"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n",
		"POST /first HTTP/1.0\r\nHost: x\r\ncontent-length: 1\r\nTRANSFER-ENCODING: chunked\r\n\r\nx",
	}
	secure := start(t, config.Listener{Name: "tls", TLS: &config.ListenerTLS{Certs: []config.Cert{cert}}}, testLimits(), h, Options{Metrics: m})
	for _, l := range []*Listener{plain, sniff} {
		for _, req := range smuggles {
			if status := rawExchange(t, l.Addr().String(), req); !strings.HasPrefix(status, "HTTP/1.1 400") {
				t.Errorf("%s: %.60q: status %q, want 400", l.Name(), req, status)
			}
		}
	}
	// HTTP/1 over TLS: the listener handshakes, so the guard sees the
	// decrypted request.
	for _, l := range []*Listener{secure, sniff} {
		for _, req := range smuggles {
			if status := rawTLSExchange(t, l.Addr().String(), ca, req); !strings.HasPrefix(status, "HTTP/1.1 400") {
				t.Errorf("%s over TLS: %.60q: status %q, want 400", l.Name(), req, status)
			}
		}
	}
	select {
	case s := <-got:
		t.Fatalf("a refused request reached the handler: %+v", s)
	default:
	}
	if n := counterSum(t, reg, "wasmgate_listener_ambiguous_framing_total"); n != float64(4*len(smuggles)) {
		t.Fatalf("wasmgate_listener_ambiguous_framing_total = %v, want %d", n, 4*len(smuggles))
	}
	// Plain HTTP to the TLS-only port gets net/http's usual one-line 400.
	if status := rawExchange(t, secure.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); status != "HTTP/1.0 400 Bad Request" {
		t.Errorf("plain HTTP to a TLS port: %q", status)
	}
	// The counter moves just after the answer is written: poll briefly.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		n := counterSum(t, reg, "wasmgate_listener_tls_handshake_failures_total")
		if n == 1 {
			break
		}
		if n > 1 || time.Now().After(deadline) {
			t.Fatalf("wasmgate_listener_tls_handshake_failures_total = %v after one plain request to a TLS port, want 1", n)
		}
	}

	// Controls on one connection: a chunked body and a Content-Length body,
	// each with header-like lines inside, then a plain GET.
	inner := "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"
	c, err := net.Dial("tcp", plain.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(inner), inner)
	fmt.Fprintf(c, "POST /length HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(inner), inner)
	fmt.Fprintf(c, "GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []seen{{"/chunked", inner}, {"/length", inner}, {"/last", ""}} {
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("handler saw %+v, want %+v", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s never reached the handler", want.path)
		}
	}
}

func TestBadChunkingIsBodyError(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if IsBodyError(err) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	l := start(t, config.Listener{}, testLimits(), h, Options{})
	for name, req := range map[string]string{
		"bad chunk size":      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"missing chunk CRLF":  "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
		"chunk size overflow": "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			if got := rawExchange(t, l.Addr().String(), req); !strings.HasPrefix(got, "HTTP/1.1 400") {
				t.Fatalf("status %q, want 400", got)
			}
		})
	}
	var be *BodyError
	if !errors.As(&BodyError{Err: io.ErrUnexpectedEOF}, &be) || !errors.Is(be, io.ErrUnexpectedEOF) {
		t.Fatal("BodyError does not unwrap")
	}
}

func TestHeaderLimitOverH2AndH3(t *testing.T) {
	s := startTLS(t, config.Listener{HTTP3: h3Config()}, okHandler, Options{})
	// Go's h2 client refuses to send more than the server advertises, so
	// HTTP/2 is spoken with a raw framer.
	if got := rawH2Status(t, s.Addr().String(), s.clientTLS(), 24<<10); got != "431" {
		t.Errorf("h2: status %s, want 431", got)
	}
	if got := rawH2Status(t, s.Addr().String(), s.clientTLS(), 8<<10); got != "200" {
		t.Errorf("h2 under the limit: status %s, want 200", got)
	}
	req, _ := http.NewRequest("GET", s.url("/"), nil)
	req.Header.Set("X-Big", strings.Repeat("a", 24<<10))
	resp, err := h3Client(t, s.clientTLS()).Do(req)
	if err != nil {
		t.Fatalf("h3: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("h3: status %d, want 431", resp.StatusCode)
	}
}

// rawH2Status sends one GET with headerBytes of extra header fields over a
// raw HTTP/2 connection and returns the response :status.
func rawH2Status(t *testing.T, addr string, conf *tls.Config, headerBytes int) string {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i < headerBytes/512; i++ {
		enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", i), Value: strings.Repeat("a", 512), Sensitive: true})
	}
	block := buf.Bytes()
	// Split the block into CONTINUATION frames of the default max size.
	const maxFrame = 16 << 10
	first := block[:min(len(block), maxFrame)]
	rest := block[len(first):]
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true, EndHeaders: len(rest) == 0})
	for len(rest) > 0 {
		n := min(len(rest), maxFrame)
		fr.WriteContinuation(1, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("h2: reading response: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					return hf.Value
				}
			}
		case *http2.GoAwayFrame:
			t.Fatalf("h2: GOAWAY %v", f.ErrCode)
		}
	}
}

// TestSlowClientsAreCut checks the read-header timeout on plaintext, TLS
// (handshake) and sniffing listeners, and the keep-alive idle timeout.
func TestSlowClientsAreCut(t *testing.T) {
	limits := testLimits()
	limits.ReadHeaderTimeout = 300 * time.Millisecond
	limits.IdleTimeout = 300 * time.Millisecond
	plain := start(t, config.Listener{}, limits, okHandler, Options{})
	ca := newCA(t, "ca")
	cert := ca.issue(t, "s", []string{"localhost"}, false, "").write(t, t.TempDir(), "s")
	secure := start(t, config.Listener{TLS: &config.ListenerTLS{Certs: []config.Cert{cert}}}, limits, okHandler, Options{})
	sniff := start(t, config.Listener{TLS: &config.ListenerTLS{Certs: []config.Cert{cert}, AllowPlaintext: true}}, limits, okHandler, Options{})

	tests := []struct {
		name, addr, send string
	}{
		{"half a header", plain.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n"},
		{"silent on plaintext", plain.Addr().String(), ""},
		{"silent on tls", secure.Addr().String(), ""},
		{"silent on sniffing", sniff.Addr().String(), ""},
		{"half a header after sniffing", sniff.Addr().String(), "GET / HTTP/1.1\r\n"},
		{"idle keep-alive", plain.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			begin := time.Now()
			io.WriteString(c, tt.send)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			// Read until the server closes; a response (idle case) is fine.
			_, err = io.Copy(io.Discard, c)
			took := time.Since(begin)
			if err != nil {
				t.Fatalf("connection not closed by the server: %v after %v", err, took)
			}
			if took < 250*time.Millisecond || took > 3*time.Second {
				t.Fatalf("closed after %v, want about 300ms", took)
			}
		})
	}
	// A client that finished its handshake and request in time is served.
	conf := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}
	resp, err := h2Client(t, conf, true).Get("https://" + secure.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// rawTLSExchange is rawExchange over TLS (HTTP/1.1 by ALPN), trusting ca.
func rawTLSExchange(t *testing.T, addr string, ca *testCA, req string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return statusLine(t, c, req)
}

// counterSum adds up every series of the counter name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestTLSStateSurvivesTheGuard: HTTP/1 over TLS is served inside the
// smuggling guard, yet handlers see r.TLS (SNI, ALPN, client certificate)
// and the connection info says TLS; HTTP/2 keeps net/http's own TLS path.
// (client_auth "request" asks for a certificate without verifying it.)
func TestTLSStateSurvivesTheGuard(t *testing.T) {
	type seen struct {
		proto, sni, alpn string
		peerCerts        int
		infoTLS          bool
	}
	got := make(chan seen, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{proto: r.Proto}
		if r.TLS != nil {
			s.sni, s.alpn, s.peerCerts = r.TLS.ServerName, r.TLS.NegotiatedProtocol, len(r.TLS.PeerCertificates)
		}
		info, _ := Info(r.Context())
		s.infoTLS = info.TLS
		got <- s
	})
	srv := startTLS(t, config.Listener{TLS: &config.ListenerTLS{ClientAuth: "request"}}, h, Options{})
	client := srv.ca.issue(t, "client", nil, true, "spiffe://test/ns/default/sa/c")
	for _, alpn := range []string{"http/1.1", "h2"} {
		conf := srv.clientTLS()
		conf.NextProtos = []string{alpn}
		conf.Certificates = []tls.Certificate{client.tls}
		tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: alpn == "h2"}
		resp, err := (&http.Client{Transport: tr}).Get(srv.url("/"))
		if err != nil {
			t.Fatalf("%s: %v", alpn, err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		s := <-got
		if s.sni != "localhost" || s.alpn != alpn || s.peerCerts != 1 || !s.infoTLS {
			t.Errorf("%s: handler saw %+v", alpn, s)
		}
	}
}
