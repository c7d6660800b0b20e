package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// target is where the load goes and how.
type target struct {
	url    string
	host   string // Host header override (sidecar outbound routes by service name)
	header http.Header
	// body, when set, makes every request a POST of it (application/json).
	body   []byte
	client *http.Client
	close  func()
}

// newClient returns a client for proto "h1", "h2" or "h3" with enough idle
// connections for conc workers.
func newClient(proto string, conc int) (*http.Client, func()) {
	tlsCfg := &tls.Config{InsecureSkipVerify: true} // loopback benchmark against a self-signed listener
	switch proto {
	case "h3":
		tr := &http3.Transport{TLSClientConfig: tlsCfg}
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}, func() { _ = tr.Close() }
	case "h2":
		tr := &http.Transport{
			TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: conc, MaxConnsPerHost: 0,
			DisableCompression: true,
		}
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr.CloseIdleConnections
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * conc,
		MaxIdleConnsPerHost: 2 * conc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     tlsCfg,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr.CloseIdleConnections
}

// do sends one GET (or POST of t.body) and drains the answer; it reports
// success (a 2xx answer).
func (t *target) do(ctx context.Context) bool {
	method, body := http.MethodGet, io.Reader(nil)
	if t.body != nil {
		method, body = http.MethodPost, bytes.NewReader(t.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.url, body)
	if err != nil {
		return false
	}
	if t.body != nil {
		req.Header["Content-Type"] = jsonType
	}
	for k, vs := range t.header {
		req.Header[k] = vs
	}
	if t.host != "" {
		req.Host = t.host
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

var jsonType = []string{"application/json"}

// loadResult is one load run.
type loadResult struct {
	Requests uint64
	Errors   uint64
	Elapsed  time.Duration
	Hist     *Hist
}

// RPS returns successful requests per second.
func (r loadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

// closedLoop runs conc workers that each send the next request as soon as
// the last one is answered, for d.
func closedLoop(t *target, conc int, d time.Duration) loadResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	hists := make([]*Hist, conc)
	var n, errs atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		h := &Hist{}
		hists[w] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				ok := t.do(ctx)
				if ctx.Err() != nil && !ok {
					return // cut off by the end of the run, not a failure
				}
				h.Record(time.Since(t0))
				n.Add(1)
				if !ok {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res := loadResult{Requests: n.Load(), Errors: errs.Load(), Elapsed: time.Since(start), Hist: &Hist{}}
	for _, h := range hists {
		res.Hist.Merge(h)
	}
	return res
}

// openLoop sends rate requests per second for d on a fixed schedule, no
// matter how fast answers come, and measures each request from its
// scheduled start: a stalled proxy shows up as latency instead of as fewer
// requests (no coordinated omission). Up to maxInFlight requests run at
// once; later ones wait in the queue, and that wait counts.
func openLoop(t *target, rate int, d time.Duration, maxInFlight int) loadResult {
	total := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	jobs := make(chan time.Time, total)
	ctx, cancel := context.WithTimeout(context.Background(), d+15*time.Second)
	defer cancel()
	hists := make([]*Hist, maxInFlight)
	var errs atomic.Uint64
	var wg sync.WaitGroup
	for w := range maxInFlight {
		h := &Hist{}
		hists[w] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range jobs {
				if !t.do(ctx) {
					errs.Add(1)
				}
				h.Record(time.Since(at))
			}
		}()
	}
	start := time.Now()
	for i := 0; i < total; {
		now := time.Now()
		for ; i < total; i++ {
			at := start.Add(time.Duration(i) * interval)
			if at.After(now) {
				break
			}
			jobs <- at
		}
		if i < total {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		}
	}
	close(jobs)
	wg.Wait()
	res := loadResult{Requests: uint64(total), Errors: errs.Load(), Elapsed: time.Since(start), Hist: &Hist{}}
	for _, h := range hists {
		res.Hist.Merge(h)
	}
	return res
}
