package listener

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// infoHandler answers "proto tls=bool" from the connection facts.
var infoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	info, _ := Info(r.Context())
	fmt.Fprintf(w, "%s tls=%v", r.Proto, info.TLS)
})

func TestPlaintextAndTLSOnOnePort(t *testing.T) {
	s := startTLS(t, config.Listener{Role: "inbound", H2C: true, TLS: &config.ListenerTLS{AllowPlaintext: true}}, infoHandler, Options{})
	addr := s.Addr().String()

	// A client that connects and says nothing must not hold up others.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	tests := []struct {
		name   string
		client *http.Client
		url    string
		want   string
	}{
		{"plaintext h1", &http.Client{Transport: &http.Transport{}}, "http://" + addr, "HTTP/1.1 tls=false"},
		{"plaintext h2c", &http.Client{Transport: h2cTransport()}, "http://" + addr, "HTTP/2.0 tls=false"},
		{"tls h1", h2Client(t, s.clientTLS(), false), s.url("/"), "HTTP/1.1 tls=true"},
		{"tls h2", h2Client(t, s.clientTLS(), true), s.url("/"), "HTTP/2.0 tls=true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.client.Timeout = 2 * time.Second
			resp, err := tt.client.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, resp); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			tt.client.CloseIdleConnections()
		})
	}
}

func h2cTransport() *http.Transport {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: p}
}

func TestH2C(t *testing.T) {
	tests := []struct {
		name string
		h2c  bool
		want string
	}{
		{"on", true, "HTTP/2.0 tls=false"},
		{"off", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := start(t, config.Listener{H2C: tt.h2c}, testLimits(), infoHandler, Options{})
			tr := h2cTransport()
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://" + l.Addr().String())
			if tt.want == "" {
				if err == nil {
					resp.Body.Close()
					t.Fatal("prior-knowledge h2c accepted with h2c off")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, resp); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			// HTTP/1.1 keeps working on an h2c listener.
			resp, err = http.Get("http://" + l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, resp); got != "HTTP/1.1 tls=false" {
				t.Fatalf("h1 on h2c listener: %q", got)
			}
		})
	}
}

func TestAltSvc(t *testing.T) {
	s := startTLS(t, config.Listener{HTTP3: h3Config(), TLS: &config.ListenerTLS{AllowPlaintext: true}}, okHandler, Options{})
	noH3 := startTLS(t, config.Listener{}, okHandler, Options{})
	port := s.H3Addr().(*net.UDPAddr).Port
	want := fmt.Sprintf(`h3=":%d"; ma=86400`, port)
	tests := []struct {
		name   string
		client *http.Client
		url    string
		want   string
	}{
		{"h2", h2Client(t, s.clientTLS(), true), s.url("/"), want},
		{"h1 over tls", h2Client(t, s.clientTLS(), false), s.url("/"), want},
		{"h3 itself", h3Client(t, s.clientTLS()), s.url("/"), ""},
		{"plaintext", http.DefaultClient, "http://" + s.Addr().String(), ""},
		{"listener without http3", h2Client(t, noH3.clientTLS(), true), noH3.url("/"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.client.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Alt-Svc"); got != tt.want {
				t.Fatalf("Alt-Svc %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHTTP3Bodies sends 256 KiB up and gets 256 KiB down on more concurrent
// streams of one QUIC connection than max_streams allows at once.
func TestHTTP3Bodies(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, err := io.Copy(sum, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("X-Sum", fmt.Sprintf("%x", sum.Sum(nil)))
		w.Header().Set("X-Len", fmt.Sprint(n))
		w.Write(bytes.Repeat([]byte{'z'}, 256<<10))
	})
	cfg := h3Config()
	cfg.MaxStreams = 4
	s := startTLS(t, config.Listener{HTTP3: cfg}, h, Options{})
	c := h3Client(t, s.clientTLS())
	payload := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	wantSum := fmt.Sprintf("%x", sha256.Sum256(payload))
	const streams = 16 // four times max_streams: the client queues
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for range streams {
		wg.Go(func() {
			resp, err := c.Post(s.url("/"), "application/octet-stream", bytes.NewReader(payload))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			switch {
			case err != nil:
				errs <- err
			case resp.Proto != "HTTP/3.0" || resp.Header.Get("X-Sum") != wantSum || n != 256<<10:
				errs <- fmt.Errorf("proto %s sum ok %v down %d", resp.Proto, resp.Header.Get("X-Sum") == wantSum, n)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.ActiveConns(); n != 1 {
		t.Errorf("ActiveConns = %d, want one QUIC connection", n)
	}
}

// TestEarlyData runs the 0-RTT policy on requests marked as early.
func TestEarlyData(t *testing.T) {
	var sawEarly string
	l := &Listener{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawEarly = r.Header.Get("Early-Data")
	})}
	tests := []struct {
		method string
		early  bool
		status int
		mark   string
	}{
		{"GET", true, 200, "1"},
		{"HEAD", true, 200, "1"},
		{"POST", true, 425, ""},
		{"DELETE", true, 425, ""},
		{"POST", false, 200, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s early=%v", tt.method, tt.early), func(t *testing.T) {
			sawEarly = ""
			r := httptest.NewRequest(tt.method, "https://x/", strings.NewReader("body"))
			r = r.WithContext(withConnState(r.Context(), &connState{inEarlyData: func() bool { return tt.early }}))
			w := httptest.NewRecorder()
			l.serveH3(w, r)
			if w.Code != tt.status || sawEarly != tt.mark {
				t.Fatalf("status %d mark %q, want %d %q", w.Code, sawEarly, tt.status, tt.mark)
			}
		})
	}
}

// TestStartContextOnlyBinds checks that canceling Start's context later
// does not stop the listener (it only bounds binding).
func TestStartContextOnlyBinds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l, err := New(config.Listener{Name: "x", Address: "127.0.0.1:0"}, testLimits(), okHandler, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown(context.Background())
	cancel()
	resp, err := http.Get("http://" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
}
