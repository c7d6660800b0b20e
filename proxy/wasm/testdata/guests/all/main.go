//go:build wasip1

// Command all calls every host function of http_handler and wasmgate and
// reports what it saw in headers. It keeps per-request state in its own
// memory (a map keyed by the request context), so the host must pin one
// instance from handle_request to handle_response.
package main

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unsafe"

	"github.com/wasmgate/wasmgate/proxy/wasm/testdata/guest/hw"
)

const (
	reqHdr   = 0
	respHdr  = 1
	reqTrl   = 2
	respTrl  = 3
	reqBody  = 0
	respBody = 1
)

var (
	features uint32
	pending  = map[uint32]string{}
	nextID   uint32
	counter  int32
	gauge    int32
	hist     int32
)

func init() {
	cfg := hw.Config()
	if strings.Contains(cfg, "reject") {
		msg := "all: config rejected: " + cfg
		p, n := hw.Ptr(msg)
		hw.ConfigError(p, n)
		return
	}
	features = hw.EnableFeatures(1 | 2)
	counter = define(0, "all_requests_total", "requests seen by the all guest")
	gauge = define(1, "all_last_body_bytes", "size of the last request body")
	hist = define(2, "all_uri_length", "length of request URIs")
}

func define(kind uint32, name, help string) int32 {
	np, nl := hw.Ptr(name)
	hp, hl := hw.Ptr(help)
	return hw.MetricDefine(kind, np, nl, hp, hl)
}

func header(kind uint32, name string) string {
	_, raw := hw.Header(kind, name)
	return strings.TrimSuffix(raw, "\x00")
}

func prop(name string) string {
	np, nl := hw.Ptr(name)
	_, v := hw.Get64(func(b unsafe.Pointer, l uint32) uint64 { return hw.GetProperty(np, nl, b, l) })
	return v
}

func readAll(kind uint32) string {
	var out []byte
	buf := make([]byte, 7) // small on purpose: exercises repeated reads
	for {
		r := hw.ReadBody(kind, hw.BPtr(buf), uint32(len(buf)))
		out = append(out, buf[:uint32(r)]...)
		if r>>32 == 1 {
			return string(out)
		}
	}
}

//go:wasmexport handle_request
func handleRequest() uint64 {
	method := hw.Get(hw.GetMethod)
	uri := hw.URI()
	hw.MetricRecord(counter, 1)
	hw.MetricRecord(hist, float64(len(uri)))
	if hw.LogEnabled(0) == 1 {
		hw.LogString(0, "all: "+method+" "+uri)
	}
	hw.LogString(-1, "all: debug line")

	if uri == "/deny" {
		hw.SetStatusCode(401)
		hw.SetHeader(respHdr, "X-Denied-By", "all")
		hw.WriteBodyString(respBody, "no entry\n")
		return 0
	}

	hw.SetHeader(reqHdr, "X-Method", method)
	hw.SetHeader(reqHdr, "X-Proto", hw.Get(hw.GetProtocolVersion))
	hw.SetHeader(reqHdr, "X-Source", hw.Get(hw.GetSourceAddr))
	hw.SetHeader(reqHdr, "X-Features", strconv.Itoa(int(features)))
	hw.SetHeader(reqHdr, "X-Config", hw.Config())

	count, names := hw.Get64(func(b unsafe.Pointer, l uint32) uint64 { return hw.GetHeaderNames(reqHdr, b, l) })
	hw.SetHeader(reqHdr, "X-Name-Count", strconv.Itoa(int(count)))
	hw.SetHeader(reqHdr, "X-Has-X-In", strconv.FormatBool(strings.Contains(names, "x-in\x00")))
	inCount, _ := hw.Header(reqHdr, "x-in")
	hw.SetHeader(reqHdr, "X-In-Count", strconv.Itoa(int(inCount)))
	hw.AddHeader(reqHdr, "X-Added", "a")
	hw.AddHeader(reqHdr, "X-Added", "b")
	np, nl := hw.Ptr("X-Remove")
	hw.RemoveHeader(reqHdr, np, nl)

	if m := header(reqHdr, "X-Set-Method"); m != "" {
		p, n := hw.Ptr(m)
		hw.SetMethod(p, n)
	}
	if u := header(reqHdr, "X-Set-URI"); u != "" {
		p, n := hw.Ptr(u)
		hw.SetURI(p, n)
	}
	if header(reqHdr, "X-Upper-Body") != "" {
		body := readAll(reqBody)
		hw.MetricRecord(gauge, float64(len(body)))
		hw.WriteBodyString(reqBody, strings.ToUpper(body))
	}

	hw.SetHeader(reqHdr, "X-Prop-Client-IP", prop("client_ip"))
	hw.SetHeader(reqHdr, "X-Prop-Route", prop("route"))
	found, _ := hw.Get64(func(b unsafe.Pointer, l uint32) uint64 {
		p, n := hw.Ptr("no_such_property")
		return hw.GetProperty(p, n, b, l)
	})
	hw.SetHeader(reqHdr, "X-Prop-Missing", strconv.Itoa(int(found)))

	kp, kl := hw.Ptr("guest.seen")
	vp, vl := hw.Ptr(uri)
	hw.SetValue(kp, kl, vp, vl)
	_, pre := hw.Get64(func(b unsafe.Pointer, l uint32) uint64 {
		p, n := hw.Ptr("pre")
		return hw.GetValue(p, n, b, l)
	})
	hw.SetHeader(reqHdr, "X-Value-Pre", pre)

	var out [16]byte
	cp, cl := hw.Ptr("hits")
	st := hw.CounterIncr(cp, cl, 1, 60000, unsafe.Pointer(&out[0]))
	hits := *(*int64)(unsafe.Pointer(&out[0]))
	ttl := *(*int64)(unsafe.Pointer(&out[8]))
	hw.SetHeader(reqHdr, "X-Hits", strconv.Itoa(int(st))+":"+strconv.FormatInt(hits, 10)+":"+strconv.FormatBool(ttl > 0 && ttl <= 60000))

	lk, ll := hw.Ptr("last")
	hw.KVSet(lk, ll, vp, vl, 0)
	_, kv := hw.Get64(func(b unsafe.Pointer, l uint32) uint64 { return hw.KVGet(lk, ll, b, l) })
	hw.SetHeader(reqHdr, "X-KV", kv)
	gk, gl := hw.Ptr("gone")
	hw.KVSet(gk, gl, vp, vl, 0)
	hw.KVDelete(gk, gl)
	gf, _ := hw.Get64(func(b unsafe.Pointer, l uint32) uint64 { return hw.KVGet(gk, gl, b, l) })
	hw.SetHeader(reqHdr, "X-KV-Gone", strconv.Itoa(int(gf)))

	if alg := header(reqHdr, "X-Verify-Alg"); alg != "" {
		key, _ := base64.StdEncoding.DecodeString(header(reqHdr, "X-Verify-Key"))
		sig, _ := base64.StdEncoding.DecodeString(header(reqHdr, "X-Verify-Sig"))
		data := header(reqHdr, "X-Verify-Data")
		ap, al := hw.Ptr(alg)
		dp, dl := hw.Ptr(data)
		st := hw.VerifySignature(ap, al, hw.BPtr(key), uint32(len(key)), dp, dl, hw.BPtr(sig), uint32(len(sig)))
		hw.SetHeader(reqHdr, "X-Verify-Status", strconv.Itoa(int(st)))
	}

	nextID++
	id := nextID
	pending[id] = uri
	return uint64(id)<<32 | 1
}

//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {
	uri, ok := pending[reqCtx]
	delete(pending, reqCtx)
	if !ok {
		uri = "missing"
	}
	hw.SetHeader(respHdr, "X-Req-URI", uri)
	hw.SetHeader(respHdr, "X-Is-Error", strconv.Itoa(int(isError)))
	hw.SetHeader(respHdr, "X-Status-Seen", strconv.Itoa(int(hw.GetStatusCode())))
	_, seen := hw.Get64(func(b unsafe.Pointer, l uint32) uint64 {
		p, n := hw.Ptr("guest.seen")
		return hw.GetValue(p, n, b, l)
	})
	hw.SetHeader(respHdr, "X-Value", seen)
	tc, _ := hw.Get64(func(b unsafe.Pointer, l uint32) uint64 { return hw.GetHeaderNames(respTrl, b, l) })
	hw.SetHeader(respHdr, "X-Trailer-Count", strconv.Itoa(int(tc)))
	if header(reqHdr, "X-Wrap-Response") != "" {
		body := readAll(respBody)
		hw.WriteBodyString(respBody, "wrapped:")
		hw.WriteBodyString(respBody, body)
		hw.SetStatusCode(202)
		hw.SetHeader(respTrl, "X-Trailer", "t")
	}
}

func main() {}
