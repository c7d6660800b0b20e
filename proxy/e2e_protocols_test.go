package proxy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wasmgate/wasmgate/internal/echo"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/proxy"
)

// protoEnv is a real Gateway (listeners, snapshot, router, upstream) with a
// TLS listener serving h1/h2/h3, a plaintext h2c listener, and upstreams
// speaking HTTP/1.1, gRPC over h2c and WebSocket.
type protoEnv struct {
	gw        *proxy.Gateway
	grpc      *testService
	tlsAddr   string // TCP and UDP
	plainAddr string
	roots     *x509.CertPool
}

// plugins puts two Wasm plugins on the v1 and ws routes when set:
// deny-path (403 for /v1/denied and /ws/denied) and add-header.
func startProtoEnv(t *testing.T, plugins ...bool) *protoEnv {
	t.Helper()
	dir := t.TempDir()
	v1Filters, wsFilters, wasmCache := "", "", ""
	if len(plugins) > 0 && plugins[0] {
		deny := wasmbuild.Build(t, "pluginsdk-examples/deny-path")
		add := wasmbuild.Build(t, "pluginsdk-examples/add-header")
		v1Filters = fmt.Sprintf(`, filters: [{plugin: %q, config: {prefixes: [/v1/denied]}}, {plugin: %q, config: {request: {X-Gateway: wasmgate}, response: {X-Served-By: wasmgate}}}]`, deny, add)
		wsFilters = fmt.Sprintf(`, filters: [{plugin: %q, config: {prefixes: [/ws/denied]}}]`, deny)
		wasmCache = fmt.Sprintf("wasm: {cache_dir: %q}", wasmbuild.CacheDir())
	}
	roots := writeServerCert(t, dir)

	echoSrv := httptest.NewServer(echo.Handler("v1"))
	t.Cleanup(echoSrv.Close)
	blobSrv := httptest.NewServer(http.HandlerFunc(blobHandler))
	t.Cleanup(blobSrv.Close)
	wsSrv := httptest.NewServer(http.HandlerFunc(wsHandler))
	t.Cleanup(wsSrv.Close)

	h3Up := startH3Upstream(t, dir)

	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	svc := &testService{deadlines: make(chan time.Duration, 4)}
	testpb.RegisterTestServiceServer(gs, svc)
	go gs.Serve(grpcLn)
	t.Cleanup(gs.Stop)

	cfg := fmt.Sprintf(`
mode: edge
admin: {address: "off"}
logging: {level: error, access_log: {enabled: false}}
%s
listeners:
  - name: edge
    address: 127.0.0.1:0
    tls:
      certs: [{cert_file: server.crt, key_file: server.key}]
    http3: {max_streams: 200}
  - name: plain
    address: 127.0.0.1:0
    h2c: true
routes:
  - {name: grpc, match: {path: {prefix: /grpc.testing.TestService/}}, cluster: grpc}
  - {name: grpc-down, match: {path: {prefix: /grpc.testing.ReconnectService/}}, cluster: down}
  - {name: ws, match: {path: {prefix: /ws}}, cluster: ws%s}
  - {name: blob, match: {path: {prefix: /blob}}, cluster: blob}
  - {name: h3up, match: {path: {prefix: /h3up}}, cluster: h3up}
  - {name: v1, match: {path: {prefix: /v1/}}, cluster: echo%s}
clusters:
  - {name: echo, endpoints: [%q]}
  - {name: blob, endpoints: [%q]}
  - {name: ws, endpoints: [%q]}
  - {name: grpc, protocol: h2c, endpoints: [%q]}
  - {name: h3up, protocol: h3, endpoints: [%q], tls: {ca_file: ca.pem, server_name: localhost}}
  - {name: down, protocol: h2c, endpoints: ["127.0.0.1:1"], retry: {attempts: 1}}
`, wasmCache, wsFilters, v1Filters, echoSrv.Listener.Addr(), blobSrv.Listener.Addr(), wsSrv.Listener.Addr(), grpcLn.Addr(), h3Up)
	gw := bootGateway(t, dir, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
	})
	e := &protoEnv{gw: gw, roots: roots, grpc: svc}
	for _, l := range gw.Listeners() {
		switch l.Name() {
		case "edge":
			e.tlsAddr = l.Addr().String()
			if l.H3Addr() == nil {
				t.Fatal("edge listener has no HTTP/3")
			}
		case "plain":
			e.plainAddr = l.Addr().String()
		}
	}
	return e
}

// writeServerCert writes a CA-signed certificate for localhost and
// 127.0.0.1 into dir and returns the CA pool.
func writeServerCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// startH3Upstream serves blobHandler over HTTP/3 only, with the
// certificate in dir, and returns its UDP address.
func startH3Upstream(t *testing.T, dir string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{Handler: http.HandlerFunc(blobHandler), TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(udp)
	}()
	t.Cleanup(func() {
		srv.Close()
		udp.Close()
		<-done
	})
	return udp.LocalAddr().String()
}

func (e *protoEnv) tlsConf() *tls.Config {
	return &tls.Config{RootCAs: e.roots, ServerName: "localhost"}
}

func (e *protoEnv) h3Client(t *testing.T) *http.Client {
	tr := &http3.Transport{TLSClientConfig: e.tlsConf()}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (e *protoEnv) h2Client(t *testing.T) *http.Client {
	tr := &http.Transport{TLSClientConfig: e.tlsConf(), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// blobHandler hashes the request body and answers with the hash and
// ?size= bytes.
func blobHandler(w http.ResponseWriter, r *http.Request) {
	sum := sha256.New()
	n, err := io.Copy(sum, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var size int
	fmt.Sscan(r.URL.Query().Get("size"), &size)
	w.Header().Set("X-Request-Sum", hex.EncodeToString(sum.Sum(nil)))
	w.Header().Set("X-Request-Len", fmt.Sprint(n))
	w.Header().Set("X-Upstream-Proto", r.Proto)
	w.Write(pattern(size))
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func TestE2EHTTP3Routing(t *testing.T) {
	e := startProtoEnv(t)
	resp, err := e.h3Client(t).Get("https://" + e.tlsAddr + "/v1/hello?x=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep echo.Reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Proto != "HTTP/3.0" || rep.Instance != "v1" || rep.Path != "/v1/hello" {
		t.Fatalf("h3 through the proxy: %d %s instance %q path %q", resp.StatusCode, resp.Proto, rep.Instance, rep.Path)
	}
	if resp.Header.Get("Alt-Svc") != "" {
		t.Errorf("h3 response advertises Alt-Svc %q", resp.Header.Get("Alt-Svc"))
	}
	// No route: the proxy's own 404 over h3.
	nf, err := e.h3Client(t).Get("https://" + e.tlsAddr + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	nf.Body.Close()
	if nf.StatusCode != 404 {
		t.Errorf("unrouted h3 request: %d, want 404", nf.StatusCode)
	}
	// The h2 response advertises h3 on the same port.
	h2, err := e.h2Client(t).Get("https://" + e.tlsAddr + "/v1/x")
	if err != nil {
		t.Fatal(err)
	}
	h2.Body.Close()
	_, port, _ := net.SplitHostPort(e.tlsAddr)
	if got, want := h2.Header.Get("Alt-Svc"), `h3=":`+port+`"; ma=86400`; h2.Proto != "HTTP/2.0" || got != want {
		t.Fatalf("h2 response %s Alt-Svc %q, want %q", h2.Proto, got, want)
	}
}

// TestE2EHTTP3Plugins: Wasm plugins see HTTP/3 requests like any other.
func TestE2EHTTP3Plugins(t *testing.T) {
	e := startProtoEnv(t, true)
	c := e.h3Client(t)
	resp, err := c.Get("https://" + e.tlsAddr + "/v1/denied/x")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden || resp.Proto != "HTTP/3.0" || !strings.Contains(body, "/v1/denied/x") {
		t.Fatalf("denied path over h3: %d %s %q", resp.StatusCode, resp.Proto, body)
	}
	resp, err = c.Get("https://" + e.tlsAddr + "/v1/ok")
	if err != nil {
		t.Fatal(err)
	}
	var rep echo.Reply
	if err := json.Unmarshal([]byte(readBody(t, resp)), &rep); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || rep.Headers["X-Gateway"] == nil || rep.Headers["X-Gateway"][0] != "wasmgate" || resp.Header.Get("X-Served-By") != "wasmgate" {
		t.Fatalf("add-header over h3: %d, upstream headers %v, response X-Served-By %q", resp.StatusCode, rep.Headers, resp.Header.Get("X-Served-By"))
	}
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestE2EHTTP3Bodies(t *testing.T) {
	e := startProtoEnv(t)
	up := pattern(1 << 20)
	upSum := sha256.Sum256(up)
	resp, err := e.h3Client(t).Post("https://"+e.tlsAddr+"/blob?size=1048576", "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	down, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Sum") != hex.EncodeToString(upSum[:]) {
		t.Fatalf("upload: status %d, upstream saw %s bytes with sum %s", resp.StatusCode, resp.Header.Get("X-Request-Len"), resp.Header.Get("X-Request-Sum"))
	}
	if !bytes.Equal(down, pattern(1<<20)) {
		t.Fatalf("download: got %d bytes, not the 1 MiB pattern", len(down))
	}
}

// TestE2EHTTP3Upstream goes h2 and h3 in, HTTP/3 out to the upstream.
func TestE2EHTTP3Upstream(t *testing.T) {
	e := startProtoEnv(t)
	up := pattern(256 << 10)
	upSum := sha256.Sum256(up)
	for name, c := range map[string]*http.Client{"h2": e.h2Client(t), "h3": e.h3Client(t)} {
		resp, err := c.Post("https://"+e.tlsAddr+"/h3up?size=300000", "application/octet-stream", bytes.NewReader(up))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		down, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: status %d, %v", name, resp.StatusCode, err)
		}
		if got := resp.Header.Get("X-Upstream-Proto"); got != "HTTP/3.0" {
			t.Errorf("%s: upstream saw %q, want HTTP/3.0", name, got)
		}
		if resp.Header.Get("X-Request-Sum") != hex.EncodeToString(upSum[:]) || !bytes.Equal(down, pattern(300000)) {
			t.Errorf("%s: bodies differ: upstream got %s bytes, client got %d", name, resp.Header.Get("X-Request-Len"), len(down))
		}
	}
}

func TestE2EHTTP3ManyStreams(t *testing.T) {
	e := startProtoEnv(t)
	c := e.h3Client(t)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			resp, err := c.Get(fmt.Sprintf("https://%s/blob?size=%d", e.tlsAddr, 1000+i))
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || len(b) != 1000+i {
				errs <- fmt.Errorf("stream %d: status %d, %d bytes, %v", i, resp.StatusCode, len(b), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var conns int64
	for _, l := range e.gw.Listeners() {
		conns += l.ActiveConns()
	}
	if conns != 1 {
		t.Errorf("%d downstream connections, want the one QUIC connection", conns)
	}
}

// testService is a gRPC upstream: echo, streams both ways, errors, deadlines.
type testService struct {
	testpb.UnimplementedTestServiceServer
	// deadlines receives the time left of calls that ask to wait for their
	// deadline (FillUsername).
	deadlines chan time.Duration
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if s := req.GetResponseStatus(); s != nil && s.Code != 0 {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	if req.GetFillUsername() {
		// Wait for the deadline the client set, passed on by the proxy.
		dl, ok := ctx.Deadline()
		if !ok {
			return nil, status.Error(codes.FailedPrecondition, "no deadline reached the upstream")
		}
		s.deadlines <- time.Until(dl)
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	grpc.SetHeader(ctx, metadata.Pairs("x-upstream", "grpc"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t-"+strings.Join(md.Get("x-client"), ",")))
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: bytes.ToUpper(req.GetPayload().GetBody())}}, nil
}

func (testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: pattern(int(p.GetSize()))}}); err != nil {
			return err
		}
	}
	stream.SetTrailer(metadata.Pairs("x-sent", fmt.Sprint(len(req.GetResponseParameters()))))
	return nil
}

func (testService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	var total int32
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		total += int32(len(m.GetPayload().GetBody()))
	}
}

func (testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if s := m.GetResponseStatus(); s != nil && s.Code != 0 {
			return status.Error(codes.Code(s.Code), s.Message)
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: bytes.ToUpper(m.GetPayload().GetBody())}}); err != nil {
			return err
		}
	}
}

func TestE2EGRPC(t *testing.T) {
	e := startProtoEnv(t)
	conns := map[string]*grpc.ClientConn{}
	tlsConn, err := grpc.NewClient(e.tlsAddr, grpc.WithTransportCredentials(credentials.NewTLS(e.tlsConf())))
	if err != nil {
		t.Fatal(err)
	}
	conns["tls h2"] = tlsConn
	plainConn, err := grpc.NewClient(e.plainAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	conns["h2c"] = plainConn
	for name, cc := range conns {
		t.Cleanup(func() { cc.Close() })
		t.Run(name, func(t *testing.T) {
			c := testpb.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			t.Run("unary with headers and trailers", func(t *testing.T) {
				var hdr, trl metadata.MD
				ctx := metadata.AppendToOutgoingContext(ctx, "x-client", "c1")
				resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
				if err != nil {
					t.Fatal(err)
				}
				if string(resp.GetPayload().GetBody()) != "HELLO" || hdr.Get("x-upstream")[0] != "grpc" || strings.Join(trl.Get("x-trailer"), "") != "t-c1" {
					t.Fatalf("body %q header %v trailer %v", resp.GetPayload().GetBody(), hdr, trl)
				}
			})
			t.Run("error status", func(t *testing.T) {
				_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied), Message: "no entry"}})
				if s := status.Convert(err); s.Code() != codes.PermissionDenied || s.Message() != "no entry" {
					t.Fatalf("got %v, want PermissionDenied \"no entry\"", err)
				}
			})
			t.Run("deadline passed on", func(t *testing.T) {
				dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer dcancel()
				_, err := c.UnaryCall(dctx, &testpb.SimpleRequest{FillUsername: true})
				if status.Code(err) != codes.DeadlineExceeded {
					t.Fatalf("got %v, want DeadlineExceeded", err)
				}
				select {
				case left := <-e.grpc.deadlines:
					if left <= 0 || left > 300*time.Millisecond {
						t.Fatalf("upstream deadline %v away, want within the client's 300ms", left)
					}
				default:
					t.Fatal("the call did not reach the upstream with a deadline")
				}
			})
			t.Run("server streaming", func(t *testing.T) {
				params := []*testpb.ResponseParameters{{Size: 10}, {Size: 70000}, {Size: 3}}
				stream, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
				if err != nil {
					t.Fatal(err)
				}
				var sizes []int
				for {
					m, err := stream.Recv()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					sizes = append(sizes, len(m.GetPayload().GetBody()))
				}
				if fmt.Sprint(sizes) != "[10 70000 3]" || strings.Join(stream.Trailer().Get("x-sent"), "") != "3" {
					t.Fatalf("sizes %v trailer %v", sizes, stream.Trailer())
				}
			})
			t.Run("client streaming", func(t *testing.T) {
				stream, err := c.StreamingInputCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{1, 1000, 100000} {
					if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: pattern(n)}}); err != nil {
						t.Fatal(err)
					}
				}
				resp, err := stream.CloseAndRecv()
				if err != nil || resp.GetAggregatedPayloadSize() != 101001 {
					t.Fatalf("aggregated %d, err %v", resp.GetAggregatedPayloadSize(), err)
				}
			})
			t.Run("bidi streaming", func(t *testing.T) {
				stream, err := c.FullDuplexCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				// Ping-pong: each answer must arrive before the next message
				// is sent, so nothing is buffered to the end.
				for i := range 20 {
					msg := fmt.Sprintf("msg-%d", i)
					if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
						t.Fatal(err)
					}
					m, err := stream.Recv()
					if err != nil {
						t.Fatal(err)
					}
					if got := string(m.GetPayload().GetBody()); got != strings.ToUpper(msg) {
						t.Fatalf("got %q", got)
					}
				}
				if err := stream.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
					t.Fatalf("stream end: %v, want EOF", err)
				}
			})
			t.Run("bidi stream ended by the server", func(t *testing.T) {
				// The upstream ends the call with a status while the client
				// still has its send side open (no CloseSend): the proxy must
				// pass the trailers on without waiting for the client.
				ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				stream, err := c.FullDuplexCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}})
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
				stream.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Aborted), Message: "stop"}})
				if _, err := stream.Recv(); status.Code(err) != codes.Aborted {
					// httputil.ReverseProxy closes the upstream response body
					// before copying trailers; an h2 transport's Close waits
					// for the request body to end, which the client has not
					// ended. Closing the inbound body when the upstream
					// response reaches EOF (h2/h3) unblocks it.
					t.Fatalf("stream end: %v, want Aborted (trailers held until the client ends its body?)", err)
				}
			})
			t.Run("proxy errors are gRPC status", func(t *testing.T) {
				// No route, and a route whose upstream is down: the proxy
				// answers itself, and must answer in gRPC (grpc-status), not
				// with an HTTP error page the client has to guess from.
				for _, tc := range []struct {
					method string
					want   codes.Code
				}{
					{"/grpc.testing.UnknownService/Call", codes.Unimplemented},
					{"/grpc.testing.ReconnectService/Start", codes.Unavailable},
				} {
					err := cc.Invoke(ctx, tc.method, &testpb.Empty{}, &testpb.Empty{})
					s := status.Convert(err)
					if s.Code() != tc.want || strings.Contains(s.Message(), "unexpected HTTP status code") {
						t.Errorf("%s: got %v, want %v as a gRPC status (HTTP 200, content-type application/grpc, grpc-status, grpc-message)", tc.method, err, tc.want)
					}
				}
			})
			t.Run("unimplemented method", func(t *testing.T) {
				_, err := c.EmptyCall(ctx, &testpb.Empty{})
				if status.Code(err) != codes.Unimplemented {
					t.Fatalf("got %v, want Unimplemented", err)
				}
			})
		})
	}
}

// wsHandler greets, then echoes every message upper-cased until close.
func wsHandler(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := r.Context()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello "+r.URL.Query().Get("name"))); err != nil {
		return
	}
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, bytes.ToUpper(b)); err != nil {
			return
		}
	}
}

func TestE2EWebSocket(t *testing.T) {
	e := startProtoEnv(t, true)
	h1TLS := &http.Client{Transport: &http.Transport{TLSClientConfig: func() *tls.Config {
		c := e.tlsConf()
		c.NextProtos = []string{"http/1.1"}
		return c
	}()}}
	tests := []struct {
		name   string
		url    string
		client *http.Client
	}{
		{"ws", "ws://" + e.plainAddr + "/ws?name=plain", nil},
		{"wss", "wss://" + e.tlsAddr + "/ws?name=tls", h1TLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, tt.url, &websocket.DialOptions{HTTPClient: tt.client})
			if err != nil {
				t.Fatalf("dial: %v (response %v)", err, resp)
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 20)
			_, greet, err := c.Read(ctx)
			if err != nil || !strings.HasPrefix(string(greet), "hello ") {
				t.Fatalf("greeting %q, %v", greet, err)
			}
			for i := range 10 {
				typ, msg := websocket.MessageText, []byte(fmt.Sprintf("message %d", i))
				if i%2 == 1 {
					typ, msg = websocket.MessageBinary, pattern(70000+i)
				}
				if err := c.Write(ctx, typ, msg); err != nil {
					t.Fatal(err)
				}
				gotTyp, got, err := c.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if gotTyp != typ || !bytes.Equal(got, bytes.ToUpper(msg)) {
					t.Fatalf("echo %d: type %v, %d bytes", i, gotTyp, len(got))
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
	t.Run("plugin denies the upgrade", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "ws://"+e.plainAddr+"/ws/denied", nil)
		if err == nil {
			c.CloseNow()
			t.Fatal("upgrade to a denied path succeeded")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("denied upgrade: %v, response %v", err, resp)
		}
	})
}
