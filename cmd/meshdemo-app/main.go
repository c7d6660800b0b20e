// Command meshdemo-app is the small service behind each sidecar of the mesh
// demo (configs/mesh-demo). One binary plays orders, payments or
// notifications (-service). It answers JSON that lists, per hop, the caller
// identity the hop's sidecar verified (from the identity header) and the
// trace id (from traceparent), and calls the next service through its own
// sidecar's outbound listener as plain HTTP with Host set to the service name:
//
//	orders:        GET /checkout -> POST http://payments/charge
//	notifications: GET /charge   -> POST http://payments/charge (denied by policy)
//	payments:      POST /charge  -> answers
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wasmgate/wasmgate/cmd/meshdemo-app/demoapp"
	"github.com/wasmgate/wasmgate/proxy/mesh"
)

func main() {
	service := flag.String("service", "", "orders, payments or notifications")
	listen := flag.String("listen", "127.0.0.1:18001", "address to serve on (the sidecar's inbound app address)")
	outbound := flag.String("outbound", "", "this service's sidecar outbound address (host:port)")
	idHeader := flag.String("identity-header", mesh.XFCCHeader, "header the sidecar puts the verified caller identity in")
	flag.Parse()
	h, err := demoapp.New(demoapp.Options{Service: *service, Outbound: *outbound, IdentityHeader: *idHeader})
	if err != nil {
		log.Fatalf("meshdemo-app: %v", err)
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("meshdemo-app %s listening on %s", *service, *listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("meshdemo-app: %v", err)
	}
}
