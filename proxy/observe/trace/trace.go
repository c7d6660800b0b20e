// Package trace implements the W3C Trace Context headers (traceparent and
// tracestate) that wasmgate propagates to upstreams. It parses and validates
// what a client sent, creates a new trace when the client sent none or an
// invalid one, and creates the child span id for the upstream hop. It does not
// record or export spans.
package trace

import (
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
)

// Header names, in canonical form so map lookups need no canonicalisation.
const (
	ParentHeader = "Traceparent"
	StateHeader  = "Tracestate"
)

// Trace flag bits.
const (
	// FlagSampled says the caller may have recorded the trace.
	FlagSampled byte = 0x01
	// FlagRandom (Trace Context Level 2) says the trace id is random.
	FlagRandom byte = 0x02
)

// maxStateMembers is the largest tracestate list the spec allows.
const maxStateMembers = 32

// maxStateLen bounds the tracestate header we accept (32 members of 256+256).
const maxStateLen = 8192

// TraceContext is one hop's W3C trace context: the trace it belongs to, the
// span id of the caller (parent-id), the trace flags and the vendor
// tracestate, which is forwarded unchanged.
type TraceContext struct {
	// TraceID identifies the whole trace; never all zeros when valid.
	TraceID [16]byte
	// SpanID is the parent-id: the span of whoever sends this header.
	SpanID [8]byte
	// Flags are the trace flags (bit 0: sampled).
	Flags byte
	// State is the validated tracestate header value, empty if none.
	State string
}

// Errors returned by Parse.
var (
	ErrMalformed = errors.New("trace: malformed traceparent")
	ErrVersion   = errors.New("trace: unsupported traceparent version")
	ErrZeroID    = errors.New("trace: all-zero trace id or parent id")
)

// New returns a fresh trace context with random trace and span ids. The
// flags are sampled only when sampled is true: wasmgate records no spans, so
// it does not claim it did unless asked.
func New(sampled bool) TraceContext {
	var tc TraceContext
	fill(tc.TraceID[:])
	fill(tc.SpanID[:])
	if sampled {
		tc.Flags = FlagSampled
	}
	return tc
}

// fill writes random non-zero bytes into b (math/rand/v2's global source is a
// per-thread ChaCha8 seeded from the OS: fast and unpredictable enough for ids).
func fill(b []byte) {
	for {
		for i := 0; i < len(b); i += 8 {
			v := rand.Uint64()
			for j := i; j < i+8 && j < len(b); j++ {
				b[j] = byte(v)
				v >>= 8
			}
		}
		if !allZero(b) {
			return
		}
	}
}

// FromRequest returns the trace context of r. When r has no valid
// traceparent header, it returns a new unsampled context and created=true;
// a tracestate without a valid traceparent is discarded, as the spec says.
func FromRequest(r *http.Request) (tc TraceContext, created bool) {
	parents := r.Header[ParentHeader]
	if len(parents) != 1 {
		return New(false), true
	}
	tc, err := Parse(parents[0], joinState(r.Header[StateHeader]))
	if err != nil {
		return New(false), true
	}
	return tc, false
}

// joinState combines several tracestate header lines into one list.
func joinState(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	return strings.Join(vs, ",")
}

// Parse validates a traceparent value and its tracestate. An invalid
// tracestate is dropped (State is left empty) without failing the parse.
func Parse(traceparent, tracestate string) (TraceContext, error) {
	var tc TraceContext
	s := traceparent
	if len(s) < 55 {
		return tc, ErrMalformed
	}
	ver, ok := hexByte(s[0], s[1])
	if !ok || s[2] != '-' {
		return tc, ErrMalformed
	}
	switch {
	case ver == 0xff:
		return tc, ErrVersion
	case ver == 0 && len(s) != 55:
		return tc, ErrMalformed
	case ver > 0 && len(s) > 55 && s[55] != '-':
		// Future versions may append fields, separated by a dash.
		return tc, ErrMalformed
	}
	if s[35] != '-' || s[52] != '-' {
		return tc, ErrMalformed
	}
	if !decodeLowerHex(tc.TraceID[:], s[3:35]) || !decodeLowerHex(tc.SpanID[:], s[36:52]) {
		return tc, ErrMalformed
	}
	flags, ok := hexByte(s[53], s[54])
	if !ok {
		return tc, ErrMalformed
	}
	if allZero(tc.TraceID[:]) || allZero(tc.SpanID[:]) {
		return TraceContext{}, ErrZeroID
	}
	// Flags not defined yet (everything but sampled and Level 2's random)
	// must be zero when forwarded.
	tc.Flags = flags & (FlagSampled | FlagRandom)
	if ValidState(tracestate) {
		tc.State = strings.TrimSpace(tracestate)
	}
	return tc, nil
}

// Child returns the context for the next hop: same trace, flags and state,
// with a new random span id (the proxy's own span becomes the parent-id).
func (tc TraceContext) Child() TraceContext {
	c := tc
	fill(c.SpanID[:])
	return c
}

// Valid reports whether tc has non-zero trace and span ids.
func (tc TraceContext) Valid() bool {
	return !allZero(tc.TraceID[:]) && !allZero(tc.SpanID[:])
}

// Sampled reports whether the sampled flag is set.
func (tc TraceContext) Sampled() bool { return tc.Flags&FlagSampled != 0 }

const hexdigits = "0123456789abcdef"

// Header returns the traceparent value ("00-<trace-id>-<parent-id>-<flags>").
func (tc TraceContext) Header() string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tc.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], tc.SpanID[:])
	b[52] = '-'
	b[53], b[54] = hexdigits[tc.Flags>>4], hexdigits[tc.Flags&0x0f]
	return string(b[:])
}

// TraceIDString returns the trace id as 32 lowercase hex digits.
func (tc TraceContext) TraceIDString() string { return hex.EncodeToString(tc.TraceID[:]) }

// SpanIDString returns the span id as 16 lowercase hex digits.
func (tc TraceContext) SpanIDString() string { return hex.EncodeToString(tc.SpanID[:]) }

// Inject sets traceparent (and tracestate when present) on h, replacing any
// values already there.
func (tc TraceContext) Inject(h http.Header) { tc.InjectID(h) }

// InjectID is Inject that also returns the trace id as 32 lowercase hex
// digits, cut from the traceparent value instead of encoded again.
func (tc TraceContext) InjectID(h http.Header) string {
	v := tc.Header()
	if cur := h[ParentHeader]; len(cur) == 1 {
		cur[0] = v // the caller's slice: replaced in place, no allocation
	} else {
		h[ParentHeader] = []string{v}
	}
	switch cur := h[StateHeader]; {
	case tc.State == "":
		delete(h, StateHeader)
	case len(cur) != 1 || cur[0] != tc.State:
		h[StateHeader] = []string{tc.State}
	}
	return v[3:35]
}

// ValidState reports whether s is a valid tracestate list: at most 32
// comma-separated key=value members (empty members allowed), keys as the spec
// defines them (simple or tenant@system), values of printable ASCII without
// ',' and '=', not ending in a space. The empty string is valid.
func ValidState(s string) bool {
	if len(s) > maxStateLen {
		return false
	}
	members := 0
	for len(s) > 0 {
		var m string
		if i := strings.IndexByte(s, ','); i >= 0 {
			m, s = s[:i], s[i+1:]
		} else {
			m, s = s, ""
		}
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		members++
		if members > maxStateMembers {
			return false
		}
		eq := strings.IndexByte(m, '=')
		if eq <= 0 || !validStateKey(m[:eq]) || !validStateValue(m[eq+1:]) {
			return false
		}
	}
	return true
}

func validStateKey(k string) bool {
	if at := strings.IndexByte(k, '@'); at >= 0 {
		tenant, system := k[:at], k[at+1:]
		return len(tenant) >= 1 && len(tenant) <= 241 && len(system) >= 1 && len(system) <= 14 &&
			keyChars(tenant, true) && keyChars(system, false)
	}
	return len(k) >= 1 && len(k) <= 256 && keyChars(k, false)
}

// keyChars checks lcalpha/digit/_-*/ with a first character that is lcalpha
// (or a digit when digitFirst, which the tenant of a multi-tenant key allows).
func keyChars(k string, digitFirst bool) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		lower := c >= 'a' && c <= 'z'
		digit := c >= '0' && c <= '9'
		if i == 0 && !lower && !(digitFirst && digit) {
			return false
		}
		if !lower && !digit && c != '_' && c != '-' && c != '*' && c != '/' {
			return false
		}
	}
	return true
}

func validStateValue(v string) bool {
	if len(v) == 0 || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

func hexByte(a, b byte) (byte, bool) {
	hi, ok1 := lowerHexVal(a)
	lo, ok2 := lowerHexVal(b)
	return hi<<4 | lo, ok1 && ok2
}

func lowerHexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// decodeLowerHex decodes lowercase hex only (the spec forbids uppercase).
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		v, ok := hexByte(s[2*i], s[2*i+1])
		if !ok {
			return false
		}
		dst[i] = v
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
