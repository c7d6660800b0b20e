package sdktest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/sdk"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

// testPlugin picks its behaviour from the request path, so one registered
// plugin covers the fake host's semantics.
type testPlugin struct {
	cfg struct {
		Reject      bool `json:"reject"`
		Buffer      bool `json:"buffer"`
		RequestOnly bool `json:"request_only"`
	}
}

func init() { sdk.Handle(&testPlugin{}) }

func (p *testPlugin) Configure() error {
	p.cfg.Reject, p.cfg.Buffer, p.cfg.RequestOnly = false, false, false
	if err := sdk.Config(&p.cfg); err != nil {
		return err
	}
	if p.cfg.RequestOnly {
		sdk.DeclareRequestOnly()
	}
	if p.cfg.Reject {
		return errString("rejected by config")
	}
	if p.cfg.Buffer {
		sdk.EnableFeatures(sdk.FeatureBufferResponse)
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

// hook runs inside OnRequest for "/hook" (see runWith).
var (
	hook    func()
	hookRan bool
)

var hits = sdk.NewCounter("test_hits_total", "Hits.")

func (p *testPlugin) OnRequest(req sdk.Request, resp sdk.Response) sdk.Action {
	hits.Inc()
	sdk.SetValue("path", req.Path())
	switch req.Path() {
	case "/stop":
		resp.Header().Set("X-Local", "1")
		return sdk.Respond(resp, 418, nil, []byte("teapot"))
	case "/append":
		req.SetBody([]byte("a"))
		req.SetBody([]byte("b"))
	case "/props":
		for _, n := range []string{sdk.PropClientIP, sdk.PropPeerID, sdk.PropRoute} {
			v, ok := sdk.Property(n)
			if ok {
				req.Header().Set("X-Prop-"+n, v)
			}
		}
	case "/hook":
		if hook != nil {
			hook()
			hookRan = true
		}
	case "/early-header":
		resp.Header().Set("X-Early", "plugin")
		resp.Header().Set("X-Both", "plugin")
	}
	return sdk.Continue
}

func (p *testPlugin) OnResponse(req sdk.Request, resp sdk.Response) {
	path, _ := sdk.Value("path")
	resp.Header().Set("X-Path", path)
	resp.Header().Set("X-Error", map[bool]string{true: "yes", false: "no"}[resp.IsError()])
	body, err := resp.Body()
	if err != nil {
		resp.Header().Set("X-Body-Err", err.Error())
		return
	}
	resp.SetBody([]byte(strings.ToUpper(string(body))))
}

func TestRunStopAndContinue(t *testing.T) {
	res := sdktest.Run(t, "", sdktest.NewRequest("GET", "/stop", ""))
	if res.Action != sdk.Stop || res.UpstreamCalled || res.Status != 418 ||
		string(res.Body) != "teapot" || res.Header.Get("X-Local") != "1" || res.Header.Get("X-Path") != "" {
		t.Errorf("stop: %+v", res)
	}
	res = sdktest.Run(t, "", sdktest.NewRequest("GET", "/go?q=1", ""))
	if res.Action != sdk.Continue || !res.UpstreamCalled || res.Status != 200 {
		t.Fatalf("continue: %+v", res)
	}
	if res.Header.Get("X-Path") != "/go" || res.Values["path"] != "/go" {
		t.Errorf("per-request value did not reach OnResponse: %v %v", res.Header, res.Values)
	}
	if res.Header.Get("X-Body-Err") != "" || string(res.Body) != "UPSTREAM\n" {
		t.Errorf("OnResponse did not rewrite the body (buffered on demand): %q %v", res.Body, res.Header)
	}
	if res.Request.URL.RequestURI() != "/go?q=1" {
		t.Errorf("upstream request %s", res.Request.URL)
	}
}

func TestBufferedResponseAndUpstream(t *testing.T) {
	h := sdktest.New(t)
	if err := h.Configure(`{"buffer":true}`); err != nil {
		t.Fatal(err)
	}
	h.Upstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Both", "upstream")
		w.WriteHeader(201)
		_, _ = w.Write([]byte("made " + r.Method))
	})
	res := h.Run(sdktest.NewRequest("POST", "/early-header", ""))
	if res.Status != 201 || string(res.Body) != "MADE POST" {
		t.Errorf("status %d body %q, want 201 MADE POST", res.Status, res.Body)
	}
	if res.Header.Get("X-Early") != "plugin" || res.Header.Get("X-Both") != "upstream" {
		t.Errorf("headers %v: early plugin headers kept, upstream wins on conflicts", res.Header)
	}
	h.UpstreamError = true
	res = h.Run(sdktest.NewRequest("GET", "/", ""))
	if res.Status != 502 || res.Header.Get("X-Error") != "yes" {
		t.Errorf("upstream error: status %d headers %v", res.Status, res.Header)
	}
}

func TestBodyWritesAppendWithinAPhase(t *testing.T) {
	res := sdktest.Run(t, "", sdktest.NewRequest("PUT", "/append", "original"))
	if string(res.RequestBody) != "ab" || res.Request.ContentLength != 2 {
		t.Errorf("body %q length %d, want ab 2", res.RequestBody, res.Request.ContentLength)
	}
}

func TestPropertiesAndMetrics(t *testing.T) {
	h := sdktest.New(t)
	h.Properties = map[string]string{sdk.PropPeerID: "spiffe://td/a"}
	req := sdktest.NewRequest("GET", "/props", "")
	req.RemoteAddr = "[2001:db8::1]:9"
	res := h.Run(req)
	got := res.Request.Header
	if got.Get("X-Prop-client_ip") != "2001:db8::1" || got.Get("X-Prop-peer_id") != "spiffe://td/a" || got.Get("X-Prop-route") != "test" {
		t.Errorf("properties: %v", got)
	}
	h.Run(sdktest.NewRequest("GET", "/", ""))
	if m, ok := h.Metric("test_hits_total"); !ok || m.Value != 2 || m.Kind != "counter" {
		t.Errorf("metric %+v %v, want counter 2 on this host", m, ok)
	}
	if _, ok := sdktest.New(t).Metric("test_hits_total"); ok {
		t.Error("metrics leak between hosts")
	}
}

func TestConfigError(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{"reject":true}`, "rejected by config"},
		{`{"rejct":true}`, "unknown field"},
		{`{"reject":`, "config"},
		{`{}`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		err := sdktest.ConfigError(t, tt.cfg)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("config %q: %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

// counterPlugin-free checks of the store go through the Host directly.
func TestStoreExpiry(t *testing.T) {
	h := sdktest.New(t)
	h.SetKV("k", []byte("v"), time.Second)
	if v, ok := h.KV("k"); !ok || string(v) != "v" {
		t.Fatalf("KV = %q %v", v, ok)
	}
	h.Advance(time.Second)
	if _, ok := h.KV("k"); ok {
		t.Error("kv entry outlived its TTL")
	}
	h.SetKV("forever", []byte("x"), 0)
	h.Advance(1000 * time.Hour)
	if _, ok := h.KV("forever"); !ok {
		t.Error("kv entry without TTL expired")
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestVerifySignature(t *testing.T) {
	data := []byte("header.payload")
	digest := sha256.Sum256(data)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, _ := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digest[:])
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaJWK, _ := json.Marshal(map[string]string{"kty": "RSA", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())})

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r, s, _ := ecdsa.Sign(rand.Reader, ecKey, digest[:])
	ecSig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)

	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edSig := ed25519.Sign(edPriv, data)
	edJWK, _ := json.Marshal(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub)})

	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write(data)
	hsSig := mac.Sum(nil)

	bad := func(b []byte) []byte { c := append([]byte(nil), b...); c[len(c)-1] ^= 1; return c }
	tests := []struct {
		name, alg string
		key, sig  []byte
		want      error
	}{
		{"rs256 der", "RS256", rsaDER, rsaSig, nil},
		{"rs256 jwk", "RS256", rsaJWK, rsaSig, nil},
		{"rs256 pem", "RS256", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER}), rsaSig, nil},
		{"rs256 pkcs1", "RS256", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), rsaSig, nil},
		{"rs256 tampered", "RS256", rsaDER, bad(rsaSig), sdk.ErrInvalidSignature},
		{"es256", "ES256", ecDER, ecSig, nil},
		{"es256 tampered", "ES256", ecDER, bad(ecSig), sdk.ErrInvalidSignature},
		{"eddsa jwk", "EdDSA", edJWK, edSig, nil},
		{"hs256", "HS256", []byte("secret"), hsSig, nil},
		{"hs256 wrong secret", "HS256", []byte("other"), hsSig, sdk.ErrInvalidSignature},
		{"alg none", "none", rsaDER, rsaSig, errString("bad key or algorithm")},
		{"key type mismatch", "ES256", rsaDER, ecSig, errString("bad key or algorithm")},
	}
	// VerifySignature needs a host: run it inside a request.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got error
			h := sdktest.New(t)
			runWith(t, h, func() { got = sdk.VerifySignature(tt.alg, tt.key, data, tt.sig) })
			switch want := tt.want.(type) {
			case nil:
				if got != nil {
					t.Errorf("got %v, want valid", got)
				}
			case errString:
				if got == nil || !strings.Contains(got.Error(), string(want)) {
					t.Errorf("got %v, want %q", got, want)
				}
			default:
				if got != want {
					t.Errorf("got %v, want %v", got, want)
				}
			}
		})
	}
}

// runWith runs fn inside a request on h through the registered plugin's
// "/hook" path.
func runWith(t *testing.T, h *sdktest.Host, fn func()) {
	t.Helper()
	hook = fn
	defer func() { hook = nil }()
	h.Upstream = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	res := h.Run(sdktest.NewRequest("GET", "/hook", ""))
	if !hookRan {
		t.Fatalf("hook did not run: %+v", res)
	}
	hookRan = false
}

// TestDeclareRequestOnly: a plugin that declares itself request-only in
// Configure is not called for the response, and the next Configure without
// the declaration brings the response phase back.
func TestDeclareRequestOnly(t *testing.T) {
	h := sdktest.New(t)
	for _, tt := range []struct {
		cfg      string
		wantHook bool
	}{
		{`{"request_only":true}`, false},
		{`{}`, true},
	} {
		if err := h.Configure(tt.cfg); err != nil {
			t.Fatal(err)
		}
		res := h.Run(sdktest.NewRequest("GET", "/go", ""))
		if got := res.Header.Get("X-Path") != ""; got != tt.wantHook {
			t.Errorf("config %s: OnResponse ran = %v, want %v", tt.cfg, got, tt.wantHook)
		}
	}
}
