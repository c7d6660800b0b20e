// Command client-counter is a wasmgate plugin that counts requests per
// client IP in a shared counter (a fixed window), tells the client its
// count in a response header and exposes a metric.
package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
)

func main() {}

func init() { sdk.Handle(&clientCounter{}) }

// requests is exported on /metrics as
// client_counter_requests_total{plugin="client-counter"}.
var requests = sdk.NewCounter("client_counter_requests_total", "Requests counted by client-counter.")

type config struct {
	// Window is the counting window, a Go duration. Default "1m".
	Window string `json:"window"`
	// Header is the response header that carries the count. Default
	// "X-Client-Requests".
	Header string `json:"header"`
}

type clientCounter struct {
	window time.Duration
	header string
}

// Configure checks the config.
func (p *clientCounter) Configure() error {
	cfg := config{Window: "1m", Header: "X-Client-Requests"}
	if err := sdk.Config(&cfg); err != nil {
		return err
	}
	w, err := time.ParseDuration(cfg.Window)
	if err != nil || w < time.Second {
		return errors.New("client-counter: window must be a duration of at least 1s, got " + strconv.Quote(cfg.Window))
	}
	if cfg.Header == "" {
		return errors.New("client-counter: header must not be empty")
	}
	p.window, p.header = w, cfg.Header
	return nil
}

// OnRequest counts the request and remembers the count for OnResponse.
// The count lives host-side (sdk.SetValue): the response phase may run in
// another instance.
func (p *clientCounter) OnRequest(_ sdk.Request, _ sdk.Response) sdk.Action {
	ip, ok := sdk.Property(sdk.PropClientIP)
	if !ok {
		ip = "unknown"
	}
	n, _, err := sdk.CounterIncr("client-counter:"+ip, 1, p.window)
	if err != nil {
		// Counting is best effort: never fail a request over it.
		sdk.Log(sdk.LevelWarn, "client-counter: "+err.Error())
		return sdk.Continue
	}
	requests.Inc()
	sdk.SetValue("count", strconv.FormatInt(n, 10))
	return sdk.Continue
}

// OnResponse adds the count header.
func (p *clientCounter) OnResponse(_ sdk.Request, resp sdk.Response) {
	if n, ok := sdk.Value("count"); ok {
		resp.Header().Set(p.header, n)
	}
}
