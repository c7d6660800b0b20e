// Command echo is the demo upstream: it answers every request with a JSON
// object describing what it received, plus which instance answered.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wasmgate/wasmgate/internal/echo"
)

func main() {
	addrs := flag.String("listen", "127.0.0.1:9001=v1", "comma-separated ADDR=INSTANCE pairs to serve")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var servers []*http.Server
	errc := make(chan error, 8)
	for _, pair := range strings.Split(*addrs, ",") {
		addr, name, ok := strings.Cut(pair, "=")
		if !ok {
			name = addr
		}
		srv := &http.Server{Addr: addr, Handler: echo.Handler(name), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			fmt.Fprintf(os.Stderr, "echo %s listening on http://%s\n", name, addr)
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("echo %s: %w", name, err)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
}
