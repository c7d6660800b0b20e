package pathnorm

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

var def = Options{MergeSlashes: true, EscapedSlashes: Decode}

func TestNormalize(t *testing.T) {
	keep := Options{MergeSlashes: true, EscapedSlashes: Keep}
	rej := Options{MergeSlashes: true, EscapedSlashes: Reject}
	noMerge := Options{EscapedSlashes: Decode}
	strict := Options{MergeSlashes: true, EscapedSlashes: Decode, RejectChanges: true}
	tests := []struct {
		name, in string
		o        Options
		want     string // "" means refused
	}{
		{"already normal", "/v1/orders", def, "/v1/orders"},
		{"root", "/", def, "/"},
		{"trailing slash kept", "/v1/", def, "/v1/"},
		{"not origin form", "*", def, "*"},
		{"dot dot", "/public/../v1/orders", def, "/v1/orders"},
		{"dot", "/public/./v1", def, "/public/v1"},
		{"dot then dot dot", "/public/./../v1/orders", def, "/v1/orders"},
		{"encoded dots lower", "/public/%2e%2e/v1/orders", def, "/v1/orders"},
		{"encoded dots upper", "/public/%2E%2E/v1/orders", def, "/v1/orders"},
		{"half encoded", "/public/.%2e/v1/orders", def, "/v1/orders"},
		{"half encoded other half", "/public/%2E./v1/orders", def, "/v1/orders"},
		{"encoded slashes around dots", "/public%2F..%2Fv1/orders", def, "/v1/orders"},
		{"dots then encoded slash", "/public/..%2fv1/orders", def, "/v1/orders"},
		{"fully encoded", "/%70%75%62%6c%69%63%2f%2e%2e%2f%76%31%2f%6f%72%64%65%72%73", def, "/v1/orders"},
		{"encoded hash is not a fragment", "/public/a%23/../../v1/orders", def, "/v1/orders"},
		{"above root", "/../../v1", def, "/v1"},
		{"trailing dot dot", "/v1/orders/..", def, "/v1/"},
		{"trailing dot", "/v1/.", def, "/v1/"},
		{"merged slashes", "//v1///orders", def, "/v1/orders"},
		{"empty segment then dot dot, merged first", "/public//../v1", def, "/v1"},
		{"not merged", "//v1//orders", noMerge, "//v1//orders"},
		{"not merged, dot dot pops the empty segment", "/public//../v1", noMerge, "/public/v1"},
		{"mixed-case hex normalised", "/a%3bb/%c3%A9", def, "/a%3Bb/%C3%A9"},
		{"unreserved escapes decoded", "/%41%7e%5F%2D", def, "/A~_-"},
		{"raw bytes escaped", "/a b/\"x\"", def, "/a%20b/%22x%22"},
		{"parameters kept", "/public;x=1/../v1/orders", def, "/v1/orders"},
		{"parameters on a name kept", "/v1/orders;jsessionid=1", def, "/v1/orders;jsessionid=1"},
		{"dot dot with parameters refused", "/public/..;/v1/orders", def, ""},
		{"dot with parameters refused", "/public/.;x/v1", def, ""},
		{"dot dot with encoded parameters refused", "/public/..%3b/v1", def, ""},
		{"encoded semicolon elsewhere kept", "/a%3b/..x%3B", def, "/a%3B/..x%3B"},
		{"overlong dot refused", "/public/%c0%ae%c0%ae/v1/orders", def, ""},
		{"overlong slash refused", "/public/..%c0%afv1/orders", def, ""},
		{"invalid utf-8 refused", "/%ff", def, ""},
		{"valid utf-8 kept", "/caf%C3%A9", def, "/caf%C3%A9"},
		{"malformed escape refused", "/a%2", def, ""},
		{"malformed escape refused 2", "/a%zz", def, ""},
		{"backslash decoded", "/public\\..\\v1/orders", def, "/v1/orders"},
		{"encoded backslash decoded", "/public%5C..%5Cv1/orders", def, "/v1/orders"},
		{"keep: encoded slash stays", "/public%2F..%2Fv1/orders", keep, "/public%2F..%2Fv1/orders"},
		{"keep: lower hex upper-cased", "/a%2fb%5cc", keep, "/a%2Fb%5Cc"},
		{"keep: raw backslash encoded", "/a\\b", keep, "/a%5Cb"},
		{"keep: dots still removed", "/public/%2e%2e/v1", keep, "/v1"},
		{"reject: encoded slash", "/a%2Fb", rej, ""},
		{"reject: encoded backslash", "/a%5cb", rej, ""},
		{"reject: raw backslash", "/a\\b", rej, ""},
		{"reject: plain path passes", "/a/b", rej, "/a/b"},
		{"strict: dot segment refused", "/public/../v1", strict, ""},
		{"strict: merge refused", "/a//b", strict, ""},
		{"strict: decoded slash refused", "/a%2Fb", strict, ""},
		{"strict: re-encoding alone passes", "/%7euser/%c3%a9", strict, "/~user/%C3%A9"},
		{"strict: normal passes", "/v1/orders", strict, "/v1/orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize(tt.in, tt.o)
			if tt.want == "" {
				if err == nil || !errors.Is(err, ErrRejected) {
					t.Fatalf("Normalize(%q) = %q, %v; want refused", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			again, err := Normalize(got, tt.o)
			if err != nil || again != got {
				t.Fatalf("not idempotent: Normalize(%q) = %q, %v", got, again, err)
			}
		})
	}
}

func TestNormalizeNoAllocsWhenCanonical(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, err := Normalize("/v1/orders/1234/items", def); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations for a canonical path", n)
	}
}

func BenchmarkNormalize(b *testing.B) {
	for _, p := range []string{"/v1/orders/1234/items", "/public/%2e%2e/v1//orders"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Normalize(p, def)
			}
		})
	}
}

// hasDotSegment reports whether p has a "." or ".." segment.
func hasDotSegment(p string) bool {
	for _, s := range strings.Split(p, "/") {
		if s == "." || s == ".." {
			return true
		}
	}
	return false
}

// FuzzNormalize: for any input and options, a normalised path has no dot
// segment (escaped, and decoded too unless slashes are kept encoded), no
// empty segment when merging, decodes cleanly, and is a fixed point.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/public/../v1/orders", "/a/%2e%2E/b", "/a%2F..%2Fb", "//a//b/", "/a;b/..;/c",
		"/%c0%ae/", "/a\\..\\b", "/%41%zz", "/./", "/a/b/.."} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, in string, flags uint8) {
		o := Options{MergeSlashes: flags&1 != 0, EscapedSlashes: SlashAction(flags>>1) % 3, RejectChanges: flags&8 != 0}
		if in == "" || in[0] != '/' {
			in = "/" + in
		}
		out, err := Normalize(in, o)
		if err != nil {
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("error %v is not ErrRejected", err)
			}
			return
		}
		if hasDotSegment(out) {
			t.Fatalf("Normalize(%q) = %q has a dot segment", in, out)
		}
		dec, err := url.PathUnescape(out)
		if err != nil {
			t.Fatalf("Normalize(%q) = %q does not decode: %v", in, out, err)
		}
		if o.EscapedSlashes != Keep && hasDotSegment(dec) {
			t.Fatalf("Normalize(%q) = %q decodes to %q with a dot segment", in, out, dec)
		}
		if o.MergeSlashes && strings.Contains(out, "//") {
			t.Fatalf("Normalize(%q) = %q has an empty segment", in, out)
		}
		again, err := Normalize(out, o)
		if err != nil || again != out {
			t.Fatalf("Normalize(Normalize(%q)) = %q, %v; want %q", in, again, err, out)
		}
	})
}
