package main

import (
	"path"
	"strings"
)

// globMatch matches s against pattern. "*" matches any run of characters
// except sep, "**" matches any run including sep; with sep 0 both match
// anything. Every other character matches itself. It runs in
// O(len(pattern) * len(s)) time with no recursion.
func globMatch(pattern, s string, sep byte) bool {
	first := strings.IndexByte(pattern, '*')
	if first < 0 {
		return pattern == s
	}
	// Literal head and tail first: most mismatches end here, and most
	// matches ("/v1/**", "spiffe://td/ns/x/sa/*") need no table at all.
	if !strings.HasPrefix(s, pattern[:first]) {
		return false
	}
	pattern, s = pattern[first:], s[first:]
	last := strings.LastIndexByte(pattern, '*')
	tail := pattern[last+1:]
	if len(tail) > len(s) || !strings.HasSuffix(s, tail) {
		return false
	}
	pattern, s = pattern[:last+1], s[:len(s)-len(tail)]
	if strings.Trim(pattern, "*") == "" {
		return sep == 0 || strings.Contains(pattern, "**") || strings.IndexByte(s, sep) < 0
	}
	// next[i] holds whether the rest of the pattern matches s[i:].
	next := make([]bool, len(s)+1)
	cur := make([]bool, len(s)+1)
	next[len(s)] = true
	for p := len(pattern) - 1; p >= 0; p-- {
		c := pattern[p]
		if c == '*' {
			crossSep := sep == 0
			if p > 0 && pattern[p-1] == '*' {
				p--
				crossSep = true
			}
			// cur[i] = next[i] || (s[i] may be eaten && cur[i+1])
			cur[len(s)] = next[len(s)]
			for i := len(s) - 1; i >= 0; i-- {
				cur[i] = next[i] || ((crossSep || s[i] != sep) && cur[i+1])
			}
		} else {
			cur[len(s)] = false
			for i := len(s) - 1; i >= 0; i-- {
				cur[i] = s[i] == c && next[i+1]
			}
		}
		next, cur = cur, next
	}
	return next[0]
}

// canonicalPath decodes percent escapes and resolves dot segments so that
// "/a/%2e%2e/admin" and "//admin" are matched as "/admin". ok is false for
// a malformed escape. A trailing slash is kept.
func canonicalPath(raw string) (string, bool) {
	p, _, _ := strings.Cut(raw, "?")
	dec, ok := unescape(p)
	if !ok {
		return "", false
	}
	if dec == "" {
		return "/", true
	}
	clean := path.Clean("/" + dec)
	if strings.HasSuffix(dec, "/") && clean != "/" {
		clean += "/"
	}
	return clean, true
}

func unescape(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", false
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
