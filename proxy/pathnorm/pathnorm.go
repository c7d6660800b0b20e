// Package pathnorm turns a request path into the one canonical form the
// router matches and the upstream receives, so that the two can never
// disagree about which resource a request names (path traversal past a
// route's filters: "/public/../v1/orders" matching "/public/").
//
// Normalize works on the escaped path (what the client sent, without the
// query) in two passes:
//
//  1. Percent-encoding: escapes of unreserved characters (RFC 3986 section
//     2.3: ALPHA DIGIT - . _ ~) are decoded, every other escape is kept with
//     upper-case hex (section 6.2.2.1), bytes that may not appear raw in a
//     path are escaped. Encoded slashes and backslashes (%2F, %5C) and raw
//     backslashes follow the SlashAction. Escapes that decode to invalid
//     UTF-8 (overlong forms such as %c0%ae for '.') are refused: no valid
//     client sends them and some decoders turn them into dots.
//  2. Segments: "." and ".." are removed as RFC 3986 section 5.2.4 does,
//     empty segments are merged when MergeSlashes is set, and a segment
//     that is a dot segment followed by ";parameters" ("..;x" or "..%3Bx",
//     which servlet containers read as "..") is refused.
//
// The result is a fixed point: Normalize(Normalize(p)) == Normalize(p).
package pathnorm

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// SlashAction is what happens to %2F and %5C (and a raw backslash).
type SlashAction uint8

const (
	// Decode turns %2F, %5C and a raw backslash into a path separator, as
	// nginx does before matching locations and as browsers read a backslash.
	Decode SlashAction = iota
	// Keep leaves %2F and %5C encoded (a raw backslash becomes %5C): they
	// are not separators for the router. Only safe when the upstream does
	// not decode them either.
	Keep
	// Reject refuses a path that contains any of them.
	Reject
)

// Options control Normalize.
type Options struct {
	// MergeSlashes merges runs of '/' into one.
	MergeSlashes bool
	// EscapedSlashes is the policy for %2F, %5C and a raw backslash.
	EscapedSlashes SlashAction
	// RejectChanges refuses a path that normalisation would change in
	// structure (a dot segment, a merged slash, a decoded slash) instead of
	// normalising it. Re-encoding alone (hex case, unreserved characters)
	// never refuses.
	RejectChanges bool
}

// Error is why a path was refused.
type Error struct{ Reason string }

func (e *Error) Error() string { return "path rejected: " + e.Reason }

// ErrRejected matches every *Error with errors.Is.
var ErrRejected = errors.New("path rejected")

// Is makes errors.Is(err, ErrRejected) true for every *Error.
func (e *Error) Is(target error) bool { return target == ErrRejected }

func reject(reason string) (string, error) { return "", &Error{Reason: reason} }

// Normalize returns the canonical escaped form of path, or an *Error. A
// path that does not start with '/' ("*", an authority) is returned as is.
func Normalize(path string, o Options) (string, error) {
	if path == "" || path[0] != '/' {
		return path, nil
	}
	if isCanonical(path, o) {
		return path, nil // the common case: no allocation
	}
	enc, changed, err := encode(path, o)
	if err != nil {
		return "", err
	}
	out, segChanged, err := segments(enc, o.MergeSlashes)
	if err != nil {
		return "", err
	}
	if o.RejectChanges && (changed || segChanged) {
		return reject("not in normal form (dot segments, repeated or encoded slashes)")
	}
	return out, nil
}

// isCanonical is a quick check that path needs no work: only plain path
// characters, no escapes, no dot or (when merging) empty segments.
func isCanonical(p string, o Options) bool {
	segStart := true
	dots := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' {
			if i > 0 && (dots == 1 || dots == 2) {
				return false
			}
			if i > 0 && segStart && o.MergeSlashes {
				return false
			}
			segStart, dots = true, 0
			continue
		}
		if c == '%' || c == ';' || !plain(c) {
			return false
		}
		if c == '.' && (segStart || dots > 0) {
			dots++
		} else {
			dots = -1
		}
		segStart = false
	}
	return dots != 1 && dots != 2
}

// encode is pass 1: the canonical percent-encoding. changed reports a
// structural change (a slash or backslash decoded).
func encode(p string, o Options) (string, bool, error) {
	var b strings.Builder
	b.Grow(len(p) + 8)
	changed := false
	decodedHigh := false // some escape decoded to a byte >= 0x80
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !ishex(p[i+1]) || !ishex(p[i+2]) {
				s, err := reject("malformed percent-encoding")
				return s, false, err
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch {
			case v == '/' || v == '\\':
				switch o.EscapedSlashes {
				case Reject:
					s, err := reject("encoded slash or backslash")
					return s, false, err
				case Keep:
					b.WriteByte('%')
					b.WriteByte(upperHex[v>>4])
					b.WriteByte(upperHex[v&15])
				default:
					b.WriteByte('/')
					changed = true
				}
			case unreserved(v):
				b.WriteByte(v)
			default:
				if v >= 0x80 {
					decodedHigh = true
				}
				b.WriteByte('%')
				b.WriteByte(upperHex[v>>4])
				b.WriteByte(upperHex[v&15])
			}
		case c == '\\':
			switch o.EscapedSlashes {
			case Reject:
				s, err := reject("backslash")
				return s, false, err
			case Keep:
				b.WriteString("%5C")
			default:
				b.WriteByte('/')
				changed = true
			}
		case plain(c) || c == ';':
			b.WriteByte(c)
		default:
			if c >= 0x80 {
				decodedHigh = true
			}
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		}
	}
	out := b.String()
	if decodedHigh && !validUTF8Escapes(out) {
		s, err := reject("percent-encoding is not valid UTF-8")
		return s, false, err
	}
	return out, changed, nil
}

// validUTF8Escapes reports whether the bytes the escapes of s stand for,
// with everything else, form valid UTF-8 (overlong forms are invalid).
func validUTF8Escapes(s string) bool {
	buf := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			buf = append(buf, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		buf = append(buf, s[i])
	}
	return utf8.Valid(buf)
}

// segments is pass 2 on an encoded path that starts with '/': dot-segment
// removal and, optionally, slash merging.
func segments(p string, merge bool) (string, bool, error) {
	parts := strings.Split(p[1:], "/")
	out := parts[:0] // in place: out never grows past the part being read
	changed := false
	for i, s := range parts {
		last := i == len(parts)-1
		switch s {
		case ".", "..":
			changed = true
			if s == ".." && len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "") // "/a/b/.." is "/a/"
			}
			continue
		case "":
			if merge && !last {
				changed = true
				continue
			}
		default:
			if isDotWithParams(s) {
				s, err := reject("dot segment with parameters")
				return s, false, err
			}
		}
		out = append(out, s)
	}
	return "/" + strings.Join(out, "/"), changed, nil
}

// isDotWithParams reports whether segment s is "." or ".." followed by
// ";" or its escape (some frameworks decode before they drop parameters).
func isDotWithParams(s string) bool {
	k := strings.IndexByte(s, ';')
	if e := strings.Index(s, "%3B"); e >= 0 && (k < 0 || e < k) {
		k = e
	}
	return k >= 0 && (s[:k] == "." || s[:k] == "..")
}

const upperHex = "0123456789ABCDEF"

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// unreserved is RFC 3986 section 2.3.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// plain is a byte that may appear raw in a path (pchar or '/'), except '%'
// and ';' which the callers treat themselves.
func plain(c byte) bool {
	if unreserved(c) {
		return true
	}
	switch c {
	case '/', '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@':
		return true
	}
	return false
}
