package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/wasmgate/wasmgate/internal/echo"
)

// The demo's credentials. They are public on purpose: configs/edge.yaml
// holds the API key's hash and the JWT secret, and both only guard the
// loopback demo.
const (
	demoAPIKey    = "wg_demo_3f9c2a7e1b5d4c8a"
	demoJWTSecret = "wasmgate-demo-hs256-secret-do-not-use-in-production"
	demoJWTKid    = "demo"
	demoIssuer    = "https://demo.wasmgate.local"
	demoAudience  = "wasmgate-demo"
)

// cmdDemo runs the edge demo: two echo upstreams, the gateway on
// configs/edge.yaml, and the credentials to try it with.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "configs/edge.yaml", "config file")
	state := fs.String("state-dir", ".wasmgate-demo", "where credentials and the self-signed certificate go")
	logFormat := fs.String("log-format", "console", "json or console")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var servers []*http.Server
	for _, up := range []struct{ addr, name string }{{"127.0.0.1:9001", "v1"}, {"127.0.0.1:9002", "v2"}} {
		ln, err := net.Listen("tcp", up.addr)
		if err != nil {
			return fmt.Errorf("demo: echo %s: %w (is another demo running?)", up.name, err)
		}
		srv := &http.Server{Handler: echo.Handler(up.name), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintln(stderr, "echo:", err)
			}
		}()
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(ctx)
		}
	}()

	jwt, err := demoJWT(time.Now(), 24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	creds := filepath.Join(*state, "credentials.env")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("DEMO_API_KEY=%s\nDEMO_JWT=%s\n", demoAPIKey, jwt)), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	g, err := startGateway(&commonFlags{config: *cfgPath, logFormat: *logFormat})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `
wasmgate demo is running (Ctrl-C stops it). Credentials are in %s.

  # open route, answered by echo v1
  curl -s http://127.0.0.1:8080/public/hello
  # same over HTTPS, h2 (self-signed certificate) and HTTP/3 if your curl has it
  curl -sk --http2 https://127.0.0.1:8443/public/hello
  curl -sk --http3-only https://127.0.0.1:8443/public/hello

  # /v1/ needs the API key (api-key -> rate-limit -> authz -> transform)
  curl -s -H 'x-api-key: %s' http://127.0.0.1:8080/v1/orders
  curl -s -i http://127.0.0.1:8080/v1/orders                       # 401 without it

  # /v2/ needs the JWT (jwt-auth -> rate-limit -> authz -> transform)
  curl -s -H 'Authorization: Bearer %s' http://127.0.0.1:8080/v2/orders

  # a burst of 20 shows 429s (limit: 5 per second per consumer on /v1/)
  for i in $(seq 20); do curl -s -o /dev/null -w '%%{http_code} ' -H 'x-api-key: %s' http://127.0.0.1:8080/v1/burst; done; echo

  # operations
  curl -s http://127.0.0.1:9901/plugins
  curl -s http://127.0.0.1:9901/metrics | grep '^wasmgate_'
  curl -s -X POST http://127.0.0.1:9901/reload

`, creds, demoAPIKey, jwt, demoAPIKey)
	return waitAndShutdown(g)
}

// demoJWT signs an HS256 token for the demo consumer.
func demoJWT(now time.Time, ttl time.Duration) (string, error) {
	enc := base64.RawURLEncoding
	header, err := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": demoJWTKid})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"sub":   "demo-user",
		"iss":   demoIssuer,
		"aud":   demoAudience,
		"iat":   now.Unix(),
		"exp":   now.Add(ttl).Unix(),
		"scope": "orders:read orders:write",
		"roles": []string{"customer"},
	})
	if err != nil {
		return "", err
	}
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(demoJWTSecret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil)), nil
}
