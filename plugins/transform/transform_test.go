package main

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// fakeHeader adapts http.Header to headerBlock.
type fakeHeader http.Header

func (h fakeHeader) Values(n string) []string { return http.Header(h).Values(n) }
func (h fakeHeader) Set(n, v string)          { http.Header(h).Set(n, v) }
func (h fakeHeader) Add(n, v string)          { http.Header(h).Add(n, v) }
func (h fakeHeader) Del(n string)             { http.Header(h).Del(n) }

func testLookup(values, props, headers map[string]string) *lookup {
	get := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	return &lookup{value: get(values), property: get(props), header: func(n string) (string, bool) {
		v := http.Header{}
		for k, x := range headers {
			v.Set(k, x)
		}
		s := v.Get(n)
		return s, s != ""
	}}
}

var stdLookup = testLookup(
	map[string]string{"consumer": "acme", "tier": "gold", "jwt.sub": "alice", "custom": "c$1"},
	map[string]string{"request_id": "rid-1", "client_ip": "10.0.0.1"},
	map[string]string{"X-Client": "cli\r\nInjected: yes"},
)

func TestTemplate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"${consumer}/${tier}", "acme/gold"},
		{"sub=${jwt.sub} rid=${request_id}", "sub=alice rid=rid-1"},
		{"${property.client_ip}", "10.0.0.1"},
		{"${header.x-client}", "cli\r\nInjected: yes"},
		{"${value.custom}", "c$1"},
		{"${jwt.missing}x", "x"},
		{"keep ${1} and $1 and ${name}", "keep ${1} and $1 and ${name}"},
		{"unterminated ${consumer", "unterminated ${consumer"},
	}
	for _, tt := range tests {
		tm, err := parseTemplate(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := tm.expand(stdLookup, nil); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if _, err := parseTemplate("${jwt.}"); err == nil {
		t.Error("empty claim name accepted")
	}
}

func mustProgram(t *testing.T, cfg string) *program {
	t.Helper()
	p, err := parseConfig([]byte(cfg))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	return p
}

func TestHeaders(t *testing.T) {
	p := mustProgram(t, `{"request":{"headers":{
		"rename":{"x-old":"x-new"},
		"remove":["x-drop"],
		"set":{"x-consumer":"${consumer}","x-client":"${header.x-client}"},
		"add":{"via":"wasmgate ${request_id}"}}}}`)
	h := http.Header{"X-Old": {"1", "2"}, "X-Drop": {"x"}, "X-New": {"stale"}, "Via": {"edge"}}
	h.Set("X-Client", "cli\r\nInjected: yes")
	applyHeaders(p.reqHeaders, fakeHeader(h), stdLookup)
	want := http.Header{"X-New": {"1", "2"}, "X-Consumer": {"acme"}, "X-Client": {"cliInjected: yes"}, "Via": {"edge", "wasmgate rid-1"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("headers = %v\nwant %v", h, want)
	}
}

func TestRewriteURI(t *testing.T) {
	tests := []struct {
		name, cfg, in, want string
	}{
		{"captures", `{"request":{"path":{"regex":"^/v1/users/([0-9]+)$","replacement":"/api/users/$1/profile"}}}`, "/v1/users/42?x=1", "/api/users/42/profile?x=1"},
		{"named capture and template", `{"request":{"path":{"regex":"^/v1/(?P<rest>.*)$","replacement":"/${consumer}/${rest}"}}}`, "/v1/a/b", "/acme/a/b"},
		{"template dollar is literal", `{"request":{"path":{"regex":"^/(.*)$","replacement":"/${value.custom}/$1"}}}`, "/x", "/c$1/x"},
		{"template value is path-escaped", `{"request":{"path":{"regex":"^/(.*)$","replacement":"/${header.x-client}/$1"}}}`, "/x", "/cli%0D%0AInjected:%20yes/x"},
		{"no match keeps uri", `{"request":{"path":{"regex":"^/v2/(.*)$","replacement":"/$1"}}}`, "/v1/a", "/v1/a"},
		{"query ops", `{"request":{"query":{"remove":["debug"],"set":{"who":"${jwt.sub}"},"add":{"tag":"b"}}}}`, "/p?debug=1&tag=a&z=2", "/p?tag=a&tag=b&who=alice&z=2"},
		{"query all removed", `{"request":{"query":{"remove":["a"]}}}`, "/p?a=1", "/p"},
		{"query added to bare path", `{"request":{"query":{"set":{"rid":"${request_id}"}}}}`, "/p", "/p?rid=rid-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustProgram(t, tt.cfg)
			got, changed := p.rewriteURI(tt.in, stdLookup)
			if got != tt.want || changed != (tt.in != tt.want) {
				t.Fatalf("rewriteURI(%q) = %q, %v, want %q", tt.in, got, changed, tt.want)
			}
		})
	}
}

func TestEditBody(t *testing.T) {
	p := mustProgram(t, `{"request":{"body":{
		"rename":{"user.name":"user.full_name"},
		"remove":["password","items.1"],
		"set":{"meta.consumer":"${consumer}","meta.version":2,"user.flags":{"beta":true},"note":"<b>&"}}}}`)
	in := `{"user":{"name":"Ann","age":30},"password":"x","items":[1,2,3],"big":12345678901234567890}`
	out, changed, err := editBody(p.reqBody, []byte(in), stdLookup)
	if err != nil || !changed {
		t.Fatalf("editBody: %v changed=%v", err, changed)
	}
	want := `{"big":12345678901234567890,"items":[1,3],"meta":{"consumer":"acme","version":2},"note":"<b>&","user":{"age":30,"flags":{"beta":true},"full_name":"Ann"}}`
	if string(out) != want {
		t.Fatalf("body = %s\nwant   %s", out, want)
	}
	bad := []struct{ name, body string }{
		{"not json", "hello"},
		{"trailing", `{"a":1} {"b":2}`},
		{"empty", ""},
	}
	for _, b := range bad {
		got, changed, err := editBody(p.reqBody, []byte(b.body), stdLookup)
		if !errors.Is(err, errNotJSON) || changed || string(got) != b.body {
			t.Errorf("%s: editBody = %q, %v, %v", b.name, got, changed, err)
		}
	}
	// Setting through a scalar is an error and leaves the body as it was.
	q := mustProgram(t, `{"response":{"body":{"set":{"a.b":1}}}}`)
	got, changed, err := editBody(q.respBody, []byte(`{"a":"str"}`), stdLookup)
	if err == nil || changed || string(got) != `{"a":"str"}` {
		t.Fatalf("set through scalar: %q %v %v", got, changed, err)
	}
	// Nothing to do: the body is returned untouched (not re-encoded).
	r := mustProgram(t, `{"response":{"body":{"remove":["missing"]}}}`)
	got, changed, err = editBody(r.respBody, []byte(`{ "a" : 1 }`), stdLookup)
	if err != nil || changed || string(got) != `{ "a" : 1 }` {
		t.Fatalf("no-op edit: %q %v %v", got, changed, err)
	}
	// A top-level array.
	s := mustProgram(t, `{"response":{"body":{"remove":["0"],"set":{"0.id":"${jwt.sub}"}}}}`)
	got, _, err = editBody(s.respBody, []byte(`[{"id":1},{"id":2}]`), stdLookup)
	if err != nil || string(got) != `[{"id":"alice"}]` {
		t.Fatalf("array root: %s %v", got, err)
	}
}

func TestStatusAndJSONDetection(t *testing.T) {
	p := mustProgram(t, `{"response":{"status":{"404":410,"503":502}}}`)
	if to, ok := p.mapStatus(404); !ok || to != 410 {
		t.Fatalf("mapStatus(404) = %d %v", to, ok)
	}
	if _, ok := p.mapStatus(200); ok {
		t.Fatal("200 mapped")
	}
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "application/problem+json": true,
		"text/plain": false, "": false, "application/jsonx": false,
	} {
		if isJSON(ct) != want {
			t.Errorf("isJSON(%q) != %v", ct, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{"request":{"path":{"regex":"(","replacement":"/"}}}`, "request.path.regex"},
		{`{"request":{"headers":{"set":{"bad name":"x"}}}}`, `request.headers.set: invalid header name "bad name"`},
		{`{"response":{"headers":{"rename":{"a":""}}}}`, "response.headers.rename"},
		{`{"request":{"body":{"remove":["a..b"]}}}`, "request.body.remove[0]: path \"a..b\" has an empty segment"},
		{`{"response":{"body":{"set":{"":1}}}}`, "response.body.set"},
		{`{"response":{"status":{"abc":200}}}`, `response.status["abc"]`},
		{`{"response":{"status":{"404":99}}}`, `response.status["404"]`},
		{`{"request":{"headers":{"set":{"x":"${jwt.}"}}}}`, "empty name"},
		{`{"max_body_bytes":-1}`, "max_body_bytes"},
		{`{"requests":{}}`, `unknown field "requests"`},
	}
	for _, tt := range tests {
		_, err := parseConfig([]byte(tt.cfg))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "transform: config: ") {
			t.Errorf("parseConfig(%s) err = %v, want %q", tt.cfg, err, tt.want)
		}
	}
	p := mustProgram(t, ``)
	if p.maxBody != defaultMaxBody || p.hasResponseWork() || p.needsRequestBody() {
		t.Fatalf("empty config: %+v", p)
	}
}
