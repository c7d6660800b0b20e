package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/proxy"
)

// seen is what the recording upstream got for one request.
type seen struct{ uri, stamp string }

// recorder is an upstream that records the request URI and the X-Stamp
// header of every request, by its ?id= query value.
type recorder struct {
	mu  sync.Mutex
	got map[string]seen
}

func startRecorder(t *testing.T) (*recorder, string) {
	rec := &recorder{got: map[string]seen{}}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.got[r.URL.Query().Get("id")] = seen{uri: r.RequestURI, stamp: r.Header.Get("X-Stamp")}
		rec.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	return rec, up.Listener.Addr().String()
}

func (rec *recorder) lookup(id string) (seen, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s, ok := rec.got[id]
	return s, ok
}

// rawStatus sends raw on a new connection and returns the answer's status.
// Raw bytes, because Go's client (like curl) would clean some paths first.
func rawStatus(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// upstreamView is the resource a lenient, normalising upstream would serve
// for uri: fully percent-decoded, backslashes as slashes, ";parameters"
// dropped from segments (servlet containers), then cleaned (nginx).
// With keepSlashes the upstream leaves %2F and %5C encoded, as
// escaped_slashes: keep requires.
func upstreamView(uri string, keepSlashes bool) string {
	p, _, _ := strings.Cut(uri, "?")
	if keepSlashes {
		p = strings.NewReplacer("%2F", "%252F", "%2f", "%252F", "%5C", "%255C", "%5c", "%255C").Replace(p)
	}
	if d, err := url.PathUnescape(p); err == nil {
		p = d
	}
	p = strings.ReplaceAll(p, "\\", "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return path.Clean(strings.Join(segs, "/"))
}

func bootSecGateway(t *testing.T, upstream, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
mode: edge
admin: {address: "off"}
logging: {level: error, access_log: {enabled: false}}
listeners: [{name: plain, address: "127.0.0.1:0"}]
%s
routes:
  - name: public
    match: {path: {prefix: /public/}}
    cluster: up
  - name: v1
    match: {path: {prefix: /v1/}}
    cluster: up
    filters: [{kind: headers, config: {request_set: {X-Stamp: v1}}}]
  - name: rest
    match: {path: {prefix: /}}
    direct: {status: 404, body: "no"}
clusters: [{name: up, endpoints: [%q]}]
`, extra, upstream)
	gw := bootGateway(t, t.TempDir(), cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	return gw.Listeners()[0].Addr().String()
}

var traversalForms = []struct{ name, path string }{
	{"dot dot", "/public/../v1/orders"},
	{"encoded dots", "/public/%2e%2e/v1/orders"},
	{"encoded dots upper", "/public/%2E%2E/v1/orders"},
	{"encoded dots mixed case", "/public/%2e%2E/v1/orders"},
	{"half encoded", "/public/.%2e/v1/orders"},
	{"encoded slashes", "/public%2F..%2Fv1/orders"},
	{"dots encoded slash", "/public/..%2fv1/orders"},
	{"fully encoded", "/%70%75%62%6c%69%63%2f%2e%2e%2f%76%31%2f%6f%72%64%65%72%73"},
	{"encoded hash", "/public/a%23/../../v1/orders"},
	{"dot then dot dot", "/public/./../v1/orders"},
	{"mixed case hex everywhere", "/public/%2E./%76%31/orders"},
	{"overlong utf-8 dots", "/public/%c0%ae%c0%ae/v1/orders"},
	{"overlong utf-8 slash", "/public/..%c0%afv1/orders"},
	{"parameters before dot dot", "/public;x=1/../v1/orders"},
	{"dot dot with parameters", "/public/..;/v1/orders"},
	{"dot dot with encoded parameters", "/public/..%3b/v1/orders"},
	{"backslashes", "/public\\..\\v1/orders"},
	{"encoded backslashes", "/public%5c..%5cv1/orders"},
	{"repeated slash then dot dot", "/public//../v1/orders"},
	{"double slash prefix", "//v1/orders"},
}

// TestE2EPathTraversal sends every traversal form raw through the real
// gateway, in front of a recording upstream, with /public/ plugin-free
// and /v1/ stamped by a filter: whatever is answered, no request that a
// normalising upstream would serve from /v1/ arrives without the stamp,
// and what arrives is in normal form. Under the default settings the
// plain forms arrive as /v1/orders.
func TestE2EPathTraversal(t *testing.T) {
	rec, up := startRecorder(t)
	settings := []struct {
		name, extra string
		// mustReach lists forms that must arrive as /v1/orders, stamped.
		mustReach []string
		// mustRefuse lists forms that must be answered 400.
		mustRefuse []string
	}{
		{"defaults", "",
			[]string{"dot dot", "encoded dots", "encoded dots upper", "half encoded", "encoded slashes", "dots encoded slash", "fully encoded", "encoded hash", "dot then dot dot", "parameters before dot dot", "backslashes", "double slash prefix"},
			[]string{"overlong utf-8 dots", "overlong utf-8 slash", "dot dot with parameters", "dot dot with encoded parameters"}},
		{"reject", "paths: {action: reject}", nil,
			[]string{"dot dot", "encoded dots", "encoded slashes", "double slash prefix"}},
		{"escaped slashes rejected", "paths: {escaped_slashes: reject}",
			[]string{"dot dot"}, []string{"encoded slashes", "dots encoded slash", "encoded backslashes", "backslashes"}},
		{"escaped slashes kept", "paths: {escaped_slashes: keep, merge_slashes: false}",
			[]string{"dot dot", "encoded dots"}, nil},
	}
	n := 0
	for _, st := range settings {
		t.Run(st.name, func(t *testing.T) {
			addr := bootSecGateway(t, up, st.extra)
			status := map[string]int{}
			arrived := map[string]seen{}
			for _, f := range traversalForms {
				n++
				id := fmt.Sprint(n)
				for _, ver := range []string{"HTTP/1.1", "HTTP/1.0"} {
					code := rawStatus(t, addr, "GET "+f.path+"?id="+id+" "+ver+"\r\nHost: x\r\nConnection: close\r\n\r\n")
					got, ok := rec.lookup(id)
					if ok {
						view := upstreamView(got.uri, strings.Contains(st.extra, "keep"))
						if (view == "/v1" || strings.HasPrefix(view, "/v1/")) && got.stamp != "v1" {
							t.Errorf("%s (%s): %q reached the upstream as %q without the /v1/ route's filter", f.name, ver, f.path, got.uri)
						}
						if p, _, _ := strings.Cut(got.uri, "?"); !strings.Contains(st.extra, "keep") && p != path.Clean(p) && p != path.Clean(p)+"/" {
							t.Errorf("%s (%s): upstream got %q, not in normal form", f.name, ver, got.uri)
						}
					}
					status[f.name], arrived[f.name] = code, got
				}
			}
			for _, name := range st.mustReach {
				if got := arrived[name]; got.uri != "/v1/orders?id="+idOf(got.uri) || got.stamp != "v1" || status[name] != http.StatusOK {
					t.Errorf("%s: status %d, upstream got %q stamped %q; want /v1/orders, stamped", name, status[name], got.uri, got.stamp)
				}
			}
			for _, name := range st.mustRefuse {
				if status[name] != http.StatusBadRequest {
					t.Errorf("%s: status %d, want 400", name, status[name])
				}
			}
		})
	}
}

func idOf(uri string) string {
	_, q, _ := strings.Cut(uri, "?id=")
	return q
}

var _ = proxy.Error
