package trace

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		parent string
		state  string
		err    error
		flags  byte
		outSt  string
	}{
		{name: "spec example", parent: valid, state: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", flags: 1, outSt: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{name: "unsampled", parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", flags: 0},
		{name: "unknown flags cleared", parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", flags: 0x03},
		{name: "uppercase hex", parent: strings.ToUpper(valid), err: ErrMalformed},
		{name: "short", parent: valid[:54], err: ErrMalformed},
		{name: "v00 too long", parent: valid + "-00", err: ErrMalformed},
		{name: "future version with extra field", parent: "01" + valid[2:] + "-what", flags: 1},
		{name: "future version without dash", parent: "01" + valid[2:] + "x", err: ErrMalformed},
		{name: "version ff", parent: "ff" + valid[2:], err: ErrVersion},
		{name: "bad separator", parent: strings.Replace(valid, "-", "_", 1), err: ErrMalformed},
		{name: "zero trace id", parent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01", err: ErrZeroID},
		{name: "zero parent id", parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", err: ErrZeroID},
		{name: "non hex", parent: "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", err: ErrMalformed},
		{name: "bad flags", parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x", err: ErrMalformed},
		{name: "invalid state dropped", parent: valid, state: "Upper=1", flags: 1, outSt: ""},
		{name: "tenant key state", parent: valid, state: " 1tenant@sys=v , a-b*c/d_e=x y", flags: 1, outSt: "1tenant@sys=v , a-b*c/d_e=x y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := Parse(tt.parent, tt.state)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if got := tc.TraceIDString(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("trace id = %s", got)
			}
			if got := tc.SpanIDString(); got != "00f067aa0ba902b7" {
				t.Errorf("span id = %s", got)
			}
			if tc.Flags != tt.flags {
				t.Errorf("flags = %02x, want %02x", tc.Flags, tt.flags)
			}
			if tc.State != tt.outSt {
				t.Errorf("state = %q, want %q", tc.State, tt.outSt)
			}
		})
	}
}

func TestValidState(t *testing.T) {
	long := strings.Repeat("a=1,", 33)
	tests := []struct {
		in   string
		want bool
	}{
		{"", true},
		{"a=1", true},
		{"a=1,,b=2", true},
		{"a=1,b", false},
		{"=1", false},
		{"a=", false},
		{"a=b,c", false},
		{"a=trailing-ows ", true},
		{"a=\x7f", false},
		{"a=x=y", false},
		{"1a=x", false},
		{"t@toolongsystemname=x", false},
		{"a=\x01", false},
		{long, false},
		{strings.Repeat("a=1,", 32), true},
	}
	for _, tt := range tests {
		if got := ValidState(tt.in); got != tt.want {
			t.Errorf("ValidState(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name    string
		parents []string
		states  []string
		created bool
		state   string
	}{
		{name: "absent", created: true},
		{name: "valid", parents: []string{valid}, states: []string{"a=1", "b=2"}, state: "a=1,b=2"},
		{name: "invalid parent drops state", parents: []string{"garbage"}, states: []string{"a=1"}, created: true},
		{name: "two parents are invalid", parents: []string{valid, valid}, created: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, p := range tt.parents {
				r.Header.Add("traceparent", p)
			}
			for _, s := range tt.states {
				r.Header.Add("tracestate", s)
			}
			tc, created := FromRequest(r)
			if created != tt.created {
				t.Fatalf("created = %v, want %v", created, tt.created)
			}
			if !tc.Valid() {
				t.Fatal("context not valid")
			}
			if tc.State != tt.state {
				t.Errorf("state = %q, want %q", tc.State, tt.state)
			}
			if created && tc.Sampled() {
				t.Error("a created context must not claim to be sampled")
			}
			if !created && tc.Header() != valid {
				t.Errorf("header = %s, want %s", tc.Header(), valid)
			}
		})
	}
}

func TestChildAndInject(t *testing.T) {
	tc, err := Parse(valid, "a=1")
	if err != nil {
		t.Fatal(err)
	}
	c := tc.Child()
	if c.TraceID != tc.TraceID || c.Flags != tc.Flags || c.State != tc.State {
		t.Fatalf("child changed trace, flags or state: %+v", c)
	}
	if c.SpanID == tc.SpanID {
		t.Fatal("child kept the parent's span id")
	}
	h := http.Header{}
	h.Set("tracestate", "stale=1")
	c.Inject(h)
	back, err := Parse(h.Get("traceparent"), h.Get("tracestate"))
	if err != nil {
		t.Fatalf("injected header does not parse: %v", err)
	}
	if back != c {
		t.Fatalf("round trip = %+v, want %+v", back, c)
	}
	(TraceContext{TraceID: c.TraceID, SpanID: c.SpanID}).Inject(h)
	if _, ok := h["Tracestate"]; ok {
		t.Fatal("Inject without state left a stale tracestate")
	}
}

func TestNewIsRandom(t *testing.T) {
	seen := map[[16]byte]bool{}
	for range 1000 {
		tc := New(true)
		if !tc.Valid() || !tc.Sampled() {
			t.Fatalf("bad context %+v", tc)
		}
		if seen[tc.TraceID] {
			t.Fatal("duplicate trace id")
		}
		seen[tc.TraceID] = true
		if _, err := Parse(tc.Header(), ""); err != nil {
			t.Fatalf("New().Header() does not parse: %v", err)
		}
	}
}

func BenchmarkFromRequest(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("traceparent", valid)
	r.Header.Set("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
	b.ReportAllocs()
	for b.Loop() {
		tc, _ := FromRequest(r)
		_ = tc.Child()
	}
}

func BenchmarkNewHeader(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = New(false).Header()
	}
}

// TestInjectID: the returned id is the trace id's hex, and a traceparent
// the caller sent is replaced in place instead of reallocated.
func TestInjectID(t *testing.T) {
	tc, err := Parse(valid, "a=1")
	if err != nil {
		t.Fatal(err)
	}
	c := tc.Child()
	h := http.Header{"Traceparent": {valid}, "Tracestate": {"a=1"}}
	sent := h["Traceparent"]
	if got := c.InjectID(h); got != c.TraceIDString() {
		t.Fatalf("InjectID = %q, want %q", got, c.TraceIDString())
	}
	if &h["Traceparent"][0] != &sent[0] || sent[0] != c.Header() {
		t.Fatalf("traceparent not replaced in place: %v", h["Traceparent"])
	}
	if allocs := testing.AllocsPerRun(100, func() { c.InjectID(h) }); allocs > 1 {
		t.Fatalf("InjectID over an existing header allocates %.0f times, want only the value", allocs)
	}
}
